"""The FAISS side: exact re-scoring of compressed candidates, and scores as distances."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("faiss", reason="the index needs faiss-cpu: pip install 'reidkit[faiss]'")

from reidkit.index import Index  # noqa: E402
from reidkit.index.faiss_side import rerank_exact, to_distance  # noqa: E402


def _naive(
    query: np.ndarray, stored: dict[int, np.ndarray], candidates, metric: str
) -> list[tuple[float, int]]:
    """Reference: the score of every known candidate in a Python loop, best first."""
    rows = []
    for item_id in (int(c) for c in candidates if c in stored):
        vector = stored[item_id].astype(np.float64)
        if metric == "ip":
            rows.append((-float(vector @ query), item_id))
        else:
            rows.append((float(((vector - query) ** 2).sum()), item_id))
    return sorted(rows)


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_rerank_exact_matches_a_naive_loop(metric):
    rng = np.random.default_rng(3)
    stored = {item_id: rng.standard_normal(8).astype(np.float32) for item_id in range(1, 31)}
    queries = rng.standard_normal((4, 8)).astype(np.float32)
    # distinct candidates per query, as FAISS returns them; ids 31..39 are unknown and dropped
    labels = np.stack([rng.permutation(np.arange(1, 40))[:12] for _ in range(4)])
    labels[0, 5:] = -1
    scores, ranked = rerank_exact(queries, labels, stored, metric, k=6)
    for query, row_labels, row_scores, row_ranked in zip(queries, labels, scores, ranked, strict=True):
        expected = _naive(query.astype(np.float64), stored, row_labels, metric)[:6]
        kept = len(expected)
        assert row_ranked[:kept].tolist() == [item_id for _, item_id in expected]
        want = [-s for s, _ in expected] if metric == "ip" else [s for s, _ in expected]
        np.testing.assert_allclose(row_scores[:kept], want, rtol=1e-5, atol=1e-5)
        assert (row_ranked[kept:] == -1).all()
        assert np.isinf(row_scores[kept:]).all()


def test_squared_distance_of_a_duplicate_is_zero():
    vector = np.random.default_rng(0).standard_normal((1, 64)).astype(np.float32) * 100
    scores, ranked = rerank_exact(vector, np.array([[7]]), {7: vector[0]}, "l2", k=1)
    assert ranked.tolist() == [[7]] and scores[0, 0] == pytest.approx(0.0, abs=1e-6)


def test_to_distance():
    assert to_distance(0.25, "ip") == 0.75
    assert to_distance(2.25, "l2") == 1.5
    assert to_distance(-1e-7, "l2") == 0.0  # rounding below zero is clamped


def test_ivfpq_l2_returns_exact_euclidean_distances(tmp_path):
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((16, 16)).astype(np.float32)
    gallery = centres[rng.integers(0, 16, size=1200)] + 0.2 * rng.standard_normal((1200, 16)).astype(
        np.float32
    )
    queries = gallery[:20] + 0.05 * rng.standard_normal((20, 16)).astype(np.float32)
    with Index.create(
        tmp_path / "pq",
        dim=16,
        fingerprint="m",
        metric="l2",
        kind="ivfpq",
        nlist=8,
        pq_m=8,
        pq_bits=4,
        nprobe=4,
    ) as index:
        index.add(gallery, [{"path": str(n)} for n in range(1200)], fingerprint="m")
        assert index.info()["structure"] == "ivfpq"
        for query, hits in zip(queries, index.search(queries, fingerprint="m", top_k=10), strict=True):
            exact = [math.dist(gallery[h.id - 1].astype(np.float64), query.astype(np.float64)) for h in hits]
            np.testing.assert_allclose([h.distance for h in hits], exact, rtol=1e-5, atol=1e-5)
            assert exact == sorted(exact)
