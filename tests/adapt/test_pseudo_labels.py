"""Pseudo-labels: sparse Jaccard distance vs a dense transcription, DBSCAN vs a naive loop, constraints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import sparse

from kreciprocal_reference import jaccard, transcribed_encoding
from reidkit.adapt import constrained_labels, dbscan_labels, jaccard_distance, label_quality


def naive_jaccard(features: np.ndarray, k1: int, k2: int, metric: str) -> np.ndarray:
    """The full ``[N, N]`` k-reciprocal Jaccard matrix with plain loops (Zhong et al., CVPR 2017, Sec. 3)."""
    count = len(features)
    if metric == "cosine":
        unit = features / np.linalg.norm(features, axis=1, keepdims=True)
        original = (1.0 - unit @ unit.T) ** 2
    else:
        original = ((features[:, None, :] - features[None, :, :]) ** 2).sum(axis=2)
    encoding, _ = transcribed_encoding(original, k1, k2)
    return np.array([[jaccard(encoding[i], encoding[j]) for j in range(count)] for i in range(count)])


def clustered_features(seed: int, count: int, ids: int = 5, dim: int = 8, noise: float = 0.6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids, dim))
    return centres[rng.integers(0, ids, count)] + noise * rng.normal(size=(count, dim))


def stored_mask(matrix: sparse.csr_matrix) -> np.ndarray:
    mask = np.zeros(matrix.shape, dtype=bool)
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    mask[rows, matrix.indices] = True
    return mask


@pytest.mark.parametrize(
    ("count", "k1", "k2", "metric", "chunk_size"),
    [(50, 20, 6, "euclidean", 512), (40, 5, 3, "euclidean", 7), (60, 10, 1, "cosine", 16), (30, 3, 2, "euclidean", 4)],
)
def test_jaccard_distance_equals_the_dense_transcription(count, k1, k2, metric, chunk_size):
    features = clustered_features(count + k1, count)
    distance = jaccard_distance(features, k1=k1, k2=k2, metric=metric, chunk_size=chunk_size)
    expected = naive_jaccard(features, k1, k2, metric)
    np.fill_diagonal(expected, 0.0)
    assert isinstance(distance, sparse.csr_matrix) and distance.shape == (count, count)
    assert distance.dtype == np.float32
    stored = stored_mask(distance)
    dense = distance.toarray()
    np.testing.assert_allclose(dense[stored], expected[stored], rtol=0, atol=1e-6)
    assert np.all(expected[~stored] == 1.0)  # every pair left out has no overlap at all
    assert stored.diagonal().all() and np.all(distance.diagonal() == 0)
    assert (expected < 1.0).sum() == stored.sum()  # only overlapping pairs are stored
    assert np.array_equal(dense, dense.T) and np.array_equal(stored, stored.T)
    assert 0 < stored.mean() < 1 or k1 >= 20


def test_jaccard_distance_of_float32_tensors_equals_the_transcription():
    features = clustered_features(3, 45)
    distance = jaccard_distance(torch.from_numpy(features).float(), k1=8, k2=3)
    expected = naive_jaccard(features.astype(np.float32).astype(np.float64), 8, 3, "euclidean")
    np.fill_diagonal(expected, 0.0)
    stored = stored_mask(distance)
    np.testing.assert_allclose(distance.toarray()[stored], expected[stored], atol=1e-5)
    assert np.all(expected[~stored] == 1.0)


def test_max_distance_keeps_exactly_the_close_pairs():
    features = clustered_features(11, 60, noise=0.9)
    full = jaccard_distance(features, k1=10, k2=4)
    close = jaccard_distance(features, k1=10, k2=4, max_distance=0.6, chunk_size=9)
    kept = stored_mask(full) & (full.toarray() <= 0.6)
    assert 0 < kept.sum() < full.nnz
    np.testing.assert_array_equal(stored_mask(close), kept)
    np.testing.assert_array_equal(close.toarray()[kept], full.toarray()[kept])
    for eps in (0.4, 0.6):
        np.testing.assert_array_equal(dbscan_labels(close, eps=eps), dbscan_labels(full, eps=eps))


def test_jaccard_distance_bad_inputs():
    with pytest.raises(ValueError, match=r"k1, k2: need at most 9 neighbours"):
        jaccard_distance(np.zeros((10, 3)), k1=10)
    with pytest.raises(ValueError, match=r"features: expected \[N, D\]"):
        jaccard_distance(np.zeros(10), k1=2)
    with pytest.raises(ValueError, match="k1: expected a positive integer"):
        jaccard_distance(np.zeros((10, 3)), k1=0)


def naive_dbscan(dense: np.ndarray, eps: float, min_samples: int) -> np.ndarray:
    """DBSCAN by definition; ``dense`` holds NaN where no distance is stored (never a neighbour)."""
    count = len(dense)
    neighbours = [{j for j in range(count) if j == i or dense[i, j] <= eps} for i in range(count)]
    core = [len(neighbours[i]) >= min_samples for i in range(count)]
    labels = [-1] * count
    cluster = 0
    for seed in range(count):  # components of core items, in the order of their smallest core item
        if not core[seed] or labels[seed] != -1:
            continue
        component, frontier = {seed}, [seed]
        while frontier:
            item = frontier.pop()
            for other in neighbours[item]:
                if core[other] and other not in component:
                    component.add(other)
                    frontier.append(other)
        for item in component:
            labels[item] = cluster
        for item in sorted(component):  # border items: to the first cluster that reaches them
            for other in neighbours[item]:
                if labels[other] == -1:
                    labels[other] = cluster
        cluster += 1
    first_seen: dict[int, int] = {}
    for label in labels:
        if label >= 0 and label not in first_seen:
            first_seen[label] = len(first_seen)
    return np.array([first_seen.get(label, -1) for label in labels], dtype=np.int64)


def random_sparse_distances(seed: int, count: int, density: float, zeros: int = 3):
    """A symmetric sparse matrix: random stored pairs, some of them explicit zeros; and its NaN-dense form."""
    rng = np.random.default_rng(seed)
    upper = np.triu(rng.random((count, count)) < density, k=1)
    values = np.triu(rng.random((count, count)), k=1)
    rows, cols = np.nonzero(upper)
    chosen = rng.choice(len(rows), size=min(zeros, len(rows)), replace=False)
    values[rows[chosen], cols[chosen]] = 0.0
    data = values[rows, cols]
    matrix = sparse.csr_matrix(
        (np.concatenate([data, data]), (np.concatenate([rows, cols]), np.concatenate([cols, rows]))),
        shape=(count, count),
    )
    dense = np.full((count, count), np.nan)
    dense[rows, cols] = dense[cols, rows] = data
    return matrix, dense


@pytest.mark.parametrize("seed", range(8))
def test_dbscan_labels_equal_a_naive_loop(seed):
    count = 30 + seed * 2
    matrix, dense = random_sparse_distances(seed, count, density=0.12 + 0.02 * seed, zeros=4)
    assert np.count_nonzero(matrix.data == 0) == 8  # the explicit zeros survive construction
    for eps in (0.2, 0.45):
        for min_samples in (2, 3, 5):
            labels = dbscan_labels(matrix, eps=eps, min_samples=min_samples)
            assert labels.dtype == np.int64
            np.testing.assert_array_equal(labels, naive_dbscan(dense, eps, min_samples))


def test_dbscan_treats_explicit_zeros_as_neighbours_and_missing_entries_as_not():
    matrix = sparse.csr_matrix(
        (np.array([0.0, 0.0, 0.0, 0.0]), (np.array([0, 1, 1, 2]), np.array([1, 0, 2, 1]))), shape=(5, 5)
    )
    assert matrix.nnz == 4
    np.testing.assert_array_equal(dbscan_labels(matrix, eps=0.1, min_samples=2), [0, 0, 0, -1, -1])
    np.testing.assert_array_equal(dbscan_labels(matrix, eps=0.1, min_samples=3), [0, 0, 0, -1, -1])  # 1 is core
    np.testing.assert_array_equal(
        dbscan_labels(sparse.csr_matrix((5, 5)), eps=0.5, min_samples=2), [-1, -1, -1, -1, -1]
    )


def test_dbscan_labels_are_numbered_in_order_of_first_appearance():
    pairs = [(3, 4), (0, 1), (1, 2)]  # two clusters; the one of item 0 gets label 0
    rows = [a for a, b in pairs] + [b for a, b in pairs]
    cols = [b for a, b in pairs] + [a for a, b in pairs]
    matrix = sparse.csr_matrix((np.full(6, 0.1), (rows, cols)), shape=(6, 6))
    np.testing.assert_array_equal(dbscan_labels(matrix, eps=0.5, min_samples=2), [0, 0, 0, 1, 1, -1])


def test_dbscan_labels_bad_inputs():
    with pytest.raises(ValueError, match="expected a scipy sparse"):
        dbscan_labels(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="square"):
        dbscan_labels(sparse.csr_matrix((3, 4)))
    with pytest.raises(ValueError, match="eps: expected a positive"):
        dbscan_labels(sparse.csr_matrix((3, 3)), eps=0)


def test_constrained_labels_without_constraints_equal_dbscan():
    matrix, _ = random_sparse_distances(5, 40, density=0.2)
    np.testing.assert_array_equal(
        constrained_labels(matrix, eps=0.4, min_samples=3), dbscan_labels(matrix, eps=0.4, min_samples=3)
    )


def dense_sparse(dense: np.ndarray) -> sparse.csr_matrix:
    """Every pair stored (explicit zeros on the diagonal)."""
    rows, cols = np.nonzero(np.ones_like(dense, dtype=bool))
    return sparse.csr_matrix((dense[rows, cols], (rows, cols)), shape=dense.shape)


def test_a_cannot_link_pair_splits_its_cluster_at_the_group_level():
    distance = np.full((8, 8), 0.1)
    distance[:4, :4] = distance[4:, 4:] = 0.05
    np.fill_diagonal(distance, 0.0)
    matrix = dense_sparse(distance)
    groups = np.array([7, 7, 7, 7, 3, 3, 3, 3])
    np.testing.assert_array_equal(constrained_labels(matrix, groups=groups, eps=0.5, min_samples=4), [0] * 8)
    np.testing.assert_array_equal(
        constrained_labels(matrix, groups=groups, cannot_link=[(3, 7)], eps=0.5, min_samples=4),
        [0, 0, 0, 0, 1, 1, 1, 1],
    )
    # the pieces are smaller than min_samples: outliers
    np.testing.assert_array_equal(
        constrained_labels(matrix, groups=groups, cannot_link=[(7, 3)], eps=0.5, min_samples=5), [-1] * 8
    )


def test_a_split_merges_the_groups_that_may_share_a_cluster():
    # groups a (items 0-1), b (2-3), c (4-5), d (6-7) all close; a and c cannot link; b is nearer to a, d to c
    distance = np.full((8, 8), 0.3)
    for first, second in ((0, 2), (4, 6)):
        distance[first : first + 2, second : second + 2] = distance[second : second + 2, first : first + 2] = 0.1
    for start in range(0, 8, 2):
        distance[start : start + 2, start : start + 2] = 0.05
    np.fill_diagonal(distance, 0.0)
    labels = constrained_labels(
        dense_sparse(distance), groups=np.repeat([0, 1, 2, 3], 2), cannot_link=[(0, 2)], eps=0.5, min_samples=3
    )
    np.testing.assert_array_equal(labels, [0, 0, 0, 0, 1, 1, 1, 1])


def test_within_group_distances_become_zero_before_clustering():
    # a tracklet of 4 crops with no stored distances between them: clustered only as a group
    matrix = sparse.csr_matrix((6, 6))
    labels = constrained_labels(matrix, groups=np.array([1, 1, 1, 1, 2, 3]), eps=0.5, min_samples=4)
    np.testing.assert_array_equal(labels, [0, 0, 0, 0, -1, -1])


@pytest.mark.parametrize("seed", range(6))
def test_constraints_hold_on_random_cases(seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 4, 20)
    groups = np.repeat(rng.permutation(20), rng.integers(1, 5, 20))  # tracklets of 1-4 crops
    centres = rng.normal(size=(4, 8))
    items = centres[ids[groups]] + 0.7 * rng.normal(size=(len(groups), 8))
    distance = jaccard_distance(items, k1=8, k2=3)
    cannot_link = {tuple(sorted(pair)) for pair in rng.integers(0, 20, (15, 2)).tolist() if pair[0] != pair[1]}
    labels = constrained_labels(distance, groups=groups, cannot_link=cannot_link, eps=0.6, min_samples=3)
    assert labels.dtype == np.int64 and labels.shape == groups.shape
    for group in np.unique(groups):
        assert len(set(labels[groups == group].tolist())) == 1
    group_label = {int(group): int(labels[groups == group][0]) for group in np.unique(groups)}
    for first, second in cannot_link:
        assert group_label[first] == -1 or group_label[first] != group_label[second]
    clustered = labels[labels >= 0]
    if len(clustered):
        _, first = np.unique(clustered, return_index=True)
        assert sorted(np.unique(clustered).tolist()) == list(range(len(first)))
        assert np.all(np.diff(clustered[np.sort(first)]) == 1)  # numbered in order of first appearance


def test_constrained_labels_bad_inputs():
    matrix = sparse.csr_matrix((4, 4))
    with pytest.raises(ValueError, match=r"cannot_link: group ids \[9\] are not in groups"):
        constrained_labels(matrix, groups=np.array([0, 0, 1, 1]), cannot_link=[(0, 9)])
    with pytest.raises(ValueError, match="against itself"):
        constrained_labels(matrix, groups=np.array([0, 0, 1, 1]), cannot_link=[(1, 1)])
    with pytest.raises(ValueError, match=r"groups: expected \[N\] = \[4\]"):
        constrained_labels(matrix, groups=np.array([0, 1]))


def test_label_quality_by_hand():
    labels = np.array([0, 0, 0, 1, 1, -1, 2, -1])
    truth = np.array([5, 5, 6, 7, 7, 5, 8, 8])
    quality = label_quality(labels, truth)
    # NMI (arithmetic mean of the entropies) over the six clustered items
    joint = {(0, 5): 2, (0, 6): 1, (1, 7): 2, (2, 8): 1}
    p_label = {0: 3 / 6, 1: 2 / 6, 2: 1 / 6}
    p_truth = {5: 2 / 6, 6: 1 / 6, 7: 2 / 6, 8: 1 / 6}
    mutual = sum(n / 6 * math.log((n / 6) / (p_label[a] * p_truth[b])) for (a, b), n in joint.items())
    entropy_label = -sum(p * math.log(p) for p in p_label.values())
    entropy_truth = -sum(p * math.log(p) for p in p_truth.values())
    assert quality == pytest.approx(
        {
            "clusters": 3,
            "outliers": 2,
            "outlier_fraction": 0.25,
            "size_min": 1,
            "size_mean": 2.0,
            "size_median": 2.0,
            "size_max": 3,
            "purity": 5 / 6,
            "nmi": mutual / ((entropy_label + entropy_truth) / 2),
        }
    )


def test_label_quality_without_clusters():
    quality = label_quality(np.array([-1, -1]), np.array([0, 1]))
    assert quality["clusters"] == 0 and quality["outliers"] == 2 and quality["outlier_fraction"] == 1.0
    assert math.isnan(quality["purity"]) and math.isnan(quality["nmi"])
