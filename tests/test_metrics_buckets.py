"""The bucket kernel of reidkit.metrics against the textbook loop: ties, duplicates, removed items, extreme
distances, several parts and threads, and the features path with its distances finished part by part."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metrics_reference import assert_same, random_case, reference_metrics
from reidkit.distance import GalleryDistance, pairwise_distance
from reidkit.metrics import _ranks, evaluate, evaluate_features


@pytest.fixture(params=["default", "fine", "coarse"])
def buckets(request, monkeypatch):
    """Default buckets; about one item per bucket; one bucket for the whole range of the matches. The parts are
    a few rows each, so that several of them run on the threads."""
    if request.param == "fine":
        monkeypatch.setattr(_ranks, "_ITEMS_PER_BUCKET", 1)
    elif request.param == "coarse":
        monkeypatch.setattr(_ranks, "_ITEMS_PER_BUCKET", 10**9)
    monkeypatch.setattr(_ranks, "_PART_ELEMENTS", 200)
    return request.param


def duplicated_case(rng, num_query=30, num_gallery=120):
    """Float distances where many items repeat another item's distance exactly (duplicate gallery images),
    distractors, queries of identities missing from the gallery, and same-camera matches."""
    distmat, q_pids, g_pids, q_camids, g_camids = random_case(
        rng, num_query, num_gallery, num_ids=8, levels=3
    )
    distmat = rng.random((num_query, num_gallery)).astype(np.float32)
    copies = rng.integers(0, num_gallery, num_gallery // 3)
    distmat[:, rng.integers(0, num_gallery, num_gallery // 3)] = distmat[:, copies]
    q_pids[:3] = 99  # no true match at all
    return distmat, q_pids, g_pids, q_camids, g_camids


def test_ties_duplicates_and_the_camera_rule_match_the_reference(buckets):
    rng = np.random.default_rng(10)
    for _ in range(8):
        case = duplicated_case(rng)
        assert_same(evaluate(*case, max_rank=20), reference_metrics(*case, max_rank=20))
        assert_same(evaluate(*case, max_rank=20, chunk_size=7), reference_metrics(*case, max_rank=20))


def test_ignored_items_and_no_camera_rule_match_the_reference(buckets):
    rng = np.random.default_rng(11)
    for _ in range(6):
        distmat, q_pids, g_pids, _, _ = duplicated_case(rng)
        ignore = [rng.choice(len(g_pids), size=int(rng.integers(0, 6)), replace=False) for _ in q_pids]
        ignore[5] = np.nonzero(g_pids == q_pids[5])[0]  # every true match ignored: the query is skipped
        reference = reference_metrics(distmat, q_pids, g_pids, None, None, 10, ignore=ignore)
        assert_same(evaluate(distmat, q_pids, g_pids, None, None, 10, ignore=ignore), reference)


def test_every_distance_equal_orders_by_gallery_index(buckets):
    rng = np.random.default_rng(12)
    _, q_pids, g_pids, q_camids, g_camids = random_case(rng, 12, 300)
    distmat = np.full((12, 300), 0.25, dtype=np.float32)
    assert_same(
        evaluate(distmat, q_pids, g_pids, q_camids, g_camids, 10),
        reference_metrics(distmat, q_pids, g_pids, q_camids, g_camids, 10),
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_and_infinite_distances_match_the_reference(buckets, dtype):
    rng = np.random.default_rng(13)
    _, q_pids, g_pids, q_camids, g_camids = random_case(rng, 16, 90)
    # magnitudes from 1e-30 to 1e30, some infinite, and matches one float step apart
    distmat = (10.0 ** rng.uniform(-30, 30, (16, 90))).astype(dtype)
    distmat[rng.random((16, 90)) < 0.1] = np.inf
    distmat[2] = np.float32(1.5)
    distmat[2, g_pids == q_pids[2]] = np.nextafter(np.float32(1.5), np.float32(2), dtype=np.float32)
    distmat[3, :45] = -np.inf
    reference = reference_metrics(distmat, q_pids, g_pids, q_camids, g_camids, 10)
    assert_same(evaluate(distmat, q_pids, g_pids, q_camids, g_camids, 10), reference)
    assert_same(evaluate(torch.from_numpy(distmat), q_pids, g_pids, q_camids, g_camids, 10), reference)


def test_one_thread_and_many_give_the_same_numbers_and_the_setting_is_kept(monkeypatch):
    monkeypatch.setattr(_ranks, "_PART_ELEMENTS", 500)
    case = duplicated_case(np.random.default_rng(14), 60, 200)
    threads = torch.get_num_threads()
    many = evaluate(*case, max_rank=10)
    assert torch.get_num_threads() == threads
    torch.set_num_threads(1)
    try:
        one = evaluate(*case, max_rank=10)
    finally:
        torch.set_num_threads(threads)
    assert_same(one, (many.cmc, many.mAP, many.mINP, many.num_queries))
    assert_same(many, reference_metrics(*case, max_rank=10))


def feature_case(seed, num_query=40, num_gallery=160, dim=12):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(6, dim, generator=generator)
    q_pids = torch.randint(1, 6, (num_query,), generator=generator)
    g_pids = torch.randint(0, 6, (num_gallery,), generator=generator)
    qf = centres[q_pids] + torch.randn(num_query, dim, generator=generator)
    gf = centres[g_pids] + torch.randn(num_gallery, dim, generator=generator)
    gf[1::4] = gf[::4][: len(gf[1::4])]  # duplicate gallery images: exactly tied distances
    gf[2] = qf[0]  # a gallery image identical to a query
    q_camids = torch.randint(0, 3, (num_query,), generator=generator)
    g_camids = torch.randint(0, 3, (num_gallery,), generator=generator)
    return qf, gf, q_pids, g_pids, q_camids, g_camids


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
def test_features_path_with_duplicates_and_ignore_lists_matches_the_reference(buckets, metric):
    qf, gf, q_pids, g_pids, q_camids, g_camids = feature_case(3)
    distmat = pairwise_distance(qf, gf, metric).numpy()
    labels = [tensor.numpy() for tensor in (q_pids, g_pids, q_camids, g_camids)]
    reference = reference_metrics(distmat, *labels, 20)
    for chunk_size in (None, 1, 9):
        result = evaluate_features(
            qf, gf, q_pids, g_pids, q_camids, g_camids, metric, 20, chunk_size=chunk_size
        )
        assert_same(result, reference)
    ignore = [np.array([2])] + [np.arange(index % 5) for index in range(1, len(q_pids))]
    reference = reference_metrics(distmat, labels[0], labels[1], None, None, 20, ignore=ignore)
    result = evaluate_features(qf, gf, q_pids, g_pids, None, None, metric, 20, ignore=ignore, chunk_size=9)
    assert_same(result, reference)


def test_features_with_nan_raise_and_huge_norms_are_checked():
    qf, gf, q_pids, g_pids, q_camids, g_camids = feature_case(4)
    bad = qf.clone()
    bad[5, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        evaluate_features(bad, gf, q_pids, g_pids, q_camids, g_camids)
    with pytest.raises(ValueError, match="NaN"):
        evaluate_features(bad, gf, q_pids, g_pids, q_camids, g_camids, metric="cosine")
    # finite features whose products overflow: checked, and their distances still rank as the matrix says
    huge = qf.double() * 1e153
    distmat = pairwise_distance(huge, gf.double() * 1e153).numpy()
    labels = [tensor.numpy() for tensor in (q_pids, g_pids, q_camids, g_camids)]
    if np.isnan(distmat).any():
        with pytest.raises(ValueError, match="NaN"):
            evaluate_features(huge, gf.double() * 1e153, q_pids, g_pids, q_camids, g_camids)
    else:
        assert_same(
            evaluate_features(huge, gf.double() * 1e153, q_pids, g_pids, q_camids, g_camids),
            reference_metrics(distmat, *labels, 50),
        )


def test_gallery_distance_never_nan_tells_when_the_check_can_be_skipped():
    gallery = torch.randn(20, 8)
    query = torch.randn(5, 8)
    for metric in ("euclidean", "sqeuclidean", "cosine"):
        distance = GalleryDistance(gallery, metric)
        assert distance.never_nan(*distance.split(query))
        broken = query.clone()
        broken[1, 1] = float("inf")
        assert not distance.never_nan(*distance.split(broken))
    assert not GalleryDistance(gallery * 1e19).never_nan(*GalleryDistance(gallery * 1e19).split(query))


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
def test_split_then_finish_on_row_blocks_is_bit_identical_to_pairwise_distance(metric):
    generator = torch.Generator().manual_seed(5)
    query, gallery = torch.randn(70, 33, generator=generator), torch.randn(150, 33, generator=generator)
    distance = GalleryDistance(gallery, metric)
    left, norms = distance.split(query)
    expected = pairwise_distance(query, gallery, metric)
    out = torch.empty(16, 150)
    for start in range(0, 70, 16):
        product = left[start : start + 16] @ distance.gallery.t()
        part_norms = None if norms is None else norms[start : start + 16]
        rows = distance.finish(product, part_norms, out=None if norms is None else out[: product.shape[0]])
        assert torch.equal(rows, expected[start : start + 16])


def test_a_transposed_distance_tensor_gives_the_same_numbers():
    case = duplicated_case(np.random.default_rng(15))
    transposed = torch.from_numpy(np.ascontiguousarray(case[0].T)).t()  # the same values, column-major
    assert not transposed.is_contiguous()
    assert_same(evaluate(transposed, *case[1:], max_rank=10), reference_metrics(*case, max_rank=10))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_distances_with_ties_and_removed_items_match_the_reference():
    rng = np.random.default_rng(16)
    case = duplicated_case(rng, 50, 400)
    ignore = [rng.choice(400, size=3, replace=False) for _ in range(50)]
    reference = reference_metrics(*case, max_rank=10, ignore=ignore)
    assert_same(evaluate(torch.from_numpy(case[0]).cuda(), *case[1:], max_rank=10, ignore=ignore), reference)
