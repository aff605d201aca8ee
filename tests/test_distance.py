from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from reidkit.distance import (
    METRICS,
    GalleryDistance,
    SquaredRowDistance,
    paired_distance,
    pairwise_distance,
    pairwise_distance_numpy,
)

DTYPES = [torch.float32, torch.float64]
TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-10}


def naive_distance(a: torch.Tensor, b: torch.Tensor, metric: str) -> float:
    """One distance from its definition, in float64 Python arithmetic."""
    a, b = a.double().tolist(), b.double().tolist()
    if metric == "cosine":
        dot = sum(x * y for x, y in zip(a, b, strict=True))
        return 1.0 - dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))
    squared = sum((x - y) ** 2 for x, y in zip(a, b, strict=True))
    return math.sqrt(squared) if metric == "euclidean" else squared


def naive_matrix(x: torch.Tensor, y: torch.Tensor, metric: str) -> torch.Tensor:
    return torch.tensor(
        [[naive_distance(x[i], y[j], metric) for j in range(len(y))] for i in range(len(x))],
        dtype=torch.float64,
    )


def features_with_duplicates(seed: int, num_query: int, num_gallery: int, dim: int, dtype: torch.dtype):
    generator = torch.Generator().manual_seed(seed)
    query = torch.randn(num_query, dim, generator=generator, dtype=dtype)
    gallery = torch.randn(num_gallery, dim, generator=generator, dtype=dtype)
    query[3] = query[1]  # duplicate rows inside the query
    gallery[5] = query[1]  # a query row repeated in the gallery
    gallery[7] = gallery[0]  # duplicate rows inside the gallery
    return query, gallery


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", METRICS)
def test_pairwise_distance_equals_a_naive_double_loop(metric, dtype):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(7, 5, generator=generator, dtype=dtype)
    y = torch.randn(9, 5, generator=generator, dtype=dtype)
    result = pairwise_distance(x, y, metric)
    assert result.shape == (7, 9) and result.dtype == dtype
    torch.testing.assert_close(
        result.double(), naive_matrix(x, y, metric), atol=TOLERANCE[dtype], rtol=TOLERANCE[dtype]
    )
    # y defaults to x
    torch.testing.assert_close(
        pairwise_distance(x, metric=metric).double(),
        naive_matrix(x, x, metric),
        atol=math.sqrt(TOLERANCE[dtype]) if metric == "euclidean" else TOLERANCE[dtype],  # sqrt(eps) at 0
        rtol=TOLERANCE[dtype],
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", METRICS)
def test_paired_distance_equals_a_naive_loop(metric, dtype):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(6, 4, generator=generator, dtype=dtype)
    y = torch.randn(6, 4, generator=generator, dtype=dtype)
    expected = torch.tensor([naive_distance(x[i], y[i], metric) for i in range(6)], dtype=torch.float64)
    torch.testing.assert_close(
        paired_distance(x, y, metric).double(), expected, atol=TOLERANCE[dtype], rtol=TOLERANCE[dtype]
    )


@pytest.mark.parametrize("metric", METRICS)
def test_batched_pairwise_distance_equals_one_matrix_per_batch(metric):
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(3, 4, 6, generator=generator, dtype=torch.float64)
    y = torch.randn(3, 5, 6, generator=generator, dtype=torch.float64)
    result = pairwise_distance(x, y, metric)
    assert result.shape == (3, 4, 5)
    for batch in range(3):
        torch.testing.assert_close(
            result[batch], naive_matrix(x[batch], y[batch], metric), atol=1e-10, rtol=0
        )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", METRICS)
def test_gallery_distance_is_bit_identical_to_pairwise_distance(metric, dtype):
    for seed, (num_query, num_gallery, dim) in enumerate([(11, 23, 3), (40, 90, 64), (9, 300, 512)]):
        query, gallery = features_with_duplicates(seed, num_query, num_gallery, dim, dtype)
        distance = GalleryDistance(gallery, metric)
        assert len(distance) == num_gallery
        for chunk in (1, 4, num_query):
            for start in range(0, num_query, chunk):
                block = query[start : start + chunk]
                result = distance(block)
                assert torch.equal(result, pairwise_distance(block, gallery, metric))
        # the duplicated rows really give equal rows, and a query's copy in the gallery is its nearest item
        whole = distance(query)
        assert torch.equal(whole[1], whole[3])
        assert torch.equal(whole[:, 0], whole[:, 7])
        assert int(whole[1].argmin()) == 5


def test_gallery_distance_does_not_track_gradients_or_touch_its_inputs():
    query, gallery = features_with_duplicates(3, 6, 10, 8, torch.float32)
    query.requires_grad_(True)
    gallery.requires_grad_(True)
    query_copy, gallery_copy = query.detach().clone(), gallery.detach().clone()
    for metric in METRICS:
        result = GalleryDistance(gallery, metric)(query)
        assert not result.requires_grad
        assert torch.equal(result, pairwise_distance(query, gallery, metric).detach())
    assert torch.equal(query.detach(), query_copy) and torch.equal(gallery.detach(), gallery_copy)


@pytest.mark.parametrize("dtype", DTYPES)
def test_squared_row_distance_blocks_are_bit_identical_to_pairwise_distance(dtype):
    query, gallery = features_with_duplicates(4, 15, 40, 32, dtype)
    features = torch.cat([query, gallery])
    for metric in ("euclidean", "cosine"):
        space = SquaredRowDistance(features, metric)
        assert len(space) == 55
        for rows, cols in [
            (slice(0, 55), slice(0, 55)),
            (slice(3, 20), slice(10, 55)),
            (slice(7, 8), slice(0, 9)),
        ]:
            if metric == "euclidean":
                expected = pairwise_distance(features[rows], features[cols], "sqeuclidean")
            else:
                expected = pairwise_distance(features[rows], features[cols], "cosine").pow(2)
            assert torch.equal(space.block(rows, cols), expected)
        index = torch.arange(55)
        full = space.block(index, index)
        assert torch.equal(full, space.block(slice(0, 55), slice(0, 55)))
        rows = torch.tensor([0, 1, 1, 3, 20, 54])
        cols = torch.tensor([0, 3, 20, 1, 16, 2])
        torch.testing.assert_close(space.pairs(rows, cols), full[rows, cols], atol=TOLERANCE[dtype], rtol=0)


def test_squared_row_distance_pairs_are_exact_on_integer_features():
    generator = torch.Generator().manual_seed(5)
    features = torch.randint(-3, 4, (20, 4), generator=generator).double()
    features[10] = features[2]
    space = SquaredRowDistance(features, "euclidean")
    rows, cols = torch.arange(20).repeat_interleave(20), torch.arange(20).repeat(20)
    exact = ((features[:, None] - features[None]) ** 2).sum(dim=2)
    assert torch.equal(space.pairs(rows, cols).view(20, 20), exact)
    assert torch.equal(space.block(slice(0, 20), slice(0, 20)), exact)
    assert float(space.pairs(torch.tensor([2]), torch.tensor([10]))) == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", METRICS)
def test_gradient_is_finite_at_zero_distance(metric, dtype):
    x = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], dtype=dtype, requires_grad=True)
    pairwise_distance(x, x, metric).sum().backward()
    assert torch.isfinite(x.grad).all()
    y = x.detach().clone().requires_grad_(True)
    paired_distance(y, x.detach(), metric).sum().backward()
    assert torch.isfinite(y.grad).all()


