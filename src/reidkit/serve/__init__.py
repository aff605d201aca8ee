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

Modules: :mod:`~reidkit.serve.app` (the app factory), :mod:`~reidkit.serve.routes` (the endpoints),
:mod:`~reidkit.serve.service` (the index and model behind them), :mod:`~reidkit.serve.uploads` (checking
uploads and form fields), :mod:`~reidkit.serve.page` (the web page), :mod:`~reidkit.serve.server` (running it).
FastAPI and uvicorn (the ``[serve]`` extra) are imported only when an app is built or run.
"""

from __future__ import annotations

from reidkit.serve.app import create_app
from reidkit.serve.server import BackgroundServer, run, serve_main
from reidkit.serve.service import THUMBNAIL_SIZE, Service
from reidkit.serve.uploads import (
    ALLOWED_FORMATS,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_UPLOAD_BYTES,
    MAX_IMAGES_PER_REQUEST,
    UploadError,
    decode_upload,
)

__all__ = [
    "ALLOWED_FORMATS",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "MAX_IMAGES_PER_REQUEST",
    "THUMBNAIL_SIZE",
    "BackgroundServer",
    "Service",
    "UploadError",
    "create_app",
    "decode_upload",
    "run",
    "serve_main",
]
