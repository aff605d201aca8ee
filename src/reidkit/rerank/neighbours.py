"""The k-reciprocal encoding and its Jaccard distances between all items, for use outside re-ranking.

Steps 1-6 of the :mod:`reidkit.rerank` docstring on one set of ``N`` items (pseudo-labels for clustering,
Zhong et al.'s Jaccard distance), with the fast mode's machinery: an exhaustive chunked neighbour search, a
sparse ``V`` with ``O(N * k1)`` entries and Jaccard sums over its non-zeros only. The numbers are those of
:func:`reidkit.rerank.k_reciprocal_fast` for the same items.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from reidkit.distance import SquaredRowDistance
from reidkit.rerank._kreciprocal import _check_parameters, _jaccard_pairs
from reidkit.rerank.fast import SEARCHES, _search_and_encode

if TYPE_CHECKING:
    from scipy import sparse

__all__ = ["jaccard_overlaps", "kreciprocal_encoding"]


def kreciprocal_encoding(
    features: np.ndarray | Tensor,
    k1: int = 20,
    k2: int = 6,
    metric: str = "euclidean",
    *,
    candidates: int | None = None,
    chunk_size: int = 512,
    search: str = "auto",
) -> sparse.csr_matrix:
    """The k-reciprocal encoding ``V`` of every item after local query expansion (steps 1-5).

    Reference: Zhong et al., "Re-ranking Person Re-identification with k-reciprocal Encoding", CVPR 2017.

    Args:
        features: ``[N, D]`` features (numpy or CPU/CUDA tensor; float64 is kept, other types become float32);
            the neighbour search runs on their device.
        k1: neighbourhood size of the k-reciprocal sets; ``k2``: of the local query expansion (1 = none).
        metric: ``"euclidean"`` or ``"cosine"``: the original distance, squared and row-normalised.
        candidates: neighbour list length kept by the search (default ``2 * (k1 + 1)``).
        chunk_size: rows per strip of the neighbour search.
        search: ``"auto"``, ``"float32"`` or ``"bfloat16"``, as in :func:`reidkit.rerank.k_reciprocal_fast`.

    Returns:
        CSR ``[N, N]`` float64 ``V`` with sorted indices; each row sums to 1 and has ``O(k1 * k2)`` entries.

    Raises:
        ValueError: features that are not ``[N, D]``, bad ``k1``/``k2``, or more neighbours than items.
    """
    _check_parameters(k1, k2, 0.0)
    items = features if isinstance(features, Tensor) else torch.from_numpy(np.asarray(features))
    if items.ndim != 2:
        raise ValueError(f"features: expected [N, D] features, got shape {tuple(items.shape)}")
    count = items.shape[0]
    width = max(k1 + 1, k2)
    if width > count:
        raise ValueError(f"k1, k2: need at most {count - 1} neighbours (N - 1), got k1={k1}, k2={k2}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive integer, got {chunk_size!r}")
    if search not in SEARCHES:
        raise ValueError(f"search: expected one of {list(SEARCHES)}, got {search!r}")
    with torch.no_grad():
        items = items.detach()
        items = items if items.dtype == torch.float64 else items.float()
        space = SquaredRowDistance(items, metric)
        num_candidates = min(count, max(width, candidates if candidates is not None else 2 * (k1 + 1)))
        nothing = np.empty((0, count), dtype=np.float32)
        encoding, _ = _search_and_encode(space, k1, k2, num_candidates, chunk_size, 0, nothing, search)
    encoding = encoding.tocsr()
    encoding.sort_indices()
    return encoding


def jaccard_overlaps(
    encoding: sparse.spmatrix, *, max_distance: float | None = None, block_rows: int = 512
) -> sparse.csr_matrix:
    """Min-sum Jaccard distances ``1 - s / (2 - s)``, ``s = sum_k min(V[i, k], V[j, k])``, of overlapping rows.

    Only the pairs whose rows of ``V`` share a column are computed and stored (explicit zeros included, the
    diagonal among them); every other pair has ``s = 0`` and is at distance 1. Both orders of a pair add the
    same terms in the same (column) order, so the result is exactly symmetric.

    Args:
        encoding: ``[N, N]`` non-negative ``V`` whose rows sum to 1 (:func:`kreciprocal_encoding`).
        max_distance: also leave out the pairs farther than this (most overlapping pairs are close to 1, so a
            clustering radius here cuts the memory many times); None keeps every overlapping pair.
        block_rows: rows whose pairs are gathered at once (memory: their pairs sharing a column).

    Returns:
        CSR ``[N, N]`` float64 distances with sorted indices.
    """
    from scipy import sparse

    if encoding.ndim != 2 or encoding.shape[0] != encoding.shape[1]:
        raise ValueError(f"encoding: expected a square [N, N] matrix, got shape {encoding.shape}")
    if block_rows < 1:
        raise ValueError(f"block_rows: expected a positive integer, got {block_rows!r}")
    count = encoding.shape[0]
    rows_matrix = sparse.csr_matrix(encoding)
    rows_matrix.sort_indices()
    columns_matrix = rows_matrix.tocsc()
    columns_matrix.sort_indices()
    all_cols, all_values, per_row = [], [], np.zeros(count, dtype=np.int64)
    for start in range(0, count, block_rows):
        stop = min(start + block_rows, count)
        rows, cols, values = _jaccard_pairs(rows_matrix[start:stop], columns_matrix, count)
        if max_distance is not None:
            close = values <= max_distance
            rows, cols, values = rows[close], cols[close], values[close]
        per_row[start:stop] = np.bincount(rows, minlength=stop - start)
        all_cols.append(cols)
        all_values.append(values)
    indptr = np.concatenate([[0], np.cumsum(per_row)])
    cols = np.concatenate(all_cols) if all_cols else np.zeros(0, dtype=np.int64)
    values = np.concatenate(all_values) if all_values else np.zeros(0)
    # built from its arrays: a conversion could drop the explicit zeros, which are pairs at distance 0
    return sparse.csr_matrix((values, cols, indptr), shape=(count, count))
