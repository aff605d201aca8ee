from __future__ import annotations

import numpy as np
import pytest
import torch

from kreciprocal_reference import jaccard, transcribed_encoding
from reidkit.distance import SquaredRowDistance, pairwise_distance
from reidkit.metrics import evaluate
from reidkit.rerank import (
    _exhaustive_search,
    k_reciprocal,
    k_reciprocal_fast,
    query_expansion,
    rerank_candidates,
)


def transcribed_rerank(q_g, q_q, g_g, k1, k2, lambda_value):
    """The published algorithm, step by step, with plain loops over items (Zhong et al., CVPR 2017, Sec. 3)."""
    num_query = q_g.shape[0]
    original = np.block([[q_q, q_g], [q_g.T, g_g]]).astype(np.float64) ** 2
    count = original.shape[0]
    encoding, _ = transcribed_encoding(original, k1, k2)
    final = np.zeros((num_query, count - num_query))
    for i in range(num_query):
        for j in range(num_query, count):
            distance = jaccard(encoding[i], encoding[j])
            final[i, j - num_query] = (1 - lambda_value) * distance + lambda_value * original[i, j]
    return final


def feature_case(seed, num_query, num_gallery, dim=16, ids=6, noise=0.7, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(ids, dim, generator=generator, dtype=dtype)
    q_pids = torch.arange(num_query) % ids
    g_pids = torch.randint(0, ids, (num_gallery,), generator=generator)
    qf = centres[q_pids] + noise * torch.randn(num_query, dim, generator=generator, dtype=dtype)
    gf = centres[g_pids] + noise * torch.randn(num_gallery, dim, generator=generator, dtype=dtype)
    return qf, gf, q_pids.numpy(), g_pids.numpy()


def matrices(qf, gf, metric="euclidean"):
    return (
        pairwise_distance(qf, gf, metric).numpy(),
        pairwise_distance(qf, qf, metric).numpy(),
        pairwise_distance(gf, gf, metric).numpy(),
    )


@pytest.mark.parametrize(("k1", "k2", "lambda_value"), [(20, 6, 0.3), (5, 3, 0.3), (7, 1, 0.0), (3, 2, 1.0)])
def test_exact_mode_equals_the_transcription(k1, k2, lambda_value):
    for seed in range(2):
        qf, gf, _, _ = feature_case(seed, 9, 45)
        q_g, q_q, g_g = matrices(qf, gf)
        expected = transcribed_rerank(q_g, q_q, g_g, k1, k2, lambda_value)
        result = k_reciprocal(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=lambda_value)
        assert result.shape == (9, 45)
        np.testing.assert_allclose(result, expected, atol=1e-4, rtol=0)


def test_exact_mode_cosine_and_float32_inputs():
    qf, gf, _, _ = feature_case(3, 7, 30)
    q_g, q_q, g_g = matrices(qf, gf, "cosine")
    expected = transcribed_rerank(q_g, q_q, g_g, 6, 3, 0.3)
    result = k_reciprocal(*(torch.from_numpy(m).float() for m in (q_g, q_q, g_g)), k1=6, k2=3)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, expected, atol=1e-4, rtol=0)


def test_exact_mode_pulls_a_shared_neighbourhood_together():
    # gallery item 1 is as far from the query as item 2 in the original distance, but shares its neighbours:
    # re-ranking must put it first
    points = np.array([[0.0], [1.0], [-1.0], [0.2], [0.9], [1.1], [5.0], [5.2]])
    qf, gf = torch.tensor(points[:1]), torch.tensor(points[1:])
    q_g, q_q, g_g = matrices(qf, gf)
    assert q_g[0, 0] == pytest.approx(q_g[0, 1])
    result = k_reciprocal(q_g, q_q, g_g, k1=3, k2=1, lambda_value=0.3)
    assert result[0, 0] < result[0, 1]


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_fast_mode_with_exhaustive_search_equals_the_exact_mode(metric):
    qf, gf, _, _ = feature_case(4, 12, 70, dim=24)
    q_g, q_q, g_g = matrices(qf, gf, metric)
    exact = k_reciprocal(q_g, q_q, g_g, k1=10, k2=4)
    fast = k_reciprocal_fast(qf, gf, k1=10, k2=4, metric=metric, chunk_size=16)
    assert fast.shape == (12, 70) and fast.dtype == np.float32
    np.testing.assert_allclose(fast, exact, atol=1e-4, rtol=0)


