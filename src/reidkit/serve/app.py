"""The FastAPI app factory: the service state, its lifespan, the error answers and the request-size limit."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reidkit.embed import EmbeddingError
from reidkit.index import GalleryIndexError
from reidkit.serve.service import Service
from reidkit.serve.uploads import DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_BYTES, UploadError

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response


def create_app(
    index_dir: str | Path,
    embedder: Any,
    *,
    token: str | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    media_dir: str | Path | None = None,
) -> FastAPI:
    """Build the FastAPI app serving ``index_dir`` with ``embedder``.

    Args:
        index_dir: an index made by :class:`reidkit.index.Index` with this embedder's fingerprint.
        embedder: an :class:`reidkit.embed.Embedder`.
        token: bearer token for the write endpoints (None: writes disabled).
        max_upload_bytes: size limit of one uploaded image (and, times the image count, of a request).
        max_pixels: width x height limit of one uploaded image.
        media_dir: where images added through ``POST /gallery`` are stored (default ``<index_dir>/media``).

    Returns:
        The app; the index is closed when its lifespan ends.

    Raises:
        ImportError: FastAPI is not installed.
        FingerprintMismatchError: the embedder is not the model that built the index.
    """
    try:
        from fastapi import FastAPI
    except ImportError as error:
        raise ImportError("the HTTP service needs FastAPI: pip install 'reidkit[serve]'") from error
    from reidkit.serve.routes import router

    index_dir = Path(index_dir)
    service = Service(
        index_dir,
        embedder,
        token=token,
        max_upload_bytes=max_upload_bytes,
        max_pixels=max_pixels,
        media_dir=Path(media_dir) if media_dir else index_dir / "media",
    )
    app = FastAPI(
        lifespan=_lifespan,
        title="reidkit person search",
        description="Search a gallery of pedestrian images by photo.",
        version="1",
    )
    app.state.service = service
    app.add_exception_handler(UploadError, _upload_error)
    app.add_exception_handler(EmbeddingError, _embedding_error)
    app.add_exception_handler(GalleryIndexError, _index_error)
    app.middleware("http")(_limit_request_size)
    app.include_router(router)
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    app.state.service.index.close()


def _json_error(detail: str, status: int) -> JSONResponse:
    from fastapi.responses import JSONResponse

    return JSONResponse({"detail": detail}, status_code=status)


async def _upload_error(request: Request, error: UploadError) -> JSONResponse:
    return _json_error(str(error), error.status)


async def _embedding_error(request: Request, error: EmbeddingError) -> JSONResponse:
    # the model, not the request, is at fault: a server error, but one that says what happened
    return _json_error(f"the model could not embed the image: {error}", 500)


async def _index_error(request: Request, error: GalleryIndexError) -> JSONResponse:
    return _json_error(str(error), 422)


async def _limit_request_size(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Refuse a request whose declared body is over the service's limit before reading it."""
    limit = request.app.state.service.request_limit
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            return _json_error("invalid Content-Length header", 400)
        if int(length) > limit:
            return _json_error(f"request of {length} bytes is over the limit of {limit} bytes", 413)
    return await call_next(request)
