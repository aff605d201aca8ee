"""Retrieval metrics: CMC, mAP and mINP under the standard ReID protocols, exact and memory-bounded.

This module owns evaluation. Every entry point produces exactly the numbers of the field's reference definition:

* per query, the gallery is ordered by a *stable* ascending sort of the query's distance row (ties broken by
  gallery index);
* gallery items the protocol ignores for that query are removed from the ordered list;
* ``CMC(k) = 1`` when the first true match sits at rank ``<= k``;
* ``AP`` is the mean, over the true matches, of the precision at each match's rank;
* ``INP = (number of true matches) / (rank of the last true match)`` (Ye et al., "Deep Learning for Person
  Re-identification: A Survey and Outlook", TPAMI 2021);
* queries without any valid true match are skipped; CMC, mAP and mINP are averaged over the other queries.

No query row is ever sorted. Queries are processed in blocks; for each block only the distances of each query's
true matches are sorted (a handful per query), and every other valid gallery item is placed between them with a
binary search. The rank of the ``k``-th true match (0-based) is then ``k + 1 +`` the number of non-matching
valid items ordered before it, which is all that CMC, AP and INP need. Memory is ``O(chunk_size x G)`` and the
``Q x G`` distance matrix never has to exist when evaluating from features (:func:`evaluate_features`).

From features, the block matrix products dominate (``Q x G x D`` multiply-adds). Skipping gallery items with a
projected lower bound (``||P(q - g)|| <= ||q - g||`` for an orthonormal ``P``, exact items only where the bound
is below the query's last true-match distance) does not pay on high-dimensional, noise-dominated features: on the
Market-1501-sized synthetic benchmark (``benchmarks/eval_speed.py``, d=2048) the bounds from the top 64, 256 or
1024 principal directions of the gallery excluded no item at all, although only about 1% of the items lie within
that distance. So every product is computed, in blocks.

Protocols:

* cross-camera rule (Market-1501, DukeMTMC-reID, MSMT17; the default): for each query, gallery items with the
  query's identity *and* camera are ignored;
* no camera ids (``q_camids = g_camids = None``): nothing is ignored by camera; pass ``ignore`` (for example from
  :func:`same_image_ignore`) to exclude the query's own image when query and gallery overlap;
* CUHK03 classic single-gallery-shot: :func:`evaluate_single_gallery_shot`;
* multi-query (multi-shot / video): :func:`merge_queries` before evaluating;
* several random splits (small sets): :func:`average_metrics`.

Gallery items with pid 0 (distractors) need no special treatment: they never match a query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from reidkit.distance import GalleryDistance

ArrayLike = np.ndarray | Tensor | Sequence

#: elements per block of the query x gallery matrix processed at once (about 64 MB of float32 distances).
DEFAULT_BLOCK_ELEMENTS = 1 << 24

_REPORTED_RANKS = (1, 5, 10, 20)

#: a block searches whole rows instead of packing the candidates (the items up to each query's last true
#: match) when (candidates x matches per query) exceeds this many times the block size.
_DENSE_SEARCH_FACTOR = 8


@dataclass(frozen=True)
class Metrics:
    """Evaluation result.

    Attributes:
        cmc: ``[max_rank]`` float64 fractions in [0, 1]; ``cmc[k - 1]`` is Rank-k accuracy.
        mAP: mean average precision, a fraction in [0, 1].
        mINP: mean inverse negative penalty, a fraction in [0, 1].
        num_queries: queries with at least one valid true match (the others are skipped).
    """

    cmc: np.ndarray
    mAP: float
    mINP: float
    num_queries: int

    def as_dict(self) -> dict:
        """``{"rank1", "rank5", "rank10", "rank20", "mAP", "mINP", "num_queries"}`` as plain Python numbers.

        Ranks beyond ``len(cmc)`` are omitted.
        """
        out: dict = {f"rank{k}": float(self.cmc[k - 1]) for k in _REPORTED_RANKS if k <= len(self.cmc)}
        out["mAP"] = float(self.mAP)
        out["mINP"] = float(self.mINP)
        out["num_queries"] = int(self.num_queries)
        return out


# ----------------------------------------------------------------------------------------------------------
# input checking


def _to_numpy_1d(values: ArrayLike | None, name: str, length: int | None = None) -> np.ndarray | None:
    if values is None:
        return None
    if isinstance(values, Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        if array.size and not np.all(np.equal(np.mod(array, 1), 0)):
            raise ValueError(
                f"{name}: expected integer labels, got dtype {array.dtype} with fractional values"
            )
        array = array.astype(np.int64)
    if length is not None and len(array) != length:
        raise ValueError(f"{name}: expected {length} entries, got {len(array)}")
    return array.astype(np.int64, copy=False)


def _check_camids(
    q_camids: ArrayLike | None, g_camids: ArrayLike | None, num_query: int, num_gallery: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    if (q_camids is None) != (g_camids is None):
        raise ValueError(
            "q_camids and g_camids: give both (cross-camera rule) or neither (no camera ids rule), "
            f"got q_camids={'None' if q_camids is None else 'array'}, "
            f"g_camids={'None' if g_camids is None else 'array'}"
        )
    return (
        _to_numpy_1d(q_camids, "q_camids", num_query),
        _to_numpy_1d(g_camids, "g_camids", num_gallery),
    )


def _check_ignore(ignore: Sequence | None, num_query: int, num_gallery: int) -> list[np.ndarray] | None:
    if ignore is None:
        return None
    if len(ignore) != num_query:
        raise ValueError(
            f"ignore: expected one array of gallery indices per query ({num_query}), got {len(ignore)}"
        )
    checked = []
    for index, items in enumerate(ignore):
        array = np.asarray(items, dtype=np.int64).reshape(-1)
        if array.size and (array.min() < 0 or array.max() >= num_gallery):
            raise ValueError(
                f"ignore[{index}]: gallery indices must lie in [0, {num_gallery}), got {array.tolist()}"
            )
        checked.append(array)
    return checked


def _check_max_rank(max_rank: int) -> int:
    if int(max_rank) != max_rank or max_rank < 1:
        raise ValueError(f"max_rank: expected a positive integer, got {max_rank!r}")
    return int(max_rank)


def same_image_ignore(q_paths: Sequence[str], g_paths: Sequence[str]) -> list[np.ndarray]:
    """For the "no camera ids" rule: per query, the gallery indices holding the very same image file.

    Args:
        q_paths: ``[Q]`` query image paths.
        g_paths: ``[G]`` gallery image paths.

    Returns:
        ``Q`` int64 arrays of gallery indices, ready for the ``ignore`` argument of :func:`evaluate`.
    """
    positions: dict[str, list[int]] = {}
    for index, path in enumerate(g_paths):
        positions.setdefault(str(path), []).append(index)
    return [np.asarray(positions.get(str(path), []), dtype=np.int64) for path in q_paths]


# ----------------------------------------------------------------------------------------------------------
# the exact block kernel


class _MatchTable:
    """Gallery indices grouped by identity, so each query finds its true matches without scanning the gallery."""

    def __init__(self, g_pids: np.ndarray):
        order = np.argsort(g_pids, kind="stable")  # within one identity: ascending gallery index
        sorted_pids = g_pids[order]
        unique, starts, counts = np.unique(sorted_pids, return_index=True, return_counts=True)
        self.order = order
        self.unique = unique
        self.starts = starts
        self.counts = counts

    def lookup(self, q_pids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``[B]`` query pids -> (``[B, M]`` gallery indices padded with -1, ``[B]`` counts)."""
        position = np.searchsorted(self.unique, q_pids)
        position = np.minimum(position, len(self.unique) - 1)
        found = (len(self.unique) > 0) & (self.unique[position] == q_pids)
        counts = np.where(found, self.counts[position], 0)
        width = max(int(counts.max(initial=0)), 1)
        offsets = np.arange(width)
        present = offsets[None, :] < counts[:, None]
        flat = self.starts[position][:, None] + offsets[None, :]
        flat = np.where(present, flat, 0)
        indices = np.where(present, self.order[flat] if len(self.order) else 0, -1)
        return indices, counts


