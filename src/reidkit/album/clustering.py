"""Group ReID embeddings by person: HDBSCAN, DBSCAN, or agglomerative clustering (scikit-learn's or reidkit's).

Every method is one plain function ``(embeddings [N, D], *, <its parameters>) -> labels [N]`` in
:data:`CLUSTERERS`; :func:`cluster` normalises the rows, checks the method name and the parameters (an unknown
parameter fails from the function's own signature), calls it and tidies the labels: clusters of one item become
``-1`` (unclustered), the others are numbered 0, 1, ... by decreasing size (ties: first item first). So every
method gives labels of the same form, and a new method is one function and one registry entry.

Distances are on unit vectors: ``cosine`` = ``1 - cos`` in [0, 2] (a precomputed ``[N, N]`` matrix: memory
``8 N^2`` bytes), ``euclidean`` = ``sqrt(2 * cosine)`` in [0, 2] (HDBSCAN/DBSCAN use trees, no matrix: for
large albums). The two give the same HDBSCAN clusters; DBSCAN's ``eps`` and the agglomerative ``threshold``
are in the units of the metric. Good values depend on the model: measure them on labelled data (e.g. a
synthetic album scored with :func:`reidkit.album.scores.score_clustering`).

``linked`` is the clustering that links tracklets into identities in ``reidkit track``
(:mod:`reidkit.track.agglomerative`), here without constraints. scikit-learn is needed for the other methods
(``pip install scikit-learn``; imported when a method runs).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import numpy as np

from reidkit.distance import pairwise_distance_numpy
from reidkit.errors import ConfigError

METRICS = ("cosine", "euclidean")
LINKAGES = ("average", "complete", "single")


def _sklearn_cluster():
    try:
        from sklearn import cluster
    except ImportError:
        raise ImportError("album clustering needs scikit-learn: pip install scikit-learn") from None
    return cluster


def unit_rows(embeddings: np.ndarray) -> np.ndarray:
    """``[N, D]`` -> float64 L2-normalised rows.

    Raises:
        ConfigError: not a 2-D array, non-finite values or an all-zero row.
    """
    array = np.asarray(embeddings, dtype=np.float64)
    if array.ndim != 2:
        raise ConfigError(f"embeddings must be an [N, D] array, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ConfigError("embeddings hold NaN or infinite values")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ConfigError(f"{int((norms == 0).sum())} embeddings are all zero: they have no direction")
    return array / norms


def cosine_distances(embeddings: np.ndarray) -> np.ndarray:
    """``[N, D]`` unit rows -> ``[N, N]`` cosine distances ``1 - cos``, clipped to [0, 2], zero diagonal."""
    distances = np.clip(pairwise_distance_numpy(embeddings, metric="cosine"), 0.0, 2.0)
    np.fill_diagonal(distances, 0.0)
    return distances


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ConfigError(f"metric must be one of {list(METRICS)}, got {metric!r}")


def _check_count(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_distance(name: str, value: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (math.isfinite(value) and value > 0)
    ):
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
    if value > 2:
        raise ConfigError(
            f"{name} must be at most 2 (the largest distance between unit vectors), got {value}"
        )


def _input(embeddings: np.ndarray, metric: str) -> tuple[np.ndarray, str]:
    """What scikit-learn's density methods take: a distance matrix (cosine) or the unit rows (euclidean)."""
    if metric == "cosine":
        return cosine_distances(embeddings), "precomputed"
    return embeddings, "euclidean"


def _enough(name: str, value: int, count: int) -> None:
    if value > count:
        raise ConfigError(f"{name} = {value} is more than the {count} images to cluster")


def hdbscan(
    embeddings: np.ndarray,
    *,
    metric: str = "cosine",
    min_cluster_size: int = 2,
    min_samples: int | None = None,
) -> np.ndarray:
    """HDBSCAN (scikit-learn): clusters of varying density, no distance threshold to choose.

    Args:
        embeddings: ``[N, D]`` unit rows.
        metric: ``cosine`` or ``euclidean``.
        min_cluster_size: the fewest images a cluster may have (>= 2).
        min_samples: neighbours that make an image a core point (default: ``min_cluster_size``); larger is
            more conservative (more noise).

    Returns:
        ``[N]`` labels, ``-1`` = noise.
    """
    _check_metric(metric)
    _check_count("min_cluster_size", min_cluster_size, 2)
    _enough("min_cluster_size", min_cluster_size, len(embeddings))
    if min_samples is not None:
        _check_count("min_samples", min_samples, 1)
        _enough("min_samples", min_samples, len(embeddings))
    data, sk_metric = _input(embeddings, metric)
    model = _sklearn_cluster().HDBSCAN(
        min_cluster_size=int(min_cluster_size),
        min_samples=None if min_samples is None else int(min_samples),
        metric=sk_metric,
        copy=True,
    )
    return model.fit_predict(data)


def dbscan(
    embeddings: np.ndarray, *, metric: str = "cosine", eps: float = 0.3, min_samples: int = 2
) -> np.ndarray:
    """DBSCAN (scikit-learn): images within ``eps`` of ``min_samples`` others are core points.

    Args:
        embeddings: ``[N, D]`` unit rows.
        metric: ``cosine`` or ``euclidean``.
        eps: the neighbourhood radius, in the units of ``metric`` (0, 2].
        min_samples: neighbours (the image included) that make a core point (>= 1).

    Returns:
        ``[N]`` labels, ``-1`` = noise.
    """
    _check_metric(metric)
    _check_distance("eps", eps)
    _check_count("min_samples", min_samples, 1)
    data, sk_metric = _input(embeddings, metric)
    return (
        _sklearn_cluster()
        .DBSCAN(eps=float(eps), min_samples=int(min_samples), metric=sk_metric)
        .fit_predict(data)
    )


