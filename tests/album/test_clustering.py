"""Clustering unit embeddings: recovery of well-separated people, noise, label tidying, parameter checks."""

from __future__ import annotations

import numpy as np
import pytest

from reidkit.album.clustering import (
    CLUSTERERS,
    cluster,
    cluster_counts,
    cosine_distances,
    method_parameters,
    tidy_labels,
)
from reidkit.album.scores import adjusted_rand_index
from reidkit.errors import ConfigError

pytest.importorskip("sklearn", reason="album clustering needs scikit-learn")

#: every method with parameters that suit the well-separated embeddings below
SETTINGS = [
    ("hdbscan", {}),
    ("hdbscan", {"metric": "euclidean", "min_cluster_size": 3}),
    ("dbscan", {"eps": 0.1}),
    ("dbscan", {"metric": "euclidean", "eps": 0.3, "min_samples": 3}),
    ("agglomerative", {}),
    ("agglomerative", {"threshold": 0.2, "linkage": "complete"}),
    ("linked", {}),
    ("linked", {"threshold": 0.2, "linkage": "single"}),
]


def _people(rng: np.random.Generator, sizes=(5, 9, 3, 12, 6, 4), dim=32, spread=0.02, outlier_dims=0):
    """Embeddings of people far apart with a little per-image noise, shuffled.

    With ``outlier_dims``, the people share a common direction (they are ~0.7 apart in cosine distance) and
    leave the last ``outlier_dims`` dimensions empty, so an outlier there is farther from everyone (distance
    1) than the people are from each other.
    """
    people_dim = dim - outlier_dims
    centres = rng.normal(size=(len(sizes), people_dim))
    if outlier_dims:
        centres = 1.5 * centres / np.linalg.norm(centres, axis=1, keepdims=True)
        centres[:, 0] += 1.0
    labels = np.repeat(np.arange(len(sizes)), sizes)
    points = np.zeros((len(labels), dim))
    points[:, :people_dim] = centres[labels] / np.linalg.norm(centres[labels], axis=1, keepdims=True)
    points[:, :people_dim] += spread * rng.normal(size=(len(labels), people_dim))
    order = rng.permutation(len(labels))
    return (5 * points[order]).astype(np.float32), labels[order]  # not unit rows: cluster normalises them


def test_the_registry_matches_the_settings_tested():
    assert {method for method, _ in SETTINGS} == set(CLUSTERERS)


@pytest.mark.parametrize(("method", "parameters"), SETTINGS)
def test_well_separated_people_are_recovered(method, parameters):
    rng = np.random.default_rng(3)
    for _ in range(3):
        embeddings, true = _people(rng)
        labels = cluster(embeddings, method, **parameters)
        assert labels.dtype == np.int64 and labels.shape == true.shape
        assert adjusted_rand_index(true, labels) == 1.0
        assert (labels >= 0).all()
        assert cluster_counts(labels)["sizes"] == [12, 9, 6, 5, 4, 3]  # numbered by decreasing size


@pytest.mark.parametrize(("method", "parameters"), SETTINGS)
def test_outliers_are_unclustered(method, parameters):
    rng = np.random.default_rng(4)
    embeddings, true = _people(rng, outlier_dims=4)
    outliers = 3 * np.eye(embeddings.shape[1], dtype=np.float32)[-4:]  # one empty dimension each
    labels = cluster(np.concatenate([embeddings, outliers]), method, **parameters)
    assert labels[-4:].tolist() == [-1, -1, -1, -1]
    assert adjusted_rand_index(true, labels[:-4]) == 1.0
    counts = cluster_counts(labels)
    assert (counts["images"], counts["clusters"], counts["clustered"], counts["unclustered"]) == (
        43,
        6,
        39,
        4,
    )


def test_tidy_labels_numbers_by_size_and_drops_singletons():
    raw = np.array([7, 3, 3, -1, 7, 9, 3, 7, 5, 5])
    # 3 and 7 both have three members: 7 comes first (its first item is item 0); 9 alone is unclustered
    assert tidy_labels(raw).tolist() == [0, 1, 1, -1, 0, -1, 1, 0, 2, 2]
    assert tidy_labels(np.array([4, 4, 2, 2, 2])).tolist() == [1, 1, 0, 0, 0]
    assert tidy_labels(np.array([], dtype=int)).tolist() == []


def test_cosine_distances_of_unit_rows():
    rows = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert cosine_distances(rows) == pytest.approx(np.array([[0, 1, 2], [1, 0, 1], [2, 1, 0]]))


