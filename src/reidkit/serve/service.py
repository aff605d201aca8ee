"""The state behind the HTTP service and its operations: the open index, the embedder, limits, the token.

Independent of HTTP: the routes (:mod:`reidkit.serve.routes`) parse requests, call these methods and shape
the answers. Refusals are :class:`~reidkit.serve.uploads.UploadError` with the HTTP status to answer with.

Memory: the images of a request are decoded only while the request holds their pixels from the service's
:class:`~reidkit.serve.budget.PixelBudget` (``max_pixels * max_concurrent_decodes`` pixels), so decoded images
take at most about ``max_pixels * max_concurrent_decodes * BYTES_PER_PIXEL`` bytes at once.

Freshness: before each request the service checks (one SQLite read) whether another process committed a newer
version of the index, and moves to it (:meth:`Service.refresh_if_changed`).
"""

from __future__ import annotations

import contextlib
import hmac
import io
import json
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from reidkit._io import atomic_write_bytes
from reidkit.index import FingerprintMismatchError, SearchHit, SegmentSearch, open_index, search_segments
from reidkit.index.tracks import is_tracklet
from reidkit.serve.budget import PixelBudget
from reidkit.serve.uploads import (
    DEFAULT_DECODE_WAIT_S,
    DEFAULT_MAX_CONCURRENT_DECODES,
    Upload,
    UploadError,
    check_int64,
    load_rgb,
    open_uploads,
)

THUMBNAIL_SIZE = (128, 256)  # width, height bound
#: the video files the service plays, by suffix: their media type.
VIDEO_TYPES = {".webm": "video/webm", ".mp4": "video/mp4", ".ogv": "video/ogg"}