def test_fast_mode_keeps_the_exact_ordering_on_well_separated_data():
    qf, gf, q_pids, g_pids = feature_case(5, 24, 240, dim=64, ids=12, noise=0.15)
    q_camids, g_camids = np.zeros(24, dtype=int), np.ones(240, dtype=int)
    exact = k_reciprocal(*matrices(qf, gf), k1=20, k2=6)
    fast = k_reciprocal_fast(qf, gf, k1=20, k2=6, chunk_size=64)
    # every query: the same gallery items in front (its identity), the same order among them
    for row in range(24):
        size = int((g_pids == q_pids[row]).sum())
        exact_front = np.argsort(exact[row], kind="stable")[:size]
        fast_front = np.argsort(fast[row], kind="stable")[:size]
        np.testing.assert_array_equal(fast_front, exact_front)
    exact_metrics = evaluate(exact, q_pids, g_pids, q_camids, g_camids)
    fast_metrics = evaluate(fast, q_pids, g_pids, q_camids, g_camids)
    assert exact_metrics.mAP == pytest.approx(1.0)
    assert fast_metrics.mAP == pytest.approx(exact_metrics.mAP, abs=1e-9)


def brute_force_neighbours(features, num_candidates):
    """Squared distances by exact integer arithmetic, then a stable sort of every row."""
    points = features.numpy().astype(np.int64)
    squared = ((points[:, None, :] - points[None, :, :]) ** 2).sum(axis=2)
    order = np.argsort(squared, axis=1, kind="stable")[:, :num_candidates]
    return order, np.take_along_axis(squared, order, axis=1), squared


@pytest.mark.parametrize(("chunk_size", "num_candidates"), [(1, 5), (7, 9), (16, 12), (64, 40)])
def test_neighbour_search_equals_a_brute_force_stable_sort_with_ties(chunk_size, num_candidates):
    # small integer coordinates: every distance is exact whatever the block shapes, and ties are everywhere
    # (duplicated items, items at equal distances), so the lists must break them by index like a stable sort
    generator = torch.Generator().manual_seed(11)
    features = torch.randint(-2, 3, (45, 3), generator=generator, dtype=torch.int64).double()
    features[30:35] = features[3]  # exact duplicates
    num_query = 8
    expected_index, expected_distance, squared = brute_force_neighbours(features, num_candidates)
    out = np.empty((num_query, 45 - num_query), dtype=np.float32)
    index, distance, row_max = _exhaustive_search(
        SquaredRowDistance(features, "euclidean"), num_candidates, chunk_size, num_query, out
    )
    np.testing.assert_array_equal(index.numpy(), expected_index)
    np.testing.assert_array_equal(distance.numpy(), expected_distance)
    np.testing.assert_array_equal(row_max.numpy(), squared.max(axis=1))
    np.testing.assert_array_equal(out, squared[:num_query, num_query:])
    # the ties really are there: some row's list is cut inside a group of equal distances
    cut_in_ties = squared.shape[1] - (squared > expected_distance[:, -1:]).sum(axis=1) > num_candidates
    assert cut_in_ties.any()


def test_neighbour_search_on_float_features_equals_the_full_matrix():
    qf, gf, _, _ = feature_case(8, 20, 150, dim=32, ids=10, noise=0.6, dtype=torch.float32)
    features = torch.cat([qf, gf])
    full = pairwise_distance(features.double(), features.double()).numpy() ** 2
    out = np.empty((20, 150), dtype=np.float32)
    index, distance, row_max = _exhaustive_search(SquaredRowDistance(features, "euclidean"), 21, 32, 20, out)
    expected = np.argsort(full, axis=1, kind="stable")[:, :21]
    # float32 products may swap items whose distances differ by rounding only; the distances must agree
    np.testing.assert_allclose(distance.numpy(), np.take_along_axis(full, expected, axis=1), atol=1e-4)
    assert (index.numpy() == expected).mean() > 0.99
    np.testing.assert_allclose(row_max.numpy(), full.max(axis=1), rtol=1e-5)
    np.testing.assert_allclose(out, full[:20, 20:], atol=1e-4)


