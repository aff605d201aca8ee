"""The certified bfloat16 neighbour search of the fast re-ranking against the float32 distances it certifies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reidkit.distance import SquaredRowDistance, pairwise_distance
from reidkit.precision import cpu_has_amx, cpu_has_bf16
from reidkit.rerank import _exhaustive_search, k_reciprocal, k_reciprocal_fast, kreciprocal_encoding
from reidkit.rerank._candidates import _certified_search, _dot_errors, _ErrorBounds


def float32_lists(space: SquaredRowDistance, width: int):
    """The reference: every pair's float32 distance (``pairs``), then a stable sort of every row."""
    count = len(space)
    rows, cols = torch.meshgrid(torch.arange(count), torch.arange(count), indexing="ij")
    full = space.pairs(rows.reshape(-1), cols.reshape(-1)).reshape(count, count).numpy()
    order = np.argsort(full, axis=1, kind="stable")[:, :width]
    return order, np.take_along_axis(full, order, axis=1), full


def search(
    features: torch.Tensor, width: int, metric: str = "euclidean", num_query: int = 0, chunk_size: int = 16
):
    space = SquaredRowDistance(features, metric)
    out = np.empty((num_query, len(space) - num_query), dtype=np.float32)
    statistics: dict = {}
    index, distance, row_max = _certified_search(
        space, 2 * width + 8, chunk_size, num_query, out, width, statistics
    )
    return space, index.numpy(), distance.numpy(), row_max.numpy(), out, statistics


def clustered(seed: int, count: int, dim: int, ids: int, noise: float, normalise: bool = False):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(ids, dim, generator=generator)
    features = centres[torch.randint(0, ids, (count,), generator=generator)]
    features = features + noise * torch.randn(count, dim, generator=generator)
    return torch.nn.functional.normalize(features, dim=1) if normalise else features


@pytest.mark.parametrize(
    ("metric", "normalise", "chunk_size"),
    [("euclidean", True, 16), ("euclidean", False, 7), ("cosine", False, 64), ("cosine", True, 200)],
)
def test_lists_are_those_of_the_float32_distances(metric, normalise, chunk_size):
    for seed in range(3):
        features = clustered(seed, 180, 64, 12, 0.6, normalise)
        space, index, distance, row_max, out, _ = search(features, 11, metric, 30, chunk_size)
        expected_index, expected_distance, full = float32_lists(space, 11)
        np.testing.assert_array_equal(index[:, :11], expected_index)
        np.testing.assert_array_equal(distance[:, :11], expected_distance)
        listed = index >= 0  # the rest of each list: exact float32 distances of the listed pairs
        np.testing.assert_array_equal(distance[listed], full[np.nonzero(listed)[0], index[listed]])
        np.testing.assert_allclose(row_max, full.max(axis=1), rtol=1e-5)
        np.testing.assert_allclose(out, full[:30, 30:], rtol=1e-5, atol=1e-5)


def test_lists_equal_the_float32_search():
    features = clustered(3, 300, 48, 15, 0.5)
    space, index, _, row_max, out, statistics = search(features, 21, num_query=40)
    expected_out = np.empty_like(out)
    expected_index, _, expected_max = _exhaustive_search(space, 42, 64, 40, expected_out)
    np.testing.assert_array_equal(index[:, :21], expected_index[:, :21].numpy())
    np.testing.assert_allclose(row_max, expected_max.numpy(), rtol=1e-6)
    np.testing.assert_allclose(out, expected_out, rtol=1e-6, atol=1e-6)
    assert statistics["rows"] == 300 and statistics["rescored_pairs"] >= 300 * 21


def test_exact_ties_and_duplicates_break_by_index():
    # small integers: bfloat16 holds them exactly, every distance is exact, ties are everywhere
    generator = torch.Generator().manual_seed(11)
    features = torch.randint(-2, 3, (60, 3), generator=generator).float()
    features[40:48] = features[3]  # exact duplicates
    _, index, distance, row_max, _, _ = search(features, 9, num_query=10, chunk_size=7)
    points = features.numpy().astype(np.int64)
    squared = ((points[:, None, :] - points[None, :, :]) ** 2).sum(axis=2)
    expected = np.argsort(squared, axis=1, kind="stable")[:, :9]
    np.testing.assert_array_equal(index[:, :9], expected)
    np.testing.assert_array_equal(distance[:, :9], np.take_along_axis(squared, expected, axis=1))
    np.testing.assert_array_equal(row_max, squared.max(axis=1))


def test_near_ties_beyond_bfloat16_fall_back_to_float32():
    # 70 items within 1e-3 of one point: float32 separates them, bfloat16 (8 significant bits) cannot, so their
    # lists cannot be certified from the approximation and must be recomputed
    generator = torch.Generator().manual_seed(5)
    centre = torch.randn(32, generator=generator)
    near = centre + 1e-3 * torch.randn(70, 32, generator=generator)
    far = 3.0 * torch.randn(50, 32, generator=generator)
    features = torch.cat([far[:10], near, far[10:]])
    space, index, distance, _, _, statistics = search(features, 6, num_query=10)
    expected_index, expected_distance, _ = float32_lists(space, 6)
    assert statistics["fallback_rows"] >= 60
    np.testing.assert_array_equal(index[:, :6], expected_index)
    np.testing.assert_array_equal(distance[:, :6], expected_distance)


