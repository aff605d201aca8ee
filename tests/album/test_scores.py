"""Pairwise precision / recall / F1 and the adjusted Rand index, against a naive pair loop, sklearn and by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from reidkit.album.scores import (
    adjusted_rand_index,
    pair_counts,
    pairwise_scores,
    person_ids_from_names,
    score_clustering,
)
from reidkit.errors import DatasetError


def _naive_scores(true, pred) -> tuple[float, float, float]:
    """Loop over every pair; a predicted -1 is in no cluster, so it pairs with nothing."""
    together = predicted = positive = 0
    for i, j in itertools.combinations(range(len(true)), 2):
        same_true = true[i] == true[j]
        same_pred = pred[i] == pred[j] and pred[i] != -1
        positive += same_true
        predicted += same_pred
        together += same_true and same_pred
    precision = together / predicted if predicted else 1.0
    recall = together / positive if positive else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _random_labelling(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n = int(rng.integers(0, 40))
    true = rng.integers(-1, int(rng.integers(1, 8)), size=n)  # -1 is an ordinary true label
    pred = rng.integers(-1, int(rng.integers(1, 8)), size=n)  # -1 is noise
    return true, pred


def test_pairwise_scores_match_a_naive_pair_loop():
    rng = np.random.default_rng(0)
    for _ in range(300):
        true, pred = _random_labelling(rng)
        assert pairwise_scores(true, pred) == pytest.approx(_naive_scores(true, pred), abs=1e-12)


def test_pairwise_scores_by_hand():
    # true pairs: (0,1), (2,3). predicted pairs: (0,1), (0,2), (1,2). together: (0,1)
    precision, recall, f1 = pairwise_scores([0, 0, 1, 1], [0, 0, 0, 1])
    assert (precision, recall) == pytest.approx((1 / 3, 1 / 2))
    assert f1 == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))  # 0.4
    assert f1 == pytest.approx(0.4)
    assert pairwise_scores([0, 0, 1, 1], [5, 5, 9, 9]) == (1.0, 1.0, 1.0)  # label values do not matter
    assert pairwise_scores([0, 0, 1, 1], [0, 0, 0, 0]) == pytest.approx((2 / 6, 1.0, 0.5))


def test_noise_is_a_cluster_of_its_own_per_item():
    # the two noise items are not predicted together, so only the pair (2,3) is claimed
    assert pairwise_scores([0, 0, 1, 1], [-1, -1, 1, 1]) == pytest.approx((1.0, 0.5, 2 / 3))
    # had -1 been an ordinary cluster label, (0,1) would count as found
    assert pairwise_scores([0, 0, 1, 1], [7, 7, 1, 1]) == (1.0, 1.0, 1.0)
    # everything noise: no pair claimed (precision vacuously 1), none found
    assert pairwise_scores([0, 0, 1, 1], [-1, -1, -1, -1]) == (1.0, 0.0, 0.0)
    # no true pair and none claimed: nothing missed, nothing wrong
    assert pairwise_scores([0, 1, 2], [-1, 0, 1]) == (1.0, 1.0, 1.0)


def test_pair_counts_scale_without_a_pair_loop():
    n = 300_000  # 4.5e10 pairs: a pair loop would never finish
    true = np.arange(n) % 3
    together, predicted, positive, total = pair_counts(true, np.zeros(n, dtype=int))
    assert total == n * (n - 1) // 2 == predicted
    assert positive == together == 3 * (n // 3) * (n // 3 - 1) // 2
    assert pairwise_scores(true, true) == (1.0, 1.0, 1.0)


def test_adjusted_rand_index_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    for _ in range(300):
        true, pred = _random_labelling(rng)
        singletons = pred.copy()
        singletons[pred == -1] = 1000 + np.arange((pred == -1).sum())  # what noise means here
        expected = metrics.adjusted_rand_score(true, singletons)
        assert adjusted_rand_index(true, pred) == pytest.approx(expected, abs=1e-12)
    for true, pred in (
        ([], []),
        ([3], [1]),
        ([0, 0, 0], [1, 1, 1]),
        ([0, 1, 2], [0, 1, 2]),
        ([0, 0], [0, 1]),
    ):
        assert adjusted_rand_index(true, pred) == pytest.approx(metrics.adjusted_rand_score(true, pred))


def test_adjusted_rand_index_by_hand():
    # index = 1 together pair; expected = 3 predicted * 2 true / 6 pairs = 1; max = (3 + 2) / 2: chance level
    assert adjusted_rand_index([0, 0, 1, 1], [0, 0, 0, 1]) == pytest.approx(0.0)
    # index 2, sum_a 6, sum_b 3, 15 pairs: (2 - 18/15) / (4.5 - 18/15) = 8/33
    assert adjusted_rand_index([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2]) == pytest.approx(8 / 33)
    assert adjusted_rand_index([0, 0, 1, 1], [1, 1, 0, 0]) == 1.0
    # splitting everything into noise against two pairs: index 0, expected 0, max 1
    assert adjusted_rand_index([0, 0, 1, 1], [-1, -1, -1, -1]) == 0.0


def test_bad_labels_are_refused():
    with pytest.raises(ValueError, match="true has 3 labels but pred has 2"):
        pairwise_scores([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="integer labels"):
        pairwise_scores([0.5, 1.0], [0, 1])
    with pytest.raises(ValueError, match="1-D"):
        adjusted_rand_index([[0, 1]], [[0, 1]])


def test_person_ids_from_market1501_names():
    names = ["a/0002_c1s1_000451_01.jpg", "0002_c3s2_000001_00.png", "0417_c6s1_1_02.jpg", "-1_c1s1_1.jpg"]
    assert person_ids_from_names([*names, "0000_c2s1_000001_00.jpg"]).tolist() == [2, 2, 417, -1, -1]
    with pytest.raises(DatasetError, match=r"2 file names do not carry a market1501 person id.*holiday\.jpg"):
        person_ids_from_names([*names, "x/holiday.jpg", "12_3.jpg"])
    with pytest.raises(DatasetError, match="unknown file-name scheme 'duke'"):
        person_ids_from_names(names, "duke")


def test_score_clustering_leaves_unknown_identities_out():
    true = np.array([1, 1, 2, 2, -1, -1])
    pred = np.array([0, 0, 1, 1, 0, 1])  # the unknown items would otherwise add wrong pairs
    scores = score_clustering(true, pred)
    assert (scores["precision"], scores["recall"], scores["f1"], scores["ari"]) == (1.0, 1.0, 1.0, 1.0)
    assert (scores["items_scored"], scores["items_unknown"], scores["identities"]) == (4, 2, 2)