@pytest.mark.parametrize("metric", METRICS)
def test_numpy_variant_equals_the_torch_one(metric):
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((8, 5)), rng.standard_normal((12, 5))
    for dtype in (np.float32, np.float64):
        result = pairwise_distance_numpy(a.astype(dtype), b.astype(dtype), metric)
        assert isinstance(result, np.ndarray) and result.dtype == dtype and result.shape == (8, 12)
        expected = pairwise_distance(
            torch.from_numpy(a.astype(dtype)), torch.from_numpy(b.astype(dtype)), metric
        )
        np.testing.assert_array_equal(result, expected.numpy())
    np.testing.assert_array_equal(
        pairwise_distance_numpy(a, metric=metric),
        pairwise_distance(torch.from_numpy(a), metric=metric).numpy(),
    )
    assert pairwise_distance_numpy(a.astype(np.float32), b, metric).dtype == np.float64  # mixed: float64
    assert pairwise_distance_numpy(a.astype(np.float16), b.astype(np.float16), metric).dtype == np.float32
    integers = pairwise_distance_numpy(np.array([[0, 0], [3, 4]]), metric=metric)
    assert integers.dtype == np.float64
    if metric != "cosine":
        assert integers[0, 1] == pytest.approx(5.0 if metric == "euclidean" else 25.0)