@pytest.mark.parametrize("width", [25, 29, 30])
def test_neighbourhoods_close_to_the_number_of_items(width):
    features = clustered(8, 30, 16, 3, 0.8)
    space, index, distance, row_max, _, _ = search(features, width, num_query=6)
    expected_index, expected_distance, full = float32_lists(space, width)
    np.testing.assert_array_equal(index[:, :width], expected_index)
    np.testing.assert_array_equal(distance[:, :width], expected_distance)
    np.testing.assert_allclose(row_max, full.max(axis=1), rtol=1e-5)


@pytest.mark.parametrize(
    ("metric", "normalise"), [("euclidean", False), ("euclidean", True), ("cosine", False)]
)
def test_error_bounds_contain_the_float32_distances(metric, normalise):
    features = clustered(9, 200, 96, 8, 0.4, normalise) * (3.0 if not normalise else 1.0)
    space = SquaredRowDistance(features, metric)
    low = space.features.bfloat16()
    largest = float(low.double().norm(dim=1).max()) ** 2 * (1.0 + 2.0**-7)
    bounds = _ErrorBounds(space, _dot_errors(space, low), 2.0**-8, largest)
    rows = torch.arange(200)
    approx = space.from_products((low @ low.t()).float(), rows, slice(None))
    _, _, full = float32_lists(space, 1)
    assert (bounds.lower(approx, rows).numpy() <= full).all()
    assert (full <= bounds.upper(approx, rows).numpy()).all()
    exact_bounds = _ErrorBounds(space, _dot_errors(space, None), 0.0)
    block = space.block(slice(None), slice(None))
    assert (exact_bounds.lower(block, rows).numpy() <= full).all()
    assert (full <= exact_bounds.upper(block, rows).numpy()).all()


def test_row_pairs_equal_pairs_bit_for_bit():
    features = clustered(2, 50, 2048, 5, 1.0)
    space = SquaredRowDistance(features)
    rows = torch.tensor([3, 7, 7, 20])
    cols = torch.randint(0, 50, (4, 9), generator=torch.Generator().manual_seed(1))
    expected = space.pairs(rows.repeat_interleave(9), cols.reshape(-1)).reshape(4, 9)
    assert torch.equal(space.row_pairs(rows, cols), expected)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_fast_mode_bfloat16_search_equals_float32_search_and_exact_mode(metric):
    features = clustered(4, 110, 40, 8, 0.7)
    qf, gf = features[:20], features[20:]
    statistics: dict = {}
    fast = k_reciprocal_fast(qf, gf, k1=10, k2=4, metric=metric, search="bfloat16", statistics=statistics)
    reference = k_reciprocal_fast(qf, gf, k1=10, k2=4, metric=metric, search="float32")
    exact = k_reciprocal(
        *(
            pairwise_distance(a.double(), b.double(), metric).numpy()
            for a, b in ((qf, gf), (qf, qf), (gf, gf))
        ),
        k1=10,
        k2=4,
    )
    assert statistics["search"] == "bfloat16" and statistics["rows"] == 110
    np.testing.assert_allclose(fast, reference, atol=1e-6, rtol=0)
    np.testing.assert_allclose(fast, exact, atol=1e-4, rtol=0)


def test_encoding_with_bfloat16_search_equals_float32_search():
    features = clustered(6, 90, 24, 6, 0.6)
    fast = kreciprocal_encoding(features, k1=8, k2=3, search="bfloat16")
    reference = kreciprocal_encoding(features, k1=8, k2=3, search="float32")
    np.testing.assert_array_equal(fast.indices, reference.indices)
    np.testing.assert_allclose(fast.toarray(), reference.toarray(), atol=1e-7)


def test_search_bad_inputs():
    features = clustered(1, 20, 8, 2, 0.5)
    with pytest.raises(ValueError, match="search"):
        k_reciprocal_fast(features[:5], features[5:], k1=3, search="int8")
    with pytest.raises(ValueError, match="search"):
        kreciprocal_encoding(features, k1=3, search="half")
    with pytest.raises(ValueError, match="float32"):
        kreciprocal_encoding(features.double(), k1=3, search="bfloat16")
    statistics: dict = {}
    k_reciprocal_fast(features[:5], features[5:], k1=3, search="float32", statistics=statistics)
    assert statistics == {"search": "float32"}


def test_auto_search_picks_bfloat16_for_float32_features_on_an_amx_cpu(monkeypatch):
    import reidkit.rerank.fast as fast

    features = clustered(7, 40, 8, 3, 0.5)
    statistics: dict = {}
    k_reciprocal_fast(features[:8], features[8:].double(), k1=4, k2=2, statistics=statistics)
    assert statistics["search"] == ("bfloat16" if cpu_has_bf16() and cpu_has_amx() else "float32")
    for amx, expected in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(fast, "cpu_has_amx", lambda amx=amx: amx)
        monkeypatch.setattr(fast, "cpu_has_bf16", lambda: True)
        statistics = {}
        k_reciprocal_fast(features[:8], features[8:], k1=4, k2=2, statistics=statistics)
        assert statistics["search"] == expected
    auto = kreciprocal_encoding(features.double(), k1=4, k2=2)  # float64 features keep the float32 search
    reference = kreciprocal_encoding(features.double(), k1=4, k2=2, search="float32")
    assert (auto != reference).nnz == 0
