"""Search benchmarks: gallery index build and query speed, HTTP /search under load, embedding runtimes.

Usage::

    python benchmarks/search.py                       # 10k, 100k and 1M synthetic embeddings, all sections
    python benchmarks/search.py --sizes 10000 --http-requests 50 --embed-batches 2    # a quick run

Single-query latencies (the index and the numpy baseline) are measured on one thread (FAISS, torch and BLAS
limited to 1 while the queries run); builds use every core.

Sections (each prints a table; ratios are against a baseline measured in the same run):

1. Index: build rate (embeddings/s through ``Index.add``, SQLite + FAISS + the atomic file write) and
   single-query latency p50/p99 for an exact flat index and an IVF-PQ index, recall@10 of IVF-PQ against the
   exact top-10, and a numpy brute-force baseline for the flat search.
2. HTTP: ``POST /search`` latency p50/p99 and throughput on loopback for 1, 4 and 8 concurrent clients (a
   fixed number of requests per client), with a cheap stand-in embedder (service + index overhead) and, when
   ``../shared/data`` is present, the real OpenVINO ReID network.
3. Embedding: images/s of the same checkpoint through PyTorch (``TorchEmbedder``), ONNX Runtime and OpenVINO
   on CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _reference import machine_line
from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def table(title: str, header: list[str], rows: list[list[object]]) -> None:
    cells = [header] + [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    sys.stdout.flush()


def clustered_embeddings(count: int, dim: int, rng: np.random.Generator, identities: int) -> np.ndarray:
    """Unit vectors around ``identities`` random centres (several images per person, like a real gallery)."""
    centres = rng.standard_normal((identities, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((count, dim), np.float32)
    for start in range(0, count, 100_000):
        stop = min(count, start + 100_000)
        block = centres[rng.integers(0, identities, stop - start)]
        block += 0.6 / np.sqrt(dim) * rng.standard_normal(block.shape).astype(np.float32)
        out[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


# ------------------------------------------------------------------------------------------------ index
@contextlib.contextmanager
def _single_thread():
    """FAISS (OpenMP), torch and NumPy's BLAS on one thread for the duration; restored after."""
    import faiss
    import torch
    from threadpoolctl import threadpool_limits

    faiss_threads, torch_threads = faiss.omp_get_max_threads(), torch.get_num_threads()
    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        faiss.omp_set_num_threads(faiss_threads)
        torch.set_num_threads(torch_threads)


def bench_index(sizes: list[int], dim: int, queries: int, workdir: Path) -> None:
    from reidkit.index import Index

    rng = np.random.default_rng(0)
    rows = []
    for size in sizes:
        # queries are other images of gallery identities: drawn with the gallery, then held out
        everything = clustered_embeddings(size + queries, dim, rng, identities=max(size // 20, 1))
        gallery, query_vectors = everything[:size], everything[size:]
        del everything
        items = [{"path": f"img/{n}.jpg", "camera": str(n % 6), "timestamp": float(n)} for n in range(size)]

        # numpy baseline: one matrix-vector product + argpartition per query
        latencies = []
        truth_numpy = []
        with _single_thread():
            for query in query_vectors:
                started = time.perf_counter()
                scores = gallery @ query
                top = np.argpartition(-scores, 10)[:10]
                truth_numpy.append(top[np.argsort(-scores[top])])
                latencies.append(time.perf_counter() - started)
        numpy_p50 = percentile(latencies, 50) * 1000
        rows.append(
            [size, "numpy brute force", "-", numpy_p50, percentile(latencies, 99) * 1000, 1.0, "-", "-"]
        )

        results = {}
        for kind in ("flat", "ivfpq"):
            directory = workdir / f"{kind}-{size}"
            options = {}
            if (
                kind == "ivfpq"
            ):  # the index's own choices: nlist ~4 sqrt(N), nprobe max(16, nlist / 64), refine 4
                options = {"pq_m": dim // 8, "pq_bits": 8}
            index = Index.create(directory, dim=dim, fingerprint="bench", kind=kind, **options)
            started = time.perf_counter()
            index.add(gallery, items, fingerprint="bench")
            build = time.perf_counter() - started
            info = index.info()
            latencies, found = [], []
            with _single_thread():  # latency of one query on one thread (a service answers many at once)
                for query in query_vectors:
                    started = time.perf_counter()
                    hits = index.search(query, fingerprint="bench", top_k=10)[0]
                    latencies.append(time.perf_counter() - started)
                    found.append([hit.id - 1 for hit in hits])  # ids start at 1 in insertion order
            results[kind] = found
            p50 = percentile(latencies, 50) * 1000
            recall = "1 (exact)"
            if kind == "ivfpq":
                recall = float(
                    np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, results["flat"], strict=True)])
                )
            label = (
                "flat (exact)"
                if kind == "flat"
                else f"IVF{info['trained_nlist']},PQ{dim // 8}x8 nprobe {info['search_nprobe']} "
                f"refine {info['refine']}"
            )
            rows.append(
                [
                    size,
                    label,
                    f"{size / build:,.0f}",
                    p50,
                    percentile(latencies, 99) * 1000,
                    numpy_p50 / p50,
                    recall,
                    f"{build:.1f}",
                ]
            )
            index.close()
        agree = np.mean(
            [len(set(a) & set(b.tolist())) / 10 for a, b in zip(results["flat"], truth_numpy, strict=True)]
        )
        assert agree > 0.999, f"flat index disagrees with numpy: {agree}"
        del gallery
        table(
            f"Index: dim {dim}, {queries} single-vector queries, top-10 (latency includes the SQLite metadata fetch)",
            [
                "gallery",
                "structure",
                "build (emb/s)",
                "p50 ms",
                "p99 ms",
                "speed vs numpy",
                "recall@10",
                "build s",
            ],
            rows[-3:],
        )


