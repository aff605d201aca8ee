"""The k-reciprocal encoding that the exact and the fast mode share.

Steps 3-7 of the :mod:`reidkit.rerank` docstring, from sorted neighbour lists: the expanded k-reciprocal sets,
the encoding ``V`` with local query expansion, and the final mix of Jaccard and original distances.
"""

from __future__ import annotations

import numpy as np

#: query rows of the final [Q, G] matrix processed at once (bounded memory for the Jaccard sums)
_OUTPUT_BLOCK_ELEMENTS = 1 << 22


def _check_parameters(k1: int, k2: int, lambda_value: float) -> None:
    if int(k1) != k1 or k1 < 1:
        raise ValueError(f"k1: expected a positive integer, got {k1!r}")
    if int(k2) != k2 or k2 < 1:
        raise ValueError(f"k2: expected a positive integer, got {k2!r}")
    if not 0.0 <= float(lambda_value) <= 1.0:
        raise ValueError(f"lambda_value: expected a number in [0, 1], got {lambda_value!r}")


def _expanded_neighbours(neighbours: np.ndarray, k1: int, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Expanded k-reciprocal sets ``R*(i)`` from sorted neighbour lists.

    Args:
        neighbours: ``[N, K]`` nearest items of each item, nearest first, ``K >= k1 + 1``.

    Returns:
        (rows, cols): the pairs ``(i, j in R*(i))``, each once, sorted by row then column.
    """
    count = neighbours.shape[0]
    wide = k1 + 1
    half = int(round(k1 / 2)) + 1
    items = np.arange(count)
    first = neighbours[:, :wide]
    reciprocal = (neighbours[first][:, :, :wide] == items[:, None, None]).any(axis=2)  # [N, k1+1]
    first_half = neighbours[:, :half]
    reciprocal_half = (neighbours[first_half][:, :, :half] == items[:, None, None]).any(axis=2)  # [N, h]
    all_rows, all_cols = [], []
    for start in range(0, count, block):
        stop = min(start + block, count)
        own = np.where(reciprocal[start:stop], first[start:stop], -1)  # R(i, k1), padded with -1
        candidates = first[start:stop]  # c; only reciprocal ones are used
        their = first_half[candidates]  # [B, k1+1, h]
        their_valid = reciprocal_half[candidates]  # R(c, k1/2) membership
        in_own = (their[..., None] == own[:, None, None, :]).any(axis=3)  # [B, k1+1, h]
        shared = (in_own & their_valid).sum(axis=2)
        size = their_valid.sum(axis=2)
        accepted = reciprocal[start:stop] & (shared > 2.0 / 3.0 * size)
        added = np.where(accepted[..., None] & their_valid, their, -1).reshape(stop - start, -1)
        members = np.sort(np.concatenate([own, added], axis=1), axis=1)
        fresh = members >= 0
        fresh[:, 1:] &= members[:, 1:] != members[:, :-1]
        rows, cols = np.nonzero(fresh)
        all_rows.append(rows + start)
        all_cols.append(members[rows, cols])
    return np.concatenate(all_rows), np.concatenate(all_cols)


def _encoding(neighbours: np.ndarray, rows: np.ndarray, cols: np.ndarray, pair_distance: np.ndarray, k2: int):
    """``V`` after local query expansion, as a CSC matrix ``[N, N]`` (float64).

    Args:
        neighbours: ``[N, K]`` sorted neighbour lists (``K >= k2``).
        rows, cols: pairs of ``R*``; ``pair_distance``: their normalised squared distances ``D[i, j]``.
    """
    from scipy import sparse

    count = neighbours.shape[0]
    weight = np.exp(-pair_distance.astype(np.float64))
    weight /= np.bincount(rows, weights=weight, minlength=count)[rows]
    encoding = sparse.csr_matrix((weight, (rows, cols)), shape=(count, count))
    if k2 > 1:
        mean_rows = np.repeat(np.arange(count), k2)
        average = sparse.csr_matrix(
            (np.full(count * k2, 1.0 / k2), (mean_rows, neighbours[:, :k2].reshape(-1))), shape=(count, count)
        )
        encoding = average @ encoding
    return encoding


def _shared_minimums(encoding_rows, gallery_columns) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (row entry, gallery entry) pair of ``V`` that shares a column, and ``min`` of the two values.

    Args:
        encoding_rows: CSR ``[B, N]``: a block of rows of ``V``.
        gallery_columns: CSC ``[G, N]``: the gallery rows of ``V``, column-indexed (an inverted index).

    Returns:
        (``[T]`` block row, ``[T]`` gallery row, ``[T]`` ``min(V[row, k], V[gallery, k])``), grouped by the
        block's entries in their stored order, then by the gallery rows in the column's stored order.
    """
    size = encoding_rows.shape[0]
    entry_rows = np.repeat(np.arange(size), np.diff(encoding_rows.indptr))
    columns, values = encoding_rows.indices, encoding_rows.data
    starts = gallery_columns.indptr[columns]
    lengths = gallery_columns.indptr[columns + 1] - starts
    total = int(lengths.sum())
    # every (query entry, gallery entry) pair sharing a column: a ragged range per query entry
    offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(total)
    pair_rows = np.repeat(entry_rows, lengths)
    pair_gallery = gallery_columns.indices[offsets]
    smaller = np.minimum(np.repeat(values, lengths), gallery_columns.data[offsets])
    return pair_rows, pair_gallery, smaller


def _jaccard_block(encoding_rows, gallery_columns, num_query: int, num_gallery: int) -> np.ndarray:
    """``[B, G]`` min-sum Jaccard distances between a block of query rows and every gallery row of ``V``.

    Args:
        encoding_rows: CSR ``[B, N]``: the block's rows of ``V``.
        gallery_columns: CSC ``[G, N]``: the gallery rows of ``V``, column-indexed (an inverted index).
    """
    size = encoding_rows.shape[0]
    minimum_sum = np.zeros(size * num_gallery)
    pair_rows, pair_gallery, smaller = _shared_minimums(encoding_rows, gallery_columns)
    if len(smaller):
        minimum_sum = np.bincount(
            pair_rows * num_gallery + pair_gallery, weights=smaller, minlength=size * num_gallery
        )
    minimum_sum = minimum_sum.reshape(size, num_gallery)
    return 1.0 - minimum_sum / (2.0 - minimum_sum)


def _jaccard_pairs(encoding_rows, gallery_columns, num_gallery: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The min-sum Jaccard distances of :func:`_jaccard_block`, only for the pairs that share a column.

    The sums add the same terms in the same order as :func:`_jaccard_block`'s, so the values are equal bit
    for bit; the other pairs are at distance exactly 1.

    Returns:
        (``[P]`` block row, ``[P]`` gallery row, ``[P]`` float64 distances), sorted by row then gallery row.
    """
    pair_rows, pair_gallery, smaller = _shared_minimums(encoding_rows, gallery_columns)
    keys, inverse = np.unique(pair_rows * num_gallery + pair_gallery, return_inverse=True)
    minimum_sum = np.bincount(inverse.reshape(-1), weights=smaller, minlength=len(keys))
    return keys // num_gallery, keys % num_gallery, 1.0 - minimum_sum / (2.0 - minimum_sum)


def _final_distances(
    encoding, num_query: int, num_gallery: int, original_block, lambda_value: float, out: np.ndarray
) -> np.ndarray:
    """Fill ``out`` ``[Q, G]`` with ``(1 - lambda) * J + lambda * D``; ``original_block(start, stop)`` gives D."""
    encoding = encoding.tocsr()
    gallery_columns = encoding[num_query:].tocsc()
    gallery_columns.sort_indices()
    block = max(1, _OUTPUT_BLOCK_ELEMENTS // max(num_gallery, 1))
    for start in range(0, num_query, block):
        stop = min(start + block, num_query)
        jaccard = _jaccard_block(encoding[start:stop], gallery_columns, num_query, num_gallery)
        out[start:stop] = (1.0 - lambda_value) * jaccard + lambda_value * original_block(start, stop)
    return out
