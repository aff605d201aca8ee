"""What the service accepts from a request: uploaded images (checked before decoding) and form fields.

Images are checked in two steps: :func:`open_image` reads the size in bytes and the header (format, width x
height) without decoding pixels, so that a request's images can be refused, and their decoded size budgeted,
before :func:`load_rgb` allocates the pixels. Form fields are bound-checked before they reach the index: ids
and pids within SQLite's 64-bit integers, metadata JSON within :data:`MAX_METADATA_CHARS` characters and
:data:`MAX_METADATA_DEPTH` levels of nesting.

Needs only Pillow, so it imports without the ``[serve]`` extra.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Sequence
from typing import Any, BinaryIO, Protocol

from PIL import Image, UnidentifiedImageError

DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
#: decoded width x height allowed for the images of one request, summed.
DEFAULT_MAX_PIXELS = 40_000_000
MAX_IMAGES_PER_REQUEST = 64
ALLOWED_FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "GIF", "TIFF", "PPM")
#: the longest side accepted, in pixels: the largest a JPEG (how added images are stored) can hold.
MAX_SIDE = 65_500
#: the range of SQLite's integers (ids, pids, frames).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: size limit of the ``metadata`` form field, in characters.
MAX_METADATA_CHARS = 256 * 1024
#: nesting limit of the ``metadata`` JSON: the list, an item's object and its ``extra`` count as 3 levels.
MAX_METADATA_DEPTH = 16
#: values one filter field (camera, exclude_camera, pid) may list.
MAX_FILTER_VALUES = 1000
#: room for the multipart framing and form fields around the images of one request body.
REQUEST_OVERHEAD_BYTES = 1024 * 1024
#: seconds a request body may take to arrive in full, and may pause between two chunks.
DEFAULT_BODY_TIMEOUT_S = 120.0
DEFAULT_BODY_IDLE_TIMEOUT_S = 15.0
#: requests at the pixel limit that may decode at once (the pixel budget is this times ``max_pixels``).
DEFAULT_MAX_CONCURRENT_DECODES = 2
#: seconds a request waits for its share of the pixel budget before a 503.
DEFAULT_DECODE_WAIT_S = 10.0


class UploadError(ValueError):
    """A request the service refuses; ``status`` is the HTTP code to answer with, ``headers`` extra headers."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


class Upload(Protocol):
    """The part of an uploaded file (FastAPI's ``UploadFile``) that :func:`open_uploads` uses."""

    filename: str | None
    file: BinaryIO


def open_image(file: BinaryIO, *, name: str, size: int, max_bytes: int, max_pixels: int) -> Image.Image:
    """Check an uploaded image's size in bytes and its header, without decoding its pixels.

    Args:
        file: the image file, positioned at its start (read lazily by the returned image).
        name: the upload's name, for messages.
        size: the file's length in bytes.
        max_bytes: size limit.
        max_pixels: width x height limit, checked from the header (and each side at most :data:`MAX_SIDE`).

    Returns:
        The opened, not yet decoded image (pass it to :func:`load_rgb`).

    Raises:
        UploadError: 413 too large, 415 not an image of a supported format, 400 empty or without pixels.
    """
    if size == 0:
        raise UploadError(400, f"{name}: the upload is empty; expected an image file")
    if size > max_bytes:
        raise UploadError(413, f"{name}: {size} bytes is over the limit of {max_bytes} bytes")
    try:
        image = Image.open(file)
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
    if max(width, height) > MAX_SIDE:
        raise UploadError(
            413, f"{name}: image is {width}x{height}; each side must be at most {MAX_SIDE} pixels"
        )
    if width * height > max_pixels:
        raise UploadError(
            413,
            f"{name}: image is {width}x{height} = {width * height} pixels; the limit is {max_pixels} pixels",
        )
    return image


#: Pillow allocates decoded pixels in blocks of this size. At 64 MiB a block is above glibc's largest mmap
#: threshold (32 MiB), so it is mapped and unmapped per image and freed pixels go back to the system at once;
#: with Pillow's 16 MiB default, blocks come from the per-thread malloc arenas, which keep freed memory, and the
#: service's resident memory grew with the number of request threads that ever decoded a large image
#: (benchmarks/serve_memory.py: 16 clients of a 39.6 MP PNG, 2.9 GB peak with the decode bound in place).
DECODE_BLOCK_BYTES = 64 << 20


def use_large_decode_blocks() -> None:
    """Make Pillow map decoded images in :data:`DECODE_BLOCK_BYTES` blocks (process-wide; the service calls it)."""
    Image.core.set_block_size(DECODE_BLOCK_BYTES)


def load_rgb(image: Image.Image, *, name: str) -> Image.Image:
    """Decode an image opened by :func:`open_image` into RGB (no copy when it already is RGB).

    Raises:
        UploadError: 413 past Pillow's decompression-bomb limit, 400 truncated or corrupt.
    """
    try:
        image.load()
        return image if image.mode == "RGB" else image.convert("RGB")
    except Image.DecompressionBombError as error:
        raise UploadError(413, f"{name}: image too large to decode safely ({error})") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise UploadError(400, f"{name}: the image is truncated or corrupt ({error})") from None


def decode_upload(data: bytes, *, name: str, max_bytes: int, max_pixels: int) -> Image.Image:
    """Check and decode an uploaded image held in memory (:func:`open_image`, then :func:`load_rgb`).

    Returns:
        The decoded RGB image.

    Raises:
        UploadError: 413 too large, 415 not an image of a supported format, 400 truncated/corrupt or empty.
    """
    image = open_image(
        io.BytesIO(data), name=name, size=len(data), max_bytes=max_bytes, max_pixels=max_pixels
    )
    return load_rgb(image, name=name)


