"""The exact block kernel: per-query first rank, AP and INP for one block of query rows, with no row sorted.

For each block only the distances of each query's true matches are sorted (a handful per query). The rank of
the ``k``-th valid true match (0-based) is then ``k + 1 +`` the number of non-matching valid items ordered
before it, which is all that CMC, AP and INP need (see :mod:`reidkit.metrics` for the definitions and
protocols).

The items ordered before each match are counted without comparing every item with every match:

* every item of a row gets an integer *bucket* from one monotone function of its distance
  (:func:`_bucket_keys`): about ``G / 4`` buckets span the row's valid matches, one holds the items below them,
  one the items above them, and one the items the protocol removes for that query (same identity and camera,
  ignored, not drawn);
* one histogram of the buckets (:func:`_histogram`) tells, for each match, how many kept items lie in lower
  buckets: all of them are closer than the match (the bucket function never decreases with the distance);
* only the items sharing a bucket with a match are compared with it exactly, distance first and gallery index
  on ties, as a stable sort orders them (:func:`_same_bucket_before`).

The bucket function is a product, a sum, a clamp and a truncation, each rounded by itself, so every item of a
row goes through exactly the same function whatever code path computes it; nothing relies on the buckets being
exact, only on their order.

:func:`_block_metrics` runs the steps in order: :func:`_sorted_matches` (the block's true matches, sorted),
:func:`_negatives_before` (how many non-matches come before each of them) and :func:`_match_metrics` (ranks, AP
and INP).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

#: gallery items per bucket of the matches' range, on average over a row: fewer buckets mean a smaller
#: histogram, more buckets fewer items compared exactly with a match.
_ITEMS_PER_BUCKET = 4

#: the scaled distances stay below this magnitude, so that the float rounding of a bucket key stays far below
#: one bucket (see :func:`_bucket_keys`).
_KEY_RANGE = 2.0**18

#: distances scored at once: the block's rows are taken in parts of about this many items, which keeps every
#: pass of the kernel within the processor's caches.
_PART_ELEMENTS = 1 << 20


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


@dataclass
class _BlockResult:
    first_rank: np.ndarray  # [V] rank (1-based) of the first true match of each valid query
    average_precision: np.ndarray  # [V]
    inverse_negative_penalty: np.ndarray  # [V]


@dataclass
class _SortedMatches:
    """A block's true matches per query row: the valid ones first, each part by (distance, gallery index).

    Attributes:
        index: ``[B, M]`` gallery indices (0 in padding slots).
        valid: ``[B, M]`` bool: a true match the protocol keeps.
        searchable: ``[B, M]`` their distances, ascending, ``+inf`` where not valid.
        count: ``[B]`` number of valid true matches.
        removed: ``(rows, cols)`` of the items the protocol removes from their row's ranking (same identity
            and camera, ignored), each ``[R]`` int64; items outside ``keep`` are removed too.
    """

    index: Tensor
    valid: Tensor
    searchable: Tensor
    count: Tensor
    removed: tuple[Tensor, Tensor]

    @property
    def width(self) -> int:
        return self.index.shape[1]


def _block_metrics(
    dist: Tensor | Callable[[int, int], Tensor],
    q_pids: np.ndarray,
    table: _MatchTable,
    q_camids: np.ndarray | None,
    g_camids: np.ndarray | None,
    ignore: list[np.ndarray] | None,
    keep: Tensor | None = None,
    *,
    check_nan: bool = True,
) -> _BlockResult:
    """Exact per-query first rank, AP and INP for one block of query rows.

    Args:
        dist: ``[B, G]`` distances (any real dtype, any device), or ``rows(start, stop)`` returning the
            ``[stop - start, G]`` distances of those rows of the block, with a ``device`` attribute (each row is
            asked for once, parts of rows possibly from several threads at a time).
        q_pids: ``[B]`` identities of the block's queries.
        table: gallery grouped by identity.
        q_camids, g_camids: ``[B]`` / ``[G]`` cameras, or None for no camera rule.
        ignore: ``B`` arrays of gallery indices to remove for each query, or None.
        keep: optional ``[B, G]`` bool mask of gallery items that take part (single-shot sampling).
        check_nan: False when the caller knows the distances hold no NaN (saves one pass over them).

    Returns:
        The metrics of the block's queries that have a valid true match.
    """
    rows = (lambda start, stop: dist[start:stop]) if isinstance(dist, Tensor) else dist
    num_rows, num_gallery = len(q_pids), len(table.order)

    def score(start: int, stop: int) -> _BlockResult:
        block = rows(start, stop).contiguous()
        if check_nan and torch.isnan(block.sum()) and torch.isnan(block).any():  # the cheap test first
            raise ValueError("distmat: contains NaN distances")
        part_keep = None if keep is None else keep[start:stop]
        matches = _sorted_matches(
            block,
            q_pids[start:stop],
            table,
            None if q_camids is None else q_camids[start:stop],
            g_camids,
            None if ignore is None else ignore[start:stop],
            part_keep,
        )
        return _match_metrics(_negatives_before(block, matches, part_keep), matches.count)

    # on CPU, parts of at most _PART_ELEMENTS distances and at least one per thread; a GPU takes larger ones
    if dist.device.type == "cpu":
        part = min(_PART_ELEMENTS // max(num_gallery, 1), -(-num_rows // torch.get_num_threads()))
    else:
        part = (_PART_ELEMENTS << 4) // max(num_gallery, 1)
    part = max(1, part)
    bounds = [(start, min(start + part, num_rows)) for start in range(0, num_rows, part)]
    results = _map_parts(score, bounds, dist.device)
    return _BlockResult(
        first_rank=np.concatenate([result.first_rank for result in results]),
        average_precision=np.concatenate([result.average_precision for result in results]),
        inverse_negative_penalty=np.concatenate([result.inverse_negative_penalty for result in results]),
    )


def _map_parts(
    score: Callable[[int, int], _BlockResult], bounds: list[tuple[int, int]], device: torch.device
) -> list[_BlockResult]:
    """``[score(start, stop) for start, stop in bounds]``, on CPU spread over threads of one operation each.

    Each part is worth many small tensor operations; run one after the other with the usual intra-operation
    threads, every operation waits for its slowest thread, which on a busy machine is often one that the
    system has just preempted. Threads that each run a whole part alone wait for nobody.
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        return [score(start, stop) for start, stop in bounds]

    def alone(start_stop: tuple[int, int]) -> _BlockResult:
        torch.set_num_threads(1)  # this thread's own operations (the caller's thread keeps its setting)
        return score(*start_stop)

    try:
        with ThreadPoolExecutor(max_workers=min(threads, len(bounds))) as pool:
            return list(pool.map(alone, bounds))
    finally:
        torch.set_num_threads(threads)  # the default for threads started later