def _earlier_ties(
    searchable: Tensor, match_index: Tensor, match_valid: Tensor, rows: Tensor, cols: Tensor, values: Tensor
) -> Tensor:
    """``[N]``: valid true matches at exactly the same distance as item ``(row, col)`` with a smaller index."""
    tied = (searchable[rows] == values[:, None]) & match_valid[rows] & (match_index[rows] < cols[:, None])
    return tied.sum(dim=1)


@dataclass
class _BlockResult:
    first_rank: np.ndarray  # [V] rank (1-based) of the first true match of each valid query
    average_precision: np.ndarray  # [V]
    inverse_negative_penalty: np.ndarray  # [V]


def _block_metrics(
    dist: Tensor,
    q_pids: np.ndarray,
    g_pids_t: Tensor,
    table: _MatchTable,
    q_camids: np.ndarray | None,
    g_camids: np.ndarray | None,
    ignore: list[np.ndarray] | None,
    keep: Tensor | None = None,
) -> _BlockResult:
    """Exact per-query first rank, AP and INP for one block of query rows.

    Args:
        dist: ``[B, G]`` distances (any real dtype, any device).
        q_pids: ``[B]`` identities of the block's queries.
        g_pids_t: ``[G]`` gallery identities on ``dist.device``.
        table: gallery grouped by identity.
        q_camids, g_camids: ``[B]`` / ``[G]`` cameras, or None for no camera rule.
        ignore: ``B`` arrays of gallery indices to remove for each query, or None.
        keep: optional ``[B, G]`` bool mask of gallery items that take part (single-shot sampling).
    """
    device = dist.device
    num_rows, num_gallery = dist.shape
    if torch.isnan(dist.sum()) and torch.isnan(dist).any():  # the cheap test first
        raise ValueError("distmat: contains NaN distances")

    # ---- the block's true matches: [B, M] gallery indices (sorted ascending), validity, distances
    match_index_np, _ = table.lookup(q_pids)
    present_np = match_index_np >= 0
    valid_np = present_np.copy()
    if q_camids is not None:
        match_cams = g_camids[np.where(present_np, match_index_np, 0)]
        valid_np &= match_cams != q_camids[:, None]
    if ignore is not None:
        for row in range(num_rows):
            if ignore[row].size:
                valid_np[row] &= ~np.isin(match_index_np[row], ignore[row])
    match_index = torch.from_numpy(np.where(present_np, match_index_np, 0)).to(device)
    match_valid = torch.from_numpy(valid_np).to(device)
    if keep is not None:
        match_valid &= keep.gather(1, match_index)
    match_dist = dist.gather(1, match_index)
    inf = torch.tensor(float("inf"), dtype=dist.dtype, device=device)
    # stable sorts: by distance (ties by gallery index, already ascending), then valid ones first
    order = torch.sort(match_dist, dim=1, stable=True).indices
    match_dist = match_dist.gather(1, order)
    match_index = match_index.gather(1, order)
    match_valid = match_valid.gather(1, order)
    order = torch.sort((~match_valid).to(torch.uint8), dim=1, stable=True).indices
    match_dist = match_dist.gather(1, order)
    match_index = match_index.gather(1, order)
    match_valid = match_valid.gather(1, order)
    num_matches = match_valid.sum(dim=1)  # [B]
    width = match_dist.shape[1]
    searchable = torch.where(match_valid, match_dist, inf).contiguous()

    # ---- the other valid gallery items: how many true matches are ordered before each of them.
    # Only items up to the last true match can change a rank (everything farther is ordered after it), so the
    # block is first reduced to those; rows without a valid match get a NaN threshold, which selects nothing.
    has_match = num_matches > 0
    last = (num_matches - 1).clamp_min(0)
    threshold = torch.where(has_match, searchable.gather(1, last[:, None])[:, 0], float("nan"))
    within = dist <= threshold[:, None]
    row_pids = torch.from_numpy(q_pids).to(device)
    ignored_key = None
    if ignore is not None and any(items.size for items in ignore):
        ignored_rows = np.concatenate([np.full(len(items), row) for row, items in enumerate(ignore)])
        ignored_key = torch.from_numpy(ignored_rows.astype(np.int64) * num_gallery + np.concatenate(ignore))
        ignored_key = ignored_key.to(device)
    num_within = int(torch.count_nonzero(within))
    counts = torch.zeros((num_rows, width + 1), dtype=torch.int64, device=device)
    if num_within * width > _DENSE_SEARCH_FACTOR * within.numel():
        # most of the block is a candidate: one batched binary search over whole rows
        candidate = within & (g_pids_t[None, :] != row_pids[:, None])
        if keep is not None:
            candidate &= keep
        if ignored_key is not None:
            candidate.view(-1)[ignored_key] = False
        before = torch.searchsorted(searchable, dist.contiguous(), side="left")
        # the match distance at each item's insertion slot (+inf past the last one): equal means a tie
        padded = torch.cat([searchable, searchable.new_full((num_rows, 1), float("inf"))], dim=1)
        rows, cols = (candidate & (padded.gather(1, before) == dist)).nonzero(as_tuple=True)
        if rows.numel():
            # equal distances: a true match comes first when its gallery index is smaller (stable sort)
            tied = _earlier_ties(searchable, match_index, match_valid, rows, cols, dist[rows, cols])
            before[rows, cols] += tied
        before.masked_fill_(~candidate, width)  # before <= width on candidates
        before += torch.arange(num_rows, device=device)[:, None] * (width + 1)
        counts += torch.bincount(before.view(-1), minlength=counts.numel()).view_as(counts)
    elif num_within:
        rows, cols = within.nonzero(as_tuple=True)  # row-major: columns ascending within each row
        negative = g_pids_t[cols] != row_pids[rows]  # same-pid items are true matches or ignored
        if keep is not None:
            negative &= keep[rows, cols]
        if ignored_key is not None:
            negative &= ~torch.isin(rows * num_gallery + cols, ignored_key)
        rows, cols = rows[negative], cols[negative]
        if rows.numel():
            # pack each row's candidates to the left of a [B, C] matrix (padding: +inf, after every match)
            per_row = torch.bincount(rows, minlength=num_rows)
            row_start = per_row.cumsum(0) - per_row
            slot_in_row = torch.arange(rows.numel(), device=device) - row_start[rows]
            packed = torch.full((num_rows, int(per_row.max())), float("inf"), dtype=dist.dtype, device=device)
            packed[rows, slot_in_row] = dist[rows, cols]
            before = torch.searchsorted(searchable, packed, side="left")
            at = searchable.gather(1, before.clamp_max(width - 1))
            tie_rows, tie_slots = ((at == packed) & (before < width)).nonzero(as_tuple=True)
            if tie_rows.numel():
                # padding is +inf; a tie there is harmless only if no valid match sits at +inf, so look up
                # the real column of each tied slot (padding slots are dropped below by the bin count)
                real = tie_slots < per_row[tie_rows]
                tie_rows, tie_slots = tie_rows[real], tie_slots[real]
                tie_cols = cols[row_start[tie_rows] + tie_slots]
                before[tie_rows, tie_slots] += _earlier_ties(
                    searchable, match_index, match_valid, tie_rows, tie_cols, packed[tie_rows, tie_slots]
                )
            filled = torch.arange(packed.shape[1], device=device)[None, :] < per_row[:, None]
            bins = torch.where(filled, before, width)
            counts.scatter_add_(1, bins, torch.ones_like(bins))
    negatives_before = counts[:, :width].cumsum(dim=1)  # [B, M]: negatives ordered before the k-th match

    # ---- ranks of the true matches and the per-query metrics
    position = torch.arange(1, width + 1, device=device, dtype=torch.float64)
    ranks = position[None, :] + negatives_before.to(torch.float64)  # [B, M], 1-based
    is_counted = position[None, :] <= num_matches[:, None]
    safe_count = num_matches.clamp_min(1).to(torch.float64)
    average_precision = torch.where(is_counted, position[None, :] / ranks, 0.0).sum(dim=1) / safe_count
    last_rank = ranks.gather(1, last[:, None])[:, 0]
    inverse_negative_penalty = safe_count / last_rank
    first_rank = ranks[:, 0]
    return _BlockResult(
        first_rank=first_rank[has_match].cpu().numpy(),
        average_precision=average_precision[has_match].cpu().numpy(),
        inverse_negative_penalty=inverse_negative_penalty[has_match].cpu().numpy(),
    )


