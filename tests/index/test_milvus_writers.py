"""The Milvus backend from the outside: two writer processes at once, the CLI, and the HTTP service."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss", reason="the FAISS backend needs faiss-cpu: pip install 'reidkit[faiss]'")
pytest.importorskip("pymilvus", reason="the Milvus backend needs pymilvus: pip install 'reidkit[milvus]'")
pytest.importorskip("milvus_lite", reason="the tests run on Milvus Lite: pip install 'reidkit[milvus]'")

from milvus_writer import vector  # noqa: E402

from reidkit.cli import main  # noqa: E402
from reidkit.index import MilvusIndex  # noqa: E402
from reidkit.index.milvus_collection import lite_server  # noqa: E402

WRITER = Path(__file__).with_name("milvus_writer.py")


@pytest.fixture
def milvus_server(tmp_path):
    """A Milvus Lite gRPC server in its own process (what several writer processes share); yields its URI."""
    with lite_server(tmp_path / "milvus") as uri:
        yield uri


def test_two_writer_processes_at_once_lose_nothing(milvus_server, tmp_path):
    dim, chunks, rows = 16, 30, 10
    MilvusIndex.create(milvus_server, "shared", dim=dim, fingerprint="writer-test").close()
    writers = [
        subprocess.Popen(
            [sys.executable, str(WRITER), milvus_server, "shared", str(tmp_path), str(w), "2"]
            + [str(chunks), str(rows), str(dim)],
            stderr=subprocess.PIPE,
        )
        for w in (0, 1)
    ]
    for writer in writers:
        assert writer.wait(timeout=300) == 0, writer.stderr.read().decode()[-3000:]
    total = 2 * chunks * rows
    with MilvusIndex.open(milvus_server, "shared", readonly=True) as index:
        assert len(index) == total
        ids = index.ids()
        assert len(np.unique(ids)) == total
        items = index.items(ids)
        expected = {f"w{w}/{i}" for w in (0, 1) for i in range(chunks * rows)}
        assert {item.path for item in items.values()} == expected
        # both writers' chunks interleave in id order: they really wrote at the same time
        writer_of = [items[int(i)].camera for i in ids]
        assert sum(a != b for a, b in zip(writer_of[:-1], writer_of[1:], strict=True)) > 1
        # every vector is stored intact: it is its own nearest neighbour, at distance 0
        queries = np.stack([vector(w, i, dim) for w in (0, 1) for i in range(chunks * rows)])
        hits = index.search(queries, fingerprint="writer-test", top_k=1)
        assert [row[0].item.path for row in hits] == [
            f"w{w}/{i}" for w in (0, 1) for i in range(chunks * rows)
        ]
        assert max(row[0].distance for row in hits) < 1e-5


def _search_json(args: list[str], capsys) -> list[dict]:
    capsys.readouterr()
    assert main(["search", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_build_add_info_search_on_milvus_lite(synthetic_root, untrained_checkpoint, tmp_path, capsys):
    gallery = synthetic_root / "bounding_box_test"
    query = str(sorted((synthetic_root / "query").glob("*.jpg"))[0])
    model = ["--checkpoint", str(untrained_checkpoint)]
    milvus = ["--backend", "milvus", "--uri", str(tmp_path / "gallery.db")]
    assert (
        main(["index", "build", *model, "--images", str(gallery), "--out", str(tmp_path / "f"), "--quiet"])
        == 0
    )
    assert (
        main(["index", "build", *model, *milvus, "--images", str(gallery), "--out", "market", "--quiet"]) == 0
    )
    count = len(list(gallery.glob("*.jpg")))
    assert f"indexed {count} images into market (0 already there" in capsys.readouterr().out
    # the same images again: nothing embedded, nothing added
    assert main(["index", "add", "market", *model, *milvus, "--images", str(gallery), "--quiet"]) == 0
    assert (
        f"indexed 0 images into market ({count} already there, skipped; {count} in all)"
        in capsys.readouterr().out
    )
    assert main(["index", "info", "market", *milvus, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["backend"], info["collection"], info["count"], info["kind"]) == (
        "milvus",
        "market",
        count,
        "flat",
    )
    expected = _search_json(
        ["--index", str(tmp_path / "f"), "--query", query, *model, "--top-k", "15"], capsys
    )
    found = _search_json(["--index", "market", *milvus, "--query", query, *model, "--top-k", "15"], capsys)
    assert [hit["path"] for hit in found] == [hit["path"] for hit in expected]
    np.testing.assert_allclose([h["distance"] for h in found], [h["distance"] for h in expected], atol=1e-5)
    camera = expected[0]["camera"]
    filtered = _search_json(
        ["--index", "market", *milvus, "--query", query, *model, "--camera", camera], capsys
    )
    assert filtered and {hit["camera"] for hit in filtered} == {camera}
    # a wrong backend choice is a clear error
    capsys.readouterr()
    assert main(["index", "info", "market", "--backend", "milvus"]) != 0
    assert "the milvus backend needs --uri" in capsys.readouterr().err


def test_service_on_a_milvus_collection(tmp_path):
    pytest.importorskip("fastapi", reason="needs FastAPI: pip install 'reidkit[serve]'")
    from fastapi.testclient import TestClient

    from reidkit.serve import create_app
    from segments_data import ColourEmbedder
    from test_serve import encode, person

    embedder = ColourEmbedder()
    uri = str(tmp_path / "service.db")
    MilvusIndex.create(uri, "people", dim=embedder.dim, fingerprint=embedder.fingerprint).close()
    app = create_app(tmp_path / "people", embedder, token="t0ken-0123456789", uri=uri)
    red_blue, green_red = person((200, 0, 0), (0, 0, 200)), person((0, 200, 0), (200, 0, 0))
    with TestClient(app) as client:
        added = client.post(
            "/gallery",
            files=[
                ("images", ("a.png", encode(red_blue), "image/png")),
                ("images", ("b.png", encode(green_red), "image/png")),
            ],
            data={"metadata": json.dumps([{"camera": "1", "pid": 4}, {"camera": "2", "pid": 5}])},
            headers={"Authorization": "Bearer t0ken-0123456789"},
        )
        assert added.status_code == 201, added.text
        ids = added.json()["ids"]
        body = client.post("/search", files={"image": ("q.png", encode(green_red), "image/png")}).json()
        assert [hit["pid"] for hit in body["results"]] == [5, 4] and body["results"][0]["id"] == ids[1]
        assert client.get(f"/gallery/{ids[1]}/image").status_code == 200
        assert client.get("/health").json()["count"] == 2
        deleted = client.delete(f"/gallery/{ids[1]}", headers={"Authorization": "Bearer t0ken-0123456789"})
        assert deleted.status_code == 200, deleted.text
        body = client.post("/search", files={"image": ("q.png", encode(green_red), "image/png")}).json()
        assert [hit["pid"] for hit in body["results"]] == [4]
