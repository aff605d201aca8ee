"""The FastAPI app factory: the service state, its lifespan, the error answers and the request guard."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reidkit.embed import EmbeddingError
from reidkit.index import GalleryIndexError
from reidkit.serve import uploads
from reidkit.serve.service import Service
from reidkit.serve.uploads import UploadError

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse


def create_app(
    index_dir: str | Path,
    embedder: Any,
    *,
    token: str | None = None,
    max_upload_bytes: int = uploads.DEFAULT_MAX_UPLOAD_BYTES,
    max_pixels: int = uploads.DEFAULT_MAX_PIXELS,
    max_concurrent_decodes: int = uploads.DEFAULT_MAX_CONCURRENT_DECODES,
    decode_wait_s: float = uploads.DEFAULT_DECODE_WAIT_S,
    body_timeout_s: float = uploads.DEFAULT_BODY_TIMEOUT_S,
    body_idle_timeout_s: float = uploads.DEFAULT_BODY_IDLE_TIMEOUT_S,
    media_dir: str | Path | None = None,
    uri: str | None = None,
) -> FastAPI:
    """Build the FastAPI app serving ``index_dir`` with ``embedder``.

    Memory: decoded images take at most about ``max_pixels * max_concurrent_decodes * 8`` bytes at once
    (:data:`reidkit.serve.budget.BYTES_PER_PIXEL`), 640 MB with the defaults, however many clients upload;
    request bodies are capped while they stream (one image plus 1 MiB for ``/search``, 64 images for a write)
    and spooled to disk past 1 MiB.

    Args:
        index_dir: an index made by :class:`reidkit.index.Index` with this embedder's fingerprint.
        embedder: an :class:`reidkit.embed.Embedder`.
        token: bearer token for the write endpoints (None: writes disabled); checked before the body is read.
        max_upload_bytes: size limit of one uploaded image (and, times the image count, of a request).
        max_pixels: width x height limit of the images of one request, summed.
        max_concurrent_decodes: how many requests at the pixel limit may decode at once (more, smaller ones
            may): the decoded-pixel budget is ``max_pixels * max_concurrent_decodes``.
        decode_wait_s: seconds a request waits for its share of the pixel budget before a 503 with
            ``Retry-After``.
        body_timeout_s: seconds a request body may take to arrive in full (then 408).
        body_idle_timeout_s: seconds a request body may pause between two chunks (then 408).
        media_dir: where images added through ``POST /gallery`` are stored (default ``<index_dir>/media``).
        uri: serve the Milvus collection at this Milvus address (or Milvus Lite file) named by the last part
            of ``index_dir``; ``index_dir`` is then the local folder for relative image paths and ``media``.

    Returns:
        The app; the index is closed when its lifespan ends. ``app.state.body_counter.total`` counts the
        request-body bytes the app has read.

    Raises:
        ImportError: FastAPI is not installed.
        ValueError: a limit that is not positive.
        FingerprintMismatchError: the embedder is not the model that built the index.
    """
    try:
        from fastapi import FastAPI
    except ImportError as error:
        raise ImportError("the HTTP service needs FastAPI: pip install 'reidkit[serve]'") from error
    from reidkit.serve.guard import BodyCounter, RequestGuard
    from reidkit.serve.routes import router

    for name, value in (("body_timeout_s", body_timeout_s), ("body_idle_timeout_s", body_idle_timeout_s)):
        if not value > 0:
            raise ValueError(f"{name} must be > 0 seconds, got {value!r}")
    uploads.use_large_decode_blocks()  # freed pixels go back to the system: memory stays within the decode budget
    index_dir = Path(index_dir)
    service = Service(
        index_dir,
        embedder,
        token=token,
        max_upload_bytes=max_upload_bytes,
        max_pixels=max_pixels,
        max_concurrent_decodes=max_concurrent_decodes,
        decode_wait_s=decode_wait_s,
        media_dir=Path(media_dir) if media_dir else index_dir / "media",
        uri=uri,
    )
    app = FastAPI(
        lifespan=_lifespan,
        title="reidkit person search",
        description="Search a gallery of pedestrian images by photo.",
        version="1",
    )
    app.state.service = service
    app.state.body_counter = BodyCounter()
    app.add_exception_handler(UploadError, _upload_error)
    app.add_exception_handler(EmbeddingError, _embedding_error)
    app.add_exception_handler(GalleryIndexError, _index_error)
    app.add_middleware(
        RequestGuard,
        service=service,
        counter=app.state.body_counter,
        body_timeout_s=body_timeout_s,
        body_idle_timeout_s=body_idle_timeout_s,
    )
    app.include_router(router)
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    app.state.service.index.close()


def _json_error(detail: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    from fastapi.responses import JSONResponse

    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def _upload_error(request: Request, error: UploadError) -> JSONResponse:
    return _json_error(str(error), error.status, error.headers)


async def _embedding_error(request: Request, error: EmbeddingError) -> JSONResponse:
    # the model, not the request, is at fault: a server error, but one that says what happened
    return _json_error(f"the model could not embed the image: {error}", 500)


async def _index_error(request: Request, error: GalleryIndexError) -> JSONResponse:
    return _json_error(str(error), 422)
