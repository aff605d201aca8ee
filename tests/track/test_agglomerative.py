"""Constrained agglomerative clustering against a naive loop, scipy, and hand cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from reidkit.track.agglomerative import constrained_agglomerative


def _naive(distance, threshold, cannot, linkage):
    """Recompute every cluster pair's linkage from the item distances at every step."""
    clusters = [[i] for i in range(len(distance))]
    while True:
        best = None
        for x, y in itertools.combinations(range(len(clusters)), 2):
            A, B = clusters[x], clusters[y]
            if any(cannot[i][j] for i in A for j in B):
                continue
            pairs = [distance[i][j] for i in A for j in B]
            value = {"average": sum(pairs) / len(pairs), "single": min(pairs), "complete": max(pairs)}[linkage]
            if value < threshold and (best is None or value < best[0]):
                best = (value, x, y)
        if best is None:
            break
        _, x, y = best
        clusters[x] = sorted(clusters[x] + clusters[y])
        del clusters[y]
    labels = [0] * len(distance)
    for rank, members in enumerate(sorted(clusters)):
        for i in members:
            labels[i] = rank
    return labels


def _random_case(seed, n):
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(n, 2)) + rng.integers(0, 3, size=(n, 1)) * 3.0
    distance = np.linalg.norm(points[:, None] - points[None], axis=2)
    cannot = rng.random((n, n)) < 0.08
    cannot = cannot | cannot.T
    np.fill_diagonal(cannot, False)
    return distance, cannot


@pytest.mark.parametrize("linkage", ["average", "single", "complete"])
@pytest.mark.parametrize("seed", range(12))
def test_matches_the_naive_loop(linkage, seed):
    distance, cannot = _random_case(seed, 14)
    threshold = [1.0, 2.5, 4.0][seed % 3]
    for constraint in (None, cannot):
        got = constrained_agglomerative(distance, threshold, cannot_link=constraint, linkage=linkage)
        want = _naive(distance, threshold, constraint if constraint is not None else np.zeros_like(cannot), linkage)
        assert got.tolist() == want


@pytest.mark.parametrize("linkage", ["average", "single", "complete"])
def test_matches_scipy_without_constraints(linkage):
    from scipy.cluster.hierarchy import fcluster
    from scipy.cluster.hierarchy import linkage as scipy_linkage
    from scipy.spatial.distance import squareform

    distance, _ = _random_case(3, 40)
    tree = scipy_linkage(squareform(distance, checks=False), method=linkage)
    for threshold in (0.8, 2.0, 5.0):
        # fcluster merges while the height is <= t; ours while < threshold (no tie falls on a threshold here)
        want = fcluster(tree, t=threshold, criterion="distance")
        got = constrained_agglomerative(distance, threshold, linkage=linkage)
        pairs_want = want[:, None] == want[None]
        pairs_got = got[:, None] == got[None]
        assert (pairs_want == pairs_got).all()


def test_a_constraint_blocks_a_chain_even_after_merges():
    # 0 - 1 - 2 close in a chain, but 0 and 2 cannot be together: single linkage must stop at two clusters
    distance = np.array([[0, 1, 2], [1, 0, 1.1], [2, 1.1, 0]], dtype=float)
    cannot = np.zeros((3, 3), bool)
    cannot[0, 2] = True
    labels = constrained_agglomerative(distance, 5.0, cannot_link=cannot, linkage="single")
    assert labels.tolist() == [0, 0, 1]


def test_threshold_is_strict_and_infinite_distances_never_merge():
    distance = np.array([[0, 1.0, np.inf], [1.0, 0, np.nan], [np.inf, np.nan, 0]])
    assert constrained_agglomerative(distance, 1.0).tolist() == [0, 1, 2]
    assert constrained_agglomerative(distance, 1.0001).tolist() == [0, 0, 1]
    assert constrained_agglomerative(distance, np.inf).tolist() == [0, 0, 1]


def test_empty_single_and_bad_input():
    assert constrained_agglomerative(np.zeros((0, 0)), 1.0).tolist() == []
    assert constrained_agglomerative(np.zeros((1, 1)), 1.0).tolist() == [0]
    with pytest.raises(ValueError, match="square"):
        constrained_agglomerative(np.zeros((2, 3)), 1.0)
    with pytest.raises(ValueError, match="linkage"):
        constrained_agglomerative(np.zeros((2, 2)), 1.0, linkage="ward")
    with pytest.raises(ValueError, match="cannot_link"):
        constrained_agglomerative(np.zeros((2, 2)), 1.0, cannot_link=np.zeros((3, 3), bool))


def test_labels_follow_the_smallest_member():
    distance = np.array([[0, 9, 1], [9, 0, 9], [1, 9, 0]], dtype=float)
    assert constrained_agglomerative(distance, 2.0).tolist() == [0, 1, 0]