class Service:
    """An open index served with one embedder.

    Attributes:
        index: the open, writable index.
        index_dir: its directory (relative image paths are relative to it).
        embedder: the model that built the index.
        token: bearer token of the write endpoints (None: writes disabled).
        max_upload_bytes: size limit of one uploaded image.
        max_pixels: width x height limit of the images of one request, summed.
        pixels: the decoded-pixel budget, ``max_pixels * max_concurrent_decodes`` pixels.
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
        max_concurrent_decodes: int = DEFAULT_MAX_CONCURRENT_DECODES,
        decode_wait_s: float = DEFAULT_DECODE_WAIT_S,
        uri: str | None = None,
    ) -> None:
        """Open ``index_dir`` for ``embedder`` (with ``uri``: the Milvus collection named like the folder).

        Raises:
            ValueError: a limit that is not positive.
            FingerprintMismatchError: the embedder is not the model that built the index.
        """
        for name, value in (
            ("max_upload_bytes", max_upload_bytes),
            ("max_pixels", max_pixels),
            ("max_concurrent_decodes", max_concurrent_decodes),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not decode_wait_s >= 0:
            raise ValueError(f"decode_wait_s must be >= 0 seconds, got {decode_wait_s!r}")
        self.pixels = PixelBudget(max_pixels * max_concurrent_decodes, wait_s=decode_wait_s)
        if uri is None:
            self.index = open_index(index_dir)
        else:  # the folder's name is the collection; the folder holds the images added through the service
            self.index = open_index(Path(index_dir).name, backend="milvus", uri=uri)
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
        self._runs: dict[Path, tuple[int, Any]] = {}  # run.json -> (mtime_ns, RunInfo)
        self._runs_lock = threading.Lock()

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

    # ------------------------------------------------------------------ freshness
    def refresh_if_changed(self) -> None:
        """Move the index to the newest committed version when any process wrote to it (one small query)."""
        if self.index.changed():
            self.index.refresh()

    # ------------------------------------------------------------------ decoding
    @contextlib.contextmanager
    def decoded(self, uploads: Sequence[Upload]) -> Iterator[list[Image.Image]]:
        """The uploads decoded to RGB, for the body of the ``with`` block only.

        Headers are checked first (each image within ``max_upload_bytes``, all together within
        ``max_pixels``); the pixels are then decoded while the request holds them from the pixel budget.

        Raises:
            UploadError: 4xx for a refused upload, 503 when the budget stays busy.
        """
        opened = open_uploads(uploads, max_bytes=self.max_upload_bytes, max_pixels=self.max_pixels)
        with self.pixels.hold(sum(image.size[0] * image.size[1] for _, image in opened)):
            images = [load_rgb(image, name=name) for name, image in opened]
            del opened
            yield images

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

    def search_upload(self, upload: Upload, *, top_k: int, **filters: Any) -> list[SearchHit]:
        """Decode the uploaded query photo (within the limits) and rank the gallery by distance to it."""
        with self.decoded([upload]) as images:
            embedding = self.embedder.embed_images(images)
        return self.index.search(embedding, fingerprint=self.embedder.fingerprint, top_k=top_k, **filters)[0]

    def search_identities(
        self, upload: Upload, *, top_k: int, **filters: Any
    ) -> tuple[list[SearchHit], SegmentSearch]:
        """Search with the uploaded photo; also answer per identity for the hits that are tracklets.

        Returns:
            The ranked hits, and the identities (with all their segments passing ``filters``) and other hits.
        """
        with self.decoded([upload]) as images:
            embedding = self.embedder.embed_images(images)
        fingerprint = self.embedder.fingerprint
        hits = self.index.search(embedding, fingerprint=fingerprint, top_k=top_k, **filters)[0]
        found = search_segments(self.index, embedding, fingerprint=fingerprint, hits=hits, **filters)
        return hits, found

    def _run_info(self, run_dir: Path) -> Any:
        """The ``run.json`` of a run folder (cached until the file changes), or None when it cannot be read."""
        from reidkit.track.runfiles import RUN_NAME, RunFileError, RunInfo

        path = run_dir / RUN_NAME
        try:
            stamp = path.stat().st_mtime_ns
            with self._runs_lock:
                cached = self._runs.get(path)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            info = RunInfo.from_json(json.loads(path.read_text(encoding="utf-8")), str(path))
        except (OSError, ValueError, RunFileError):
            return None
        with self._runs_lock:
            self._runs[path] = (stamp, info)
        return info

    def video_file(self, item_id: int) -> tuple[Path, str]:
        """The playable video of a tracklet item's camera, and its media type.

        Only a video named by the ``run.json`` of the run the item was indexed from is served: the path comes
        from that file, never from the request.

        Raises:
            UploadError: 404 when the item is not a tracklet, its run or camera has no playable video, or the
                file is missing.
        """
        item = self.index.get(check_int64(item_id, "item id"))
        if item is None:
            raise UploadError(404, f"no gallery item with id {item_id}")
        if not is_tracklet(item):
            raise UploadError(404, f"gallery item {item_id} is not a tracklet of a tracked video")
        run_dir = Path(item.extra["run"])
        info = self._run_info(run_dir)
        if info is None:
            raise UploadError(404, f"the tracking run of item {item_id} is missing on the server")
        try:
            video = info.camera(str(item.camera)).video_path(run_dir)
        except KeyError:
            video = None
        if video is None or video.suffix.lower() not in VIDEO_TYPES:
            raise UploadError(404, f"camera {item.camera!r} of item {item_id} has no playable video")
        if not video.is_file():
            raise UploadError(404, f"the video of camera {item.camera!r} is missing on the server")
        return video, VIDEO_TYPES[video.suffix.lower()]

    def add_uploads(self, uploads: Sequence[Upload], entries: Sequence[dict[str, Any]]) -> np.ndarray:
        """Decode uploaded images (within the limits) and add them with :meth:`add`.

        Returns:
            ``[N]`` new ids.
        """
        with self.decoded(uploads) as images:
            return self.add(images, entries)

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
        check_int64(item_id, "item id")
        with self.write_lock:
            item = self.index.get(item_id)
            if item is None:
                raise UploadError(404, f"no gallery item with id {item_id}")
            self.index.delete([item_id])
        stored = self.image_path(item.path)
        if stored.parent.resolve() == self.media_dir.resolve():
            stored.unlink(missing_ok=True)

    def image_jpeg(self, item_id: int, size: str) -> bytes:
        """An item's image as JPEG bytes: a thumbnail (``size="thumb"``) or the whole image (``"full"``).

        The stored image is decoded within the pixel budget, like an upload.
        """
        if size not in ("thumb", "full"):
            raise UploadError(422, f"size must be 'thumb' or 'full', got {size!r}")
        item = self.index.get(check_int64(item_id, "item id"))
        if item is None:
            raise UploadError(404, f"no gallery item with id {item_id}")
        try:
            with (
                Image.open(self.image_path(item.path)) as image,
                self.pixels.hold(image.size[0] * image.size[1]),
            ):
                image.load()
                image = image.convert("RGB")
                if size == "thumb":
                    image.thumbnail(THUMBNAIL_SIZE)
                buffer = io.BytesIO()
                image.save(buffer, format="JPEG", quality=88)
        except UploadError:
            raise
        except FileNotFoundError:
            raise UploadError(404, f"the image file of item {item_id} is missing on the server") from None
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            raise UploadError(404, f"the image file of item {item_id} cannot be read") from None
        return buffer.getvalue()
