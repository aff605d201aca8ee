"""Bad input is a clear 4xx (never a 500), an unexpected error is a logged 500 without traceback, and the
service sees what other processes write to its index."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from reidkit.index import Index
from reidkit.serve import MAX_METADATA_DEPTH, create_app
from test_serve import COLOURS, TOKEN, ColourEmbedder, encode, person, png_header_only

AUTH = {"Authorization": f"Bearer {TOKEN}"}
BEYOND = str(2**63)  # one past the largest 64-bit integer


def search(client: TestClient, **fields):
    query = encode(person(COLOURS[0], COLOURS[1]))
    return client.post("/search", files={"image": ("q.png", query, "image/png")}, data=fields)


def add(client: TestClient, metadata: str):
    files = [("images", ("a.png", encode(person(COLOURS[4], COLOURS[5])), "image/png"))]
    return client.post("/gallery", files=files, data={"metadata": metadata}, headers=AUTH)


def nested(depth: int) -> str:
    return '{"extra": ' + '{"a": ' * (depth - 1) + "1" + "}" * depth


CASES = [
    ("pid filter past int64", lambda c: search(c, pid=BEYOND), "pid must be between"),
    ("pid filter before int64", lambda c: search(c, pid=f"1,-{2**63 + 1}"), "pid must be between"),
    ("pid filter with too many values", lambda c: search(c, pid=",".join(["1"] * 1001)), "limit is 1000"),
    ("camera filter with too many values", lambda c: search(c, camera="a," * 1001), "limit is 1000"),
    ("image of an id past int64", lambda c: c.get(f"/gallery/{BEYOND}/image"), "item id must be between"),
    ("image of an id before int64", lambda c: c.get(f"/gallery/-{BEYOND}1/image"), "item id must be between"),
    ("delete an id past int64", lambda c: c.delete(f"/gallery/{BEYOND}", headers=AUTH), "item id must be"),
    (
        "delete an id before int64",
        lambda c: c.delete(f"/gallery/-{BEYOND}1", headers=AUTH),
        "item id must be",
    ),
    ("metadata pid past int64", lambda c: add(c, f'{{"pid": {BEYOND}}}'), "'pid' must be between"),
    ("metadata frame past int64", lambda c: add(c, f'{{"frame": -{BEYOND}1}}'), "'frame' must be between"),
    ("metadata timestamp past float", lambda c: add(c, '{"timestamp": 1' + "0" * 400 + "}"), "finite number"),
    ("metadata integer of 5000 digits", lambda c: add(c, '{"pid": ' + "9" * 5000 + "}"), "not valid JSON"),
    ("metadata nested 5000 deep", lambda c: add(c, "[" * 5000 + "]" * 5000), "nested 5000 levels deep"),
    ("metadata extra nested too deep", lambda c: add(c, nested(MAX_METADATA_DEPTH + 1)), "levels deep"),
    (
        "metadata over the size limit",
        lambda c: add(c, '{"extra": {"a": "' + "x" * 300_000 + '"}}'),
        "limit is",
    ),
    ("metadata NaN", lambda c: add(c, '{"extra": {"a": NaN}}'), "NaN is not a number JSON allows"),
    ("metadata camera as a list", lambda c: add(c, '{"camera": ["a", "b"]}'), "'camera' must be a string"),
    ("metadata pid as a list", lambda c: add(c, '{"pid": [1, 2]}'), "'pid' must be an integer"),
]


@pytest.mark.parametrize(("name", "send", "message"), CASES, ids=[case[0] for case in CASES])
def test_out_of_range_input_is_a_clear_4xx(client, name, send, message):
    response = send(client)
    assert response.status_code == 422, (name, response.status_code, response.text[:300])
    assert message in response.json()["detail"], response.text[:300]
    assert client.get("/health").json()["count"] == 12


def test_metadata_within_the_limits_is_kept(client):
    response = add(client, nested(MAX_METADATA_DEPTH - 1))
    assert response.status_code == 201, response.text
    largest = add(client, f'{{"pid": {2**63 - 1}, "frame": {-(2**63)}, "camera": 7}}')
    assert largest.status_code == 201, largest.text
    [hit] = search(client, pid=str(2**63 - 1)).json()["results"]
    assert (hit["pid"], hit["frame"], hit["camera"]) == (2**63 - 1, -(2**63), "7")
    assert client.get(f"/gallery/{2**63 - 1}/image").status_code == 404


def test_unexpected_error_is_a_logged_500_without_traceback(gallery, caplog):
    class FaultyModel(ColourEmbedder):
        def embed_images(self, images):
            raise RuntimeError("an internal detail the client must not see")

    caplog.set_level(logging.ERROR, logger="reidkit.serve")
    client = TestClient(create_app(gallery[0], FaultyModel(), token=TOKEN))
    response = search(client)
    assert response.status_code == 500 and response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    assert detail.startswith("internal server error ") and "internal detail" not in response.text
    assert "Traceback" not in response.text
    error_id = detail.split()[3]
    assert error_id in caplog.text and "an internal detail" in caplog.text and "POST /search" in caplog.text
    assert client.get("/health").status_code == 200


def test_sees_what_another_process_adds(gallery):
    """Items added through another Index object (as ``reidkit index add`` would) show on the next request."""
    index_dir, _ = gallery
    client = TestClient(create_app(index_dir, ColourEmbedder(), token=TOKEN))
    assert client.get("/health").json()["count"] == 12
    embedder = ColourEmbedder()
    newcomers = [person(COLOURS[4], COLOURS[5]), person(COLOURS[5], COLOURS[4])]
    for n, image in enumerate(newcomers):
        image.save(index_dir.parent / f"new{n}.png")
    with Index.open(index_dir) as other:
        other.add(
            embedder.embed_images(newcomers),
            [
                {"path": str(index_dir.parent / f"new{n}.png"), "camera": "door", "pid": 500 + n}
                for n in range(2)
            ],
            fingerprint=embedder.fingerprint,
        )
    health = client.get("/health").json()
    assert health["count"] == 14 and "door" in health["cameras"]
    hits = client.post(
        "/search", files={"image": ("q.png", encode(newcomers[0]))}, data={"camera": "door"}
    ).json()["results"]
    assert [hit["pid"] for hit in hits] == [500, 501]
    assert client.get(f"/gallery/{hits[0]['id']}/image").status_code == 200
    # and deletes by the other process too
    with Index.open(index_dir) as other:
        other.delete([hits[1]["id"]])
    assert client.get("/health").json()["count"] == 13
    assert client.delete(f"/gallery/{hits[1]['id']}", headers=AUTH).status_code == 404


def test_image_too_long_to_store_is_refused(client):
    """A 1 x 70000 image decodes, but no JPEG can hold it: refused before decoding, not a 500 when stored."""
    files = [("images", ("tall.png", png_header_only(1, 70_000), "image/png"))]
    response = client.post("/gallery", files=files, headers=AUTH)
    assert (
        response.status_code == 413 and "each side must be at most 65500 pixels" in response.json()["detail"]
    )
