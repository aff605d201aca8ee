"""The exact block kernel: per-query first rank, AP and INP for one block of query rows, with no row sorted.

For each block only the distances of each query's true matches are sorted (a handful per query), and every
other valid gallery item is placed between them with a binary search. The rank of the ``k``-th true match
(0-based) is then ``k + 1 +`` the number of non-matching valid items ordered before it, which is all that CMC,
AP and INP need (see :mod:`reidkit.metrics` for the definitions and protocols).

:func:`_block_metrics` runs the steps in order: :func:`_sorted_matches` (the block's true matches, sorted),
:func:`_negatives_before` (how many non-matches come before each of them, by a dense or a packed binary
search) and :func:`_match_metrics` (ranks, AP and INP).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

#: a block searches whole rows instead of packing the candidates (the items up to each query's last true
#: match) when (candidates x matches per query) exceeds this many times the block size.
_DENSE_SEARCH_FACTOR = 8


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
    """

    index: Tensor
    valid: Tensor
    searchable: Tensor
    count: Tensor

    @property
    def width(self) -> int:
        return self.index.shape[1]

    def earlier_ties(self, rows: Tensor, cols: Tensor, values: Tensor) -> Tensor:
        """``[N]``: valid true matches at exactly the distance of item ``(row, col)`` and a smaller index."""
        tied = (
            (self.searchable[rows] == values[:, None]) & self.valid[rows] & (self.index[rows] < cols[:, None])
        )
        return tied.sum(dim=1)


@dataclass
class _NonMatchRule:
    """Which gallery items count as non-matches of a block's queries: another identity, kept, not ignored.

    Attributes:
        row_pids: ``[B]`` query identities; ``g_pids``: ``[G]`` gallery identities (same device).
        keep: optional ``[B, G]`` bool mask of the gallery items that take part (single-shot sampling).
        ignored_key: optional flat keys ``row * G + col`` of the ignored items.
    """

    row_pids: Tensor
    g_pids: Tensor
    keep: Tensor | None
    ignored_key: Tensor | None

    def mask(self, within: Tensor) -> Tensor:
        """``[B, G]`` bool: the non-matches among the ``[B, G]`` items of ``within``."""
        candidate = within & (self.g_pids[None, :] != self.row_pids[:, None])
        if self.keep is not None:
            candidate &= self.keep
        if self.ignored_key is not None:
            candidate.view(-1)[self.ignored_key] = False
        return candidate

    def select(self, rows: Tensor, cols: Tensor, num_gallery: int) -> Tensor:
        """``[N]`` bool: which of the items ``(rows, cols)`` are non-matches."""
        negative = self.g_pids[cols] != self.row_pids[rows]  # same-pid items are true matches or ignored
        if self.keep is not None:
            negative &= self.keep[rows, cols]
        if self.ignored_key is not None:
            negative &= ~torch.isin(rows * num_gallery + cols, self.ignored_key)
        return negative


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

    Returns:
        The metrics of the block's queries that have a valid true match.
    """
    if torch.isnan(dist.sum()) and torch.isnan(dist).any():  # the cheap test first
        raise ValueError("distmat: contains NaN distances")
    matches = _sorted_matches(dist, q_pids, table, q_camids, g_camids, ignore, keep)
    rule = _NonMatchRule(
        row_pids=torch.from_numpy(q_pids).to(dist.device),
        g_pids=g_pids_t,
        keep=keep,
        ignored_key=_ignored_keys(ignore, dist.shape[1], dist.device),
    )
    return _match_metrics(_negatives_before(dist, matches, rule), matches.count)


def _sorted_matches(
    dist: Tensor,
    q_pids: np.ndarray,
    table: _MatchTable,
    q_camids: np.ndarray | None,
    g_camids: np.ndarray | None,
    ignore: list[np.ndarray] | None,
    keep: Tensor | None,
) -> _SortedMatches:
    """The block's true matches and their validity, sorted (args: as in :func:`_block_metrics`)."""
    device = dist.device
    match_index_np, _ = table.lookup(q_pids)  # [B, M], gallery indices ascending
    present_np = match_index_np >= 0
    valid_np = present_np.copy()
    if q_camids is not None:
        match_cams = g_camids[np.where(present_np, match_index_np, 0)]
        valid_np &= match_cams != q_camids[:, None]
    if ignore is not None:
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
    return _SortedMatches(
        index=match_index,
        valid=match_valid,
        searchable=torch.where(match_valid, match_dist, inf).contiguous(),
        count=match_valid.sum(dim=1),
    )


