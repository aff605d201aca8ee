"""Pseudo-identities of unlabelled images: k-reciprocal Jaccard distance, DBSCAN, tracklet constraints.

Each epoch of unsupervised domain adaptation (Cluster Contrast, SpCL) clusters the features of every target
image: :func:`jaccard_distance` (Zhong et al.'s k-reciprocal Jaccard distance, sparse: only the pairs whose
encodings overlap are stored, the others are at distance 1) -> :func:`dbscan_labels` (outliers -1) or
:func:`constrained_labels` (crops of one tracklet share a label; tracklets seen in one frame of one camera
never share one). :func:`label_quality` scores the labels against true identities for the logs.

Label convention: ``int64``, ``0..C-1`` numbered in the order of each cluster's first item, -1 for outliers.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import sparse
from torch import Tensor

from reidkit.rerank.neighbours import jaccard_overlaps, kreciprocal_encoding
from reidkit.track.agglomerative import constrained_agglomerative

__all__ = ["constrained_labels", "dbscan_labels", "jaccard_distance", "label_quality"]

#: label of an item left out of every cluster
OUTLIER = -1


def _csr_minimum(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, count: int) -> sparse.csr_matrix:
    """CSR ``[count, count]`` of the entries (smallest value where a position repeats), explicit zeros kept."""
    order = np.lexsort((values, cols, rows))
    rows, cols, values = rows[order], cols[order], values[order]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
    rows, cols, values = rows[first], cols[first], values[first]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=count))])
    return sparse.csr_matrix((values, cols, indptr), shape=(count, count))


def _entries(matrix: sparse.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    return rows, matrix.indices.astype(np.int64), matrix.data


def jaccard_distance(
    features: np.ndarray | Tensor,
    *,
    k1: int = 30,
    k2: int = 6,
    metric: str = "euclidean",
    max_distance: float | None = None,
    chunk_size: int = 512,
) -> sparse.csr_matrix:
    """k-reciprocal Jaccard distances between all ``N`` items, stored where the encodings overlap.

    Steps 1-6 of the :mod:`reidkit.rerank` docstring on one set of items (the conventions of
    :func:`reidkit.rerank.k_reciprocal`): ``J[i, j] = 1 - s / (2 - s)`` with
    ``s = sum_k min(V[i, k], V[j, k])``. The pairs with ``s = 0`` (most of them) are at distance exactly 1 and
    are not stored: ``V`` has ``O(k1 * k2)`` entries per row, so each item overlaps a number of others that
    depends on ``k1, k2`` but not on ``N`` (about 2,400 at ``k1=30, k2=6`` on noisy 256-d features), and no
    ``N x N`` matrix is ever held (the neighbour search of
    :func:`reidkit.rerank.neighbours.kreciprocal_encoding` is chunked). The diagonal is
    stored as 0, as is any pair at distance 0 (explicit zeros: for :func:`dbscan_labels`, a stored entry is a
    neighbour and a missing one is not); values are clipped to ``[0, 1]`` (rounding) and exactly symmetric.

    Reference: Zhong et al., "Re-ranking Person Re-identification with k-reciprocal Encoding", CVPR 2017.

    Args:
        features: ``[N, D]`` features (numpy or CPU/CUDA tensor; the neighbour search runs on its device).
        k1: neighbourhood size of the k-reciprocal sets (Cluster Contrast: 30).
        k2: neighbourhood size of the local query expansion (1 = none).
        metric: ``"euclidean"`` or ``"cosine"``: the original distance.
        max_distance: also leave out the pairs farther than this. Most overlapping pairs lie just below 1
            (on noisy features over 99% of them are above 0.9), so passing the DBSCAN radius cuts the memory
            many times and leaves :func:`dbscan_labels` unchanged for any ``eps <= max_distance``
            (:func:`constrained_labels` then counts the pairs left out as 1 in its group distances).
            None: every overlapping pair.
        chunk_size: rows per strip of the neighbour search and per block of the Jaccard sums.

    Returns:
        CSR ``[N, N]`` float32 distances with sorted indices.

    Raises:
        ValueError: features that are not ``[N, D]``, bad ``k1``/``k2`` or ``k1 + 1 > N``.
    """
    encoding = kreciprocal_encoding(features, k1, k2, metric, chunk_size=chunk_size)
    distance = jaccard_overlaps(encoding, max_distance=max_distance, block_rows=chunk_size)
    count = distance.shape[0]
    rows, cols, values = _entries(distance)
    off_diagonal = rows != cols
    items = np.arange(count)
    return _csr_minimum(
        np.concatenate([rows[off_diagonal], items]),
        np.concatenate([cols[off_diagonal], items]),
        np.concatenate([np.clip(values[off_diagonal], 0.0, 1.0), np.zeros(count)]).astype(np.float32),
        count,
    )


def _check_distance(distance, name: str = "distance") -> sparse.csr_matrix:
    if not sparse.issparse(distance):
        raise ValueError(f"{name}: expected a scipy sparse [N, N] matrix (jaccard_distance), got {type(distance)}")
    if distance.ndim != 2 or distance.shape[0] != distance.shape[1]:
        raise ValueError(f"{name}: expected a square [N, N] matrix, got shape {distance.shape}")
    distance = sparse.csr_matrix(distance)
    if distance.nnz and not (np.all(np.isfinite(distance.data)) and distance.data.min() >= 0):
        raise ValueError(f"{name}: expected finite non-negative distances")
    return distance


def _check_clustering(eps: float, min_samples: int) -> None:
    if not float(eps) > 0:
        raise ValueError(f"eps: expected a positive distance, got {eps!r}")
    if int(min_samples) != min_samples or min_samples < 1:
        raise ValueError(f"min_samples: expected a positive integer, got {min_samples!r}")


def _renumber(labels: np.ndarray) -> np.ndarray:
    """Labels ``0..C-1`` in the order of each cluster's first item; negative labels become -1."""
    labels = np.asarray(labels)
    out = np.full(len(labels), OUTLIER, dtype=np.int64)
    clustered = labels >= 0
    if clustered.any():
        _, first, inverse = np.unique(labels[clustered], return_index=True, return_inverse=True)
        rank = np.empty(len(first), dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(len(first))
        out[clustered] = rank[inverse.reshape(-1)]
    return out


def dbscan_labels(distance: sparse.spmatrix, *, eps: float = 0.6, min_samples: int = 4) -> np.ndarray:
    """DBSCAN on a sparse precomputed distance matrix.

    ``sklearn.cluster.DBSCAN(metric="precomputed")``: the neighbours of item ``i`` are the *stored* entries
    of row ``i`` with distance ``<= eps`` (a missing entry is never a neighbour, an explicit zero is; every
    item is its own neighbour). A core item has at least ``min_samples`` neighbours, itself included; a
    cluster is a connected set of core items plus their neighbours (a border item goes to the cluster found
    first); the rest are outliers.

    Reference: Ester et al., "A Density-Based Algorithm for Discovering Clusters", KDD 1996.

    Args:
        distance: ``[N, N]`` sparse distances (:func:`jaccard_distance`).
        eps: neighbourhood radius (Cluster Contrast: 0.6 on Market-1501).
        min_samples: neighbours (itself included) that make an item a core item.

    Returns:
        ``[N]`` int64 labels ``0..C-1`` in order of first appearance, -1 for outliers.
    """
    distance = _check_distance(distance)
    _check_clustering(eps, min_samples)
    if distance.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    try:
        from sklearn.cluster import DBSCAN
    except ImportError:
        raise ImportError("pseudo-label clustering needs scikit-learn: pip install reidkit[track]") from None
    model = DBSCAN(eps=float(eps), min_samples=int(min_samples), metric="precomputed")
    return _renumber(model.fit(distance).labels_)


def _group_index(groups: np.ndarray | None, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(distinct group ids, ``[N]`` each item's index among them); items are their own group without groups."""
    if groups is None:
        return np.arange(count), np.arange(count)
    groups = np.asarray(groups)
    if groups.shape != (count,) or not np.issubdtype(groups.dtype, np.integer):
        raise ValueError(f"groups: expected [N] = [{count}] integer tracklet ids, got {groups.dtype} {groups.shape}")
    ids, inverse = np.unique(groups, return_inverse=True)
    return ids, inverse.reshape(-1)


def _blocked_pairs(cannot_link, ids: np.ndarray) -> np.ndarray:
    """``[P, 2]`` group indices of the cannot-link pairs (given as group ids)."""
    pairs = np.asarray(list(cannot_link) if cannot_link is not None else [], dtype=np.int64).reshape(-1, 2)
    index = np.searchsorted(ids, pairs)
    known = (index < len(ids)) & (ids[np.minimum(index, len(ids) - 1)] == pairs)
    if not known.all():
        raise ValueError(f"cannot_link: group ids {sorted(set(pairs[~known].tolist()))} are not in groups")
    if (pairs[:, 0] == pairs[:, 1]).any():
        raise ValueError("cannot_link: a group cannot be linked against itself")
    return index


def _group_majority(labels: np.ndarray, group: np.ndarray, num_groups: int) -> np.ndarray:
    """``[G]`` each group's most frequent non-outlier label (ties: the smaller label), -1 when it has none."""
    result = np.full(num_groups, OUTLIER, dtype=np.int64)
    clustered = labels >= 0
    if not clustered.any():
        return result
    width = int(labels.max()) + 1
    keys, counts = np.unique(group[clustered] * width + labels[clustered], return_counts=True)
    key_group, key_label = keys // width, keys % width
    order = np.lexsort((key_label, -counts, key_group))  # per group: most frequent, then smallest label
    first = np.ones(len(order), dtype=bool)
    first[1:] = key_group[order][1:] != key_group[order][:-1]
    result[key_group[order][first]] = key_label[order][first]
    return result


def _group_distances(distance: sparse.csr_matrix, items: np.ndarray, item_group: np.ndarray) -> np.ndarray:
    """``[g, g]`` mean item distance between the groups of ``items`` (missing entries count as 1).

    Args:
        items: the cluster's items; ``item_group``: their group index ``0..g-1`` within the cluster.
    """
    block = distance[items][:, items].tocoo()
    dense = np.ones((len(items), len(items)))
    dense[block.row, block.col] = block.data
    num_groups = int(item_group.max()) + 1
    member = np.zeros((len(items), num_groups))
    member[np.arange(len(items)), item_group] = 1.0
    size = member.sum(axis=0)
    return (member.T @ dense @ member) / np.outer(size, size)


def constrained_labels(
    distance: sparse.spmatrix,
    *,
    groups: np.ndarray | None = None,
    cannot_link: Iterable[tuple[int, int]] | None = None,
    eps: float = 0.6,
    min_samples: int = 4,
) -> np.ndarray:
    """DBSCAN pseudo-labels that respect tracklets: must-link within a group, cannot-link between groups.

    1. Distances between items of one group are set to 0 (stored), so a tracklet's crops start together;
    2. :func:`dbscan_labels`;
    3. every group takes one label: its most frequent non-outlier label (ties: the smaller), or -1 when all
       its items are outliers;
    4. a cluster holding both groups of a cannot-link pair is split at the group level by
       :func:`reidkit.track.agglomerative.constrained_agglomerative` (average linkage over groups, the
       distance between two groups being the mean item distance, merges while ``< eps``, never across a
       cannot-link pair); pieces of fewer than ``min_samples`` items become outliers.

    Without ``groups`` every item is its own group (``cannot_link`` then names items).

    Args:
        distance: ``[N, N]`` sparse distances (:func:`jaccard_distance`); missing entries are at distance 1.
        groups: ``[N]`` integer tracklet id of each item, or None.
        cannot_link: pairs of group ids that must never share a cluster (two tracklets in one frame of one
            camera), or None.
        eps, min_samples: as in :func:`dbscan_labels`.

    Returns:
        ``[N]`` int64 labels ``0..C-1`` in order of first appearance, -1 for outliers.

    Raises:
        ValueError: bad shapes, unknown group ids in ``cannot_link`` or a group linked against itself.
    """
    distance = _check_distance(distance)
    _check_clustering(eps, min_samples)
    count = distance.shape[0]
    ids, group = _group_index(groups, count)
    blocked = _blocked_pairs(cannot_link, ids)
    if groups is None:
        labels = dbscan_labels(distance, eps=eps, min_samples=min_samples)
    else:
        order = np.argsort(group, kind="stable")
        starts = np.searchsorted(group[order], np.arange(len(ids)))
        sizes = np.bincount(group, minlength=len(ids))
        pair_group = np.repeat(np.arange(len(ids)), sizes**2)
        offset = np.arange(len(pair_group)) - np.repeat(np.cumsum(sizes**2) - sizes**2, sizes**2)
        first = order[starts[pair_group] + offset // sizes[pair_group]]
        second = order[starts[pair_group] + offset % sizes[pair_group]]
        rows, cols, values = _entries(distance)
        linked = _csr_minimum(
            np.concatenate([rows, first]),
            np.concatenate([cols, second]),
            np.concatenate([values, np.zeros(len(first), dtype=values.dtype)]),
            count,
        )
        labels = dbscan_labels(linked, eps=eps, min_samples=min_samples)
        labels = _group_majority(labels, group, len(ids))[group]
    if len(blocked) == 0:
        return _renumber(labels)
    group_label = _group_majority(labels, group, len(ids))  # one label per group by now
    conflict = group_label[blocked[:, 0]]
    conflict = np.unique(conflict[(conflict >= 0) & (conflict == group_label[blocked[:, 1]])])
    next_label = int(labels.max()) + 1
    for cluster in conflict:
        items = np.flatnonzero(labels == cluster)
        cluster_groups, item_group = np.unique(group[items], return_inverse=True)
        local = np.full(len(ids), -1)
        local[cluster_groups] = np.arange(len(cluster_groups))
        inside = blocked[(local[blocked[:, 0]] >= 0) & (local[blocked[:, 1]] >= 0)]
        forbidden = np.zeros((len(cluster_groups), len(cluster_groups)), dtype=bool)
        forbidden[local[inside[:, 0]], local[inside[:, 1]]] = True
        pieces = constrained_agglomerative(
            _group_distances(distance, items, item_group.reshape(-1)),
            float(eps),
            cannot_link=forbidden,
            linkage="average",
        )[item_group.reshape(-1)]
        piece_sizes = np.bincount(pieces)
        labels[items] = np.where(piece_sizes[pieces] >= min_samples, next_label + pieces, OUTLIER)
        next_label += len(piece_sizes)
    return _renumber(labels)


def label_quality(labels: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Quality of pseudo-labels against true identities (for the logs, when true ids exist).

    Args:
        labels: ``[N]`` pseudo-labels, -1 for outliers.
        truth: ``[N]`` true identities.

    Returns:
        ``{"clusters", "outliers", "outlier_fraction", "size_min", "size_mean", "size_median", "size_max",
        "purity", "nmi"}``: cluster count, outlier count and fraction, cluster size statistics (0 without
        clusters), purity (the fraction of clustered items whose cluster's most frequent true id is theirs)
        and ``sklearn.metrics.normalized_mutual_info_score`` over the clustered items (both NaN without
        clustered items).
    """
    labels, truth = np.asarray(labels), np.asarray(truth)
    if labels.ndim != 1 or truth.shape != labels.shape:
        raise ValueError(f"labels, truth: expected two [N] arrays, got shapes {labels.shape}, {truth.shape}")
    clustered = labels >= 0
    count = len(labels)
    result: dict[str, float] = {
        "clusters": 0,
        "outliers": int((~clustered).sum()),
        "outlier_fraction": float((~clustered).mean()) if count else 0.0,
        "size_min": 0,
        "size_mean": 0.0,
        "size_median": 0.0,
        "size_max": 0,
        "purity": float("nan"),
        "nmi": float("nan"),
    }
    if not clustered.any():
        return result
    try:
        from sklearn.metrics import normalized_mutual_info_score
    except ImportError:
        raise ImportError("label quality needs scikit-learn: pip install reidkit[track]") from None
    cluster_ids, cluster = np.unique(labels[clustered], return_inverse=True)
    _, true_id = np.unique(truth[clustered], return_inverse=True)
    sizes = np.bincount(cluster.reshape(-1))
    table = np.zeros((len(cluster_ids), int(true_id.max()) + 1), dtype=np.int64)
    np.add.at(table, (cluster.reshape(-1), true_id.reshape(-1)), 1)
    result.update(
        clusters=len(cluster_ids),
        size_min=int(sizes.min()),
        size_mean=float(sizes.mean()),
        size_median=float(np.median(sizes)),
        size_max=int(sizes.max()),
        purity=float(table.max(axis=1).sum() / clustered.sum()),
        nmi=float(normalized_mutual_info_score(truth[clustered], labels[clustered])),
    )
    return result
