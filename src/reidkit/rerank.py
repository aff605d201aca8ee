"""Re-ranking: k-reciprocal encoding (exact and fast) and alpha query expansion.

k-reciprocal re-ranking (Zhong et al., CVPR 2017) replaces each query-gallery distance by a mix of a Jaccard
distance between "k-reciprocal neighbourhoods" and the original distance. The conventions are those of the
authors' evaluation code, so published numbers carry over:

1. ``d`` is the original distance; ``D[i, j] = d[i, j]^2 / max_k d[i, k]^2`` over all ``N = Q + G`` items;
2. ``N(i, k)`` = the ``k + 1`` nearest items of ``i`` (itself included) by ``D`` (ties: lower index first);
   ``R(i, k) = {j in N(i, k) : i in N(j, k)}`` (k-reciprocal neighbours);
3. expansion: ``R*(i) = R(i, k1)`` united with every ``R(c, round(k1 / 2))``, ``c in R(i, k1)``, that shares
   more than 2/3 of its members with ``R(i, k1)`` (``round`` rounds halves to even);
4. ``V[i, j] = exp(-D[i, j]) / sum_{j' in R*(i)} exp(-D[i, j'])`` for ``j in R*(i)``, 0 elsewhere;
5. local query expansion: ``V[i] <- mean of V[j]`` over the ``k2`` nearest items ``j`` of ``i`` (itself
   included);
6. Jaccard distance, min-sum form: ``s = sum_k min(V[i, k], V[j, k])``, ``J = 1 - s / (2 - s)``;
7. ``final = (1 - lambda) * J + lambda * D`` for the query x gallery pairs.

:func:`k_reciprocal` (exact) takes the three distance matrices and follows these steps exactly: ``O(N^2)``
memory for ``D`` (about 1.5 GB in float32 at Market-1501 size) and a full sort of every row.

:func:`k_reciprocal_fast` works from features and never holds an ``N x N`` matrix: neighbour lists come from an
exhaustive, chunked nearest-neighbour search over the upper triangle of the distance matrix, ``V`` is a sparse
matrix with ``O(N * k1)`` entries and the Jaccard sums touch only the non-zeros. Its output is a dense
``[Q, G]`` matrix like the exact mode's (``Q x G`` floats; the working memory is ``O(N * k)``), and it
reproduces the exact mode.

The neighbour search stays exhaustive on purpose. Approximate searches (in a PCA-projected space) and exact
pruning with projected lower bounds ``||P(x - y)|| <= ||x - y||`` were both tried: on the Market-1501-sized
synthetic benchmark (``benchmarks/eval_speed.py``, d=2048, noise-dominated features) the 256-d approximate
search lost most of the mAP, and a lower bound from the top 64 / 256 / 1024 principal directions
excluded no item at all (every item's bound stays below the 21st-neighbour distance), so pruning only adds work.
Besides, the step-1 normalisation needs each row's *largest* distance and the output needs every
query-gallery distance, so a large part of the products cannot be skipped in any case.

:func:`rerank_candidates` applies the exact mode to one query and a small candidate set (the hits of an
index search). :func:`query_expansion` implements alpha query expansion (Radenovic et al., TPAMI 2018).

Distances between features come from :mod:`reidkit.distance`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from reidkit.distance import SquaredRowDistance, pairwise_distance_numpy

#: query rows of the final [Q, G] matrix processed at once (bounded memory for the Jaccard sums)
_OUTPUT_BLOCK_ELEMENTS = 1 << 22


# ----------------------------------------------------------------------------------------------------------
# argument checks


def _check_parameters(k1: int, k2: int, lambda_value: float) -> None:
    if int(k1) != k1 or k1 < 1:
        raise ValueError(f"k1: expected a positive integer, got {k1!r}")
    if int(k2) != k2 or k2 < 1:
        raise ValueError(f"k2: expected a positive integer, got {k2!r}")
    if not 0.0 <= float(lambda_value) <= 1.0:
        raise ValueError(f"lambda_value: expected a number in [0, 1], got {lambda_value!r}")


def _as_numpy_matrix(matrix, name: str) -> np.ndarray:
    if isinstance(matrix, Tensor):
        matrix = matrix.detach().cpu().numpy()
    array = np.asarray(matrix)
    if array.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D distance matrix, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: contains NaN or infinite distances")
    return array


# ----------------------------------------------------------------------------------------------------------
# the k-reciprocal encoding, shared by both modes


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


def _jaccard_block(encoding_rows, gallery_columns, num_query: int, num_gallery: int) -> np.ndarray:
    """``[B, G]`` min-sum Jaccard distances between a block of query rows and every gallery row of ``V``.

    Args:
        encoding_rows: CSR ``[B, N]``: the block's rows of ``V``.
        gallery_columns: CSC ``[G, N]``: the gallery rows of ``V``, column-indexed (an inverted index).
    """
    size = encoding_rows.shape[0]
    entry_rows = np.repeat(np.arange(size), np.diff(encoding_rows.indptr))
    columns, values = encoding_rows.indices, encoding_rows.data
    starts = gallery_columns.indptr[columns]
    lengths = gallery_columns.indptr[columns + 1] - starts
    total = int(lengths.sum())
    minimum_sum = np.zeros(size * num_gallery)
    if total:
        # every (query entry, gallery entry) pair sharing a column: a ragged range per query entry
        offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(total)
        pair_rows = np.repeat(entry_rows, lengths)
        pair_gallery = gallery_columns.indices[offsets]
        smaller = np.minimum(np.repeat(values, lengths), gallery_columns.data[offsets])
        minimum_sum = np.bincount(
            pair_rows * num_gallery + pair_gallery, weights=smaller, minlength=size * num_gallery
        )
    minimum_sum = minimum_sum.reshape(size, num_gallery)
    return 1.0 - minimum_sum / (2.0 - minimum_sum)


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


# ----------------------------------------------------------------------------------------------------------
# exact mode


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


# ----------------------------------------------------------------------------------------------------------
# fast mode


def _stable_order(distance: Tensor, index: Tensor) -> Tensor:
    """Order of each row of ``distance`` ascending, ties by ``index`` ascending (both ``[B, C]``)."""
    by_index = torch.sort(index, dim=1, stable=True).indices
    by_distance = torch.sort(distance.gather(1, by_index), dim=1, stable=True).indices
    return by_index.gather(1, by_distance)


def k_reciprocal_fast(
    qf: np.ndarray | Tensor,
    gf: np.ndarray | Tensor,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    metric: str = "euclidean",
    *,
    candidates: int | None = None,
    chunk_size: int = 512,
) -> np.ndarray:
    """k-reciprocal re-ranking from features with ``O(N * k)`` working memory.

    Steps 1-7 of the module docstring, with the ``N x N`` matrices replaced by:

    * neighbour lists: for each item, its ``candidates`` nearest items from an exhaustive search over
      ``[chunk_size, N]`` strips of the upper triangle of the distance matrix, each pair computed once (the
      distance is symmetric) and merged into running top lists, cut to
      the ``max(k1 + 1, k2)`` nearest; each row's maximum ``max_k d[i, k]^2`` comes from the same pass, and the
      query rows' gallery distances are kept for the output;
    * ``V`` and its expansion: sparse, ``O(N * k1)`` entries; distances of its pairs are taken from the
      candidate lists or computed directly;
    * Jaccard sums over the non-zeros only (an inverted index), one block of queries at a time.

    The search is exhaustive and the result equals :func:`k_reciprocal` on the matrices
    ``pairwise_distance(., ., metric)`` (up to float32 rounding and ties).

    Reference: Zhong et al., "Re-ranking Person Re-identification with k-reciprocal Encoding", CVPR 2017.

    Args:
        qf: ``[Q, D]`` query features; ``gf``: ``[G, D]`` gallery features (numpy or CPU/CUDA tensors).
        k1, k2, lambda_value: as in :func:`k_reciprocal`.
        metric: ``"euclidean"`` or ``"cosine"`` (the original distance that is squared and normalised).
        candidates: length of each item's neighbour list kept by the search (default ``2 * (k1 + 1)``); the
            distances of the expanded pairs are looked up there, the others are computed.
        chunk_size: rows per strip of the neighbour search.

    Returns:
        ``[Q, G]`` float32 numpy array of re-ranked distances (smaller = more similar), for
        :func:`reidkit.metrics.evaluate`.
    """
    _check_parameters(k1, k2, lambda_value)
    query = qf if isinstance(qf, Tensor) else torch.from_numpy(np.asarray(qf))
    gallery = gf if isinstance(gf, Tensor) else torch.from_numpy(np.asarray(gf))
    if query.ndim != 2 or gallery.ndim != 2 or query.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"qf, gf: expected [Q, D] and [G, D] features, got {tuple(query.shape)}, {tuple(gallery.shape)}"
        )
    num_query, num_gallery = query.shape[0], gallery.shape[0]
    count = num_query + num_gallery
    width = max(k1 + 1, k2)
    if width > count:
        raise ValueError(f"k1, k2: need at most {count - 1} neighbours (Q + G - 1), got k1={k1}, k2={k2}")
    with torch.no_grad():
        features = torch.cat([query.detach().float(), gallery.detach().float().to(query.device)])
        space = SquaredRowDistance(features, metric)
        num_candidates = min(count, max(width, candidates if candidates is not None else 2 * (k1 + 1)))
        out = np.empty((num_query, num_gallery), dtype=np.float32)
        index, exact, row_max = _exhaustive_search(space, num_candidates, chunk_size, num_query, out)
        row_max = row_max.clamp_min(torch.finfo(row_max.dtype).tiny)
        neighbours = index[:, :width].cpu().numpy()
        rows_np, cols_np = _expanded_neighbours(neighbours, k1)
        pair_distance = _pair_distances(space, index, exact, rows_np, cols_np)
        pair_distance = (pair_distance / row_max[torch.from_numpy(rows_np).to(row_max.device)]).cpu().numpy()
        encoding = _encoding(neighbours, rows_np, cols_np, pair_distance, k2)
        scale = (1.0 / row_max[:num_query]).cpu().numpy()[:, None]
        return _final_distances(
            encoding,
            num_query,
            num_gallery,
            lambda start, stop: out[start:stop] * scale[start:stop],
            float(lambda_value),
            out,
        )


def _merge_nearest(best_distance: Tensor, best_index: Tensor, distance: Tensor, columns: Tensor) -> None:
    """Merge a new ``[B, K]`` block of distances into the running ``[B, C]`` nearest lists, in place.

    The lists are kept in ``(distance, index)`` order: exactly the first ``C`` items of a stable sort of the
    row, ties included. Only block entries up to a row's current ``C``-th distance can enter; once the lists
    are filled these are a handful per row, so only the rows that receive any are re-sorted, over ``C`` plus
    those entries. When many enter (the first blocks), the block is first cut at its own ``C``-th smallest
    distance (ties kept).

    Args:
        best_distance: ``[B, C]`` running distances (a view, updated in place); ``best_index``: ``[B, C]``
            their item indices (updated in place).
        distance: ``[B, K]`` new distances; ``columns``: ``[K]`` their item indices, ascending.
    """
    num_rows, num_kept = best_distance.shape
    entering = distance <= best_distance[:, -1:]
    rows, slots = entering.nonzero(as_tuple=True)  # row-major: columns ascending within a row
    if rows.numel() == 0:
        return
    per_row = torch.bincount(rows, minlength=num_rows)
    if int(per_row.max()) > 2 * num_kept and distance.shape[1] > num_kept:
        cut = torch.topk(distance, num_kept, dim=1, largest=False).values[:, -1:]
        rows, slots = (entering & (distance <= cut)).nonzero(as_tuple=True)
        per_row = torch.bincount(rows, minlength=num_rows)
    receiving = per_row > 0
    active = receiving.nonzero()[:, 0]
    slot_of_row = receiving.cumsum(0) - 1  # row -> its position among the active rows
    per_active = per_row[active]
    active_rows = slot_of_row[rows]
    position = (
        torch.arange(rows.numel(), device=rows.device) - (per_active.cumsum(0) - per_active)[active_rows]
    )
    width = int(per_active.max())
    new_distance = distance.new_full((active.numel(), width), float("inf"))
    new_index = best_index.new_full((active.numel(), width), torch.iinfo(best_index.dtype).max)
    new_distance[active_rows, position] = distance[rows, slots]
    new_index[active_rows, position] = columns[slots]
    merged_distance = torch.cat([best_distance[active], new_distance], dim=1)
    merged_index = torch.cat([best_index[active], new_index], dim=1)
    order = _stable_order(merged_distance, merged_index)[:, :num_kept]
    best_distance[active] = merged_distance.gather(1, order)
    best_index[active] = merged_index.gather(1, order)


def _exhaustive_search(
    space: SquaredRowDistance, num_candidates: int, chunk_size: int, num_query: int, out: np.ndarray
) -> tuple[Tensor, Tensor, Tensor]:
    """Exact ``num_candidates`` nearest items of every item, each pair of items computed once.

    The distance is symmetric, so the search runs over the upper triangle only: one ``[B, N - start]`` strip
    of distances per block of ``B = chunk_size`` rows (a single matrix product), which serves both the block's
    rows and, transposed, the later rows. Query rows' gallery distances are written to ``out`` ``[Q, G]``.

    Returns:
        (``[N, C]`` indices and ``[N, C]`` squared distances, nearest first with ties by index; ``[N]`` row max).
    """
    features = space.features
    count, device = features.shape[0], features.device
    best_distance = torch.full((count, num_candidates), float("inf"), dtype=features.dtype, device=device)
    best_index = torch.full((count, num_candidates), -1, dtype=torch.int64, device=device)
    row_max = torch.full((count,), float("-inf"), dtype=features.dtype, device=device)
    for row_start in range(0, count, chunk_size):
        row_stop = min(row_start + chunk_size, count)
        rows = slice(row_start, row_stop)
        strip = space.block(rows, slice(row_start, count))  # [B, N - row_start]
        size = row_stop - row_start
        diagonal = strip[:, :size]
        diagonal.copy_(torch.minimum(diagonal, diagonal.t()))  # exactly symmetric
        _merge_nearest(
            best_distance[rows], best_index[rows], strip, torch.arange(row_start, count, device=device)
        )
        row_max[rows] = torch.maximum(row_max[rows], strip.amax(dim=1))
        if row_stop < count:  # the same distances seen from the later rows
            later = slice(row_stop, count)
            beyond = strip[:, size:].t()  # [N - row_stop, B]
            _merge_nearest(
                best_distance[later],
                best_index[later],
                beyond,
                torch.arange(row_start, row_stop, device=device),
            )
            row_max[later] = torch.maximum(row_max[later], beyond.amax(dim=1))
        if row_start < num_query:  # query rows x gallery columns (always in the upper triangle)
            query_stop = min(row_stop, num_query)
            gallery_start = max(row_start, num_query)
            part = strip[: query_stop - row_start, gallery_start - row_start :]
            out[row_start:query_stop, gallery_start - num_query :] = part.cpu().numpy()
    return best_index, best_distance, row_max


def _pair_distances(
    space: SquaredRowDistance, index: Tensor, exact: Tensor, rows: np.ndarray, cols: np.ndarray
) -> Tensor:
    """Squared distances of the ``R*`` pairs: looked up in the candidate lists, computed when absent."""
    device = index.device
    rows_t = torch.from_numpy(rows).to(device)
    cols_t = torch.from_numpy(cols).to(device)
    result = torch.empty(len(rows), dtype=exact.dtype, device=device)
    piece = 1 << 16
    for start in range(0, len(rows), piece):
        part_rows, part_cols = rows_t[start : start + piece], cols_t[start : start + piece]
        hit = index[part_rows] == part_cols[:, None]
        found = hit.any(dim=1)
        values = exact[part_rows].gather(1, hit.to(torch.uint8).argmax(dim=1, keepdim=True))[:, 0]
        missing = ~found
        if missing.any():
            values[missing] = space.pairs(part_rows[missing], part_cols[missing])
        result[start : start + piece] = values
    return result


# ----------------------------------------------------------------------------------------------------------
# query expansion


def _expand(
    features: Tensor, database: Tensor, top_k: int, alpha: float, chunk_size: int, skip_self: bool
) -> Tensor:
    expanded = torch.empty_like(features)
    take = min(top_k, database.shape[0] - int(skip_self))
    for start in range(0, features.shape[0], chunk_size):
        block = features[start : start + chunk_size]
        similarity = block @ database.t()
        if skip_self:  # the item itself is added below with weight 1, never as its own neighbour
            own = torch.arange(block.shape[0], device=block.device)
            similarity[own, own + start] = float("-inf")
        values, neighbours = torch.topk(similarity, take, dim=1)
        weights = values.clamp_min(0.0).pow(alpha)
        merged = block + (weights[:, :, None] * database[neighbours]).sum(dim=1)
        expanded[start : start + chunk_size] = F.normalize(merged, dim=1)
    return expanded


def query_expansion(
    qf: np.ndarray | Tensor,
    gf: np.ndarray | Tensor,
    top_k: int = 10,
    alpha: float = 3.0,
    *,
    expand_gallery: bool = True,
    chunk_size: int = 1024,
) -> tuple[np.ndarray | Tensor, np.ndarray | Tensor]:
    """Alpha query expansion (alpha-QE), optionally with the same expansion of the gallery.

    Features are L2-normalised. Each query ``q`` is replaced by
    ``normalize(q + sum_{g in top_k(q)} max(cos(q, g), 0)^alpha * g)``, where ``top_k(q)`` are its ``top_k``
    most similar gallery features (cosine similarity). ``alpha = 0`` is average query expansion (Chum et al.,
    ICCV 2007); ``top_k = 0`` only normalises. With ``expand_gallery`` every gallery feature is expanded the same
    way with its ``top_k`` nearest *other* gallery features (database-side augmentation), so that queries and
    gallery stay comparable; neighbours are always found with the original features.

    Reference: Radenovic et al., "Fine-tuning CNN Image Retrieval with No Human Annotation", TPAMI 2018.

    Args:
        qf: ``[Q, D]`` query features; ``gf``: ``[G, D]`` gallery features (numpy or torch).
        top_k: neighbours merged into each feature.
        alpha: exponent of the similarity weights (>= 0).

    Returns:
        (``[Q, D]`` expanded queries, ``[G, D]`` gallery features: expanded, or only normalised), same type
        as the inputs.
    """
    if int(top_k) != top_k or top_k < 0:
        raise ValueError(f"top_k: expected a non-negative integer, got {top_k!r}")
    if alpha < 0:
        raise ValueError(f"alpha: expected a number >= 0, got {alpha!r}")
    query = qf if isinstance(qf, Tensor) else torch.from_numpy(np.asarray(qf))
    gallery = gf if isinstance(gf, Tensor) else torch.from_numpy(np.asarray(gf))
    if query.ndim != 2 or gallery.ndim != 2 or query.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"qf, gf: expected [Q, D] and [G, D] features, got {tuple(query.shape)}, {tuple(gallery.shape)}"
        )
    with torch.no_grad():
        query = F.normalize(query.detach().float(), dim=1)
        gallery = F.normalize(gallery.detach().float(), dim=1)
        new_query, new_gallery = query, gallery
        if top_k > 0 and gallery.shape[0] > 0:
            new_query = _expand(query, gallery, int(top_k), float(alpha), chunk_size, skip_self=False)
            if expand_gallery and gallery.shape[0] > 1:
                new_gallery = _expand(gallery, gallery, int(top_k), float(alpha), chunk_size, skip_self=True)
    if not isinstance(qf, Tensor):
        new_query = new_query.numpy()
    if not isinstance(gf, Tensor):
        new_gallery = new_gallery.numpy()
    return new_query, new_gallery
