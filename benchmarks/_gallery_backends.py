"""The gallery section of ``benchmarks/scale.py``: Milvus (Lite) against FAISS flat / IVF behind the same interface.

For one synthetic gallery of clustered unit vectors (several images per identity), every backend gets the same
``add`` calls (chunks of 10k items with camera and time metadata) and the same single-vector queries on one
thread (top-10; the latency includes the metadata fetch), and is compared with the exact top-10 of a NumPy
matrix-vector product measured in the same run (the floor of an exact search). Then two writer processes add to
one Milvus Lite server at the same time, and the count and the set of stored paths are checked.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

CHUNK = 10_000


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) * 1000


def _clustered(count: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.standard_normal((max(count // 20, 1), dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    block = centres[rng.integers(0, len(centres), count)]
    block += 0.6 / np.sqrt(dim) * rng.standard_normal(block.shape).astype(np.float32)
    return block / np.linalg.norm(block, axis=1, keepdims=True)


def _single_thread():
    import faiss
    import torch
    from threadpoolctl import threadpool_limits

    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)
    return threadpool_limits(1)


def _measure(index, gallery: np.ndarray, queries: np.ndarray, truth: list[set[int]]) -> dict:
    items = [
        {"path": f"img/{n}.jpg", "camera": str(n % 6), "timestamp": float(n)} for n in range(len(gallery))
    ]
    started = time.perf_counter()
    ids = []
    for start in range(0, len(gallery), CHUNK):
        ids.extend(
            index.add(gallery[start : start + CHUNK], items[start : start + CHUNK], fingerprint="bench")
        )
    index.save()
    build = time.perf_counter() - started
    position = {int(item_id): n for n, item_id in enumerate(ids)}
    latencies, recall = [], []
    with _single_thread():
        for query, expected in zip(queries, truth, strict=True):
            started = time.perf_counter()
            hits = index.search(query, fingerprint="bench", top_k=10)[0]
            latencies.append(time.perf_counter() - started)
            recall.append(len({position[hit.id] for hit in hits} & expected) / 10)
    return {
        "build": build,
        "p50": _percentile(latencies, 50),
        "p99": _percentile(latencies, 99),
        "recall": float(np.mean(recall)),
    }


_WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from reidkit.index import MilvusIndex
    uri, writer, count, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    rng = np.random.default_rng(writer)
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with MilvusIndex.open(uri, "shared") as index:
        for start in range(0, count, 500):
            part = range(start, min(count, start + 500))
            index.add(vectors[start:part.stop], [{"path": f"w{writer}/{i}"} for i in part], fingerprint="bench")
        index.save()
    """
)


def _concurrent_writers(dim: int, per_writer: int, workdir: Path) -> tuple[float, int, int]:
    """Two processes add ``per_writer`` items each to one Milvus Lite server; (seconds, stored, expected)."""
    from reidkit.index import MilvusIndex
    from reidkit.index.milvus_collection import lite_server

    with lite_server(workdir / "server") as uri:
        MilvusIndex.create(uri, "shared", dim=dim, fingerprint="bench").close()
        script = workdir / "writer.py"
        script.write_text(_WRITER)
        started = time.perf_counter()
        writers = [
            subprocess.Popen([sys.executable, str(script), uri, str(w), str(per_writer), str(dim)])
            for w in (0, 1)
        ]
        if any(writer.wait() != 0 for writer in writers):
            raise RuntimeError("a writer process failed")
        seconds = time.perf_counter() - started
        with MilvusIndex.open(uri, "shared", readonly=True) as index:
            paths = {item.path for item in index.items(index.ids()).values()}
        expected = {f"w{w}/{i}" for w in (0, 1) for i in range(per_writer)}
        return seconds, len(paths & expected), len(expected)


def bench_gallery(size: int, dim: int, queries: int, writer_items: int) -> None:
    from reidkit.index import Index, MilvusIndex

    rng = np.random.default_rng(0)
    everything = _clustered(size + queries, dim, rng)
    gallery, query_vectors = everything[:size], everything[size:]
    floor = []
    truth = []
    with _single_thread():
        for query in query_vectors:
            started = time.perf_counter()
            scores = gallery @ query
            top = np.argpartition(-scores, 10)[:10]
            floor.append(time.perf_counter() - started)
            truth.append({int(i) for i in top})
    floor_p50 = _percentile(floor, 50)
    nlist = int(4 * np.sqrt(size))
    print(
        f"\nGallery backends: {size:,} items, dim {dim}, {queries} single-vector queries on one thread, top-10"
    )
    print("| backend | build items/s | p50 ms | p99 ms | recall@10 | p50 vs numpy |")
    print("|---|---|---|---|---|---|")
    print(
        f"| numpy exact product + top-10 | - | {floor_p50:.2f} | {_percentile(floor, 99):.2f} | 1.000 | 1.00x |"
    )
    with tempfile.TemporaryDirectory(prefix="reidkit-gallery-") as temp:
        work = Path(temp)
        backends = [
            ("FAISS flat", lambda: Index.create(work / "flat", dim=dim, fingerprint="bench")),
            (
                "FAISS IVF (automatic nlist / nprobe)",
                lambda: Index.create(work / "ivf", dim=dim, fingerprint="bench", kind="ivf"),
            ),
            (
                "Milvus Lite FLAT",
                lambda: MilvusIndex.create(str(work / "m.db"), "flat", dim=dim, fingerprint="bench"),
            ),
            (
                "Milvus Lite IVF_FLAT",
                lambda: MilvusIndex.create(
                    str(work / "m.db"), "ivf", dim=dim, fingerprint="bench", kind="ivf", nlist=nlist
                ),
            ),
        ]
        for label, create in backends:
            index = create()
            result = _measure(index, gallery, query_vectors, truth)
            info = index.info()
            if info["structure"] == "ivf":
                label += f": {info['trained_nlist']} lists, nprobe {info['search_nprobe']}"
            elif info["kind"] == "ivf":
                label += ": too few items to train, searched exactly"
            index.close()
            print(
                f"| {label} | {size / result['build']:,.0f} | {result['p50']:.2f} | {result['p99']:.2f} | "
                f"{result['recall']:.3f} | {result['p50'] / floor_p50:.2f}x |",
                flush=True,
            )
        writers = _concurrent_writers(dim, writer_items, work) if writer_items else None
    if writers:
        seconds, stored, expected = writers
        print(
            f"\nConcurrent writers: 2 processes x {writer_items:,} items (chunks of 500) to one milvus-lite server: "
            f"{seconds:.1f} s, {expected / seconds:,.0f} items/s together; {stored:,} of {expected:,} stored "
            f"({expected - stored} lost)"
        )
