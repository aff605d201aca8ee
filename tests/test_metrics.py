from __future__ import annotations

import numpy as np
import pytest
import torch

from metrics_reference import assert_same, random_case, reference_metrics
from reidkit.distance import pairwise_distance
from reidkit.metrics import (
    Metrics,
    _ranks,
    average_metrics,
    evaluate,
    evaluate_features,
    evaluate_single_gallery_shot,
    merge_queries,
    same_image_ignore,
)


@pytest.mark.parametrize("buckets", ["fine", "coarse"])
def test_chunked_equals_unchunked_equals_reference_loop_with_ties(monkeypatch, buckets):
    # fine: about one item per bucket; coarse: one bucket for the whole range of the matches, so that every item
    # there is compared exactly, and one query row per part
    if buckets == "fine":
        monkeypatch.setattr(_ranks, "_ITEMS_PER_BUCKET", 1)
    else:
        monkeypatch.setattr(_ranks, "_ITEMS_PER_BUCKET", 10**9)
        monkeypatch.setattr(_ranks, "_PART_ELEMENTS", 1)
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(60):
        case = random_case(rng, int(rng.integers(1, 25)), int(rng.integers(1, 50)))
        reference = reference_metrics(*case, max_rank=10)
        if reference[3] == 0:
            with pytest.raises(ValueError, match="no query has a valid true match"):
                evaluate(*case, max_rank=10)
            continue
        for chunk_size in (None, 1, 4):
            assert_same(evaluate(*case, max_rank=10, chunk_size=chunk_size), reference)
        checked += 1
    assert checked > 40


def test_some_queries_have_no_valid_match_and_are_skipped():
    distmat = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1], [0.5, 0.4, 0.6]])
    q_pids, g_pids = np.array([1, 2, 7]), np.array([1, 2, 2])
    q_camids, g_camids = np.array([0, 0, 0]), np.array([1, 0, 1])
    # query 0: match at rank 1; query 1: its same-camera image is ignored, match at rank 1 of 2; query 2: no id
    result = evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=3)
    assert result.num_queries == 2
    assert result.mAP == pytest.approx(1.0)
    np.testing.assert_allclose(result.cmc, [1.0, 1.0, 1.0])
    assert_same(result, reference_metrics(distmat, q_pids, g_pids, q_camids, g_camids, 3))


def single_query_case(match_ranks, gallery_size=25):
    """One query whose true matches come back at the given 1-based ranks (distance = rank)."""
    g_pids = np.full(gallery_size, 0)  # distractors elsewhere
    g_pids[np.asarray(match_ranks) - 1] = 5
    distmat = np.arange(1, gallery_size + 1, dtype=np.float64)[None, :]
    return distmat, np.array([5]), g_pids, np.array([0]), np.ones(gallery_size, dtype=np.int64)


def test_classic_worked_example_ranks_1_3_4_8_20():
    result = evaluate(*single_query_case([1, 3, 4, 8, 20]), max_rank=20)
    assert result.mAP == pytest.approx((1 / 1 + 2 / 3 + 3 / 4 + 4 / 8 + 5 / 20) / 5)
    assert round(result.mAP, 3) == 0.633
    assert result.mINP == pytest.approx(5 / 20)
    np.testing.assert_array_equal(result.cmc, np.ones(20))


def test_classic_worked_example_ranks_1_3_5_and_late_first_match():
    result = evaluate(*single_query_case([1, 3, 5]), max_rank=10)
    assert round(result.mAP, 3) == 0.756
    assert result.mINP == pytest.approx(3 / 5)
    late = evaluate(*single_query_case([3, 6]), max_rank=10)
    np.testing.assert_array_equal(late.cmc, [0, 0, 1, 1, 1, 1, 1, 1, 1, 1])
    assert late.mAP == pytest.approx((1 / 3 + 2 / 6) / 2)
    assert late.mINP == pytest.approx(2 / 6)
    assert late.as_dict() == {
        "rank1": 0.0,
        "rank5": 1.0,
        "rank10": 1.0,
        "mAP": pytest.approx(1 / 3),
        "mINP": pytest.approx(1 / 3),
        "num_queries": 1,
    }


