"""Peak memory of the HTTP service under concurrent uploads of a huge (but well-compressed) PNG.

Starts ``reidkit.serve`` in a subprocess on 127.0.0.1 (a stand-in embedder: the service's own cost, no
network), sends ``--clients`` concurrent ``POST /search`` uploads of one generated ``--megapixels`` PNG (a
palette image: tens of kB on the wire, 4-8 bytes a pixel once decoded to RGB), and reports the server's peak
resident memory (``VmHWM``) for two settings:

- ``no decode bound``: the pixel budget made as large as the number of clients (what the service did before
  it had one: every request decodes at once);
- ``default decode bound``: the service's default ``max_concurrent_decodes`` (2) with ``--max-pixels``
  (default: the service's 40 M), whose decoded images take at most about
  ``max_pixels * max_concurrent_decodes * 8`` bytes.

Usage::

    python benchmarks/serve_memory.py                              # 16 clients, 39.6 megapixels
    python benchmarks/serve_memory.py --clients 4 --megapixels 8 --max-pixels 8500000   # a quick check
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _reference import machine_line
from PIL import Image, ImageDraw

MB = 2**20


class StandInEmbedder:
    """Mean colour of 4 horizontal bands of a small resize: the service's cost without a network."""

    name = "stand-in"
    fingerprint = "stand-in-bands-v1"
    dim = 12
    input_size = (16, 8)

    def embed_images(self, images):
        rows = []
        for image in images:
            pixels = np.asarray(image.resize((8, 16), Image.BILINEAR), np.float32) / 255.0
            rows.append(pixels.reshape(4, 4, 8, 3).mean(axis=(1, 2)).reshape(-1) + 0.05)
        features = np.asarray(rows, np.float32)
        return features / np.linalg.norm(features, axis=1, keepdims=True)


def huge_png(megapixels: float) -> bytes:
    """A ``megapixels`` palette PNG of a few coloured bands (portrait 2:3): compresses to tens of kB."""
    width = int((megapixels * 1e6 / 1.5) ** 0.5)
    height = int(megapixels * 1e6 / width)
    image = Image.new("P", (width, height), 0)
    image.putpalette([30, 30, 200, 200, 40, 40, 240, 240, 240] + [0] * (256 * 3 - 9))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, height // 3, width, 2 * height // 3], fill=1)
    draw.rectangle([width // 4, 0, width // 2, height], fill=2)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def make_index(directory: Path) -> Path:
    """A 50-item gallery of small generated crops, built with the stand-in embedder."""
    from reidkit.index import Index

    embedder, rng = StandInEmbedder(), np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (32, 16, 3), dtype=np.uint8)) for _ in range(50)]
    items = [{"path": f"missing/{n}.png", "camera": str(n % 3), "pid": n} for n in range(50)]
    with Index.create(
        directory, dim=embedder.dim, fingerprint=embedder.fingerprint, model_name="stand-in"
    ) as index:
        index.add(embedder.embed_images(images), items, fingerprint=embedder.fingerprint)
    return directory


def serve_child(index: str, port: int, max_pixels: int, decodes: int) -> None:
    """The subprocess: serve ``index`` until killed."""
    import uvicorn

    from reidkit.serve import create_app

    app = create_app(
        index, StandInEmbedder(), max_pixels=max_pixels, max_concurrent_decodes=decodes, decode_wait_s=120
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def memory_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def measure(index: Path, payload: bytes, clients: int, max_pixels: int, decodes: int) -> dict[str, object]:
    """Start a server with these limits, send ``clients`` concurrent searches, return statuses and memory."""
    import httpx

    port = free_port()
    command = [sys.executable, __file__, "--child", str(index), str(port), str(max_pixels), str(decodes)]
    server = subprocess.Popen(command)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.1)
        idle = memory_kb(server.pid, "VmRSS") * 1024
        statuses: list[int] = []
        barrier = threading.Barrier(clients)

        def client() -> None:
            with httpx.Client(base_url=url, timeout=600) as http:
                barrier.wait()
                statuses.append(
                    http.post("/search", files={"image": ("huge.png", payload, "image/png")}).status_code
                )

        started = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
        peak = memory_kb(server.pid, "VmHWM") * 1024
    finally:
        server.terminate()
        server.wait(timeout=30)
    codes = ", ".join(f"{statuses.count(code)}x{code}" for code in sorted(set(statuses)))
    return {"idle": idle, "peak": peak, "seconds": seconds, "statuses": codes}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--megapixels", type=float, default=39.6)
    parser.add_argument(
        "--max-pixels", type=int, default=None, help="the service's max_pixels (default: its default, 40 M)"
    )
    parser.add_argument(
        "--child", nargs=4, metavar=("INDEX", "PORT", "MAX_PIXELS", "DECODES"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        index, port, max_pixels, decodes = args.child
        serve_child(index, int(port), int(max_pixels), int(decodes))
        return
    from reidkit.serve import DEFAULT_MAX_CONCURRENT_DECODES, DEFAULT_MAX_PIXELS

    max_pixels = args.max_pixels or DEFAULT_MAX_PIXELS
    payload = huge_png(args.megapixels)
    with Image.open(io.BytesIO(payload)) as image:
        width, height = image.size
    print(machine_line())
    print(
        f"{args.clients} concurrent POST /search of a {width}x{height} PNG ({width * height / 1e6:.1f} MP, "
        f"{len(payload) / 1024:.0f} kB); server: stand-in embedder, peak RSS = VmHWM of the server process"
    )
    settings = [
        ("no decode bound", max_pixels, args.clients),
        ("default decode bound", max_pixels, DEFAULT_MAX_CONCURRENT_DECODES),
    ]
    print("\n| setting | max_pixels | concurrent decodes | answers | idle RSS MB | peak RSS MB | wall s |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        index = make_index(Path(scratch) / "index")
        for name, max_pixels, decodes in settings:
            result = measure(index, payload, args.clients, max_pixels, decodes)
            print(
                f"| {name} | {max_pixels} | {decodes} | {result['statuses']} | {result['idle'] / MB:.0f} "
                f"| {result['peak'] / MB:.0f} | {result['seconds']:.1f} |",
                flush=True,
            )
    bound = max_pixels * DEFAULT_MAX_CONCURRENT_DECODES * 8 / MB
    print(f"\ndecoded-image bound of the second row: max_pixels x concurrent decodes x 8 B = {bound:.0f} MB")


if __name__ == "__main__":
    main()