class _Accumulator:
    def __init__(self, max_rank: int):
        self.max_rank = max_rank
        self.first_ranks: list[np.ndarray] = []
        self.ap: list[np.ndarray] = []
        self.inp: list[np.ndarray] = []

    def add(self, result: _BlockResult) -> None:
        self.first_ranks.append(result.first_rank)
        self.ap.append(result.average_precision)
        self.inp.append(result.inverse_negative_penalty)

    def result(self) -> Metrics:
        first = np.concatenate(self.first_ranks) if self.first_ranks else np.zeros(0)
        if first.size == 0:
            raise ValueError(
                "no query has a valid true match in the gallery (check that query and gallery share "
                "identities, and that the camera ids leave some cross-camera matches)"
            )
        hits = np.bincount(
            np.minimum(first.astype(np.int64), self.max_rank + 1) - 1, minlength=self.max_rank + 1
        )
        cmc = np.cumsum(hits[: self.max_rank]).astype(np.float64) / first.size
        return Metrics(
            cmc=cmc,
            mAP=float(np.mean(np.concatenate(self.ap))),
            mINP=float(np.mean(np.concatenate(self.inp))),
            num_queries=int(first.size),
        )


def _block_size(chunk_size: int | None, num_gallery: int) -> int:
    if chunk_size is None:
        return max(1, DEFAULT_BLOCK_ELEMENTS // max(num_gallery, 1))
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive integer number of query rows, got {chunk_size!r}")
    return int(chunk_size)


def _distance_block(distmat, start: int, stop: int, device: torch.device | None) -> Tensor:
    rows = distmat[start:stop]
    block = rows if isinstance(rows, Tensor) else torch.from_numpy(np.ascontiguousarray(rows))
    if device is not None:
        block = block.to(device)
    if block.dtype in (torch.float16, torch.bfloat16):
        block = block.float()  # exact widening, same order
    elif not block.is_floating_point():
        block = block.to(torch.float64)
    return block


# ----------------------------------------------------------------------------------------------------------
# public entry points


def evaluate(
    distmat: np.ndarray | Tensor,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike | None,
    g_camids: ArrayLike | None,
    max_rank: int = 50,
    *,
    ignore: Sequence | None = None,
    chunk_size: int | None = None,
) -> Metrics:
    """CMC / mAP / mINP from a query x gallery distance matrix (smaller = more similar).

    The matrix is read one block of query rows at a time (a ``numpy.memmap`` works), and no row is sorted.

    Args:
        distmat: ``[Q, G]`` distances, numpy array or torch tensor (CPU or CUDA; CUDA blocks stay on the GPU).
        q_pids: ``[Q]`` query identities.
        g_pids: ``[G]`` gallery identities (pid 0 distractors are ordinary non-matches).
        q_camids: ``[Q]`` query cameras, or None together with ``g_camids`` for the "no camera ids" rule.
        g_camids: ``[G]`` gallery cameras, or None.
        max_rank: length of the returned CMC curve.
        ignore: optional, ``Q`` arrays of gallery indices to remove from each query's ranking (for example the
            query's own image when query and gallery overlap: :func:`same_image_ignore`). Applied on top of the
            camera rule.
        chunk_size: query rows per block (default: about 16M matrix elements per block).

    Returns:
        :class:`Metrics`. Raises ``ValueError`` when no query has a valid true match.
    """
    if distmat.ndim != 2:
        raise ValueError(f"distmat: expected a [Q, G] matrix, got shape {tuple(distmat.shape)}")
    num_query, num_gallery = distmat.shape
    q_pids_np = _to_numpy_1d(q_pids, "q_pids", num_query)
    g_pids_np = _to_numpy_1d(g_pids, "g_pids", num_gallery)
    q_cams, g_cams = _check_camids(q_camids, g_camids, num_query, num_gallery)
    ignore_checked = _check_ignore(ignore, num_query, num_gallery)
    max_rank = _check_max_rank(max_rank)
    block = _block_size(chunk_size, num_gallery)
    device = distmat.device if isinstance(distmat, Tensor) else torch.device("cpu")
    table = _MatchTable(g_pids_np)
    g_pids_t = torch.from_numpy(g_pids_np).to(device)
    accumulator = _Accumulator(max_rank)
    for start in range(0, num_query, block):
        stop = min(start + block, num_query)
        dist = _distance_block(distmat, start, stop, device)
        accumulator.add(
            _block_metrics(
                dist,
                q_pids_np[start:stop],
                g_pids_t,
                table,
                None if q_cams is None else q_cams[start:stop],
                g_cams,
                None if ignore_checked is None else ignore_checked[start:stop],
            )
        )
    return accumulator.result()


def _as_feature_tensor(features, name: str) -> Tensor:
    tensor = features if isinstance(features, Tensor) else torch.from_numpy(np.asarray(features))
    if tensor.ndim != 2:
        raise ValueError(f"{name}: expected [N, D] features, got shape {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        tensor = tensor.float()
    return tensor.detach()


def evaluate_features(
    qf: np.ndarray | Tensor,
    gf: np.ndarray | Tensor,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike | None,
    g_camids: ArrayLike | None,
    metric: str = "euclidean",
    max_rank: int = 50,
    *,
    ignore: Sequence | None = None,
    chunk_size: int | None = None,
) -> Metrics:
    """CMC / mAP / mINP straight from features; the ``Q x G`` distance matrix never exists.

    Distances are computed one block of queries at a time by :class:`reidkit.distance.GalleryDistance`,
    bit-identical to :func:`reidkit.distance.pairwise_distance` on each block, so the result equals
    ``evaluate(pairwise_distance(qf, gf, metric), ...)`` (up to the last-bit rounding that BLAS may give one
    row of a large product and of a small one). CUDA tensors are evaluated on their GPU.

    Args:
        qf: ``[Q, D]`` query features.
        gf: ``[G, D]`` gallery features (same device as ``qf``).
        metric: ``"euclidean"``, ``"sqeuclidean"`` or ``"cosine"``.
        q_pids, g_pids, q_camids, g_camids, max_rank, ignore: as in :func:`evaluate`.
        chunk_size: query rows per block (default: about 16M distances per block).

    Returns:
        :class:`Metrics`.
    """
    query = _as_feature_tensor(qf, "qf")
    gallery = _as_feature_tensor(gf, "gf")
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(f"qf, gf: feature sizes differ ({query.shape[1]} vs {gallery.shape[1]})")
    if query.device != gallery.device:
        raise ValueError(f"qf, gf: on different devices ({query.device} vs {gallery.device})")
    if query.dtype != gallery.dtype:
        gallery = gallery.to(query.dtype)
    num_query, num_gallery = query.shape[0], gallery.shape[0]
    q_pids_np = _to_numpy_1d(q_pids, "q_pids", num_query)
    g_pids_np = _to_numpy_1d(g_pids, "g_pids", num_gallery)
    q_cams, g_cams = _check_camids(q_camids, g_camids, num_query, num_gallery)
    ignore_checked = _check_ignore(ignore, num_query, num_gallery)
    max_rank = _check_max_rank(max_rank)
    block = _block_size(chunk_size, num_gallery)
    distance = GalleryDistance(gallery, metric)
    table = _MatchTable(g_pids_np)
    g_pids_t = torch.from_numpy(g_pids_np).to(query.device)
    accumulator = _Accumulator(max_rank)
    with torch.no_grad():
        for start in range(0, num_query, block):
            stop = min(start + block, num_query)
            accumulator.add(
                _block_metrics(
                    distance(query[start:stop]),
                    q_pids_np[start:stop],
                    g_pids_t,
                    table,
                    None if q_cams is None else q_cams[start:stop],
                    g_cams,
                    None if ignore_checked is None else ignore_checked[start:stop],
                )
            )
    return accumulator.result()


# ----------------------------------------------------------------------------------------------------------
# other protocols


def _as_generator(generator: np.random.Generator | int) -> np.random.Generator:
    if isinstance(generator, np.random.Generator):
        return generator
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        return np.random.default_rng(int(generator))
    raise TypeError(
        f"generator: expected a numpy.random.Generator or an int seed, got {type(generator).__name__}"
    )


def _single_shot_keep(
    rng: np.random.Generator,
    q_pids: np.ndarray,
    q_camids: np.ndarray | None,
    g_pids: np.ndarray,
    g_camids: np.ndarray | None,
    table: _MatchTable,
) -> np.ndarray:
    """``[B, G]`` bool: per query, one uniformly drawn eligible gallery image of every identity."""
    draws = rng.random((len(q_pids), len(g_pids)))
    if q_camids is not None:
        draws[(g_pids[None, :] == q_pids[:, None]) & (g_camids[None, :] == q_camids[:, None])] = -1.0
    sorted_draws = draws[:, table.order]
    group_max = np.maximum.reduceat(sorted_draws, table.starts, axis=1)  # [B, identities]
    group_of = np.repeat(np.arange(len(table.starts)), table.counts)
    chosen_sorted = (sorted_draws == group_max[:, group_of]) & (sorted_draws >= 0.0)
    keep = np.zeros_like(chosen_sorted)
    keep[:, table.order] = chosen_sorted
    return keep


def evaluate_single_gallery_shot(
    distmat: np.ndarray | Tensor,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike | None,
    g_camids: ArrayLike | None,
    max_rank: int = 50,
    *,
    repeats: int = 10,
    generator: np.random.Generator | int = 0,
    chunk_size: int | None = None,
) -> Metrics:
    """CUHK03 classic single-gallery-shot protocol.

    For every query and every repeat, one gallery image per identity is drawn uniformly among the images the
    camera rule leaves eligible for that query (same identity and camera as the query are never drawn); CMC
    is computed on that single-shot gallery and averaged over repeats and queries. As is customary for this
    protocol, ``mAP`` and ``mINP`` are computed once on the full (multi-shot) gallery under the same camera
    rule: they equal :func:`evaluate`'s. The draws depend only on ``generator``, not on ``chunk_size``.

    Reference: Li et al., "DeepReID: Deep Filter Pairing Neural Network for Person Re-identification",
    CVPR 2014.

    Args:
        distmat: ``[Q, G]`` distances.
        q_pids, g_pids, q_camids, g_camids, max_rank: as in :func:`evaluate` (camids may be None).
        repeats: number of random single-shot galleries.
        generator: ``numpy.random.Generator`` or int seed.
        chunk_size: query rows per block.

    Returns:
        :class:`Metrics` with the single-shot CMC and the multi-shot mAP / mINP.
    """
    if int(repeats) != repeats or repeats < 1:
        raise ValueError(f"repeats: expected a positive integer, got {repeats!r}")
    rng = _as_generator(generator)
    full = evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, chunk_size=chunk_size)
    num_query, num_gallery = distmat.shape
    q_pids_np = _to_numpy_1d(q_pids, "q_pids", num_query)
    g_pids_np = _to_numpy_1d(g_pids, "g_pids", num_gallery)
    q_cams, g_cams = _check_camids(q_camids, g_camids, num_query, num_gallery)
    block = _block_size(chunk_size, num_gallery)
    device = distmat.device if isinstance(distmat, Tensor) else torch.device("cpu")
    table = _MatchTable(g_pids_np)
    g_pids_t = torch.from_numpy(g_pids_np).to(device)
    cmc = np.zeros(full.cmc.shape[0])
    for _ in range(int(repeats)):
        accumulator = _Accumulator(full.cmc.shape[0])
        for start in range(0, num_query, block):
            stop = min(start + block, num_query)
            q_cams_block = None if q_cams is None else q_cams[start:stop]
            keep = _single_shot_keep(rng, q_pids_np[start:stop], q_cams_block, g_pids_np, g_cams, table)
            accumulator.add(
                _block_metrics(
                    _distance_block(distmat, start, stop, device),
                    q_pids_np[start:stop],
                    g_pids_t,
                    table,
                    q_cams_block,
                    g_cams,
                    None,
                    keep=torch.from_numpy(keep).to(device),
                )
            )
        cmc += accumulator.result().cmc
    return Metrics(cmc=cmc / int(repeats), mAP=full.mAP, mINP=full.mINP, num_queries=full.num_queries)


def merge_queries(
    features: np.ndarray | Tensor,
    pids: ArrayLike,
    camids: ArrayLike | None = None,
    method: str = "mean",
    *,
    groups: ArrayLike | None = None,
    normalize: bool = False,
) -> tuple[np.ndarray | Tensor, np.ndarray, np.ndarray | None]:
    """Multi-query: merge the features of several query images into one query per group.

    By default a group is one (identity, camera) pair, as in Market-1501's multi-query setting; pass
    ``groups`` (one id per row, for example the tracklet index of each frame) to merge other groupings such as
    the frames of a video track. Groups are returned in order of first appearance.

    Args:
        features: ``[N, D]`` query features (numpy or torch; the result has the same type and device).
        pids: ``[N]`` identities.
        camids: ``[N]`` cameras, or None (then groups are identities, or ``groups``).
        method: ``"mean"`` (average) or ``"max"`` (element-wise maximum).
        groups: optional ``[N]`` group ids; every group must hold a single identity (and camera).
        normalize: L2-normalise the merged features.

    Returns:
        (``[N', D]`` merged features, ``[N']`` pids, ``[N']`` camids or None).
    """
    if method not in ("mean", "max"):
        raise ValueError(f"method: expected 'mean' or 'max', got {method!r}")
    tensor = _as_feature_tensor(features, "features")
    count = tensor.shape[0]
    pids_np = _to_numpy_1d(pids, "pids", count)
    cams_np = _to_numpy_1d(camids, "camids", count)
    if groups is None:
        keys = np.stack([pids_np, cams_np if cams_np is not None else np.zeros_like(pids_np)], axis=1)
    else:
        keys = _to_numpy_1d(groups, "groups", count)[:, None]
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    # renumber groups by first appearance
    rank_of_group = np.empty(len(first), dtype=np.int64)
    rank_of_group[np.argsort(first, kind="stable")] = np.arange(len(first))
    group_index = rank_of_group[inverse]
    first_sorted = np.sort(first)
    merged_pids = pids_np[first_sorted]
    merged_cams = None if cams_np is None else cams_np[first_sorted]
    if np.any(merged_pids[group_index] != pids_np) or (
        merged_cams is not None and np.any(merged_cams[group_index] != cams_np)
    ):
        raise ValueError("groups: every group must hold images of one identity and one camera")
    index = torch.from_numpy(group_index).to(tensor.device)
    shape = (len(first), tensor.shape[1])
    if method == "mean":
        merged = tensor.new_zeros(shape).index_add_(0, index, tensor)
        merged /= torch.bincount(index, minlength=len(first)).to(tensor.dtype)[:, None]
    else:
        spread = index[:, None].expand_as(tensor)
        merged = tensor.new_zeros(shape).scatter_reduce_(0, spread, tensor, "amax", include_self=False)
    if normalize:
        merged = F.normalize(merged, dim=1)
    if not isinstance(features, Tensor):
        merged = merged.numpy()
    return merged, merged_pids, merged_cams


def average_metrics(results: Sequence[Metrics]) -> Metrics:
    """Average several evaluations (for example the 10 or 20 random splits of a small dataset).

    CMC curves, mAP and mINP are averaged with equal weight per split; ``num_queries`` is the total.
    """
    if not results:
        raise ValueError("results: expected at least one Metrics to average")
    lengths = {len(result.cmc) for result in results}
    if len(lengths) != 1:
        raise ValueError(f"results: CMC curves have different lengths {sorted(lengths)}; use one max_rank")
    return Metrics(
        cmc=np.mean([result.cmc for result in results], axis=0),
        mAP=float(np.mean([result.mAP for result in results])),
        mINP=float(np.mean([result.mINP for result in results])),
        num_queries=int(sum(result.num_queries for result in results)),
    )
