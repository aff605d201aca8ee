"""The HTTP routes: parse the request, call the :class:`~reidkit.serve.service.Service` of the app, shape the answer.

Each handler gets the service from ``request.app.state.service`` (set by
:func:`reidkit.serve.app.create_app`) through a FastAPI dependency. FastAPI resolves the handlers' (string)
annotations in this module's namespace, so the names they use are imported here; this module needs the
``[serve]`` extra and is imported by ``create_app`` only.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Header, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, Response

from reidkit.index import IdentityAnswer, SearchHit
from reidkit.serve.page import read_page
from reidkit.serve.service import Service
from reidkit.serve.uploads import MAX_IMAGES_PER_REQUEST, UploadError, parse_metadata, parse_pids, split_list

router = APIRouter()


def get_service(request: Request) -> Service:
    """The service of the app handling ``request``, moved to the newest version of its index first."""
    service = request.app.state.service
    service.refresh_if_changed()
    return service


ServiceDependency = Annotated[Service, Depends(get_service)]


def hit_json(hit: SearchHit) -> dict[str, Any]:
    """One search hit as JSON: id, distance (6 decimals), metadata, and the URLs of its image."""
    entry = hit.to_dict()
    entry["distance"] = round(entry["distance"], 6)
    entry["image_url"] = f"/gallery/{hit.id}/image?size=full"
    entry["thumbnail_url"] = f"/gallery/{hit.id}/image"
    return entry


def identity_json(answer: IdentityAnswer) -> dict[str, Any]:
    """One identity of a search answer: best distance, cameras, time span and its segments, with URLs.

    Each segment gets ``thumbnail_url`` and ``video_url`` (None when its camera has no playable video); play
    it from ``video_start`` to ``video_end`` seconds into that video.
    """
    entry = answer.to_dict()
    entry["distance"] = round(entry["distance"], 6)
    for segment in entry["segments"]:
        segment["distance"] = round(segment["distance"], 6)
        segment["thumbnail_url"] = f"/gallery/{segment['id']}/image"
        segment["video_url"] = None if segment["video"] is None else f"/gallery/{segment['id']}/video"
    return entry


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def page() -> HTMLResponse:
    return HTMLResponse(read_page())


@router.get("/health")
def health(service: ServiceDependency) -> dict[str, Any]:
    """Liveness and what is served: model, gallery size, index settings."""
    return service.health()


@router.post("/search")
def search(
    service: ServiceDependency,
    image: Annotated[UploadFile, File(description="the query photo (a person crop)")],
    top_k: Annotated[int, Form(ge=1, le=1000)] = 20,
    camera: Annotated[str | None, Form(description="only these cameras, comma-separated")] = None,
    exclude_camera: Annotated[str | None, Form(description="not these cameras, comma-separated")] = None,
    since: Annotated[str | None, Form(description="earliest timestamp: seconds or ISO-8601")] = None,
    until: Annotated[str | None, Form(description="latest timestamp: seconds or ISO-8601")] = None,
    pid: Annotated[str | None, Form(description="only these identities, comma-separated")] = None,
) -> dict[str, Any]:
    """Rank the gallery by distance to the uploaded photo; tracklet hits are also answered per identity."""
    started = time.perf_counter()
    hits, found = service.search_identities(
        image,
        top_k=top_k,
        camera=split_list(camera, "camera"),
        exclude_camera=split_list(exclude_camera, "exclude_camera"),
        since=since or None,
        until=until or None,
        pid=parse_pids(pid),
    )
    return {
        "model": service.embedder.name,
        "count": len(hits),
        "results": [hit_json(hit) for hit in hits],
        "identities": [identity_json(answer) for answer in found.identities],
        "elapsed_ms": round(1000 * (time.perf_counter() - started), 2),
    }


@router.post("/gallery", status_code=201)
def add_to_gallery(
    service: ServiceDependency,
    images: Annotated[list[UploadFile], File(description="one or more gallery images")],
    metadata: Annotated[
        str | None, Form(description="JSON object for all images, or a list: one per image")
    ] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    """Add images with metadata (camera, timestamp, frame, pid, extra). Needs the bearer token."""
    service.check_token(authorization)
    if len(images) > MAX_IMAGES_PER_REQUEST:
        raise UploadError(413, f"{len(images)} images in one request; the limit is {MAX_IMAGES_PER_REQUEST}")
    entries = parse_metadata(metadata, len(images))
    ids = service.add_uploads(images, entries)
    return {"ids": [int(i) for i in ids], "count": len(service.index)}


@router.delete("/gallery/{item_id}")
def delete_from_gallery(
    service: ServiceDependency, item_id: int, authorization: Annotated[str | None, Header()] = None
) -> dict[str, Any]:
    """Remove one gallery item (and its stored upload). Needs the bearer token."""
    service.check_token(authorization)
    service.delete(item_id)
    return {"deleted": item_id, "count": len(service.index)}


@router.get("/gallery/{item_id}/image")
def gallery_image(service: ServiceDependency, item_id: int, size: str = "thumb") -> Response:
    """The gallery image: a JPEG thumbnail (``size=thumb``) or the whole image (``size=full``)."""
    return Response(
        service.image_jpeg(item_id, size), media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"}
    )


@router.get("/gallery/{item_id}/video")
def gallery_video(service: ServiceDependency, item_id: int) -> FileResponse:
    """The video of a tracklet's camera (HTTP ranges supported, for seeking); only videos of indexed runs."""
    path, media_type = service.video_file(item_id)
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "max-age=3600"})
