"""Request bodies and decoding are bounded: auth before the body, body caps while streaming, body timeouts,
the pixel limit per request and the decoded-pixel budget shared by concurrent requests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from reidkit.serve import BackgroundServer, create_app
from test_serve import COLOURS, TOKEN, ColourEmbedder, encode, person

MB = 2**20


def rss_bytes() -> int:
    """This process's resident memory (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS line in /proc/self/status")


class PeakRss:
    """The growth of this process's resident memory over a ``with`` block, sampled every 5 ms."""

    def __enter__(self) -> PeakRss:
        self.baseline = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


needs_proc = pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads RSS from /proc")


def raw_exchange(
    url: str, head: bytes, chunks: Iterable[bytes], *, chunked: bool, pause_s: float = 0.0
) -> tuple[bytes, int, bool, float]:
    """Send a request head, then body chunks, from a raw socket while reading the answer in another thread.

    Returns:
        ``(answer bytes, body bytes sent, whether the whole body was sent, seconds until the answer came)``.
    """
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    received = bytearray()
    answered = threading.Event()
    closed = threading.Event()
    start = time.monotonic()
    answer_time = [float("nan")]

    def read() -> None:
        try:
            while data := sock.recv(65536):
                received.extend(data)
                if not answered.is_set():
                    answer_time[0] = time.monotonic() - start
                    answered.set()
        except OSError:
            pass
        closed.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    sent, finished = 0, False
    try:
        sock.sendall(head)
        for chunk in chunks:
            if closed.is_set():
                break
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            sent += len(chunk)
            time.sleep(pause_s)
        else:
            if chunked:
                sock.sendall(b"0\r\n\r\n")
            finished = True
    except OSError:
        pass
    closed.wait(timeout=15)
    sock.close()
    reader.join(timeout=5)
    return bytes(received), sent, finished, answer_time[0]


def multipart_head(
    path: str, *, field: str, headers: str = "", length: int | None = None
) -> tuple[bytes, bytes]:
    """The head of a multipart upload to ``path`` (chunked unless ``length``) and the opening of its file part."""
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary=zzz\r\n"
        f"{headers}{framing}\r\n\r\n"
    ).encode()
    part = f'--zzz\r\nContent-Disposition: form-data; name="{field}"; filename="a.png"\r\n\r\n'.encode()
    return head, part


