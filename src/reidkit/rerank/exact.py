"""Exact k-reciprocal re-ranking from the three distance matrices, and its use on a small candidate set."""

from __future__ import annotations

import numpy as np
from torch import Tensor

from reidkit._arrays import as_numpy
from reidkit.distance import pairwise_distance_numpy
from reidkit.rerank._kreciprocal import _check_parameters, _encoding, _expanded_neighbours, _final_distances


def _as_numpy_matrix(matrix, name: str) -> np.ndarray:
    array = as_numpy(matrix, name, ndim=2, what="distance matrix")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: contains NaN or infinite distances")
    return array


def k_reciprocal(
    q_g: np.ndarray | Tensor,
    q_q: np.ndarray | Tensor,
    g_g: np.ndarray | Tensor,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
) -> np.ndarray:
    """Exact k-reciprocal re-ranking from the three distance matrices (steps 1-7 of the module docstring).

    Reference: Zhong et al., "Re-ranking Person Re-identification with k-reciprocal Encoding", CVPR 2017.

    Args:
        q_g: ``[Q, G]`` query-gallery distances.
        q_q: ``[Q, Q]`` query-query distances.
        g_g: ``[G, G]`` gallery-gallery distances.
        k1: neighbourhood size of the k-reciprocal sets.
        k2: neighbourhood size of the local query expansion (1 = none).
        lambda_value: weight of the original distance in the final distance.

    Returns:
        ``[Q, G]`` re-ranked distances (float32 when the inputs are float32, else float64).
    """
    _check_parameters(k1, k2, lambda_value)
    q_g = _as_numpy_matrix(q_g, "q_g")
    q_q = _as_numpy_matrix(q_q, "q_q")
    g_g = _as_numpy_matrix(g_g, "g_g")
    num_query, num_gallery = q_g.shape
    if q_q.shape != (num_query, num_query) or g_g.shape != (num_gallery, num_gallery):
        raise ValueError(
            f"q_q, g_g: expected shapes {(num_query, num_query)} and {(num_gallery, num_gallery)} "
            f"to match q_g {q_g.shape}, got {q_q.shape} and {g_g.shape}"
        )
    dtype = np.result_type(q_g.dtype, q_q.dtype, g_g.dtype, np.float32)
    count = num_query + num_gallery
    distance = np.empty((count, count), dtype=dtype)
    distance[:num_query, :num_query] = q_q
    distance[:num_query, num_query:] = q_g
    distance[num_query:, :num_query] = q_g.T
    distance[num_query:, num_query:] = g_g
    np.square(distance, out=distance)
    row_max = distance.max(axis=1, keepdims=True)
    distance /= np.maximum(row_max, np.finfo(dtype).tiny)
    width = max(k1 + 1, k2)
    if width > count:
        raise ValueError(f"k1, k2: need at most {count - 1} neighbours (Q + G - 1), got k1={k1}, k2={k2}")
    neighbours = np.empty((count, width), dtype=np.int64)
    for start in range(0, count, 1024):
        neighbours[start : start + 1024] = np.argsort(distance[start : start + 1024], axis=1, kind="stable")[
            :, :width
        ]
    rows, cols = _expanded_neighbours(neighbours, k1)
    encoding = _encoding(neighbours, rows, cols, distance[rows, cols], k2)
    out = np.empty((num_query, num_gallery), dtype=dtype)
    return _final_distances(
        encoding,
        num_query,
        num_gallery,
        lambda start, stop: distance[start:stop, num_query:],
        float(lambda_value),
        out,
    )


def rerank_candidates(
    query: np.ndarray,
    candidates: np.ndarray,
    *,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    metric: str = "euclidean",
) -> np.ndarray:
    """Exact k-reciprocal re-ranking of one query's small candidate set (for example the hits of an index).

    The candidates are the whole gallery: the three distance matrices come from
    :func:`reidkit.distance.pairwise_distance_numpy` and go through :func:`k_reciprocal`, with the
    neighbourhoods capped by the set size, ``k1 <- min(k1, C - 1)`` and ``k2 <- min(k2, k1)``. With fewer than
    3 candidates there is nothing to re-rank and the plain distances are returned.

    Reference: Zhong et al., "Re-ranking Person Re-identification with k-reciprocal Encoding", CVPR 2017.

    Args:
        query: ``[1, D]`` (or ``[D]``) query feature.
        candidates: ``[C, D]`` candidate features.
        k1, k2, lambda_value: as in :func:`k_reciprocal`, before capping.
        metric: ``"euclidean"``, ``"sqeuclidean"`` or ``"cosine"``: the original distance.

    Returns:
        ``[C]`` re-ranked distances, in candidate order (sort them to re-rank; float32 for float32 inputs).
    """
    _check_parameters(k1, k2, lambda_value)
    query = np.asarray(query)
    if query.ndim == 1:
        query = query[None, :]
    if query.ndim != 2 or query.shape[0] != 1:
        raise ValueError(f"query: expected one [1, D] feature, got shape {query.shape}")
    candidates = np.asarray(candidates)
    if candidates.ndim != 2 or candidates.shape[1] != query.shape[1]:
        raise ValueError(
            f"candidates: expected [C, {query.shape[1]}] features like the query, got shape {candidates.shape}"
        )
    q_g = pairwise_distance_numpy(query, candidates, metric)
    count = candidates.shape[0]
    if count < 3:
        return q_g[0]
    k1 = min(int(k1), count - 1)
    q_q = pairwise_distance_numpy(query, query, metric)
    g_g = pairwise_distance_numpy(candidates, candidates, metric)
    return k_reciprocal(q_g, q_q, g_g, k1=k1, k2=min(int(k2), k1), lambda_value=lambda_value)[0]
