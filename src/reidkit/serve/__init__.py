"""HTTP search service (FastAPI) and its web page.

Endpoints (OpenAPI docs at ``/docs``):

- ``GET /``: the search page (upload or drop a photo, see the ranked gallery, and the people found in tracked
  video as timelines whose segments play in the page).
- ``POST /search``: multipart ``image`` + form fields ``top_k``, ``camera``, ``exclude_camera`` (comma-separated),
  ``since``, ``until`` (seconds or ISO-8601), ``pid`` -> ranked hits with distances and metadata, and, for
  hits that are tracklets of a tracked video (``reidkit index add --tracks``), ``identities``: one answer per
  person (run, global id, best distance, cameras, time span) with every segment where the person is seen
  (camera, start/end time, ISO times when the camera has a clock, frames, ``video_start``/``video_end`` seconds
  into the camera's video, distance, ``thumbnail_url``, ``video_url``).
- ``POST /gallery`` (bearer token): multipart ``images`` (one or more) + ``metadata`` (JSON: one object for
  all images, or a list with one object per image: camera, timestamp, frame, pid, extra) -> new ids.
- ``DELETE /gallery/{id}`` (bearer token).
- ``GET /gallery/{id}/image?size=thumb|full``: the gallery image (thumbnail by default).
- ``GET /gallery/{id}/video``: the playable video (WebM) of a tracklet's camera, with HTTP range requests
  (206) so that a browser can seek to a segment. Only the video named by the ``run.json`` of the run the
  tracklet was indexed from is served; the path never comes from the request.
- ``GET /health``: model, index size and settings.

Requests are checked before their body is read (:mod:`~reidkit.serve.guard`): write endpoints need
``Authorization: Bearer <token>`` (with no token configured they are disabled; the token is compared in
constant time and never logged), and bodies are capped and timed while they stream (413, 408). Uploads are
checked before they are decoded: size in bytes, then width x height from the header, summed over the images
of a request (a decompression bomb is refused before its pixels are allocated), then a full decode (a
truncated file is refused) while the request holds its pixels from the service's decoded-pixel budget
(``max_pixels * max_concurrent_decodes``; 503 with ``Retry-After`` when it stays busy). Form fields are
bound-checked (ids and pids within 64-bit integers, metadata size and depth). Every refusal is a 4xx with a
message saying what was expected; an unexpected error is a logged 500 JSON answer without a traceback. Each
request first picks up what other processes committed to the index since the last one.

Modules: :mod:`~reidkit.serve.app` (the app factory), :mod:`~reidkit.serve.routes` (the endpoints),
:mod:`~reidkit.serve.service` (the index and model behind them), :mod:`~reidkit.serve.guard` (the
checks before a route runs), :mod:`~reidkit.serve.budget` (the decoded-pixel budget),
:mod:`~reidkit.serve.uploads` (checking uploads and form fields; the limits' defaults), :mod:`~reidkit.serve.page` (the web page), :mod:`~reidkit.serve.server` (running it).
FastAPI and uvicorn (the ``[serve]`` extra) are imported only when an app is built or run.
"""

from __future__ import annotations

from reidkit.serve.app import create_app
from reidkit.serve.budget import BYTES_PER_PIXEL, PixelBudget
from reidkit.serve.server import BackgroundServer, run, serve_main
from reidkit.serve.service import THUMBNAIL_SIZE, Service
from reidkit.serve.uploads import (
    ALLOWED_FORMATS,
    DEFAULT_BODY_IDLE_TIMEOUT_S,
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_DECODE_WAIT_S,
    DEFAULT_MAX_CONCURRENT_DECODES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_UPLOAD_BYTES,
    MAX_IMAGES_PER_REQUEST,
    MAX_METADATA_CHARS,
    MAX_METADATA_DEPTH,
    UploadError,
    decode_upload,
)

__all__ = [
    "ALLOWED_FORMATS",
    "BYTES_PER_PIXEL",
    "DEFAULT_BODY_IDLE_TIMEOUT_S",
    "DEFAULT_BODY_TIMEOUT_S",
    "DEFAULT_DECODE_WAIT_S",
    "DEFAULT_MAX_CONCURRENT_DECODES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "MAX_IMAGES_PER_REQUEST",
    "MAX_METADATA_CHARS",
    "MAX_METADATA_DEPTH",
    "THUMBNAIL_SIZE",
    "BackgroundServer",
    "PixelBudget",
    "Service",
    "UploadError",
    "create_app",
    "decode_upload",
    "run",
    "serve_main",
]