def _ignored_keys(ignore: list[np.ndarray] | None, num_gallery: int, device: torch.device) -> Tensor | None:
    """Flat keys ``row * G + col`` of the ignored items of a block, or None when nothing is ignored."""
    if ignore is None or not any(items.size for items in ignore):
        return None
    ignored_rows = np.concatenate([np.full(len(items), row) for row, items in enumerate(ignore)])
    ignored_key = torch.from_numpy(ignored_rows.astype(np.int64) * num_gallery + np.concatenate(ignore))
    return ignored_key.to(device)


def _negatives_before(dist: Tensor, matches: _SortedMatches, rule: _NonMatchRule) -> Tensor:
    """``[B, M]``: per query, the number of non-matching valid items ordered before its ``k``-th true match.

    Only items up to the last true match can change a rank (everything farther is ordered after it), so the
    block is first reduced to those; rows without a valid match get a NaN threshold, which selects nothing.
    """
    num_rows = dist.shape[0]
    width = matches.width
    has_match = matches.count > 0
    last = (matches.count - 1).clamp_min(0)
    threshold = torch.where(has_match, matches.searchable.gather(1, last[:, None])[:, 0], float("nan"))
    within = dist <= threshold[:, None]
    num_within = int(torch.count_nonzero(within))
    counts = torch.zeros((num_rows, width + 1), dtype=torch.int64, device=dist.device)
    if num_within * width > _DENSE_SEARCH_FACTOR * within.numel():
        _count_dense(counts, dist, rule.mask(within), matches)
    elif num_within:
        _count_packed(counts, dist, within, matches, rule)
    return counts[:, :width].cumsum(dim=1)


def _count_dense(counts: Tensor, dist: Tensor, candidate: Tensor, matches: _SortedMatches) -> None:
    """Most of the block is a candidate: one batched binary search over whole rows.

    Args:
        counts: ``[B, M + 1]`` int64; ``counts[b, k]`` gains the candidates of row ``b`` ordered between its
            true matches ``k - 1`` and ``k`` (updated in place).
        dist: ``[B, G]`` distances; ``candidate``: ``[B, G]`` bool, the non-matches up to the last match.
    """
    num_rows = dist.shape[0]
    width = matches.width
    searchable = matches.searchable
    before = torch.searchsorted(searchable, dist.contiguous(), side="left")
    # the match distance at each item's insertion slot (+inf past the last one): equal means a tie
    padded = torch.cat([searchable, searchable.new_full((num_rows, 1), float("inf"))], dim=1)
    rows, cols = (candidate & (padded.gather(1, before) == dist)).nonzero(as_tuple=True)
    if rows.numel():
        # equal distances: a true match comes first when its gallery index is smaller (stable sort)
        before[rows, cols] += matches.earlier_ties(rows, cols, dist[rows, cols])
    before.masked_fill_(~candidate, width)  # before <= width on candidates
    before += torch.arange(num_rows, device=dist.device)[:, None] * (width + 1)
    counts += torch.bincount(before.view(-1), minlength=counts.numel()).view_as(counts)


def _count_packed(
    counts: Tensor, dist: Tensor, within: Tensor, matches: _SortedMatches, rule: _NonMatchRule
) -> None:
    """Few candidates: binary search over each row's candidates packed to the left of a ``[B, C]`` matrix.

    Args:
        counts: as in :func:`_count_dense` (updated in place).
        dist: ``[B, G]`` distances; ``within``: ``[B, G]`` bool, the items up to each row's last match.
    """
    num_rows, num_gallery = dist.shape
    width = matches.width
    device = dist.device
    searchable = matches.searchable
    rows, cols = within.nonzero(as_tuple=True)  # row-major: columns ascending within each row
    negative = rule.select(rows, cols, num_gallery)
    rows, cols = rows[negative], cols[negative]
    if not rows.numel():
        return
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
        before[tie_rows, tie_slots] += matches.earlier_ties(tie_rows, tie_cols, packed[tie_rows, tie_slots])
    filled = torch.arange(packed.shape[1], device=device)[None, :] < per_row[:, None]
    bins = torch.where(filled, before, width)
    counts.scatter_add_(1, bins, torch.ones_like(bins))


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
