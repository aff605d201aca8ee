"""HTTP search service (FastAPI) and its web page.

Endpoints (OpenAPI docs at ``/docs``):

- ``GET /``: the search page (upload or drop a photo, see the ranked gallery).
- ``POST /search``: multipart ``image`` + form fields ``top_k``, ``camera``, ``exclude_camera`` (comma-separated),
  ``since``, ``until`` (seconds or ISO-8601), ``pid`` -> ranked hits with distances and metadata.
- ``POST /gallery`` (bearer token): multipart ``images`` (one or more) + ``metadata`` (JSON: one object for
  all images, or a list with one object per image: camera, timestamp, frame, pid, extra) -> new ids.
- ``DELETE /gallery/{id}`` (bearer token).
- ``GET /gallery/{id}/image?size=thumb|full``: the gallery image (thumbnail by default).
- ``GET /health``: model, index size and settings.

Uploads are checked before they are decoded: size in bytes, then width x height from the header (a
decompression bomb is refused before its pixels are allocated), then a full decode (a truncated file is
refused). Every refusal is a 4xx with a message saying what was expected. Write endpoints need
``Authorization: Bearer <token>``; with no token configured they are disabled. The token is compared in
constant time and never logged.
"""

from __future__ import annotations

import contextlib
import hmac
import io
import json
import os
import sys
import threading
import time
import uuid
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from PIL import Image, UnidentifiedImageError

# FastAPI resolves the endpoints' (string) annotations in this module's namespace, so its names are imported
# here; without the [serve] extra they are None and create_app says what to install.
try:
    from fastapi import FastAPI, File, Form, Header, Request, UploadFile
    from fastapi.responses import HTMLResponse, JSONResponse, Response
except ImportError:
    FastAPI = File = Form = Header = Request = UploadFile = HTMLResponse = JSONResponse = Response = None

from reidkit._io import atomic_write_bytes
from reidkit.embedders import EmbeddingError
from reidkit.index import FingerprintMismatchError, GalleryIndexError, Index

DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
MAX_IMAGES_PER_REQUEST = 64
ALLOWED_FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "GIF", "TIFF", "PPM")
THUMBNAIL_SIZE = (128, 256)  # width, height bound