def test_ties_are_broken_by_gallery_index_like_a_stable_sort():
    # every distance equal: the ranking is the gallery order, so matches at indices 1 and 3 sit at ranks 2, 4
    distmat = np.zeros((1, 5))
    g_pids = np.array([0, 4, 0, 4, 0])
    result = evaluate(distmat, [4], g_pids, [0], [1, 1, 1, 1, 1], max_rank=5)
    assert result.mAP == pytest.approx((1 / 2 + 2 / 4) / 2)
    np.testing.assert_array_equal(result.cmc, [0, 1, 1, 1, 1])


def test_cross_camera_rule_ignores_same_identity_same_camera_only():
    distmat = np.array([[0.0, 0.1, 0.2, 0.3]])
    g_pids = np.array([3, 9, 3, 3])
    g_camids = np.array([0, 0, 1, 0])  # index 0 and 3: same id and camera as the query -> ignored
    result = evaluate(distmat, [3], g_pids, [0], g_camids, max_rank=3)
    # remaining order: 9 (camera 0, other id: kept), 3 (camera 1): match at rank 2
    np.testing.assert_array_equal(result.cmc, [0, 1, 1])
    assert result.mAP == pytest.approx(0.5)


def test_no_camera_rule_with_the_identical_image_ignored():
    paths = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    pids = np.array([1, 1, 2, 2])
    features = torch.tensor([[0.0, 0.0], [0.0, 1.0], [5.0, 0.0], [5.0, 1.5]])
    distmat = pairwise_distance(features, features).numpy()
    ignore = same_image_ignore(paths, paths)
    assert [list(items) for items in ignore] == [[0], [1], [2], [3]]
    result = evaluate(distmat, pids, pids, None, None, max_rank=3, ignore=ignore)
    assert result.num_queries == 4
    assert result.mAP == pytest.approx(1.0)
    assert_same(result, reference_metrics(distmat, pids, pids, None, None, 3, ignore=ignore))
    # without excluding the identical image, each query finds itself at rank 1 and its match at rank 2
    naive = evaluate(distmat, pids, pids, None, None, max_rank=3)
    assert naive.mAP == pytest.approx(1.0)
    assert_same(naive, reference_metrics(distmat, pids, pids, None, None, 3))


def test_ignore_lists_on_random_cases_match_the_reference():
    rng = np.random.default_rng(3)
    for _ in range(20):
        distmat, q_pids, g_pids, _, _ = random_case(rng, 12, 30)
        ignore = [rng.choice(30, size=int(rng.integers(0, 4)), replace=False) for _ in range(12)]
        reference = reference_metrics(distmat, q_pids, g_pids, None, None, 5, ignore=ignore)
        for chunk_size in (None, 5):
            result = evaluate(distmat, q_pids, g_pids, None, None, 5, ignore=ignore, chunk_size=chunk_size)
            assert_same(result, reference)