def _sorted_matches(
    dist: Tensor,
    q_pids: np.ndarray,
    table: _MatchTable,
    q_camids: np.ndarray | None,
    g_camids: np.ndarray | None,
    ignore: list[np.ndarray] | None,
    keep: Tensor | None,
) -> _SortedMatches:
    """The block's true matches, their validity and the removed items (args: as in :func:`_block_metrics`)."""
    device = dist.device
    match_index_np, _ = table.lookup(q_pids)  # [B, M], gallery indices ascending
    present_np = match_index_np >= 0
    valid_np = present_np.copy()
    if q_camids is not None:
        match_cams = g_camids[np.where(present_np, match_index_np, 0)]
        valid_np &= match_cams != q_camids[:, None]
    removed_rows, removed_cols = np.nonzero(present_np & ~valid_np)
    removed_cols = match_index_np[removed_rows, removed_cols]
    if ignore is not None and any(items.size for items in ignore):
        ignored_rows = np.concatenate([np.full(len(items), row) for row, items in enumerate(ignore)])
        ignored_cols = np.concatenate(ignore)
        removed_rows = np.concatenate([removed_rows, ignored_rows]).astype(np.int64)
        removed_cols = np.concatenate([removed_cols, ignored_cols]).astype(np.int64)
        for row in range(dist.shape[0]):
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
    removed = (
        torch.from_numpy(removed_rows.astype(np.int64)).to(device),
        torch.from_numpy(removed_cols.astype(np.int64)).to(device),
    )
    return _SortedMatches(
        index=match_index,
        valid=match_valid,
        searchable=torch.where(match_valid, match_dist, inf).contiguous(),
        count=match_valid.sum(dim=1),
        removed=removed,
    )


