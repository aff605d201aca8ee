"""Agglomerative clustering with cannot-link constraints (for tracklets, persons and photos alike).

Start with every item its own cluster; repeatedly merge the two closest clusters whose linkage distance is
``< threshold`` and between which no cannot-link pair exists (a cannot-link between any member of A and any
member of B forbids merging A and B, also after later merges); stop when no allowed pair is closer than the
threshold. Linkages (Lance-Williams updates of the cluster distance matrix):

- ``average``: mean distance over all member pairs (UPGMA);
- ``single``: the closest member pair;
- ``complete``: the farthest member pair.

Infinite and NaN distances never merge. Ties: among pairs at the same distance, the one with the smallest
(lower cluster, higher cluster) index is merged first, a cluster's index being its smallest member's.

Cost: ``O(N^2)`` memory; each merge updates one row and rescans only the rows whose nearest neighbour was one of
the merged clusters, so typical runs take ``O(N^2)`` to ``O(N^2 log N)`` time (``benchmarks/track.py`` has a
timing).
"""

from __future__ import annotations

import numpy as np

__all__ = ["LINKAGES", "constrained_agglomerative"]

LINKAGES = ("average", "single", "complete")


def _labels(parent: np.ndarray) -> np.ndarray:
    roots = np.array([_root(parent, i) for i in range(len(parent))], dtype=np.int64)
    _, first = np.unique(roots, return_index=True)
    order = {int(roots[i]): rank for rank, i in enumerate(sorted(first))}
    return np.array([order[int(r)] for r in roots], dtype=np.int64)


def _root(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = int(parent[i])
    return i


def constrained_agglomerative(
    distance: np.ndarray,
    threshold: float,
    *,
    cannot_link: np.ndarray | None = None,
    linkage: str = "average",
) -> np.ndarray:
    """Cluster labels of ``N`` items; see the module docstring.

    Args:
        distance: ``[N, N]`` symmetric distances (the diagonal is ignored).
        threshold: clusters merge only while their linkage distance is ``< threshold``.
        cannot_link: ``[N, N]`` bool, True where two items must end in different clusters (symmetrised).
        linkage: ``average``, ``single`` or ``complete``.

    Returns:
        ``[N]`` int64 labels ``0..K-1``, numbered in the order of each cluster's smallest member.
    """
    if linkage not in LINKAGES:
        raise ValueError(f"linkage must be one of {', '.join(LINKAGES)}, got {linkage!r}")
    d = np.array(distance, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"distance must be a square [N, N] matrix, got shape {d.shape}")
    n = len(d)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    d[~np.isfinite(d)] = np.inf
    d = np.minimum(d, d.T) if linkage == "single" else np.maximum(d, d.T)
    blocked = np.zeros((n, n), dtype=bool) if cannot_link is None else np.array(cannot_link, dtype=bool)
    if blocked.shape != (n, n):
        raise ValueError(f"cannot_link must be [N, N] = {(n, n)}, got {blocked.shape}")
    blocked |= blocked.T
    np.fill_diagonal(d, np.inf)
    size = np.ones(n)
    alive = np.ones(n, dtype=bool)
    parent = np.arange(n)

    def effective(row: int) -> np.ndarray:
        values = np.where(blocked[row] | ~alive, np.inf, d[row])
        values[row] = np.inf
        return values

    nearest = np.empty(n, dtype=np.int64)
    best = np.empty(n)
    for i in range(n):
        values = effective(i)
        nearest[i] = int(np.argmin(values))
        best[i] = values[nearest[i]]
    while True:
        a = int(np.argmin(np.where(alive, best, np.inf)))
        if not alive[a] or not best[a] < threshold:
            break
        b = int(nearest[a])
        a, b = min(a, b), max(a, b)
        if linkage == "average":
            merged = (size[a] * d[a] + size[b] * d[b]) / (size[a] + size[b])
        elif linkage == "single":
            merged = np.minimum(d[a], d[b])
        else:
            merged = np.maximum(d[a], d[b])
        d[a], d[:, a] = merged, merged
        d[a, a] = np.inf
        d[b], d[:, b] = np.inf, np.inf
        blocked[a] |= blocked[b]
        blocked[:, a] = blocked[a]
        size[a] += size[b]
        alive[b] = False
        parent[b] = a
        best[b] = np.inf
        rows = np.flatnonzero(alive)
        stale = (rows == a) | (nearest[rows] == a) | (nearest[rows] == b)
        others = rows[~stale]
        to_a = d[others, a]
        closer = ~blocked[others, a] & (
            (to_a < best[others]) | ((to_a == best[others]) & (a < nearest[others]))
        )
        nearest[others[closer]], best[others[closer]] = a, to_a[closer]
        for row in rows[stale]:
            values = effective(int(row))
            nearest[row] = int(np.argmin(values))
            best[row] = values[nearest[row]]
    return _labels(parent)