def test_method_parameters_are_the_functions_keywords():
    assert method_parameters("hdbscan") == {"metric": "cosine", "min_cluster_size": 2, "min_samples": None}
    assert method_parameters("dbscan") == {"metric": "cosine", "eps": 0.3, "min_samples": 2}
    assert method_parameters("agglomerative") == {"threshold": 0.5, "linkage": "average"}
    assert method_parameters("linked") == {"threshold": 0.5, "linkage": "average"}


@pytest.mark.parametrize(
    ("method", "parameters", "message"),
    [
        ("kmeans", {}, "unknown clustering method 'kmeans'; choose from"),
        ("hdbscan", {"eps": 0.2}, "'hdbscan' does not take eps"),
        ("agglomerative", {"metric": "cosine"}, "'agglomerative' does not take metric"),
        ("hdbscan", {"min_cluster_size": 1}, "min_cluster_size must be an integer >= 2, got 1"),
        ("hdbscan", {"min_cluster_size": 50}, "min_cluster_size = 50 is more than the 10 images"),
        ("hdbscan", {"min_samples": 0}, "min_samples must be an integer >= 1"),
        ("hdbscan", {"metric": "manhattan"}, "metric must be one of"),
        ("dbscan", {"eps": 0}, "eps must be a finite number > 0, got 0"),
        ("dbscan", {"eps": float("nan")}, "eps must be a finite number > 0"),
        ("dbscan", {"eps": 2.5}, "eps must be at most 2"),
        ("dbscan", {"min_samples": 1.5}, "min_samples must be an integer"),
        ("agglomerative", {"threshold": -1.0}, "threshold must be a finite number > 0"),
        ("agglomerative", {"linkage": "ward"}, "linkage must be one of"),
        ("linked", {"metric": "cosine"}, "'linked' does not take metric"),
        ("linked", {"threshold": 0}, "threshold must be a finite number > 0, got 0"),
        ("linked", {"threshold": 2.5}, "threshold must be at most 2"),
        ("linked", {"linkage": "ward"}, "linkage must be one of"),
    ],
)
def test_bad_parameters_are_named(method, parameters, message):
    embeddings, _ = _people(np.random.default_rng(5), sizes=(5, 5))
    with pytest.raises(ConfigError, match=message):
        cluster(embeddings, method, **parameters)


def test_bad_embeddings_are_refused():
    with pytest.raises(ConfigError, match="at least 2 images, got 1"):
        cluster(np.ones((1, 4)), "hdbscan")
    with pytest.raises(ConfigError, match=r"\[N, D\] array"):
        cluster(np.ones(4), "hdbscan")
    with pytest.raises(ConfigError, match="NaN or infinite"):
        cluster(np.array([[1.0, np.nan], [1.0, 0.0]]), "dbscan")
    with pytest.raises(ConfigError, match="1 embeddings are all zero"):
        cluster(np.array([[0.0, 0.0], [1.0, 0.0]]), "agglomerative")


def test_agglomerative_is_sklearns_average_linkage_on_cosine():
    cluster_module = pytest.importorskip("sklearn.cluster")
    rng = np.random.default_rng(6)
    embeddings = rng.normal(size=(60, 8))  # no structure: many merges near the threshold
    for threshold in (0.3, 0.6, 0.9):
        expected = cluster_module.AgglomerativeClustering(
            n_clusters=None, distance_threshold=threshold, metric="cosine", linkage="average"
        ).fit_predict(embeddings)
        labels = cluster(embeddings, "agglomerative", threshold=threshold)
        assert labels.tolist() == tidy_labels(expected).tolist()


@pytest.mark.parametrize("linkage", ["average", "complete", "single"])
def test_linked_gives_the_partition_of_sklearns_agglomerative(linkage):
    rng = np.random.default_rng(7)
    clusters = []
    for size, dim in ((60, 8), (40, 3)):  # no structure: many merges near the threshold, no exact ties
        embeddings = rng.normal(size=(size, dim))
        for threshold in (0.05, 0.1, 0.3, 0.6, 0.9, 1.2):
            expected = cluster(embeddings, "agglomerative", threshold=threshold, linkage=linkage)
            labels = cluster(embeddings, "linked", threshold=threshold, linkage=linkage)
            assert labels.tolist() == expected.tolist(), (size, threshold)
            clusters.append(int(expected.max()) + 1)
    assert max(clusters) >= 5  # partitions with several clusters were compared, not only trivial ones