def test_fast_mode_equals_the_exact_mode_with_tied_neighbours():
    # duplicated gallery items tie exactly in every distance: both modes must break the ties the same way
    generator = torch.Generator().manual_seed(12)
    gf = torch.randint(-3, 4, (40, 4), generator=generator, dtype=torch.int64).double()
    gf[20:30] = gf[:10]
    qf = torch.randint(-3, 4, (6, 4), generator=generator, dtype=torch.int64).double()
    exact = k_reciprocal(*matrices(qf, gf), k1=6, k2=3)
    fast = k_reciprocal_fast(qf, gf, k1=6, k2=3, chunk_size=5)
    np.testing.assert_allclose(fast, exact, atol=1e-5, rtol=0)


def test_rerank_bad_inputs():
    qf, gf, _, _ = feature_case(7, 4, 10)
    q_g, q_q, g_g = matrices(qf, gf)
    with pytest.raises(ValueError, match="q_q, g_g: expected shapes"):
        k_reciprocal(q_g, q_q[:3, :3], g_g)
    with pytest.raises(ValueError, match="k1"):
        k_reciprocal(q_g, q_q, g_g, k1=0)
    with pytest.raises(ValueError, match="lambda_value"):
        k_reciprocal(q_g, q_q, g_g, lambda_value=1.5)
    with pytest.raises(ValueError, match="at most 13 neighbours"):
        k_reciprocal(q_g, q_q, g_g, k1=20)
    with pytest.raises(ValueError, match="q_g: contains NaN"):
        k_reciprocal(np.full_like(q_g, np.nan), q_q, g_g, k1=3)
    with pytest.raises(ValueError, match="qf, gf"):
        k_reciprocal_fast(qf, gf[:, :3], k1=3)
    with pytest.raises(KeyError, match="unknown distance metric"):
        k_reciprocal_fast(qf, gf, k1=3, metric="manhattan")


def test_query_expansion_on_a_hand_computed_case():
    qf = np.array([[1.0, 0.0]])
    gf = np.array([[0.0, 2.0], [3.0, 3.0], [1.0, 0.0]])  # cosines with the query: 0, 0.707, 1
    new_q, new_g = query_expansion(qf, gf, top_k=2, alpha=3.0, expand_gallery=False)
    weight = (1 / np.sqrt(2)) ** 3
    expected = np.array([1.0, 0.0]) + 1.0 * np.array([1.0, 0.0]) + weight * np.array([1.0, 1.0]) / np.sqrt(2)
    np.testing.assert_allclose(new_q, [expected / np.linalg.norm(expected)], atol=1e-6)
    np.testing.assert_allclose(new_g, gf / np.linalg.norm(gf, axis=1, keepdims=True), atol=1e-6)
    # alpha = 0: average query expansion, every neighbour with weight 1
    average, _ = query_expansion(qf, gf, top_k=2, alpha=0.0, expand_gallery=False)
    mean = np.array([2.0, 0.0]) + np.array([1.0, 1.0]) / np.sqrt(2)
    np.testing.assert_allclose(average, [mean / np.linalg.norm(mean)], atol=1e-6)
    # top_k = 0: only normalisation
    plain, _ = query_expansion(np.array([[3.0, 4.0]]), gf, top_k=0)
    np.testing.assert_allclose(plain, [[0.6, 0.8]], atol=1e-6)


def test_query_expansion_of_the_gallery_never_uses_the_item_itself():
    gf = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    _, new_g = query_expansion(torch.tensor([[1.0, 0.0]]), gf, top_k=1, alpha=1.0)
    assert isinstance(new_g, torch.Tensor)
    # item 0's nearest other item is item 1 (identical); item 2's is at cosine 0 (weight 0)
    np.testing.assert_allclose(new_g.numpy(), [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], atol=1e-6)
    with pytest.raises(ValueError, match="top_k"):
        query_expansion(gf, gf, top_k=-1)
    with pytest.raises(ValueError, match="alpha"):
        query_expansion(gf, gf, alpha=-1.0)


