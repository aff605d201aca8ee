"""One writer of the concurrent-writer test: adds ``chunks`` chunks of ``rows`` vectors to a Milvus collection.

Run as ``python milvus_writer.py URI COLLECTION BARRIER WRITER WRITERS CHUNKS ROWS DIM``. Each writer connects, marks
itself ready in the folder ``BARRIER`` and starts writing only when all ``WRITERS`` are ready, so that the writes
overlap. Vector ``i`` of writer ``w`` is seeded by ``(w, i)`` so that the test can recompute it; its path is
``w<w>/<i>``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from reidkit.index import MilvusIndex


def vector(writer: int, position: int, dim: int) -> np.ndarray:
    row = np.random.default_rng([writer, position]).standard_normal(dim).astype(np.float32)
    return row / np.linalg.norm(row)


def main(
    uri: str, name: str, barrier: str, writer: int, writers: int, chunks: int, rows: int, dim: int
) -> None:
    with MilvusIndex.open(uri, name) as index:
        (Path(barrier) / f"ready-{writer}").touch()
        deadline = time.monotonic() + 120
        while len(list(Path(barrier).glob("ready-*"))) < writers:
            if time.monotonic() > deadline:
                raise SystemExit(f"writer {writer}: the other writers did not start")
            time.sleep(0.005)
        for chunk in range(chunks):
            positions = range(chunk * rows, (chunk + 1) * rows)
            vectors = np.stack([vector(writer, i, dim) for i in positions])
            items = [{"path": f"w{writer}/{i}", "camera": str(writer), "frame": i} for i in positions]
            index.add(vectors, items, fingerprint="writer-test", save=False)
        index.save()


if __name__ == "__main__":
    uri, name, barrier, *numbers = sys.argv[1:]
    main(uri, name, barrier, *(int(n) for n in numbers))
