from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss", reason="the index needs faiss-cpu: pip install 'reidkit[faiss]'")

from reidkit.index import (  # noqa: E402
    FingerprintMismatchError,
    GalleryIndexError,
    GalleryItem,
    Index,
    to_timestamp,
)

FINGERPRINT = "model-a"


def normalised(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def make_items(count: int, cameras: int = 3) -> list[dict]:
    return [
        {
            "path": f"img_{n}.jpg",
            "camera": f"cam{n % cameras}",
            "timestamp": 1000.0 + n,
            "frame": n * 2,
            "pid": n // 4,
            "extra": {"n": n},
        }
        for n in range(count)
    ]


def naive_ranking(gallery: np.ndarray, ids: np.ndarray, query: np.ndarray, metric: str, allowed=None):
    """Reference: distance to every gallery row in a Python loop, sorted."""
    rows = []
    for vector, item_id in zip(gallery, ids, strict=True):
        if allowed is not None and item_id not in allowed:
            continue
        if metric == "ip":
            distance = 1.0 - float(np.dot(vector.astype(np.float64), query))
        else:
            distance = float(np.sqrt(((vector.astype(np.float64) - query) ** 2).sum()))
        rows.append((distance, int(item_id)))
    return sorted(rows)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_round_trip_matches_naive_search(tmp_path, rng, metric):
    gallery = normalised(rng, 60, 16)
    with Index.create(tmp_path / "index", dim=16, fingerprint=FINGERPRINT, metric=metric) as index:
        ids = index.add(gallery, make_items(60), fingerprint=FINGERPRINT)
    assert ids.tolist() == list(range(1, 61))
    queries = normalised(rng, 4, 16)
    with Index.open(tmp_path / "index") as index:
        assert len(index) == 60
        results = index.search(queries, fingerprint=FINGERPRINT, top_k=7)
        for query, hits in zip(queries, results, strict=True):
            expected = naive_ranking(gallery, ids, query.astype(np.float64), metric)[:7]
            assert [h.id for h in hits] == [item_id for _, item_id in expected]
            np.testing.assert_allclose([h.distance for h in hits], [d for d, _ in expected], atol=1e-5)
        hit = results[0][0]
        n = hit.id - 1
        assert hit.item == GalleryItem(f"img_{n}.jpg", f"cam{n % 3}", 1000.0 + n, 2 * n, n // 4, {"n": n})


def test_hand_computed_distances(tmp_path):
    gallery = np.array([[1, 0], [0, 1], [-1, 0]], dtype=np.float32)
    query = np.array([[0.6, 0.8]], dtype=np.float32)
    with Index.create(tmp_path / "ip", dim=2, fingerprint="m") as index:
        index.add(gallery, [{"path": str(n)} for n in range(3)], fingerprint="m")
        hits = index.search(query, fingerprint="m", top_k=3)[0]
    # cosine distance 1 - <q, g>: 1 - 0.8, 1 - 0.6, 1 + 0.6
    assert [h.item.path for h in hits] == ["1", "0", "2"]
    np.testing.assert_allclose([h.distance for h in hits], [0.2, 0.4, 1.6], atol=1e-6)
    with Index.create(tmp_path / "l2", dim=2, fingerprint="m", metric="l2") as index:
        index.add(gallery, [{"path": str(n)} for n in range(3)], fingerprint="m")
        hits = index.search(query, fingerprint="m", top_k=3)[0]
    # ||q - g||: sqrt(0.36 + 0.04), sqrt(0.16 + 0.64), sqrt(2.56 + 0.64)
    np.testing.assert_allclose([h.distance for h in hits], [0.4**0.5, 0.8**0.5, 3.2**0.5], atol=1e-6)


def test_filters_are_exact(tmp_path, rng):
    gallery = normalised(rng, 200, 8)
    items = make_items(200, cameras=5)
    query = gallery[0] + 0.01
    query /= np.linalg.norm(query)
    with Index.create(tmp_path / "index", dim=8, fingerprint=FINGERPRINT) as index:
        ids = index.add(gallery, items, fingerprint=FINGERPRINT)
        meta = {int(i): item for i, item in zip(ids, items, strict=True)}
        cases = [
            ({"camera": "cam3"}, lambda m: m["camera"] == "cam3"),
            ({"camera": [1, "cam2"]}, lambda m: m["camera"] == "cam2"),  # camera 1 is not "cam1"
            ({"exclude_camera": ["cam0", "cam1"]}, lambda m: m["camera"] not in ("cam0", "cam1")),
            ({"since": 1150}, lambda m: m["timestamp"] >= 1150),
            ({"since": 1010, "until": 1030.0}, lambda m: 1010 <= m["timestamp"] <= 1030),
            ({"pid": [3, 40]}, lambda m: m["pid"] in (3, 40)),
            ({"frames": (100, None)}, lambda m: m["frame"] >= 100),
            (
                {"camera": "cam4", "until": "1970-01-01T00:17:40Z"},
                lambda m: m["camera"] == "cam4" and m["timestamp"] <= 1060,
            ),
        ]
        for filters, keep in cases:
            allowed = {i for i, m in meta.items() if keep(m)}
            expected = naive_ranking(gallery, ids, query.astype(np.float64), "ip", allowed)[:10]
            hits = index.search(query, fingerprint=FINGERPRINT, top_k=10, **filters)[0]
            assert [h.id for h in hits] == [i for _, i in expected], filters
            assert len(hits) == min(10, len(allowed))
        assert index.search(query, fingerprint=FINGERPRINT, camera="nowhere")[0] == []
        assert index.search(query, fingerprint=FINGERPRINT, top_k=500)[0][-1].id in meta


def test_add_delete_and_stable_ids(tmp_path, rng):
    gallery = normalised(rng, 20, 8)
    with Index.create(tmp_path / "index", dim=8, fingerprint=FINGERPRINT) as index:
        first = index.add(gallery[:10], make_items(10), fingerprint=FINGERPRINT)
        assert index.delete([int(first[3]), int(first[9]), 12345]) == 2
        assert index.get(int(first[3])) is None
        second = index.add(gallery[10:], make_items(10), fingerprint=FINGERPRINT)
        assert second.min() > first.max()  # deleted ids are never reused
        assert len(index) == 18
        hits = index.search(gallery[3], fingerprint=FINGERPRINT, top_k=18)[0]
        assert int(first[3]) not in {h.id for h in hits}
        assert len(hits) == 18
    with Index.open(tmp_path / "index") as index:
        assert len(index) == 18
        assert set(index.ids().tolist()) == set(first.tolist()) - {int(first[3]), int(first[9])} | set(
            second.tolist()
        )
        assert index.search(gallery[12], fingerprint=FINGERPRINT, top_k=1)[0][0].id == int(second[2])
        np.testing.assert_array_equal(index.vectors([int(second[2]), int(first[0])]), gallery[[12, 0]])
        with pytest.raises(GalleryIndexError, match=r"no items with ids \[4\]"):
            index.vectors([int(first[3])])


def test_fingerprint_mismatch_is_refused(tmp_path, rng):
    with Index.create(tmp_path / "index", dim=8, fingerprint="weights-1", model_name="baseline") as index:
        index.add(normalised(rng, 5, 8), make_items(5), fingerprint="weights-1")
        with pytest.raises(FingerprintMismatchError, match="weights-2.*weights-1"):
            index.search(normalised(rng, 1, 8), fingerprint="weights-2")
        with pytest.raises(FingerprintMismatchError, match="build a new index"):
            index.add(normalised(rng, 1, 8), make_items(1), fingerprint="weights-2")
        assert len(index) == 5


def test_bad_input_errors(tmp_path, rng):
    with pytest.raises(GalleryIndexError, match="not a reidkit index"):
        Index.open(tmp_path)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "file").write_text("x")
    with pytest.raises(GalleryIndexError, match="not an empty folder"):
        Index.create(tmp_path / "full", dim=4, fingerprint="m")
    with pytest.raises(GalleryIndexError, match="metric"):
        Index.create(tmp_path / "a", dim=4, fingerprint="m", metric="cosine")
    with pytest.raises(GalleryIndexError, match="pq_m=3 must divide dim=8"):
        Index.create(tmp_path / "a", dim=8, fingerprint="m", kind="ivfpq", pq_m=3)
    assert not (tmp_path / "a").exists()
    with Index.create(tmp_path / "index", dim=4, fingerprint="m") as index:
        with pytest.raises(GalleryIndexError, match=r"shape \[N, 4\]"):
            index.add(np.zeros((2, 5), np.float32), make_items(2), fingerprint="m")
        with pytest.raises(GalleryIndexError, match="1 of 2 rows contain NaN"):
            index.add(np.array([[1, 0, 0, 0], [np.nan, 0, 0, 0]], np.float32), make_items(2), fingerprint="m")
        with pytest.raises(GalleryIndexError, match=r"items\[0\]: unknown metadata fields \['colour'\]"):
            index.add(normalised(rng, 1, 4), [{"path": "a", "colour": "red"}], fingerprint="m")
        with pytest.raises(GalleryIndexError, match="'timestamp' must be seconds or an ISO-8601"):
            index.add(normalised(rng, 1, 4), [{"path": "a", "timestamp": "yesterday"}], fingerprint="m")
        with pytest.raises(GalleryIndexError, match="2 embeddings but 1 metadata"):
            index.add(normalised(rng, 2, 4), make_items(1), fingerprint="m")
        with pytest.raises(GalleryIndexError, match="top_k"):
            index.search(normalised(rng, 1, 4), fingerprint="m", top_k=0)
        with pytest.raises(GalleryIndexError, match="since"):
            index.search(normalised(rng, 1, 4), fingerprint="m", since="noon")
        assert len(index) == 0 and index.version == 0
    with Index.open(tmp_path / "index", readonly=True) as reader:
        with pytest.raises(GalleryIndexError, match="read-only"):
            reader.add(normalised(rng, 1, 4), make_items(1), fingerprint="m")


def test_to_timestamp():
    assert to_timestamp("1970-01-01T00:01:00Z") == 60.0
    assert to_timestamp("1970-01-01 01:00:00+01:00") == 0.0
    assert to_timestamp(12) == 12.0
    assert to_timestamp("12.5") == 12.5
    with pytest.raises(ValueError):
        to_timestamp(float("nan"))


def test_ivf_kinds_train_on_the_data_and_persist(tmp_path, rng):
    centres = normalised(rng, 16, 16)
    labels = rng.integers(0, 16, size=1200)
    gallery = centres[labels] + 0.15 * rng.standard_normal((1200, 16)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    queries = gallery[:50] + 0.05 * rng.standard_normal((50, 16)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    with Index.create(tmp_path / "exact", dim=16, fingerprint="m") as exact:
        exact.add(gallery, make_items(1200), fingerprint="m")
        truth = [[h.id for h in hits] for hits in exact.search(queries, fingerprint="m", top_k=10)]
    # IVF with every list probed is exact
    with Index.create(tmp_path / "ivf", dim=16, fingerprint="m", kind="ivf", nlist=8, nprobe=8) as ivf:
        ivf.add(gallery[:100], make_items(100), fingerprint="m")
        assert ivf.info()["trained_nlist"] is None  # 100 < 39 * 8: still exact flat
        ivf.add(gallery[100:], make_items(1200)[100:], fingerprint="m")
        assert ivf.info()["structure"] == "ivf"
        assert [[h.id for h in hits] for hits in ivf.search(queries, fingerprint="m", top_k=10)] == truth
    # automatic nprobe: max(16, 8 / 64) capped at the 8 lists = all of them, exact; nprobe=1 is not
    for nprobe, name in ((None, "auto"), (1, "one")):
        with Index.create(
            tmp_path / name, dim=16, fingerprint="m", kind="ivf", nlist=8, nprobe=nprobe
        ) as ivf:
            ivf.add(gallery, make_items(1200), fingerprint="m")
            assert (ivf.info()["nprobe"], ivf.info()["search_nprobe"]) == (nprobe, nprobe or 8)
            found = [[h.id for h in hits] for hits in ivf.search(queries, fingerprint="m", top_k=10)]
            assert (found == truth) == (nprobe is None)
    with Index.create(
        tmp_path / "pq", dim=16, fingerprint="m", kind="ivfpq", nlist=8, pq_m=8, pq_bits=4, nprobe=4
    ) as pq:
        pq.add(gallery, make_items(1200), fingerprint="m")
        info = pq.info()
        assert (info["structure"], info["trained_nlist"]) == ("ivfpq", 8)
        pq_hits = pq.search(queries, fingerprint="m", top_k=10)
        approximate = [[h.id for h in hits] for hits in pq_hits]
        for query, hits in zip(queries, pq_hits, strict=True):  # re-ranked with the stored vectors: exact
            exact = [1.0 - float(np.dot(gallery[h.id - 1].astype(np.float64), query)) for h in hits]
            np.testing.assert_allclose([h.distance for h in hits], exact, atol=1e-5)
            assert exact == sorted(exact)
        camera_hits = pq.search(queries, fingerprint="m", top_k=10, camera="cam1")
    recall = np.mean([len(set(a) & set(t)) / 10 for a, t in zip(approximate, truth, strict=True)])
    assert recall > 0.8
    with Index.create(
        tmp_path / "pq1",
        dim=16,
        fingerprint="m",
        kind="ivfpq",
        nlist=8,
        pq_m=8,
        pq_bits=4,
        nprobe=4,
        refine=1,
    ) as pq1:
        pq1.add(gallery, make_items(1200), fingerprint="m")
        coarse = [[h.id for h in hits] for hits in pq1.search(queries, fingerprint="m", top_k=10)]
    assert np.mean([len(set(a) & set(t)) / 10 for a, t in zip(coarse, truth, strict=True)]) < recall
    assert all(h.item.camera == "cam1" for hits in camera_hits for h in hits)
    with Index.open(tmp_path / "pq") as pq:
        assert pq.info()["structure"] == "ivfpq"
        assert [[h.id for h in hits] for hits in pq.search(queries, fingerprint="m", top_k=10)] == approximate
        os.unlink(next(tmp_path.joinpath("pq").glob("vectors-*.faiss")))
    with Index.open(tmp_path / "pq") as pq:  # the FAISS file is a cache: rebuilt (and retrained) from SQLite
        assert [[h.id for h in hits] for hits in pq.search(queries, fingerprint="m", top_k=10)] == approximate


def test_rebuild_trains_small_ivf_and_keeps_results(tmp_path, rng):
    gallery = normalised(rng, 300, 8)
    with Index.create(tmp_path / "index", dim=8, fingerprint="m", kind="ivf", nlist=20, nprobe=20) as index:
        index.add(gallery, make_items(300), fingerprint="m")
        before = [h.id for h in index.search(gallery[5], fingerprint="m", top_k=20)[0]]
        assert index.info()["structure"] == "flat"  # 300 < 39 * 20: not trained yet, exact
    with Index.open(tmp_path / "index") as index:
        index.rebuild()  # trains on what there is
        assert (index.info()["structure"], index.info()["trained_nlist"]) == ("ivf", 20)
        assert [h.id for h in index.search(gallery[5], fingerprint="m", top_k=20)[0]] == before
    with Index.open(tmp_path / "index") as index:
        assert index.info()["structure"] == "ivf"
        assert [h.id for h in index.search(gallery[5], fingerprint="m", top_k=20)[0]] == before


def test_reader_snapshot_is_isolated_from_writer(tmp_path, rng):
    gallery = normalised(rng, 30, 8)
    with Index.create(tmp_path / "index", dim=8, fingerprint="m") as writer:
        ids = writer.add(gallery[:20], make_items(20), fingerprint="m")
        reader = Index.open(tmp_path / "index", readonly=True)
        writer.delete([int(ids[0])])
        writer.add(gallery[20:], make_items(10), fingerprint="m")
        hits = reader.search(gallery[0], fingerprint="m", top_k=30)[0]
        assert len(reader) == 20 and len(hits) == 20
        assert (
            hits[0].id == int(ids[0]) and hits[0].item.path == "img_0.jpg"
        )  # deleted later, still in snapshot
        reader.refresh()
        assert len(reader) == 29
        assert int(ids[0]) not in {h.id for h in reader.search(gallery[0], fingerprint="m", top_k=30)[0]}
        reader.close()


def test_threads_never_see_half_a_write(tmp_path, rng):
    batches = [normalised(rng, 25, 8) for _ in range(12)]
    index = Index.create(tmp_path / "index", dim=8, fingerprint="m")
    errors: list[str] = []
    done = threading.Event()

    def write() -> None:
        for number, batch in enumerate(batches):
            index.add(batch, [{"path": f"{number}-{n}", "pid": number} for n in range(25)], fingerprint="m")
        done.set()

    def read() -> None:
        while not done.is_set():
            hits = index.search(batches[0][0], fingerprint="m", top_k=1000)[0]
            pids = [h.item.pid for h in hits]
            counts = {pid: pids.count(pid) for pid in set(pids)}
            if any(count != 25 for count in counts.values()) or sorted(counts) != list(range(len(counts))):
                errors.append(f"partial batches visible: {counts}")

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors[:3]
    assert len(index) == 300
    index.close()


_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    import reidkit.index as index_module
    from reidkit._io import atomic_write

    directory, mode, ready = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    if mode == "stall-faiss-write":
        def stalled(path, data):
            def write_half(stream):
                stream.write(data[: len(data) // 2])
                stream.flush()
                ready.write_text("writing")
                time.sleep(600)
            atomic_write(path, write_half)
        index_module.atomic_write_bytes = stalled
    index = index_module.Index.open(directory)
    rng = np.random.default_rng(1)
    for batch in range(1000):
        vectors = rng.standard_normal((3000, 16)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        index.add(vectors, [{"path": f"{batch}-{n}", "pid": batch} for n in range(3000)], fingerprint="m")
        ready.write_text(str(batch))
    """
)


_IMAGE_WRITER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import numpy as np
    from reidkit.index import Index, index_images

    directory, stall_at, ready, paths = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:]

    class MeanColour:  # stalls for ever when asked for chunk ``stall_at`` (the chunks before it are committed)
        name, fingerprint, dim, chunks = "mean-colour", "mean-colour-v1", 4, 0

        def embed_images(self, images):
            if self.chunks == stall_at:
                ready.write_text("stalled")
                time.sleep(600)
            self.chunks += 1
            rows = [np.append(np.asarray(i.convert("RGB"), np.float32).mean(axis=(0, 1)) / 255, 0.1) for i in images]
            rows = np.asarray(rows, np.float32)
            return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    with Index.open(directory) as index:
        done = index_images(index, MeanColour(), paths, batch_size=4)
    print(json.dumps({"added": done.added, "skipped": done.skipped}))
    """
)


def _start_writer(
    directory: Path, mode: str, ready: Path, *, script: str = _WRITER, args: list[str] | None = None, **popen
) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-c", script, str(directory), mode, str(ready), *(args or [])]
    return subprocess.Popen(command, env=env, **popen)


def _check_consistent(directory: Path, initial: np.ndarray) -> int:
    with Index.open(directory) as index:
        count = len(index)
        assert count == 50 + 3000 * ((count - 50) // 3000)  # whole batches only
        hits = index.search(initial[:5], fingerprint="m", top_k=1)
        assert [h[0].item.path for h in hits] == [f"base-{n}" for n in range(5)]
        assert all(h[0].distance < 1e-5 for h in hits)
        pids = [h.item.pid for h in index.search(initial[0], fingerprint="m", top_k=count)[0]]
        assert len(pids) == count
        return count


@pytest.mark.parametrize("delay", [0.0, 0.4, 1.2])
def test_writer_killed_at_random_moment_leaves_index_usable(tmp_path, rng, delay):
    directory = tmp_path / "index"
    initial = normalised(rng, 50, 16)
    with Index.create(directory, dim=16, fingerprint="m") as index:
        index.add(initial, [{"path": f"base-{n}"} for n in range(50)], fingerprint="m")
    ready = tmp_path / "ready"
    writer = _start_writer(directory, "loop", ready)
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline and delay > 0:
        time.sleep(0.01)
    time.sleep(delay)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    _check_consistent(directory, initial)


def test_writer_killed_while_writing_faiss_file(tmp_path, rng):
    directory = tmp_path / "index"
    initial = normalised(rng, 50, 16)
    with Index.create(directory, dim=16, fingerprint="m") as index:
        index.add(initial, [{"path": f"base-{n}"} for n in range(50)], fingerprint="m")
    ready = tmp_path / "ready"
    writer = _start_writer(directory, "stall-faiss-write", ready)
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ready.exists(), "the writer never reached the FAISS write"
    assert any(p.name.endswith(".tmp") for p in directory.iterdir())  # a half-written file is on disk
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    # the SQLite transaction committed before the FAISS file was written: the new batch is there, and the
    # stale FAISS file of the previous version is not used (the structure is rebuilt from the database)
    assert _check_consistent(directory, initial) == 3050


def test_killed_image_add_rerun_adds_the_rest_without_duplicates(tmp_path):
    from PIL import Image

    paths = []
    for n in range(30):
        paths.append(str(tmp_path / f"{n:02d}.png"))
        Image.new("RGB", (6, 12), (10 + 5 * n, 200 - 4 * n, 100)).save(paths[-1])
    directory, ready = tmp_path / "index", tmp_path / "ready"
    Index.create(directory, dim=4, fingerprint="mean-colour-v1").close()
    writer = _start_writer(directory, "3", ready, script=_IMAGE_WRITER, args=paths)  # 3 chunks of 4 commit
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ready.exists(), "the writer never reached its fourth chunk"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    with Index.open(directory, readonly=True) as index:
        assert len(index) == 12
    rerun = _start_writer(
        directory, "-1", ready, script=_IMAGE_WRITER, args=paths, stdout=subprocess.PIPE, text=True
    )
    output, _ = rerun.communicate(timeout=120)
    assert rerun.returncode == 0
    assert json.loads(output.strip().splitlines()[-1]) == {"added": 18, "skipped": 12}
    with Index.open(directory, readonly=True) as index:
        ids = index.ids()
        stored = [index.get(int(i)).path for i in ids]
        assert sorted(stored) == sorted(str(Path(p).resolve()) for p in paths)  # each image once
        hits = index.search(index.vectors(ids[:5]), fingerprint="mean-colour-v1", top_k=2)
        for item_id, (first, second) in zip(ids[:5], hits, strict=True):
            assert first.id == item_id and second.item.path != first.item.path
