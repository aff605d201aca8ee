"""Seeded random malformed requests: none gets a 5xx, and the service is healthy afterwards."""

from __future__ import annotations

import itertools
import json
import random
import time

from fastapi.testclient import TestClient

from reidkit.serve import create_app
from test_serve import COLOURS, TOKEN, ColourEmbedder, encode, person, png_header_only

REQUESTS = 400
METHODS = ["GET", "POST", "DELETE", "PUT", "PATCH", "OPTIONS", "HEAD"]
FIELDS = ["image", "images", "metadata", "top_k", "camera", "exclude_camera", "since", "until", "pid", "junk"]


def random_number(rng: random.Random) -> str:
    if rng.random() < 0.4:
        return str(rng.randint(1, 20))
    return rng.choice(
        [
            str(rng.randint(-5, 20)),
            str(2**63),
            str(-(2**63) - 1),
            str(2**63 - 1),
            "9" * rng.choice([20, 400, 5000]),
            "-0",
            "1e400",
            "nan",
            "0x1f",
            "١٢",  # Arabic-Indic digits
            "",
            " 7 ",
            "seven",
        ]
    )


def random_json(rng: random.Random, depth: int = 0) -> str:
    """Metadata-shaped JSON, often broken: deep nesting, huge numbers, wrong types, truncation."""
    choice = rng.randrange(9)
    if choice == 0:
        n = rng.choice([10, 100, 3000])
        return "[" * n + "]" * n
    if choice == 1:
        return '{"extra": ' + '{"a": ' * 40 + "1" + "}" * 41
    if choice == 2:
        field = rng.choice(["pid", "frame", "camera", "timestamp"])
        return f'{{"{field}": {random_number(rng) or 0}}}'
    if choice == 3:
        return '{"pid": ' + random_number(rng) + ', "timestamp": ' + random_number(rng) + "}"
    if choice == 4:
        return json.dumps([{"camera": [1, 2]}, {"pid": {"a": 1}}, {"extra": [1]}])
    if choice == 5:
        return '{"timestamp": NaN, "extra": {"x": Infinity}}'
    if choice == 6:
        return json.dumps({"path": "/etc/passwd"})[: rng.randint(1, 20)]
    if choice == 7:
        return json.dumps({"camera": "c" * rng.choice([1, 10_000]), "pid": rng.randint(-10, 10)})
    return "".join(rng.choice('{}[]":,0123456789aeflnrstu ') for _ in range(rng.randint(0, 60)))


def random_path(rng: random.Random) -> str:
    item = random_number(rng) or "x"
    return rng.choice(
        [
            "/",
            "/search",
            "/health",
            "/gallery",
            f"/gallery/{item}",
            f"/gallery/{item}/image",
            f"/gallery/{item}/image?size={rng.choice(['thumb', 'full', 'huge', '', '%00'])}",
            "/docs",
            "/openapi.json",
            "/gallery/../../etc/passwd",
            "/" + "a" * rng.choice([1, 5000]),
            "/search?top_k=" + random_number(rng),
            "/gallery/%ff%fe",
        ]
    )


def random_file(rng: random.Random, images: list[bytes]) -> bytes:
    choice = rng.randrange(6)
    if choice == 0:
        return rng.choice(images)
    if choice == 1:
        data = rng.choice(images)
        return data[: rng.randint(0, len(data))]
    if choice == 2:
        return png_header_only(rng.choice([1, 5000, 70000]), rng.choice([1, 5000, 70000]))
    if choice == 3:
        return rng.randbytes(rng.randint(0, 3000))
    if choice == 4:
        return b""
    return b"GIF89a" + rng.randbytes(50)


def random_target(rng: random.Random) -> tuple[str, str]:
    """Mostly the endpoints that parse input (search, add, delete, image), sometimes anything."""
    item = random_number(rng) or "x"
    choice = rng.random()
    if choice < 0.35:
        return "POST", "/search" + rng.choice(["", "?top_k=" + random_number(rng)])
    if choice < 0.6:
        return "POST", "/gallery"
    if choice < 0.7:
        return "DELETE", f"/gallery/{item}"
    if choice < 0.8:
        return "GET", f"/gallery/{item}/image?size={rng.choice(['thumb', 'full', 'huge', '', '%00'])}"
    return rng.choice(METHODS), random_path(rng)


def random_request(rng: random.Random, images: list[bytes]) -> dict:
    headers = {}
    if rng.random() < 0.7:
        headers["Authorization"] = rng.choice(
            [f"Bearer {TOKEN}"] * 12
            + ["Bearer", "Bearer x" * 50, TOKEN, "Basic abc", f"bearer {TOKEN}", b"Bearer \xe9"]
        )
    if rng.random() < 0.2:
        headers["X-Junk"] = "".join(rng.choice("abc;=,\t ") for _ in range(30))
    method, url = random_target(rng)
    request = {"method": method, "url": url, "headers": headers}
    kind = rng.randrange(6)
    if kind <= 2:  # multipart with random parts
        files, data = [], {}
        names = [rng.choice(FIELDS) for _ in range(rng.randint(0, 4))]
        if rng.random() < 0.8:  # usually the file field the endpoint expects, then random others
            names.insert(0, "images" if url.startswith("/gallery") else "image")
        for name in names:
            if name in ("image", "images") or rng.random() < 0.2:
                filename = rng.choice(["q.png", "q.png", "", "../../x.jpg", "ü" * 300, "a\0b"])
                content_type = rng.choice(["image/png", "text/plain", "application/octet-stream", "x/y; z"])
                files.append((name, (filename, random_file(rng, images), content_type)))
            else:
                data[name] = random_json(rng) if name == "metadata" else random_number(rng)
        if not files:
            files = None
        request.update(files=files, data=data or None)
    elif kind == 3:  # raw body with a random content type, often claiming multipart
        request["content"] = rng.randbytes(rng.randint(0, 2000))
        request["headers"]["Content-Type"] = rng.choice(
            [
                "multipart/form-data",
                "multipart/form-data; boundary=",
                "multipart/form-data; boundary=zz",
                "application/json",
                "application/x-www-form-urlencoded",
                "text/plain; charset=nope",
            ]
        )
    elif kind == 4:  # url-encoded form fields
        request["data"] = {rng.choice(FIELDS): random_number(rng) for _ in range(rng.randint(0, 4))}
    return request


def test_random_malformed_requests_never_get_a_5xx(gallery):
    rng = random.Random(20240601)
    app = create_app(
        gallery[0], ColourEmbedder(), token=TOKEN, max_upload_bytes=200_000, max_pixels=2_000_000
    )
    images = [
        encode(person(top, bottom), rng.choice(["PNG", "JPEG", "BMP"]))
        for top, bottom in itertools.pairwise(COLOURS)
    ]
    failures = []
    started = time.monotonic()
    with TestClient(app) as client:
        for number in range(REQUESTS):
            request = random_request(rng, images)
            response = client.request(**request)
            if response.status_code >= 500:
                failures.append(
                    (
                        number,
                        request["method"],
                        request["url"][:80],
                        response.status_code,
                        response.text[:200],
                    )
                )
        assert time.monotonic() - started < 120
        assert not failures, failures[:5]
        assert client.get("/health").status_code == 200
        count = client.get("/health").json()["count"]
        query = encode(person(COLOURS[0], COLOURS[1]))
        response = client.post("/search", files={"image": ("q.png", query)}, data={"top_k": "5"})
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert len(results) == min(5, count) and count >= 1
        distances = [hit["distance"] for hit in results]
        assert distances == sorted(distances)