# ------------------------------------------------------------------------------------------------- HTTP
class _StandInEmbedder:
    """Mean colour of 4 horizontal bands, tiled to ``dim``: the service's own cost without a network."""

    name = "stand-in"
    fingerprint = "stand-in"
    input_size = (256, 128)

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.projection = np.random.default_rng(1).standard_normal((12, dim)).astype(np.float32)

    def embed_images(self, images):
        rows = []
        for image in images:
            pixels = np.asarray(image.convert("RGB").resize((8, 16)), np.float32) / 255.0
            bands = pixels.reshape(4, 4, 8, 3).mean(axis=(1, 2)).reshape(-1)
            rows.append(bands @ self.projection)
        features = np.asarray(rows, np.float32)
        return features / np.linalg.norm(features, axis=1, keepdims=True)


def _load_clients(
    url: str, payload: bytes, clients: int, requests_per_client: int
) -> tuple[list[float], float]:
    import httpx

    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            for _ in range(requests_per_client):
                started = time.perf_counter()
                response = http.post(
                    "/search", files={"image": ("q.jpg", payload, "image/jpeg")}, data={"top_k": "20"}
                )
                elapsed = time.perf_counter() - started
                with lock:
                    if response.status_code != 200:
                        failures.append(response.text)
                    latencies.append(elapsed)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} failed requests, e.g. {failures[0]}")
    return latencies, wall