class UploadError(ValueError):
    """An upload the service refuses; ``status`` is the HTTP code to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


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


def _split_list(value: str | None) -> list[str] | None:
    if value is None or not value.strip():
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def _parse_pids(value: str | None) -> list[int] | None:
    parts = _split_list(value)
    if parts is None:
        return None
    try:
        return [int(part) for part in parts]
    except ValueError:
        raise UploadError(422, f"pid must be comma-separated integers, got {value!r}") from None


def _parse_metadata(text: str | None, count: int) -> list[dict[str, Any]]:
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


class _Service:
    """The state behind the app: index, embedder, limits."""

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

    def image_path(self, path: str) -> Path:
        candidate = Path(path)
        return candidate if candidate.is_absolute() else self.index_dir / candidate

    def check_token(self, authorization: str | None) -> None:
        if self.token is None:
            raise UploadError(403, "writes are disabled: the service was started without a token")
        if not authorization or not authorization.startswith("Bearer "):
            raise UploadError(401, "this endpoint needs an 'Authorization: Bearer <token>' header")
        if not hmac.compare_digest(authorization[len("Bearer ") :].encode(), self.token.encode()):
            raise UploadError(403, "the bearer token is not valid")


def create_app(
    index_dir: str | Path,
    embedder: Any,
    *,
    token: str | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    media_dir: str | Path | None = None,
):
    """Build the FastAPI app serving ``index_dir`` with ``embedder``.

    Args:
        index_dir: an index made by :class:`reidkit.index.Index` with this embedder's fingerprint.
        embedder: an :class:`reidkit.embedders.Embedder`.
        token: bearer token for the write endpoints (None: writes disabled).
        max_upload_bytes: size limit of one uploaded image (and, times the image count, of a request).
        max_pixels: width x height limit of one uploaded image.
        media_dir: where images added through ``POST /gallery`` are stored (default ``<index_dir>/media``).

    Raises:
        FingerprintMismatchError: the embedder is not the model that built the index.
    """
    if FastAPI is None:
        raise ImportError("the HTTP service needs FastAPI: pip install 'reidkit[serve]'")

    index_dir = Path(index_dir)
    service = _Service(
        index_dir,
        embedder,
        token=token,
        max_upload_bytes=max_upload_bytes,
        max_pixels=max_pixels,
        media_dir=Path(media_dir) if media_dir else index_dir / "media",
    )

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        service.index.close()

    app = FastAPI(
        lifespan=lifespan,
        title="reidkit person search",
        description="Search a gallery of pedestrian images by photo.",
        version="1",
    )
    app.state.service = service
    request_limit = max_upload_bytes * MAX_IMAGES_PER_REQUEST + 1024 * 1024

    @app.exception_handler(UploadError)
    async def upload_error(request: Request, error: UploadError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=error.status)

    @app.exception_handler(EmbeddingError)
    async def embedding_error(request: Request, error: EmbeddingError) -> JSONResponse:
        # the model, not the request, is at fault: a server error, but one that says what happened
        return JSONResponse({"detail": f"the model could not embed the image: {error}"}, status_code=500)

    @app.exception_handler(GalleryIndexError)
    async def index_error(request: Request, error: GalleryIndexError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=422)

    @app.middleware("http")
    async def limit_request_size(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return JSONResponse({"detail": "invalid Content-Length header"}, status_code=400)
            if int(length) > request_limit:
                return JSONResponse(
                    {"detail": f"request of {length} bytes is over the limit of {request_limit} bytes"},
                    status_code=413,
                )
        return await call_next(request)

    def read_upload(upload: UploadFile) -> Image.Image:
        data = upload.file.read(service.max_upload_bytes + 1)
        return decode_upload(
            data,
            name=upload.filename or "upload",
            max_bytes=service.max_upload_bytes,
            max_pixels=service.max_pixels,
        )

    def hit_json(hit) -> dict[str, Any]:
        entry = hit.to_dict()
        entry["distance"] = round(entry["distance"], 6)
        entry["image_url"] = f"/gallery/{hit.id}/image?size=full"
        entry["thumbnail_url"] = f"/gallery/{hit.id}/image"
        return entry

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        html = resources.files("reidkit").joinpath("static/index.html").read_text(encoding="utf-8")
        return HTMLResponse(html)

    @app.get("/health")
    def health() -> dict[str, Any]:
        """Liveness and what is served: model, gallery size, index settings."""
        info = service.index.info()
        return {
            "status": "ok",
            "model": embedder.name,
            "fingerprint": embedder.fingerprint,
            "dim": info["dim"],
            "count": info["count"],
            "cameras": info["cameras"],
            "index": {key: info[key] for key in ("metric", "kind", "structure", "version")},
            "writes_enabled": service.token is not None,
            "uptime_s": round(time.time() - service.started, 1),
        }

    @app.post("/search")
    def search(
        image: Annotated[UploadFile, File(description="the query photo (a person crop)")],
        top_k: Annotated[int, Form(ge=1, le=1000)] = 20,
        camera: Annotated[str | None, Form(description="only these cameras, comma-separated")] = None,
        exclude_camera: Annotated[str | None, Form(description="not these cameras, comma-separated")] = None,
        since: Annotated[str | None, Form(description="earliest timestamp: seconds or ISO-8601")] = None,
        until: Annotated[str | None, Form(description="latest timestamp: seconds or ISO-8601")] = None,
        pid: Annotated[str | None, Form(description="only these identities, comma-separated")] = None,
    ) -> dict[str, Any]:
        """Rank the gallery by distance to the uploaded photo."""
        started = time.perf_counter()
        query = read_upload(image)
        embedding = embedder.embed_images([query])
        hits = service.index.search(
            embedding,
            fingerprint=embedder.fingerprint,
            top_k=top_k,
            camera=_split_list(camera),
            exclude_camera=_split_list(exclude_camera),
            since=since or None,
            until=until or None,
            pid=_parse_pids(pid),
        )[0]
        return {
            "model": embedder.name,
            "count": len(hits),
            "results": [hit_json(hit) for hit in hits],
            "elapsed_ms": round(1000 * (time.perf_counter() - started), 2),
        }

    @app.post("/gallery", status_code=201)
    def add_to_gallery(
        images: Annotated[list[UploadFile], File(description="one or more gallery images")],
        metadata: Annotated[
            str | None, Form(description="JSON object for all images, or a list: one per image")
        ] = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        """Add images with metadata (camera, timestamp, frame, pid, extra). Needs the bearer token."""
        service.check_token(authorization)
        if len(images) > MAX_IMAGES_PER_REQUEST:
            raise UploadError(
                413, f"{len(images)} images in one request; the limit is {MAX_IMAGES_PER_REQUEST}"
            )
        entries = _parse_metadata(metadata, len(images))
        decoded = [read_upload(upload) for upload in images]
        embeddings = embedder.embed_images(decoded)
        service.media_dir.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        try:
            items = []
            for entry, decoded_image in zip(entries, decoded, strict=True):
                target = service.media_dir / f"{uuid.uuid4().hex}.jpg"
                buffer = io.BytesIO()
                decoded_image.save(buffer, format="JPEG", quality=92)
                atomic_write_bytes(target, buffer.getvalue())
                written.append(target)
                try:
                    relative = str(target.relative_to(index_dir))
                except ValueError:
                    relative = str(target)
                items.append({**entry, "path": relative})
            with service.write_lock:
                ids = service.index.add(embeddings, items, fingerprint=embedder.fingerprint)
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        return {"ids": [int(i) for i in ids], "count": len(service.index)}

    @app.delete("/gallery/{item_id}")
    def delete_from_gallery(
        item_id: int, authorization: Annotated[str | None, Header()] = None
    ) -> dict[str, Any]:
        """Remove one gallery item (and its stored upload). Needs the bearer token."""
        service.check_token(authorization)
        with service.write_lock:
            item = service.index.get(item_id)
            if item is None:
                raise UploadError(404, f"no gallery item with id {item_id}")
            service.index.delete([item_id])
        stored = service.image_path(item.path)
        if stored.parent.resolve() == service.media_dir.resolve():
            stored.unlink(missing_ok=True)
        return {"deleted": item_id, "count": len(service.index)}

    @app.get("/gallery/{item_id}/image")
    def gallery_image(item_id: int, size: str = "thumb") -> Response:
        """The gallery image: a JPEG thumbnail (``size=thumb``) or the whole image (``size=full``)."""
        if size not in ("thumb", "full"):
            raise UploadError(422, f"size must be 'thumb' or 'full', got {size!r}")
        item = service.index.get(item_id)
        if item is None:
            raise UploadError(404, f"no gallery item with id {item_id}")
        path = service.image_path(item.path)
        try:
            with Image.open(path) as image:
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
        return Response(buffer.getvalue(), media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    return app


class BackgroundServer:
    """Run an app with uvicorn in a background thread (tests, benchmarks, the page screenshot).

    Use as a context manager; ``url`` is ``http://host:port``.
    """

    def __init__(self, app, *, host: str = "127.0.0.1", port: int = 0) -> None:
        import socket

        import uvicorn

        if port == 0:
            with socket.socket() as probe:
                probe.bind((host, 0))
                port = probe.getsockname()[1]
        self.url = f"http://{host}:{port}"
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the server at {self.url} did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def run(
    index_dir: str | Path,
    embedder: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    log_level: str = "info",
) -> None:
    """Serve until interrupted."""
    import uvicorn

    app = create_app(
        index_dir, embedder, token=token, max_upload_bytes=max_upload_bytes, max_pixels=max_pixels
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def serve_main(
    *,
    index: str | Path,
    checkpoint: str | Path | None = None,
    onnx: str | Path | None = None,
    openvino: str | Path | None = None,
    preprocess: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    token_env: str = "REIDKIT_TOKEN",
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_BYTES / 2**20,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    device: str = "cpu",
) -> None:
    """``reidkit serve``: load the embedder (exactly one of checkpoint / onnx / openvino) and serve ``index``.

    The write token is read from the environment variable ``token_env`` (never from the command line, where
    other users could see it); without it the write endpoints are disabled.
    """
    from reidkit.embedders import load_embedder

    embedder = load_embedder(
        checkpoint=checkpoint, onnx=onnx, openvino=openvino, preprocess=preprocess, device=device
    )
    token = os.environ.get(token_env) or None
    state = "enabled" if token else f"disabled (set {token_env} to enable them)"
    print(
        f"reidkit serve: {index} with {embedder.name} on http://{host}:{port}  writes {state}",
        file=sys.stderr,
    )
    run(
        index,
        embedder,
        host=host,
        port=port,
        token=token,
        max_upload_bytes=int(max_upload_mb * 2**20),
        max_pixels=max_pixels,
    )