def open_uploads(
    uploads: Sequence[Upload], *, max_bytes: int, max_pixels: int
) -> list[tuple[str, Image.Image]]:
    """Open the images of one request (headers only) and check their pixels, summed, against ``max_pixels``.

    Args:
        uploads: the uploaded files (read from their spooled files, never copied whole into memory).
        max_bytes: size limit of one image.
        max_pixels: width x height limit of all the images together.

    Returns:
        ``(name, opened image)`` per upload, to decode with :func:`load_rgb`.

    Raises:
        UploadError: as :func:`open_image`; 413 when the images together are over ``max_pixels``.
    """
    opened = []
    for upload in uploads:
        name = upload.filename or "upload"
        upload.file.seek(0, io.SEEK_END)
        size = upload.file.tell()
        upload.file.seek(0)
        opened.append(
            (name, open_image(upload.file, name=name, size=size, max_bytes=max_bytes, max_pixels=max_pixels))
        )
    total = sum(image.size[0] * image.size[1] for _, image in opened)
    if total > max_pixels:
        raise UploadError(
            413,
            f"the {len(opened)} images of this request have {total} pixels in all; the limit is {max_pixels}",
        )
    return opened


def split_list(value: str | None, name: str = "field") -> list[str] | None:
    """A comma-separated form field as its stripped, non-empty parts; None when the field is blank.

    Raises:
        UploadError: 422, more than :data:`MAX_FILTER_VALUES` parts.
    """
    if value is None or not value.strip():
        return None
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if len(parts) > MAX_FILTER_VALUES:
        raise UploadError(422, f"{name} lists {len(parts)} values; the limit is {MAX_FILTER_VALUES}")
    return parts


def check_int64(value: int, name: str) -> int:
    """``value`` when SQLite can store it (a 64-bit signed integer).

    Raises:
        UploadError: 422, naming ``name`` and the range.
    """
    if not INT64_MIN <= value <= INT64_MAX:
        raise UploadError(422, f"{name} must be between {INT64_MIN} and {INT64_MAX}, got {value}")
    return value


def parse_pids(value: str | None) -> list[int] | None:
    """The ``pid`` form field: comma-separated 64-bit integers (None when blank).

    Raises:
        UploadError: 422, a part that is not an integer or out of range.
    """
    parts = split_list(value, "pid")
    if parts is None:
        return None
    try:
        pids = [int(part) for part in parts]
    except ValueError:
        raise UploadError(422, f"pid must be comma-separated integers, got {value[:100]!r}") from None
    return [check_int64(pid, "pid") for pid in pids]


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON ``text`` (brackets inside strings ignored)."""
    depth = deepest = 0
    for bracket in re.findall(r"[\[\]{}]", _JSON_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _refuse_constant(name: str) -> None:
    raise UploadError(422, f"metadata: {name} is not a number JSON allows; expected finite numbers")


def _check_entry(entry: dict[str, Any], where: str) -> None:
    """Refuse the values of one metadata object the index could not store (more checks follow in the index)."""
    if "path" in entry:
        raise UploadError(422, f"{where}: 'path' is set by the server for uploaded images")
    extra = entry.get("extra")
    if isinstance(extra, dict) and extra.get("kind") == "tracklet":
        raise UploadError(
            422, f"{where}: extra kind 'tracklet' is kept for the tracklets of `reidkit index add --tracks`"
        )
    camera = entry.get("camera")
    if camera is not None and not isinstance(camera, (str, int, float)):
        raise UploadError(422, f"{where}: 'camera' must be a string or a number, got {type(camera).__name__}")
    for name in ("frame", "pid"):
        value = entry.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            check_int64(value, f"{where}: {name!r}")
    timestamp = entry.get("timestamp")
    if isinstance(timestamp, (int, float)) and not isinstance(timestamp, bool):
        try:
            finite = math.isfinite(float(timestamp))
        except OverflowError:
            finite = False
        if not finite:
            raise UploadError(
                422, f"{where}: 'timestamp' must be a finite number of seconds, got {timestamp}"
            )


def parse_metadata(text: str | None, count: int) -> list[dict[str, Any]]:
    """The ``metadata`` form field of ``POST /gallery``: one JSON object for all ``count`` images, or a list.

    Raises:
        UploadError: 422, invalid JSON, too long or too deep, the wrong number of objects, a ``path`` (the
            server sets it), or a value out of range (see the module docstring).
    """
    if text is None or not text.strip():
        return [{} for _ in range(count)]
    if len(text) > MAX_METADATA_CHARS:
        raise UploadError(422, f"metadata is {len(text)} characters; the limit is {MAX_METADATA_CHARS}")
    depth = json_depth(text)
    if depth > MAX_METADATA_DEPTH:
        raise UploadError(
            422, f"metadata JSON is nested {depth} levels deep; the limit is {MAX_METADATA_DEPTH}"
        )
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except UploadError:
        raise
    except (ValueError, RecursionError) as error:  # JSONDecodeError, or an integer of too many digits
        raise UploadError(422, f"metadata is not valid JSON ({error})") from None
    if isinstance(value, dict):
        value = [value] * count
    if not isinstance(value, list) or len(value) != count or not all(isinstance(v, dict) for v in value):
        raise UploadError(
            422, f"metadata must be one JSON object or a list of {count} objects (one per image)"
        )
    for position, entry in enumerate(value):
        _check_entry(entry, f"metadata[{position}]")
    return [dict(v) for v in value]