def bench_http(size: int, requests_per_client: int, workdir: Path) -> None:
    from reidkit.index import Index
    from reidkit.serve import BackgroundServer, create_app

    rng = np.random.default_rng(2)
    embedders = [_StandInEmbedder(256)]
    reid_xml = SHARED / "omz/person-reidentification-retail-0287/person-reidentification-retail-0287.xml"
    if reid_xml.is_file():
        from reidkit.embed import OpenVinoEmbedder

        embedders.append(OpenVinoEmbedder(reid_xml, preprocess="bgr255", threads=1))
    else:
        print(f"(no {reid_xml}: HTTP benchmark with the stand-in embedder only)")
    query = Image.fromarray(rng.integers(0, 256, (160, 64, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    query.save(buffer, format="JPEG", quality=90)
    payload = buffer.getvalue()
    rows = []
    for embedder in embedders:
        directory = workdir / f"http-{embedder.name}"
        with Index.create(directory, dim=embedder.dim, fingerprint=embedder.fingerprint) as index:
            gallery = clustered_embeddings(size, embedder.dim, rng, identities=size // 20)
            index.add(
                gallery,
                [{"path": f"img/{n}.jpg", "camera": str(n % 6)} for n in range(size)],
                fingerprint=embedder.fingerprint,
            )
        app = create_app(directory, embedder, token=None)
        with BackgroundServer(app) as server:
            _load_clients(server.url, payload, 1, 3)  # warm-up
            single = None
            for clients in (1, 4, 8):
                latencies, wall = _load_clients(server.url, payload, clients, requests_per_client)
                throughput = len(latencies) / wall
                single = single or throughput
                rows.append(
                    [
                        embedder.name,
                        clients,
                        len(latencies),
                        percentile(latencies, 50) * 1000,
                        percentile(latencies, 99) * 1000,
                        throughput,
                        throughput / single,
                    ]
                )
    table(
        f"HTTP POST /search on loopback: {size:,}-image flat gallery, top-20, 160x64 JPEG query",
        ["embedder", "clients", "requests", "p50 ms", "p99 ms", "req/s", "req/s vs 1 client"],
        rows,
    )


# ------------------------------------------------------------------------------------------- embedding
def bench_embedding(batches: int, batch_size: int, workdir: Path) -> None:
    import torch

    from reidkit import checkpoint as checkpoints
    from reidkit.embed import OnnxEmbedder, OpenVinoEmbedder, Preprocess, TorchEmbedder
    from reidkit.export import export
    from reidkit.models import build_model

    rng = np.random.default_rng(3)
    images = [Image.fromarray(rng.integers(0, 256, (256, 128, 3), dtype=np.uint8)) for _ in range(batch_size)]
    rows = []
    for backbone in ("resnet18", "resnet50"):
        torch.manual_seed(0)
        model = build_model("baseline", num_classes=100, backbone=backbone)
        spec = checkpoints.ModelSpec(name="baseline", num_classes=100, backbone=backbone, last_stride=1)
        checkpoint = workdir / f"{backbone}.pt"
        checkpoints.save(
            checkpoint,
            checkpoints.Checkpoint(spec=spec, preprocess=Preprocess(256, 128), weights=model.state_dict()),
        )
        onnx_path = export(checkpoint, workdir / f"{backbone}.onnx", flip=False).path
        runtimes = [
            (
                "PyTorch (TorchEmbedder)",
                TorchEmbedder.from_checkpoint(
                    checkpoints.load(checkpoint), flip=False, batch_size=batch_size
                ),
            ),
            ("ONNX Runtime", OnnxEmbedder(onnx_path, batch_size=batch_size)),
            ("OpenVINO (same ONNX file)", OpenVinoEmbedder(onnx_path, batch_size=batch_size)),
        ]
        reference = None
        for name, embedder in runtimes:
            embedder.embed_images(images[:4])  # warm-up
            started = time.perf_counter()
            for _ in range(batches):
                features = embedder.embed_images(images)
            rate = batches * batch_size / (time.perf_counter() - started)
            reference = reference or rate
            if name.startswith("PyTorch"):
                expected = features
            difference = float(np.abs(features - expected).max())
            rows.append([f"baseline/{backbone} 256x128", name, rate, rate / reference, difference])
    table(
        f"Embedding throughput on CPU: batches of {batch_size}, no flip, L2-normalised output "
        f"(torch threads {torch.get_num_threads()})",
        ["model", "runtime", "images/s", "vs PyTorch", "max |diff| vs PyTorch"],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000,1000000", help="gallery sizes, comma-separated")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--http-gallery", type=int, default=10000)
    parser.add_argument("--http-requests", type=int, default=100, help="requests per client")
    parser.add_argument("--embed-batches", type=int, default=3)
    parser.add_argument("--embed-batch-size", type=int, default=32)
    parser.add_argument("--sections", default="index,http,embed")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    threads = os.environ.get("OMP_NUM_THREADS", "all")
    print(
        f"machine: {machine_line()}, OMP threads {threads}, load average {os.getloadavg()[0]:.1f}, "
        f"Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory(prefix="reidkit-bench-") as temp:
        workdir = Path(temp)
        if "index" in sections:
            bench_index([int(s) for s in args.sizes.split(",")], args.dim, args.queries, workdir)
        if "http" in sections:
            bench_http(args.http_gallery, args.http_requests, workdir)
        if "embed" in sections:
            bench_embedding(args.embed_batches, args.embed_batch_size, workdir)


if __name__ == "__main__":
    main()
