"""Fast k-reciprocal re-ranking from features: exhaustive chunked neighbour search, sparse encoding."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from reidkit.distance import SquaredRowDistance
from reidkit.precision import cpu_has_amx, cpu_has_bf16
from reidkit.rerank._candidates import (
    _certified_search,
    _one_thread,
    _rescore,
    _stable_order,
)
from reidkit.rerank._kreciprocal import _check_parameters, _encoding, _expanded_neighbours, _final_distances

#: neighbour searches of :func:`k_reciprocal_fast` (``"auto"``: bfloat16 on CPUs with AMX)
SEARCHES = ("auto", "float32", "bfloat16")


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
    search: str = "auto",
    statistics: dict | None = None,
) -> np.ndarray:
    """k-reciprocal re-ranking from features with ``O(N * k)`` working memory.

    Steps 1-7 of the module docstring, with the ``N x N`` matrices replaced by:

    * neighbour lists: for each item, its ``max(k1 + 1, k2)`` nearest items by the float32 distances, from an
      exhaustive search over ``[chunk_size, N]`` strips, with each row's maximum ``max_k d[i, k]^2``; the
      query rows' gallery distances are kept for the output. ``search="float32"``
      (:func:`_exhaustive_search`): float32 strips of the upper triangle, each pair computed once and merged
      into running top lists. ``search="bfloat16"`` (:func:`reidkit.rerank._candidates._certified_search`):
      the gallery rows' candidates come from a bfloat16 product (several times the float32 rate on CPUs with
      AVX512-BF16 or AMX), are re-scored in float32, and every row whose lists the bfloat16 error bound cannot
      certify is recomputed in float32: the lists are those of the float32 distances either way;
    * ``V`` and its expansion: sparse, ``O(N * k1)`` entries; distances of its pairs are taken from the
      candidate lists or computed directly;
    * Jaccard sums over the non-zeros only (an inverted index), one block of queries at a time.

    The search is exhaustive and the result equals :func:`k_reciprocal` on the matrices
    ``pairwise_distance(., ., metric)`` (up to float32 rounding: the two searches order the pairs by float32
    values computed in different summation orders, so pairs whose distances differ in the last bits only may
    swap between them; exact ties are broken by index in both).

    Reference: Zhong et al., "Re-ranking Person Re-identification with k-reciprocal Encoding", CVPR 2017.

    Args:
        qf: ``[Q, D]`` query features; ``gf``: ``[G, D]`` gallery features (numpy or CPU/CUDA tensors).
        k1, k2, lambda_value: as in :func:`k_reciprocal`.
        metric: ``"euclidean"`` or ``"cosine"`` (the original distance that is squared and normalised).
        candidates: length of each item's neighbour list kept by the search (default ``2 * (k1 + 1)``); the
            distances of the expanded pairs are looked up there, the others are computed.
            The bfloat16 search keeps at least ``2 * max(k1 + 1, k2) + 8`` approximate candidates per row.
        chunk_size: rows per strip of the neighbour search.
        search: ``"auto"`` (bfloat16 for float32 features on a CPU with AMX bfloat16 products, else
            float32), ``"float32"`` or ``"bfloat16"`` (CPU or CUDA; the float32 search is the natural choice on a
            GPU).
        statistics: a dict to fill with the search's figures: ``search``, and for the bfloat16 search
            ``rows``, ``fallback_rows`` (rows recomputed in float32) and ``rescored_pairs``.

    Returns:
        ``[Q, G]`` float32 numpy array of re-ranked distances (smaller = more similar), for
        :func:`reidkit.metrics.evaluate`.
    """
    _check_parameters(k1, k2, lambda_value)
    if search not in SEARCHES:
        raise ValueError(f"search: expected one of {list(SEARCHES)}, got {search!r}")
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
        encoding, row_max = _search_and_encode(
            space, k1, k2, num_candidates, chunk_size, num_query, out, search, statistics
        )
        scale = (1.0 / row_max[:num_query]).cpu().numpy()[:, None]
        return _final_distances(
            encoding,
            num_query,
            num_gallery,
            lambda start, stop: out[start:stop] * scale[start:stop],
            float(lambda_value),
            out,
        )


def _search_and_encode(
    space: SquaredRowDistance,
    k1: int,
    k2: int,
    num_candidates: int,
    chunk_size: int,
    num_query: int,
    out: np.ndarray,
    search: str = "auto",
    statistics: dict | None = None,
):
    """Steps 1-5 from features: neighbour search, expanded sets, and ``V`` (CSR ``[N, N]``, float64).

    Args:
        space: the items' squared distances; ``num_candidates``: neighbour list length of the search
            (``>= max(k1 + 1, k2)``); ``chunk_size``: rows per strip of the search.
        num_query, out: the first ``num_query`` items' distances to the others are written to ``out``
            ``[Q, N - Q]`` (``num_query = 0`` and an empty ``out`` for none).
        search, statistics: as in :func:`k_reciprocal_fast`.

    Returns:
        (``V``, ``[N]`` row maxima ``max_k d[i, k]^2``, clamped above 0).
    """
    width = max(k1 + 1, k2)
    features = space.features
    if search == "auto":
        # bfloat16 pays off with AMX; with AVX512-BF16 alone it measured no faster than float32 (AMD EPYC)
        native = features.device.type == "cpu" and cpu_has_bf16() and cpu_has_amx()
        search = "bfloat16" if native and features.dtype == torch.float32 else "float32"
    if search == "bfloat16":
        if features.dtype != torch.float32:
            raise ValueError(f"search: 'bfloat16' needs float32 features, got {features.dtype}")
        length = min(features.shape[0], max(num_candidates, 2 * width + 8))
        index, exact, row_max = _certified_search(
            space, length, chunk_size, num_query, out, width, statistics
        )
    else:
        index, exact, row_max = _exhaustive_search(space, num_candidates, chunk_size, num_query, out)
        if statistics is not None:
            statistics.update(search="float32")
    row_max = row_max.clamp_min(torch.finfo(row_max.dtype).tiny)
    neighbours = index[:, :width].cpu().numpy()
    rows_np, cols_np = _expanded_neighbours(neighbours, k1)
    pair_distance = _pair_distances(space, index, exact, rows_np, cols_np)
    pair_distance = (pair_distance / row_max[torch.from_numpy(rows_np).to(row_max.device)]).cpu().numpy()
    return _encoding(neighbours, rows_np, cols_np, pair_distance, k2), row_max


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
        if (
            missing.any() and device.type == "cpu"
        ):  # by row (the pairs come sorted by row): features read once
            row_ids, rows = torch.unique_consecutive(part_rows[missing], return_inverse=True)
            with _one_thread():
                values[missing] = _rescore(space, row_ids, rows, part_cols[missing])
        elif missing.any():
            values[missing] = space.pairs(part_rows[missing], part_cols[missing])
        result[start : start + piece] = values
    return result
