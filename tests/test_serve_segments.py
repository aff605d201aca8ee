"""The service's answer per identity for tracklets of a tracked video, and the video route (ranges, scope)."""

from __future__ import annotations

import io
import json

import pytest

pytest.importorskip("faiss", reason="needs faiss-cpu: pip install 'reidkit[faiss]'")
pytest.importorskip("fastapi", reason="needs FastAPI: pip install 'reidkit[serve]'")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")
pytest.importorskip("cv2", reason="the test run's video needs opencv")

from fastapi.testclient import TestClient  # noqa: E402

from reidkit.index import Index, index_tracks  # noqa: E402
from reidkit.serve import create_app  # noqa: E402
from segments_data import START, ColourEmbedder, person, write_tracked_run  # noqa: E402

TOKEN = "segments-token-0123"


def png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def tracked(tmp_path):
    """An index holding the tracklets of the test run and one plain photo."""
    embedder = ColourEmbedder()
    run = write_tracked_run(tmp_path / "run", embedder).resolve()
    photo = person((60, 60, 60), (200, 200, 200))
    photo.save(tmp_path / "photo.png")
    with Index.create(tmp_path / "index", dim=embedder.dim, fingerprint=embedder.fingerprint) as index:
        index_tracks(index, run)
        (photo_id,) = index.add(
            embedder.embed_images([photo]),
            [{"path": str(tmp_path / "photo.png")}],
            fingerprint=embedder.fingerprint,
        )
    client = TestClient(create_app(tmp_path / "index", embedder, token=TOKEN))
    return client, run, int(photo_id)


def search(client, image, **fields):
    return client.post("/search", files={"image": ("query.png", png(image), "image/png")}, data=fields)


def test_search_answers_per_identity(tracked):
    client, run, photo_id = tracked
    response = search(client, person((200, 30, 30), (30, 30, 200)), top_k="2")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == 2 and all(hit["extra"]["kind"] == "tracklet" for hit in body["results"])
    (answer,) = body["identities"]
    assert (answer["run"], answer["global_id"], answer["cameras"]) == (str(run), 1, ["cam1", "cam2"])
    assert answer["distance"] == pytest.approx(0.0, abs=1e-5)
    assert (answer["start_time"], answer["end_time"]) == (START + 2.0, START + 9.9)
    segments = answer["segments"]
    assert [(s["camera"], s["local_id"], s["hit"]) for s in segments] == [
        ("cam1", 1, True),
        ("cam2", 3, True),
        ("cam1", 4, False),
    ]
    first, second = segments[0], segments[1]
    assert first == {
        "id": first["id"],
        "camera": "cam1",
        "local_id": 1,
        "start_time": START + 2.0,
        "end_time": START + 4.9,
        "start_iso": "2023-11-14T22:13:22.000Z",
        "end_iso": "2023-11-14T22:13:24.900Z",
        "duration": 2.9,
        "first_frame": 21,
        "last_frame": 50,
        "video_start": 2.0,
        "video_end": 5.0,
        "distance": first["distance"],
        "thumbnail": str(run / "thumbs" / "cam1_1.jpg"),
        "video": str(run / "cam1.webm"),
        "hit": True,
        "thumbnail_url": f"/gallery/{first['id']}/image",
        "video_url": f"/gallery/{first['id']}/video",
    }
    assert second["video"] is None and second["video_url"] is None
    assert client.get(first["thumbnail_url"]).headers["content-type"] == "image/jpeg"
    # a gallery of photos and tracklets: the photo stays a plain result
    body = search(client, person((60, 60, 60), (200, 200, 200)), top_k="20").json()
    assert body["results"][0]["id"] == photo_id
    assert sorted(a["global_id"] or 0 for a in body["identities"]) == [0, 1, 2]  # 0: no global id
    assert [a["distance"] for a in body["identities"]] == sorted(a["distance"] for a in body["identities"])
    # filters hold for every segment listed
    body = search(client, person((200, 30, 30), (30, 30, 200)), top_k="5", camera="cam2").json()
    assert {s["camera"] for a in body["identities"] for s in a["segments"]} == {"cam2"}


def test_video_route_serves_ranges(tracked):
    client, run, _ = tracked
    segment = search(client, person((200, 30, 30), (30, 30, 200)), top_k="1").json()["identities"][0][
        "segments"
    ][0]
    data = (run / "cam1.webm").read_bytes()
    whole = client.get(segment["video_url"])
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-type"] == "video/webm" and whole.headers["accept-ranges"] == "bytes"
    part = client.get(segment["video_url"], headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206
    assert part.content == data[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{len(data)}"
    tail = client.get(segment["video_url"], headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == data[-50:]
    assert client.get(segment["video_url"], headers={"Range": f"bytes={len(data) + 10}-"}).status_code == 416


def test_video_route_serves_only_videos_of_indexed_runs(tracked, tmp_path):
    client, run, photo_id = tracked
    body = search(client, person((200, 30, 30), (30, 30, 200)), top_k="2").json()
    no_video = body["identities"][0]["segments"][1]
    assert client.get(f"/gallery/{no_video['id']}/video").status_code == 404  # cam2 has no video
    response = client.get(f"/gallery/{photo_id}/video")
    assert response.status_code == 404 and "not a tracklet" in response.json()["detail"]
    assert client.get("/gallery/999999/video").status_code == 404
    # an item claiming to be a tracklet of a folder that is no run, with a video path of its own choosing
    secret = tmp_path / "secret.webm"
    secret.write_bytes(b"not for you")
    embedder = ColourEmbedder()
    forged = {
        "path": str(tmp_path / "photo.png"),
        "camera": "cam1",
        "extra": {"kind": "tracklet", "run": str(tmp_path), "local_id": 1, "video": str(secret)},
    }
    also_forged = {**forged, "camera": "cam9", "extra": {**forged["extra"], "run": str(run)}}
    with Index.open(tmp_path / "index") as index:
        ids = index.add(
            embedder.embed_images([person((1, 2, 3), (4, 5, 6))] * 2),
            [forged, also_forged],
            fingerprint=embedder.fingerprint,
        )
    for item_id in ids:
        response = client.get(f"/gallery/{int(item_id)}/video")
        assert response.status_code == 404 and b"not for you" not in response.content
    # and the service refuses uploads that claim to be tracklets
    response = client.post(
        "/gallery",
        files=[("images", ("a.png", png(person((1, 2, 3), (4, 5, 6))), "image/png"))],
        data={"metadata": json.dumps({"extra": {"kind": "tracklet", "run": str(run)}})},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 422 and "kept for the tracklets" in response.json()["detail"]
