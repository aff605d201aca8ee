"""What the service accepts from a request: uploaded images (checked before decoding) and form fields.

Needs only Pillow, so it imports without the ``[serve]`` extra.
"""

from __future__ import annotations

import io
import json
from typing import Any, BinaryIO, Protocol

from PIL import Image, UnidentifiedImageError

DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
MAX_IMAGES_PER_REQUEST = 64
ALLOWED_FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "GIF", "TIFF", "PPM")


class UploadError(ValueError):
    """An upload the service refuses; ``status`` is the HTTP code to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Upload(Protocol):
    """The part of an uploaded file (FastAPI's ``UploadFile``) that :func:`read_upload` uses."""

    filename: str | None
    file: BinaryIO


def decode_upload(data: bytes, *, name: str, max_bytes: int, max_pixels: int) -> Image.Image:
    """Check and decode an uploaded image.

    Args:
        data: the file's bytes.
        name: the upload's name, for messages.
        max_bytes: size limit.
        max_pixels: width x height limit, checked from the header before decoding.

    Returns:
        The decoded RGB image.

    Raises:
        UploadError: 413 too large, 415 not an image of a supported format, 400 truncated/corrupt or empty.
    """
    if len(data) == 0:
        raise UploadError(400, f"{name}: the upload is empty; expected an image file")
    if len(data) > max_bytes:
        raise UploadError(413, f"{name}: {len(data)} bytes is over the limit of {max_bytes} bytes")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise UploadError(413, f"{name}: image too large to decode safely ({error})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise UploadError(
            415, f"{name}: not a readable image; expected one of {', '.join(ALLOWED_FORMATS)}"
        ) from None
    if image.format not in ALLOWED_FORMATS:
        raise UploadError(
            415, f"{name}: image format {image.format} is not accepted; expected {ALLOWED_FORMATS}"
        )
    width, height = image.size
    if width < 1 or height < 1:
        raise UploadError(400, f"{name}: image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise UploadError(
            413,
            f"{name}: image is {width}x{height} = {width * height} pixels; the limit is {max_pixels} pixels",
        )
    try:
        image.load()
        return image.convert("RGB")
    except Image.DecompressionBombError as error:
        raise UploadError(413, f"{name}: image too large to decode safely ({error})") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise UploadError(400, f"{name}: the image is truncated or corrupt ({error})") from None


def read_upload(upload: Upload, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """Read at most ``max_bytes + 1`` bytes of an uploaded file and decode it with :func:`decode_upload`."""
    data = upload.file.read(max_bytes + 1)
    return decode_upload(data, name=upload.filename or "upload", max_bytes=max_bytes, max_pixels=max_pixels)


def split_list(value: str | None) -> list[str] | None:
    """A comma-separated form field as its stripped, non-empty parts; None when the field is blank."""
    if value is None or not value.strip():
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def parse_pids(value: str | None) -> list[int] | None:
    """The ``pid`` form field: comma-separated integers (None when blank).

    Raises:
        UploadError: 422, a part that is not an integer.
    """
    parts = split_list(value)
    if parts is None:
        return None
    try:
        return [int(part) for part in parts]
    except ValueError:
        raise UploadError(422, f"pid must be comma-separated integers, got {value!r}") from None


def parse_metadata(text: str | None, count: int) -> list[dict[str, Any]]:
    """The ``metadata`` form field of ``POST /gallery``: one JSON object for all ``count`` images, or a list.

    Raises:
        UploadError: 422, invalid JSON, the wrong number of objects, or a ``path`` (the server sets it).
    """
    if text is None or not text.strip():
        return [{} for _ in range(count)]
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise UploadError(422, f"metadata is not valid JSON ({error})") from None
    if isinstance(value, dict):
        value = [value] * count
    if not isinstance(value, list) or len(value) != count or not all(isinstance(v, dict) for v in value):
        raise UploadError(
            422, f"metadata must be one JSON object or a list of {count} objects (one per image)"
        )
    for position, entry in enumerate(value):
        if "path" in entry:
            raise UploadError(422, f"metadata[{position}]: 'path' is set by the server for uploaded images")
    return [dict(v) for v in value]