def test_numpy_variant_reads_read_only_and_strided_arrays_without_warnings():
    data = np.arange(24, dtype=np.float32).reshape(6, 4)
    read_only = np.frombuffer(data.tobytes(), dtype=np.float32).reshape(6, 4)
    reversed_rows = data[::-1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = pairwise_distance_numpy(read_only, reversed_rows)
    np.testing.assert_array_equal(result, pairwise_distance_numpy(data, data[::-1].copy()))


def test_bad_shapes_and_unknown_metrics_give_clear_errors():
    x, y = torch.randn(4, 3), torch.randn(5, 3)
    with pytest.raises(ValueError, match=r"x, y: expected \[M, D\] and \[N, D\].*\(4, 3\) and \(5, 2\)"):
        pairwise_distance(x, torch.randn(5, 2))
    with pytest.raises(ValueError, match=r"x, y: expected"):
        pairwise_distance(torch.randn(3))
    with pytest.raises(ValueError, match=r"same leading dimensions"):
        pairwise_distance(torch.randn(2, 4, 3), torch.randn(3, 5, 3))
    with pytest.raises(KeyError, match=r"unknown distance metric 'manhattan'; choose from \['euclidean'"):
        pairwise_distance(x, y, "manhattan")
    with pytest.raises(ValueError, match=r"x, y: expected two \[N, D\] features of one shape"):
        paired_distance(x, y)
    with pytest.raises(KeyError, match="unknown distance metric"):
        paired_distance(x, x, "l1")
    with pytest.raises(ValueError, match=r"gallery: expected a floating-point \[N, D\] tensor"):
        GalleryDistance(torch.randn(5))
    with pytest.raises(ValueError, match=r"gallery: expected a floating-point"):
        GalleryDistance(torch.ones(5, 3, dtype=torch.int64))
    with pytest.raises(KeyError, match="unknown distance metric"):
        GalleryDistance(y, "hamming")
    with pytest.raises(ValueError, match=r"query: expected \[B, 3\] torch.float32 features like the gallery"):
        GalleryDistance(y)(torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"query: expected \[B, 3\] torch.float32"):
        GalleryDistance(y)(torch.randn(2, 3, dtype=torch.float64))
    with pytest.raises(
        KeyError, match=r"unknown distance metric 'sqeuclidean'; choose from \['euclidean', 'cosine'\]"
    ):
        SquaredRowDistance(y, "sqeuclidean")
    with pytest.raises(ValueError, match=r"rows, cols: expected two \[P\] index tensors"):
        SquaredRowDistance(y).pairs(torch.tensor([0, 1]), torch.tensor([1]))
    with pytest.raises(ValueError, match=r"a: expected \[N, D\] features, got shape \(3,\)"):
        pairwise_distance_numpy(np.zeros(3))
    with pytest.raises(ValueError, match=r"b: expected \[N, D\] features"):
        pairwise_distance_numpy(np.zeros((2, 3)), np.zeros((2, 3, 1)))
    with pytest.raises(ValueError, match=r"x, y: expected"):
        pairwise_distance_numpy(np.zeros((2, 3)), np.zeros((2, 4)))