def _num_buckets(num_gallery: int) -> int:
    return max(1, num_gallery // _ITEMS_PER_BUCKET)


def _bucket_keys(dist: Tensor, matches: _SortedMatches, keep: Tensor | None) -> tuple[Tensor, int]:
    """``[B, G]`` int32 bucket keys, row ``b`` in ``[b * stride, (b + 1) * stride)``, and ``stride``.

    Within a row, with ``N`` buckets spanning the valid matches' distances ``[lo, hi]``: key ``0`` holds the
    items below them, keys ``1 .. N + 2`` their range (every valid match lies there), ``N + 3`` the items
    above, ``N + 4`` the removed items. The key is ``trunc(clamp(d * scale + shift) + row offset)``: each
    operation is rounded on its own, so the same non-decreasing function of ``d`` is applied to every item of the
    row.
    ``scale <= 2**18 / max(|lo|, |hi|)`` keeps the scaled values small enough that rounding moves a match's key
    by well under one bucket (its exact value lies in ``[2, N + 2]`` plus the row offset).
    """
    num_rows, num_gallery = dist.shape
    buckets = _num_buckets(num_gallery)
    stride = buckets + 5
    if num_rows * stride >= 2**23:
        raise ValueError(f"dist: a block of {num_rows} x {num_gallery} distances is too large for int32 keys")
    dtype, device = dist.dtype, dist.device
    last = (matches.count - 1).clamp_min(0)
    lo = matches.searchable[:, 0]
    hi = matches.searchable.gather(1, last[:, None])[:, 0]
    lo = torch.where(torch.isfinite(lo), lo, 0.0)
    hi = torch.where(torch.isfinite(hi), hi, lo)
    magnitude = torch.maximum(lo.abs(), hi.abs()).clamp_min(2.0**-60)
    span = hi - lo
    scale = torch.where(span > 0, buckets / span, float("inf"))
    scale = torch.minimum(scale, _KEY_RANGE / magnitude)
    key = torch.mul(dist, scale[:, None])
    key.add_((2.0 - lo * scale)[:, None]).clamp_(0.0, buckets + 3.0)
    if keep is not None:
        key.masked_fill_(~keep, buckets + 4.0)
    # rounding cannot carry a key past its row's last one, an integer: rows stay apart
    key.add_(torch.arange(num_rows, device=device, dtype=dtype)[:, None] * stride)
    keys = key.to(torch.int32)
    rows, cols = matches.removed
    if rows.numel():
        keys[rows, cols] = (rows * stride + (buckets + 4)).to(torch.int32)
    return keys, stride


def _histogram(keys: Tensor, size: int) -> Tensor:
    """``[size]`` int32 counts of the values of ``keys`` (non-negative int32, below ``size``)."""
    flat = keys.view(-1)
    hist = torch.zeros(size, dtype=torch.int32, device=keys.device)
    return hist.index_add_(
        0, flat, torch.ones((), dtype=torch.int32, device=keys.device).expand(flat.numel())
    )


def _negatives_before(dist: Tensor, matches: _SortedMatches, keep: Tensor | None) -> Tensor:
    """``[B, M]``: per query, the number of non-matching kept items ordered before its ``k``-th valid match.

    Slots past a row's valid matches hold 0 (the metrics never read them).
    """
    num_rows, num_gallery = dist.shape
    device = dist.device
    keys, stride = _bucket_keys(dist, matches, keep)
    hist = _histogram(keys, num_rows * stride).view(num_rows, stride)
    lower = (hist.cumsum(dim=1, dtype=torch.int32) - hist).view(-1)  # kept items of the row in lower buckets
    # the valid matches of all rows in one list: rows ascending, each row's in its sorted order, so that their
    # bucket keys ascend too
    valid = matches.valid
    rows = torch.arange(num_rows, device=device)[:, None].expand_as(valid)[valid]
    index = matches.index[valid]
    match_key = keys.view(-1)[rows * num_gallery + index].to(torch.int64)
    before = lower[match_key].to(torch.int64)
    before += _same_bucket_before(dist, keys, match_key, matches.searchable[valid], index, num_rows * stride)
    # every kept item before the k-th valid match of its row is one of the k earlier valid matches or a non-match
    row_start = matches.count.cumsum(0) - matches.count
    before -= torch.arange(len(rows), device=device) - row_start[rows]
    negatives = torch.zeros(valid.shape, dtype=torch.int64, device=device)
    negatives[valid] = before
    return negatives


def _same_bucket_before(
    dist: Tensor, keys: Tensor, match_key: Tensor, match_dist: Tensor, match_index: Tensor, num_keys: int
) -> Tensor:
    """``[V]``: for each valid match, the kept items in its bucket that a stable sort puts before it.

    Args:
        dist: ``[B, G]`` distances; ``keys``: their ``[B, G]`` int32 bucket keys, below ``num_keys``.
        match_key, match_dist, match_index: ``[V]`` the valid matches' bucket keys (ascending), distances and
            gallery indices, in the order of a stable sort within each row.
    """
    num_gallery = dist.shape[1]
    marked = torch.zeros(num_keys, dtype=torch.bool, device=dist.device)
    marked[match_key] = True
    flat = marked.index_select(0, keys.view(-1)).nonzero()[:, 0]  # the items sharing a bucket with a match
    value, col = dist.view(-1)[flat], flat % num_gallery
    key = keys.view(-1)[flat].to(torch.int64)
    # the matches of an item's bucket are match_*[first:stop]; those it does not come after form a prefix
    first = torch.searchsorted(match_key, key, side="left")
    stop = torch.searchsorted(match_key, key, side="right")
    passed = first.clone()
    for step in range(int((stop - first).max()) if flat.numel() else 0):
        at = (first + step).clamp_max(len(match_key) - 1)
        tied = match_dist[at] == value
        not_after = (match_dist[at] < value) | (tied & (match_index[at] <= col))
        passed += (first + step < stop) & not_after
    # the item is ordered before the matches passed .. stop - 1 (a difference array over the list)
    change = torch.zeros(len(match_key) + 1, dtype=torch.int64, device=dist.device)
    change.index_add_(0, passed, torch.ones_like(passed))
    change.index_add_(0, stop, torch.full_like(stop, -1))
    return change.cumsum(0)[:-1]


def _match_metrics(negatives_before: Tensor, num_matches: Tensor) -> _BlockResult:
    """Ranks of the true matches and the per-query metrics.

    Args:
        negatives_before: ``[B, M]`` non-matches ordered before each valid true match.
        num_matches: ``[B]`` valid true matches per query.
    """
    width = negatives_before.shape[1]
    device = negatives_before.device
    has_match = num_matches > 0
    last = (num_matches - 1).clamp_min(0)
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
