from __future__ import annotations

import io
import logging
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("faiss", reason="needs faiss-cpu: pip install 'reidkit[faiss]'")
pytest.importorskip("fastapi", reason="needs FastAPI: pip install 'reidkit[serve]'")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

from reidkit.index import FingerprintMismatchError, Index  # noqa: E402
from reidkit.serve import BackgroundServer, create_app  # noqa: E402
from segments_data import ColourEmbedder  # noqa: E402  (the stand-in model shared with the segment tests)

TOKEN = "s3cret-token-0123"


def person(top: tuple[int, int, int], bottom: tuple[int, int, int], size=(16, 32)) -> Image.Image:
    image = Image.new("RGB", size, top)
    image.paste(Image.new("RGB", (size[0], size[1] // 2), bottom), (0, size[1] // 2))
    return image


def encode(image: Image.Image, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR claiming ``width x height``, with a tiny (incomplete) pixel stream."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40), (40, 200, 220), (150, 60, 200)]


@pytest.fixture
def gallery(tmp_path) -> tuple[Path, list[Image.Image]]:
    """An index of 12 people (every pair of distinct top/bottom colours from the first four), 3 cameras."""
    embedder = ColourEmbedder()
    images, items = [], []
    for top in COLOURS[:4]:
        for bottom in COLOURS[:4]:
            if top != bottom:
                images.append(person(top, bottom))
    for position, image in enumerate(images):
        path = tmp_path / "images" / f"{position}.png"
        path.parent.mkdir(exist_ok=True)
        image.save(path)
        items.append(
            {"path": str(path), "camera": str(position % 3), "timestamp": 1000.0 * position, "pid": position}
        )
    with Index.create(
        tmp_path / "index", dim=embedder.dim, fingerprint=embedder.fingerprint, model_name="colour"
    ) as index:
        index.add(embedder.embed_images(images), items, fingerprint=embedder.fingerprint)
    return tmp_path / "index", images


@pytest.fixture
def client(gallery) -> TestClient:
    return TestClient(
        create_app(gallery[0], ColourEmbedder(), token=TOKEN, max_upload_bytes=200_000, max_pixels=1_000_000)
    )


def search(client: TestClient, image_bytes: bytes, **fields):
    return client.post("/search", files={"image": ("query.png", image_bytes, "image/png")}, data=fields)


def test_search_ranks_the_gallery(client, gallery):
    _, images = gallery
    response = search(client, encode(images[5]), top_k="4")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == 4 and body["model"] == "colour-halves"
    first = body["results"][0]
    assert (first["pid"], first["camera"], first["timestamp"]) == (5, "2", 5000.0)
    assert first["distance"] == pytest.approx(0.0, abs=1e-5)
    distances = [hit["distance"] for hit in body["results"]]
    assert distances == sorted(distances)
    # the same distances as the embedder + cosine computed here
    embedder = ColourEmbedder()
    gallery_features = embedder.embed_images(images)
    expected = np.sort(1.0 - gallery_features @ embedder.embed_images([images[5]])[0])[:4]
    np.testing.assert_allclose(distances, expected, atol=1e-5)
    assert first["thumbnail_url"] == f"/gallery/{first['id']}/image"


def test_search_filters(client, gallery):
    _, images = gallery
    body = search(client, encode(images[5]), top_k="20", camera="0,1").json()
    assert body["count"] == 8 and {hit["camera"] for hit in body["results"]} == {"0", "1"}
    body = search(
        client, encode(images[5]), exclude_camera="2", since="3000", until="1970-01-01T02:30:00Z"
    ).json()
    assert sorted(hit["pid"] for hit in body["results"]) == [
        3,
        4,
        6,
        7,
        9,
    ]  # timestamps 3000..9000, camera = pid % 3 != 2
    body = search(client, encode(images[5]), pid="1, 9").json()
    assert sorted(hit["pid"] for hit in body["results"]) == [1, 9]


def test_health_page_and_docs(client):
    health = client.get("/health").json()
    assert (health["status"], health["count"], health["fingerprint"], health["dim"]) == (
        "ok",
        12,
        "colour-halves-v1",
        7,
    )
    assert health["cameras"] == ["0", "1", "2"] and health["writes_enabled"] is True
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'fetch("/search"' in page.text and 'id="drop"' in page.text
    schema = client.get("/openapi.json").json()
    assert {"/search", "/gallery", "/gallery/{item_id}", "/gallery/{item_id}/image", "/health"} <= set(
        schema["paths"]
    )


def test_add_get_image_and_delete(client, gallery):
    index_dir, _ = gallery
    new = person(COLOURS[4], COLOURS[5], size=(40, 90))
    files = [
        ("images", ("a.png", encode(new), "image/png")),
        ("images", ("b.jpg", encode(new, "JPEG"), "image/jpeg")),
    ]
    metadata = '[{"camera": "lobby", "timestamp": "2024-05-01T08:00:00Z", "pid": 77}, {"camera": 5, "extra": {"k": 1}}]'
    auth = {"Authorization": f"Bearer {TOKEN}"}
    response = client.post("/gallery", files=files, data={"metadata": metadata}, headers=auth)
    assert response.status_code == 201, response.text
    ids = response.json()["ids"]
    assert len(ids) == 2 and response.json()["count"] == 14
    hits = search(client, encode(new), top_k="2").json()["results"]
    assert sorted(hit["id"] for hit in hits) == sorted(ids)
    lobby = next(hit for hit in hits if hit["camera"] == "lobby")
    assert lobby["timestamp"] == 1714550400.0 and lobby["pid"] == 77
    assert lobby["path"].startswith("media/") and (index_dir / lobby["path"]).is_file()
    thumbnail = client.get(f"/gallery/{ids[0]}/image")
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(thumbnail.content)) as image:
        assert image.size[0] <= 128 and image.size[1] <= 256
    with Image.open(io.BytesIO(client.get(f"/gallery/{ids[0]}/image?size=full").content)) as image:
        assert image.size == (40, 90)
    assert client.delete(f"/gallery/{ids[0]}", headers=auth).json() == {"deleted": ids[0], "count": 13}
    assert not (index_dir / lobby["path"]).exists()
    assert client.get(f"/gallery/{ids[0]}/image").status_code == 404
    assert client.delete(f"/gallery/{ids[0]}", headers=auth).status_code == 404
    assert client.get("/gallery/1/image?size=huge").status_code == 422


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({}, 401, "Authorization: Bearer"),
        ({"Authorization": "Bearer wrong"}, 403, "not valid"),
        ({"Authorization": TOKEN}, 401, "Authorization: Bearer"),
    ],
)
def test_write_endpoints_need_the_token(client, headers, status, message):
    files = [("images", ("a.png", encode(person(COLOURS[0], COLOURS[1])), "image/png"))]
    response = client.post("/gallery", files=files, headers=headers)
    assert response.status_code == status and message in response.json()["detail"]
    response = client.delete("/gallery/1", headers=headers)
    assert response.status_code == status
    assert client.get("/health").json()["count"] == 12


def test_writes_disabled_without_token(gallery):
    client = TestClient(create_app(gallery[0], ColourEmbedder(), token=None))
    files = [("images", ("a.png", encode(person(COLOURS[0], COLOURS[1])), "image/png"))]
    response = client.post("/gallery", files=files, headers={"Authorization": "Bearer anything"})
    assert response.status_code == 403 and "writes are disabled" in response.json()["detail"]


def test_token_is_never_logged(gallery, caplog):
    caplog.set_level(logging.DEBUG)
    client = TestClient(create_app(gallery[0], ColourEmbedder(), token=TOKEN))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    files = [("images", ("a.png", encode(person(COLOURS[0], COLOURS[1])), "image/png"))]
    assert client.post("/gallery", files=files, headers=auth).status_code == 201
    assert client.post("/gallery", files=files, headers={"Authorization": "Bearer bad"}).status_code == 403
    assert TOKEN not in caplog.text
    assert TOKEN not in client.get("/health").text and TOKEN not in client.get("/openapi.json").text


def test_bad_uploads_get_clear_4xx(client, gallery):
    _, images = gallery
    noise = np.random.default_rng(0).integers(0, 256, size=(128, 64, 3), dtype=np.uint8)
    jpeg = encode(Image.fromarray(noise), "JPEG")  # about 10 kB: half of it keeps the header
    cases = [
        (b"hello, not an image", 415, "not a readable image"),
        (jpeg[: len(jpeg) // 2], 400, "truncated or corrupt"),
        (b"", 400, "empty"),
        (b"\0" * 300_000, 413, "over the limit of 200000 bytes"),
        (png_header_only(2000, 1000), 413, "2000x1000 = 2000000 pixels; the limit is 1000000"),
        (png_header_only(60000, 60000), 413, "too large to decode safely"),  # past Pillow's own bomb limit
        (encode(images[0], "ICO"), 415, "ICO is not accepted"),
    ]
    for data, status, message in cases:
        response = search(client, data)
        assert response.status_code == status, (message, response.text)
        assert message in response.json()["detail"]
    assert search(client, encode(images[0]), top_k="0").status_code == 422
    assert search(client, encode(images[0]), since="last tuesday").status_code == 422
    assert search(client, encode(images[0]), pid="seven").status_code == 422
    assert client.post("/search", data={"top_k": "3"}).status_code == 422
    auth = {"Authorization": f"Bearer {TOKEN}"}
    files = [("images", ("a.png", encode(images[0]), "image/png"))]
    for metadata, message in [
        ("{bad json", "not valid JSON"),
        ('[{"camera": 1}, {"camera": 2}]', "list of 1 objects"),
        ('{"path": "/etc/passwd"}', "'path' is set by the server"),
        ('{"colour": "red"}', "unknown metadata fields"),
        ('{"timestamp": "soon"}', "'timestamp' must be seconds or an ISO-8601"),
    ]:
        response = client.post("/gallery", files=files, data={"metadata": metadata}, headers=auth)
        assert response.status_code == 422 and message in response.json()["detail"], response.text
    response = client.post(
        "/search",
        content=b"x" * 10,
        headers={"content-type": "multipart/form-data; boundary=z", "content-length": str(10**12)},
    )
    assert response.status_code == 413
    assert client.get("/health").json()["count"] == 12
    assert not list((gallery[0] / "media").glob("*"))  # refused uploads leave no stored files


def test_refuses_an_index_built_by_another_model(gallery):
    class OtherModel(ColourEmbedder):
        fingerprint = "another-model"

    with pytest.raises(FingerprintMismatchError, match="another-model"):
        create_app(gallery[0], OtherModel(), token=TOKEN)


def test_concurrent_searches_while_adding(gallery):
    """Searches running while images are added over HTTP see whole batches only, and never fail."""
    import httpx

    app = create_app(gallery[0], ColourEmbedder(), token=TOKEN)
    query = encode(person(COLOURS[4], COLOURS[5]))
    errors: list[str] = []
    searches: list[int] = []
    done, searched = threading.Event(), threading.Event()
    with BackgroundServer(app) as server:

        def add() -> None:
            with httpx.Client(base_url=server.url, timeout=60) as http:
                for batch in range(8):
                    # a search answered between any two adds, however loaded the machine: the sizes differ
                    searched.wait(timeout=60)
                    searched.clear()
                    files = [
                        ("images", (f"{n}.png", encode(person(COLOURS[4], COLOURS[5 - n % 2])), "image/png"))
                        for n in range(4)
                    ]
                    response = http.post(
                        "/gallery",
                        files=files,
                        data={"metadata": f'{{"pid": {1000 + batch}}}'},
                        headers={"Authorization": f"Bearer {TOKEN}"},
                    )
                    if response.status_code != 201:
                        errors.append(response.text)
            done.set()

        def read() -> None:
            with httpx.Client(base_url=server.url, timeout=60) as http:
                while not done.is_set():
                    response = http.post("/search", files={"image": ("q.png", query)}, data={"top_k": "1000"})
                    if response.status_code != 200:
                        errors.append(response.text)
                        continue
                    searches.append(response.json()["count"])
                    searched.set()
                    pids = [hit["pid"] for hit in response.json()["results"] if hit["pid"] >= 1000]
                    counts = {pid: pids.count(pid) for pid in set(pids)}
                    if any(count != 4 for count in counts.values()):
                        errors.append(f"partial batch visible: {counts}")

        threads = [threading.Thread(target=add)] + [threading.Thread(target=read) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        final = httpx.get(f"{server.url}/health").json()["count"]
    assert not errors, errors[:3]
    assert final == 12 + 32
    assert (
        len(set(searches)) >= 2
    )  # the searches saw the gallery at different sizes: they overlapped the adds


def test_model_failure_is_reported_not_indexed(gallery):
    from reidkit.embed import EmbeddingError

    class BrokenModel(ColourEmbedder):
        def embed_images(self, images):
            raise EmbeddingError("colour-halves: onnxruntime returned non-finite values (NaN or infinity)")

    with TestClient(create_app(gallery[0], BrokenModel(), token=TOKEN)) as client:
        response = search(client, encode(gallery[1][0]))
        assert response.status_code == 500 and "non-finite" in response.json()["detail"]
        files = [("images", ("a.png", encode(gallery[1][0]), "image/png"))]
        response = client.post("/gallery", files=files, headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 500 and "could not embed" in response.json()["detail"]
        assert client.get("/health").json()["count"] == 12