def test_torch_inputs_and_float32_give_the_same_numbers():
    rng = np.random.default_rng(1)
    case = random_case(rng, 20, 40, levels=50)
    expected = evaluate(*case, max_rank=10)
    tensors = [torch.from_numpy(np.asarray(item)) for item in case]
    tensors[0] = tensors[0].float()
    assert_same(
        evaluate(*tensors, max_rank=10, chunk_size=7),
        (expected.cmc, expected.mAP, expected.mINP, expected.num_queries),
    )


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_features_path_equals_the_distance_matrix_path(metric):
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(8, 16, generator=generator)
    q_pids = torch.randint(1, 8, (30,), generator=generator)
    g_pids = torch.randint(0, 8, (90,), generator=generator)
    qf = centres[q_pids] + 0.8 * torch.randn(30, 16, generator=generator)
    gf = centres[g_pids] + 0.8 * torch.randn(90, 16, generator=generator)
    q_camids = torch.randint(0, 3, (30,), generator=generator)
    g_camids = torch.randint(0, 3, (90,), generator=generator)
    distmat = pairwise_distance(qf, gf, metric=metric)
    from_matrix = evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20)
    reference = reference_metrics(
        distmat.numpy(), q_pids.numpy(), g_pids.numpy(), q_camids.numpy(), g_camids.numpy(), 20
    )
    assert_same(from_matrix, reference)
    for chunk_size in (None, 7):
        from_features = evaluate_features(
            qf, gf, q_pids, g_pids, q_camids, g_camids, metric=metric, max_rank=20, chunk_size=chunk_size
        )
        assert_same(from_features, reference)
    # cosine of L2-normalised features orders like euclidean, so the metrics agree across the two
    other = "euclidean" if metric == "cosine" else "cosine"
    normalised_q, normalised_g = torch.nn.functional.normalize(qf), torch.nn.functional.normalize(gf)
    a = evaluate_features(normalised_q, normalised_g, q_pids, g_pids, q_camids, g_camids, metric=metric)
    b = evaluate_features(normalised_q, normalised_g, q_pids, g_pids, q_camids, g_camids, metric=other)
    assert a.mAP == pytest.approx(b.mAP, abs=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensors_give_the_same_numbers():
    rng = np.random.default_rng(2)
    qf, gf = rng.standard_normal((50, 8)), rng.standard_normal((200, 8))
    q_pids, g_pids = rng.integers(1, 10, 50), rng.integers(0, 10, 200)
    q_camids, g_camids = rng.integers(0, 3, 50), rng.integers(0, 3, 200)
    cpu = evaluate_features(qf, gf, q_pids, g_pids, q_camids, g_camids)
    gpu = evaluate_features(
        torch.from_numpy(qf).cuda(), torch.from_numpy(gf).cuda(), q_pids, g_pids, q_camids, g_camids
    )
    assert gpu.mAP == pytest.approx(cpu.mAP, abs=1e-9)
    np.testing.assert_allclose(gpu.cmc, cpu.cmc)


def test_bad_inputs_raise_clear_errors():
    distmat = np.zeros((2, 3))
    with pytest.raises(ValueError, match="q_pids: expected 2 entries"):
        evaluate(distmat, [1], [1, 2, 3], [0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match="give both"):
        evaluate(distmat, [1, 2], [1, 2, 3], [0, 0], None)
    with pytest.raises(ValueError, match="distmat: expected a \\[Q, G\\] matrix"):
        evaluate(np.zeros(3), [1], [1, 2, 3], [0], [1, 1, 1])
    with pytest.raises(ValueError, match="NaN"):
        evaluate(np.array([[np.nan, 0.0, 1.0]]), [1], [1, 2, 3], [0], [1, 1, 1])
    with pytest.raises(ValueError, match="max_rank"):
        evaluate(distmat, [1, 2], [1, 2, 3], [0, 0], [1, 1, 1], max_rank=0)
    with pytest.raises(ValueError, match="no query has a valid true match"):
        evaluate(distmat, [1, 2], [1, 2, 3], [0, 0], [0, 0, 0])  # every match is same-camera
    with pytest.raises(ValueError, match="ignore\\[0\\]"):
        evaluate(distmat, [1, 2], [1, 2, 3], None, None, ignore=[[5], []])
    with pytest.raises(KeyError, match="unknown distance metric"):
        evaluate_features(np.zeros((2, 4)), np.zeros((3, 4)), [1, 2], [1, 2, 3], None, None, metric="l1")


def test_single_gallery_shot_on_a_hand_built_case():
    # query: id 1, camera 0. Gallery: id 1 camera 0 at distance 0 (never eligible), id 1 camera 1 at 0.5 and
    # at 3.0, id 2 camera 1 at 1.0. A drawn single-shot gallery ranks id 1 first when the 0.5 image is drawn
    # (probability 1/2), second otherwise.
    distmat = np.array([[0.0, 0.5, 3.0, 1.0]])
    args = (distmat, [1], [1, 1, 1, 2], [0], [0, 1, 1, 1])
    result = evaluate_single_gallery_shot(*args, max_rank=3, repeats=2000, generator=0)
    assert result.cmc[0] == pytest.approx(0.5, abs=0.05)
    assert result.cmc[1] == 1.0 and result.cmc[2] == 1.0
    full = evaluate(*args, max_rank=3)
    assert (result.mAP, result.mINP, result.num_queries) == (full.mAP, full.mINP, full.num_queries)
    # seeded: same generator seed, same numbers, whatever the chunking
    again = evaluate_single_gallery_shot(*args, max_rank=3, repeats=2000, generator=np.random.default_rng(0))
    np.testing.assert_array_equal(result.cmc, again.cmc)


def test_single_gallery_shot_equals_evaluate_when_every_identity_has_one_eligible_image():
    rng = np.random.default_rng(5)
    g_pids = np.arange(1, 21)
    q_pids = rng.integers(1, 21, 15)
    distmat = rng.random((15, 20))
    q_camids, g_camids = np.zeros(15, dtype=int), np.ones(20, dtype=int)
    single = evaluate_single_gallery_shot(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=10, repeats=3)
    multi = evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=10)
    np.testing.assert_allclose(single.cmc, multi.cmc)


def test_single_gallery_shot_does_not_depend_on_chunking():
    rng = np.random.default_rng(6)
    case = random_case(rng, 20, 60, levels=1000)
    a = evaluate_single_gallery_shot(*case, max_rank=5, repeats=4, generator=11)
    b = evaluate_single_gallery_shot(*case, max_rank=5, repeats=4, generator=11, chunk_size=3)
    np.testing.assert_array_equal(a.cmc, b.cmc)
    c = evaluate_single_gallery_shot(*case, max_rank=5, repeats=4, generator=12)
    assert not np.array_equal(a.cmc, c.cmc)


def test_merge_queries_by_identity_and_camera():
    features = np.array([[1.0, 0.0], [3.0, 2.0], [0.0, 5.0], [2.0, 4.0]])
    pids, camids = np.array([7, 7, 7, 3]), np.array([1, 1, 2, 1])
    merged, merged_pids, merged_cams = merge_queries(features, pids, camids, "mean")
    np.testing.assert_allclose(merged, [[2.0, 1.0], [0.0, 5.0], [2.0, 4.0]])
    np.testing.assert_array_equal(merged_pids, [7, 7, 3])
    np.testing.assert_array_equal(merged_cams, [1, 2, 1])
    maxed, _, _ = merge_queries(torch.tensor(features), pids, camids, "max")
    assert isinstance(maxed, torch.Tensor)
    np.testing.assert_allclose(maxed.numpy(), [[3.0, 2.0], [0.0, 5.0], [2.0, 4.0]])
    normalised, _, _ = merge_queries(features, pids, camids, "mean", normalize=True)
    np.testing.assert_allclose(np.linalg.norm(normalised, axis=1), 1.0)
    # explicit groups (frames of tracklets): group 0 = rows 0, 1; group 1 = row 2
    tracks, track_pids, _ = merge_queries(features[:3], pids[:3], None, "mean", groups=[4, 4, 9])
    np.testing.assert_allclose(tracks, [[2.0, 1.0], [0.0, 5.0]])
    np.testing.assert_array_equal(track_pids, [7, 7])
    with pytest.raises(ValueError, match="one identity"):
        merge_queries(features, pids, camids, groups=[0, 0, 0, 0])
    with pytest.raises(ValueError, match="method"):
        merge_queries(features, pids, camids, "median")


def test_multi_query_improves_a_noisy_query():
    # two noisy views of one person: either alone ranks the wrong person first, their mean ranks the right one
    gallery = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    g_pids, g_camids = np.array([1, 2, 3]), np.array([1, 1, 1])
    views = np.array([[0.6, 0.0], [0.0, 0.6]])
    single = evaluate_features(views, gallery, [1, 1], g_pids, [0, 0], g_camids, max_rank=2)
    assert single.cmc[0] == 0.0
    merged, merged_pids, merged_cams = merge_queries(views, [1, 1], [0, 0])
    np.testing.assert_allclose(merged, [[0.3, 0.3]])
    multi = evaluate_features(merged, gallery, merged_pids, g_pids, merged_cams, g_camids, max_rank=2)
    assert multi.cmc[0] == 1.0 and multi.num_queries == 1


def test_average_metrics_over_splits():
    a = Metrics(cmc=np.array([0.5, 1.0]), mAP=0.4, mINP=0.2, num_queries=10)
    b = Metrics(cmc=np.array([1.0, 1.0]), mAP=0.8, mINP=0.6, num_queries=30)
    mean = average_metrics([a, b])
    np.testing.assert_allclose(mean.cmc, [0.75, 1.0])
    assert (mean.mAP, mean.mINP, mean.num_queries) == (pytest.approx(0.6), pytest.approx(0.4), 40)
    with pytest.raises(ValueError, match="different lengths"):
        average_metrics([a, Metrics(cmc=np.ones(3), mAP=1.0, mINP=1.0, num_queries=1)])
    with pytest.raises(ValueError, match="at least one"):
        average_metrics([])