def test_query_expansion_helps_noisy_queries():
    qf, gf, q_pids, g_pids = feature_case(8, 40, 300, dim=32, ids=10, noise=1.2, dtype=torch.float32)
    q_camids, g_camids = np.zeros(40, dtype=int), np.ones(300, dtype=int)
    before = evaluate(pairwise_distance(qf, gf, "cosine"), q_pids, g_pids, q_camids, g_camids).mAP
    new_q, new_g = query_expansion(qf, gf, top_k=5, alpha=3.0)
    after = evaluate(pairwise_distance(new_q, new_g, "cosine"), q_pids, g_pids, q_camids, g_camids).mAP
    assert after > before


def numpy_euclidean(a, b):
    """The plain numpy formula a caller would write: sqrt(max(|a|^2 + |b|^2 - 2 a.b, 0))."""
    return np.sqrt(np.clip((a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T, 0, None))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("count", [3, 4, 12, 40])
def test_rerank_candidates_equals_k_reciprocal_on_the_three_matrices(metric, count):
    qf, gf, _, _ = feature_case(9 + count, 1, count, dtype=torch.float32)
    query, candidates = qf.numpy(), gf.numpy()
    result = rerank_candidates(query, candidates, metric=metric)
    k1 = min(20, count - 1)
    expected = k_reciprocal(*matrices(qf, gf, metric), k1=k1, k2=min(6, k1), lambda_value=0.3)[0]
    assert result.shape == (count,) and result.dtype == np.float32
    np.testing.assert_array_equal(result, expected)
    # other parameters pass through, capped by the candidate set the same way
    result = rerank_candidates(query[0], candidates, k1=5, k2=8, lambda_value=0.5, metric=metric)
    k1 = min(5, count - 1)
    expected = k_reciprocal(*matrices(qf, gf, metric), k1=k1, k2=k1, lambda_value=0.5)[0]
    np.testing.assert_array_equal(result, expected)


def test_rerank_candidates_matches_the_plain_numpy_euclidean_path():
    qf, gf, _, _ = feature_case(21, 1, 30, dim=32, dtype=torch.float32)
    query, candidates = qf.numpy(), gf.numpy()
    by_hand = k_reciprocal(
        numpy_euclidean(query, candidates),
        numpy_euclidean(query, query),
        numpy_euclidean(candidates, candidates),
        k1=20,
        k2=6,
    )[0]
    result = rerank_candidates(query, candidates)
    np.testing.assert_allclose(result, by_hand, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(
        np.argsort(result, kind="stable")[:10], np.argsort(by_hand, kind="stable")[:10]
    )


def test_rerank_candidates_with_fewer_than_three_returns_the_plain_distances():
    query = np.array([[0.0, 0.0]], dtype=np.float32)
    candidates = np.array([[3.0, 4.0], [1.0, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(rerank_candidates(query, candidates), [5.0, 1.0])
    np.testing.assert_allclose(rerank_candidates(query, candidates[:1], metric="sqeuclidean"), [25.0])
    assert rerank_candidates(query, candidates[:0]).shape == (0,)


def test_rerank_candidates_bad_inputs():
    candidates = np.zeros((5, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"query: expected one \[1, D\] feature, got shape \(2, 3\)"):
        rerank_candidates(np.zeros((2, 3)), candidates)
    with pytest.raises(ValueError, match=r"candidates: expected \[C, 4\] features like the query"):
        rerank_candidates(np.zeros((1, 4)), candidates)
    with pytest.raises(ValueError, match="k1"):
        rerank_candidates(np.zeros((1, 3)), candidates, k1=0)
    with pytest.raises(ValueError, match="lambda_value"):
        rerank_candidates(np.zeros((1, 3)), candidates, lambda_value=2.0)
    with pytest.raises(KeyError, match="unknown distance metric"):
        rerank_candidates(np.zeros((1, 3)), candidates, metric="l1")