def big_body(part: bytes, total: int, block: int = MB) -> Iterable[bytes]:
    """``part``, then zeros in blocks up to ``total`` bytes (generated lazily: one block in memory)."""
    yield part
    zeros = b"\0" * block
    for _ in range(total // block):
        yield zeros


@needs_proc
def test_unauthenticated_upload_is_refused_before_its_body_is_read(gallery):
    app = create_app(gallery[0], ColourEmbedder(), token=TOKEN)
    head, part = multipart_head("/gallery", field="images")
    with BackgroundServer(app) as server, PeakRss() as memory:
        answer, sent, finished, _ = raw_exchange(server.url, head, big_body(part, 64 * MB), chunked=True)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b"Authorization: Bearer" in answer
    assert not finished and sent < 32 * MB  # the server stopped reading: the client could not send it all
    assert app.state.body_counter.total == 0  # not one body byte reached the app
    assert memory.growth < 48 * MB, memory.growth


@needs_proc
@pytest.mark.parametrize(
    ("path", "headers"), [("/search", ""), ("/gallery", f"Authorization: Bearer {TOKEN}\r\n")]
)
def test_chunked_body_is_capped_while_it_streams(gallery, path, headers):
    app = create_app(gallery[0], ColourEmbedder(), token=TOKEN, max_upload_bytes=100_000)
    limit = 100_000 * (64 if path == "/gallery" else 1) + MB  # the images, plus 1 MiB for the form
    head, part = multipart_head(path, field="images" if path == "/gallery" else "image", headers=headers)
    with BackgroundServer(app) as server, PeakRss() as memory:
        answer, sent, finished, _ = raw_exchange(server.url, head, big_body(part, 64 * MB), chunked=True)
        assert httpx.get(f"{server.url}/health").status_code == 200
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert f"over the limit of {limit} bytes".encode() in answer
    assert not finished and sent < 40 * MB
    assert limit < app.state.body_counter.total <= limit + MB  # read up to the cap, and barely past it
    assert memory.growth < 48 * MB, memory.growth


def test_declared_length_over_the_cap_is_refused_at_once(gallery):
    app = create_app(gallery[0], ColourEmbedder(), token=TOKEN, max_upload_bytes=100_000)
    head, part = multipart_head("/search", field="image", length=50 * MB)
    with BackgroundServer(app) as server:
        answer, sent, finished, _ = raw_exchange(server.url, head, big_body(part, 50 * MB), chunked=False)
    assert answer.startswith(b"HTTP/1.1 413") and not finished and sent < 40 * MB
    assert app.state.body_counter.total == 0


def test_stalled_and_trickled_bodies_time_out(gallery):
    app = create_app(gallery[0], ColourEmbedder(), token=TOKEN, body_timeout_s=1.5, body_idle_timeout_s=0.5)
    head, part = multipart_head("/search", field="image", length=100_000)
    with BackgroundServer(app) as server:
        # stalled: part of the body, then nothing
        answer, _, finished, seconds = raw_exchange(server.url, head, [part, b"\0" * 1000], chunked=False)
        assert answer.startswith(b"HTTP/1.1 408") and b"connection: close" in answer.lower(), answer[:300]
        assert 0.4 < seconds < 5
        # trickled: a byte every 0.1 s never pauses 0.5 s, but the whole body takes too long
        trickle = [part] + [b"\0"] * 100
        answer, sent, finished, seconds = raw_exchange(server.url, head, trickle, chunked=False, pause_s=0.1)
        assert answer.startswith(b"HTTP/1.1 408") and not finished and 1.4 < seconds < 5, (
            answer[:200],
            seconds,
        )
        assert httpx.get(f"{server.url}/health").status_code == 200


def test_pixel_limit_is_per_request(gallery):
    client = TestClient(create_app(gallery[0], ColourEmbedder(), token=TOKEN, max_pixels=1_000_000))
    image = encode(person(COLOURS[0], COLOURS[1], size=(600, 600)))  # 360000 pixels each
    auth = {"Authorization": f"Bearer {TOKEN}"}
    two = [("images", (f"{n}.png", image, "image/png")) for n in range(2)]
    assert client.post("/gallery", files=two, headers=auth).status_code == 201
    three = [("images", (f"{n}.png", image, "image/png")) for n in range(3)]
    response = client.post("/gallery", files=three, headers=auth)
    assert response.status_code == 413
    assert (
        "3 images of this request have 1080000 pixels in all; the limit is 1000000"
        in response.json()["detail"]
    )
    assert client.get("/health").json()["count"] == 14


class GatedEmbedder(ColourEmbedder):
    """Holds every embedding call until ``release`` is set, counting the calls inside."""

    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()

    def embed_images(self, images):
        self.entered.release()
        assert self.release.wait(30)
        return super().embed_images(images)


def test_busy_decode_budget_answers_503_with_retry_after(gallery):
    embedder = GatedEmbedder()
    app = create_app(gallery[0], embedder, max_pixels=1_000_000, max_concurrent_decodes=1, decode_wait_s=0.2)
    big = encode(person(COLOURS[0], COLOURS[1], size=(800, 800)))  # 640000 pixels: two do not fit
    with BackgroundServer(app) as server:
        results: list[int] = []

        def first() -> None:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                results.append(http.post("/search", files={"image": ("a.png", big)}).status_code)

        holder = threading.Thread(target=first)
        holder.start()
        assert embedder.entered.acquire(timeout=30)  # the first search holds its 640000 pixels
        second = httpx.post(f"{server.url}/search", files={"image": ("b.png", big)}, timeout=30)
        embedder.release.set()
        holder.join(timeout=30)
    assert second.status_code == 503 and second.headers["retry-after"] == "1"
    assert "busy" in second.json()["detail"]
    assert results == [200]
    assert app.state.service.pixels.peak == 640_000 and app.state.service.pixels.in_use == 0


def test_decode_budget_lets_small_images_through_together(gallery):
    class SlowEmbedder(ColourEmbedder):
        def embed_images(self, images):
            time.sleep(0.3)
            return super().embed_images(images)

    app = create_app(gallery[0], SlowEmbedder(), max_pixels=1_000_000, max_concurrent_decodes=1)
    service = app.state.service
    sizes = {"big": (800, 800), "small": (300, 300)}
    with BackgroundServer(app) as server:
        for name, size in sizes.items():
            data = encode(person(COLOURS[0], COLOURS[1], size=size))
            statuses: list[int] = []

            def search(data: bytes = data, statuses: list[int] = statuses) -> None:
                with httpx.Client(base_url=server.url, timeout=60) as http:
                    statuses.append(http.post("/search", files={"image": ("q.png", data)}).status_code)

            service.pixels.peak = 0
            threads = [threading.Thread(target=search) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            assert statuses == [200] * 4, (name, statuses)
            pixels = size[0] * size[1]
            if name == "big":
                assert service.pixels.peak == pixels  # one at a time
            else:
                assert service.pixels.peak >= 2 * pixels  # several at once, within the budget
            assert service.pixels.peak <= 1_000_000


@needs_proc
def test_concurrent_large_decodes_keep_memory_bounded(gallery):
    """8 concurrent searches of a 10-megapixel PNG: decoded one at a time, memory stays near one decode."""
    image = Image.new("RGB", (3650, 2740), (90, 120, 200))  # 10.0 megapixels, a few kB as PNG
    data = encode(image)
    del image
    app = create_app(gallery[0], ColourEmbedder(), max_pixels=10_500_000, max_concurrent_decodes=1)
    statuses: list[int] = []
    with BackgroundServer(app) as server, PeakRss() as memory:

        def search() -> None:
            with httpx.Client(base_url=server.url, timeout=120) as http:
                statuses.append(http.post("/search", files={"image": ("q.png", data)}).status_code)

        threads = [threading.Thread(target=search) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert statuses == [200] * 8
    # one request: 40 MB decoded (Pillow keeps RGB in 4 bytes a pixel) + 40 MB the stand-in model converts;
    # without the budget the 8 requests overlap and take several times that
    assert memory.growth < 250 * MB, memory.growth / MB