def _check_linkage(threshold: float, linkage: str) -> None:
    _check_distance("threshold", threshold)
    if linkage not in LINKAGES:
        raise ConfigError(f"linkage must be one of {list(LINKAGES)}, got {linkage!r}")


def agglomerative(embeddings: np.ndarray, *, threshold: float = 0.5, linkage: str = "average") -> np.ndarray:
    """Agglomerative clustering on cosine distances (scikit-learn ``AgglomerativeClustering``).

    Two clusters merge while their ``linkage`` distance is below ``threshold`` (merging stops at or above it).

    Args:
        embeddings: ``[N, D]`` unit rows.
        threshold: cosine distance (0, 2] at which merging stops.
        linkage: ``average`` (mean pair distance), ``complete`` (largest) or ``single`` (smallest).

    Returns:
        ``[N]`` labels (every image in some cluster; :func:`cluster` marks the singletons unclustered).
    """
    _check_linkage(threshold, linkage)
    model = _sklearn_cluster().AgglomerativeClustering(
        n_clusters=None, distance_threshold=float(threshold), metric="precomputed", linkage=linkage
    )
    return model.fit_predict(cosine_distances(embeddings))


def linked(embeddings: np.ndarray, *, threshold: float = 0.5, linkage: str = "average") -> np.ndarray:
    """The tracklet linking of ``reidkit track`` over photos: reidkit's own agglomerative clustering.

    :func:`reidkit.track.agglomerative.constrained_agglomerative` on the cosine distances, without
    cannot-links: two clusters merge while their ``linkage`` distance is below ``threshold``, as in
    :func:`agglomerative` (the same partition away from exact ties; no scikit-learn needed). Arguments and
    result as for :func:`agglomerative`.
    """
    from reidkit.track.agglomerative import constrained_agglomerative

    _check_linkage(threshold, linkage)
    return constrained_agglomerative(cosine_distances(embeddings), float(threshold), linkage=linkage)


#: method name -> ``function(embeddings [N, D] unit rows, **parameters) -> labels [N]``
CLUSTERERS: dict[str, Callable[..., np.ndarray]] = {
    "hdbscan": hdbscan,
    "dbscan": dbscan,
    "agglomerative": agglomerative,
    "linked": linked,
}


def method_parameters(method: str) -> dict[str, object]:
    """The parameters of a method and their defaults (``{name: default}``)."""
    if method not in CLUSTERERS:
        raise ConfigError(f"unknown clustering method {method!r}; choose from {sorted(CLUSTERERS)}")
    signature = inspect.signature(CLUSTERERS[method])
    return {name: p.default for name, p in signature.parameters.items() if p.kind is p.KEYWORD_ONLY}


def tidy_labels(labels: np.ndarray) -> np.ndarray:
    """Clusters of one item -> ``-1``; the others renumbered 0.. by decreasing size (ties: earliest item first)."""
    labels = np.asarray(labels, dtype=np.int64)
    tidy = np.full(len(labels), -1, dtype=np.int64)
    clusters = [c for c in np.unique(labels) if c != -1]
    members = {c: np.flatnonzero(labels == c) for c in clusters}
    order = sorted(
        (c for c in clusters if len(members[c]) > 1), key=lambda c: (-len(members[c]), members[c][0])
    )
    for new, old in enumerate(order):
        tidy[members[old]] = new
    return tidy


def cluster(embeddings: np.ndarray, method: str = "hdbscan", **parameters: object) -> np.ndarray:
    """Cluster embeddings with one of :data:`CLUSTERERS`.

    Args:
        embeddings: ``[N, D]`` embeddings (normalised here).
        method: a key of :data:`CLUSTERERS`.
        **parameters: the method's parameters (see :func:`method_parameters`).

    Returns:
        ``[N]`` int64 labels: 0.. by decreasing cluster size, ``-1`` = unclustered (noise or alone).

    Raises:
        ConfigError: an unknown method, a parameter the method does not take, a bad value (named), or fewer
            than two images.
    """
    known = method_parameters(method)
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise ConfigError(
            f"clustering method {method!r} does not take {', '.join(unknown)} (it takes: {', '.join(known)})"
        )
    rows = unit_rows(embeddings)
    if len(rows) < 2:
        raise ConfigError(f"clustering needs at least 2 images, got {len(rows)}")
    return tidy_labels(CLUSTERERS[method](rows, **parameters))


def cluster_counts(labels: np.ndarray) -> dict:
    """``{"images", "clusters", "clustered", "unclustered", "sizes"}`` of tidy labels (sizes largest first)."""
    labels = np.asarray(labels)
    sizes = np.bincount(labels[labels >= 0]) if (labels >= 0).any() else np.zeros(0, dtype=np.int64)
    return {
        "images": int(len(labels)),
        "clusters": int(len(sizes)),
        "clustered": int(sizes.sum()),
        "unclustered": int((labels < 0).sum()),
        "sizes": [int(s) for s in sizes],
    }
