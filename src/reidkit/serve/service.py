"""The state behind the HTTP service and its operations: the open index, the embedder, limits, the token.

Independent of HTTP: the routes (:mod:`reidkit.serve.routes`) parse requests, call these methods and shape
the answers. Refusals are :class:`~reidkit.serve.uploads.UploadError` with the HTTP status to answer with.
"""

from __future__ import annotations

import hmac
import io
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from reidkit._io import atomic_write_bytes
from reidkit.index import FingerprintMismatchError, Index, SearchHit
from reidkit.serve.uploads import MAX_IMAGES_PER_REQUEST, Upload, UploadError, read_upload

THUMBNAIL_SIZE = (128, 256)  # width, height bound
#: room for the multipart framing and form fields around the images of one request.
REQUEST_OVERHEAD_BYTES = 1024 * 1024


class Service:
    """An open index served with one embedder.

    Attributes:
        index: the open, writable index.
        index_dir: its directory (relative image paths are relative to it).
        embedder: the model that built the index.
        token: bearer token of the write endpoints (None: writes disabled).
        max_upload_bytes: size limit of one uploaded image.
        max_pixels: width x height limit of one uploaded image.
        media_dir: where images added through the service are stored.
        started: ``time.time()`` at start.
        write_lock: serialises the service's own writes (an add, or a lookup then delete).
    """

    def __init__(
        self,
        index_dir: Path,
        embedder: Any,
        *,
        token: str | None,
        max_upload_bytes: int,
        max_pixels: int,
        media_dir: Path,
    ) -> None:
        """Open ``index_dir`` for ``embedder``.

        Raises:
            FingerprintMismatchError: the embedder is not the model that built the index.
        """
        self.index = Index.open(index_dir)
        if self.index.fingerprint != embedder.fingerprint:
            self.index.close()
            raise FingerprintMismatchError(
                f"index {index_dir} was built with model {self.index.fingerprint!r}, but the service was started "
                f"with model {embedder.fingerprint!r} ({embedder.name}): serve it with the model that built it"
            )
        self.index_dir = index_dir
        self.embedder = embedder
        self.token = token
        self.max_upload_bytes = max_upload_bytes
        self.max_pixels = max_pixels
        self.media_dir = media_dir
        self.started = time.time()
        self.write_lock = threading.Lock()

    @property
    def request_limit(self) -> int:
        """Largest request body accepted: a full batch of images at the size limit, plus the form."""
        return self.max_upload_bytes * MAX_IMAGES_PER_REQUEST + REQUEST_OVERHEAD_BYTES

    def image_path(self, path: str) -> Path:
        """Where an item's image is: its path, relative to the index directory unless absolute."""
        candidate = Path(path)
        return candidate if candidate.is_absolute() else self.index_dir / candidate

    def check_token(self, authorization: str | None) -> None:
        """Refuse a write without the bearer token (compared in constant time, never logged)."""
        if self.token is None:
            raise UploadError(403, "writes are disabled: the service was started without a token")
        if not authorization or not authorization.startswith("Bearer "):
            raise UploadError(401, "this endpoint needs an 'Authorization: Bearer <token>' header")
        if not hmac.compare_digest(authorization[len("Bearer ") :].encode(), self.token.encode()):
            raise UploadError(403, "the bearer token is not valid")

    def read_upload(self, upload: Upload) -> Image.Image:
        """Decode one uploaded image within the service's limits."""
        return read_upload(upload, max_bytes=self.max_upload_bytes, max_pixels=self.max_pixels)

    # ------------------------------------------------------------------ operations
    def health(self) -> dict[str, Any]:
        """Liveness and what is served: model, gallery size, index settings."""
        info = self.index.info()
        return {
            "status": "ok",
            "model": self.embedder.name,
            "fingerprint": self.embedder.fingerprint,
            "dim": info["dim"],
            "count": info["count"],
            "cameras": info["cameras"],
            "index": {key: info[key] for key in ("metric", "kind", "structure", "version")},
            "writes_enabled": self.token is not None,
            "uptime_s": round(time.time() - self.started, 1),
        }

    def search(self, query: Image.Image, *, top_k: int, **filters: Any) -> list[SearchHit]:
        """The gallery ranked by distance to ``query``; ``filters`` as for :meth:`reidkit.index.Index.search`."""
        embedding = self.embedder.embed_images([query])
        return self.index.search(embedding, fingerprint=self.embedder.fingerprint, top_k=top_k, **filters)[0]

    def add(self, images: Sequence[Image.Image], entries: Sequence[dict[str, Any]]) -> np.ndarray:
        """Embed images, store them under ``media_dir`` and add them with their metadata in one write.

        The stored files are removed again when the write fails.

        Returns:
            ``[N]`` new ids.
        """
        embeddings = self.embedder.embed_images(list(images))
        self.media_dir.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        try:
            items = []
            for entry, image in zip(entries, images, strict=True):
                written.append(self._store_image(image))
                items.append({**entry, "path": self._relative(written[-1])})
            with self.write_lock:
                return self.index.add(embeddings, items, fingerprint=self.embedder.fingerprint)
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise

    def _store_image(self, image: Image.Image) -> Path:
        target = self.media_dir / f"{uuid.uuid4().hex}.jpg"
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=92)
        atomic_write_bytes(target, buffer.getvalue())
        return target

    def _relative(self, path: Path) -> str:
        """``path`` relative to the index directory when inside it (the index can then be moved)."""
        try:
            return str(path.relative_to(self.index_dir))
        except ValueError:
            return str(path)

    def delete(self, item_id: int) -> None:
        """Remove one item, and its image when the service stored it."""
        with self.write_lock:
            item = self.index.get(item_id)
            if item is None:
                raise UploadError(404, f"no gallery item with id {item_id}")
            self.index.delete([item_id])
        stored = self.image_path(item.path)
        if stored.parent.resolve() == self.media_dir.resolve():
            stored.unlink(missing_ok=True)

    def image_jpeg(self, item_id: int, size: str) -> bytes:
        """An item's image as JPEG bytes: a thumbnail (``size="thumb"``) or the whole image (``"full"``)."""
        if size not in ("thumb", "full"):
            raise UploadError(422, f"size must be 'thumb' or 'full', got {size!r}")
        item = self.index.get(item_id)
        if item is None:
            raise UploadError(404, f"no gallery item with id {item_id}")
        try:
            with Image.open(self.image_path(item.path)) as image:
                image.load()
                image = image.convert("RGB")
        except FileNotFoundError:
            raise UploadError(404, f"the image file of item {item_id} is missing on the server") from None
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            raise UploadError(404, f"the image file of item {item_id} cannot be read") from None
        if size == "thumb":
            image.thumbnail(THUMBNAIL_SIZE)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=88)
        return buffer.getvalue()
