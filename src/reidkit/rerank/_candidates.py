"""Certified neighbour search: candidates from a bfloat16 product, re-scored in float32.

The fast mode's CPU search (:func:`_certified_search`). The float32 squared distance of a pair is the one
:meth:`reidkit.distance.SquaredRowDistance.pairs` computes (one fixed summation order per pair, whatever else is
computed with it); every neighbour list is the first items of a stable sort of those values (distance
ascending, ties by index ascending, as :func:`_stable_order`).

* Query rows: their float32 strips are needed anyway (the output), so each row's list is taken from them (the
  items within the strip's rounding bound of the ``width``-th are re-scored with ``pairs``); so are the lists of
  the fallback rows below.
* Gallery rows: a bfloat16 product (float32 accumulation, bfloat16 result) gives approximate distances; each
  row keeps its ``C`` nearest and its ``m`` farthest approximate items. The error of an approximation is bounded
  from the features' bfloat16 residuals (Cauchy-Schwarz), the worst float32 accumulation error of both products
  and the rounding of the bfloat16 result (:class:`_ErrorBounds`). The ``width`` nearest approximations are
  re-scored in float32, then the other candidates whose lower bound does not exceed the largest of those. A row is
  *certified* when every item outside its list has a lower bound above the re-scored ``width``-th distance (and
  likewise for its largest distance); the other rows are recomputed in float32 (a *fallback*).

Both the lists and the row maxima are therefore those of the float32 distances, whatever the bfloat16
rounding did.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import Tensor

from reidkit.distance import SquaredRowDistance

#: unit roundoffs (round to nearest) of float32 and bfloat16
_UNIT_FLOAT32 = 2.0**-24
_UNIT_BFLOAT16 = 2.0**-8
#: approximate farthest items kept per row to certify its largest distance
_FARTHEST = 16
#: rows re-scored at once (memory: rows x candidates x dimension floats; small blocks stay in cache)
_RESCORE_ROWS = 8


@contextlib.contextmanager
def _one_thread():
    """Run the many small, memory-bound steps (gathers, sorts of a few thousand items) on one thread: with
    several, each step's synchronisation costs more than its work, the more so on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _stable_order(distance: Tensor, index: Tensor) -> Tensor:
    """Order of each row of ``distance`` ascending, ties by ``index`` ascending (both ``[B, C]``)."""
    by_index = torch.sort(index, dim=1, stable=True).indices
    by_distance = torch.sort(distance.gather(1, by_index), dim=1, stable=True).indices
    return by_index.gather(1, by_distance)


class _ErrorBounds:
    """Intervals that contain the float32 squared distance ``F[i, j]`` given an approximation ``A[i, j]``.

    The approximation's dot product ``p`` differs from the float32 one by at most
    ``dot_error[i] + result_unit * |p|`` (``result_unit``: rounding of the product's result, 0 for float32).
    ``A`` is computed from ``p`` with :meth:`SquaredRowDistance.from_products`; the bounds are monotone in ``A``
    (non-decreasing), so a bound at a row's ``C``-th value holds for every item beyond it.

    Args:
        space: the distances; ``dot_error``: ``[N]`` per-row bound; ``result_unit``: relative result rounding;
        largest: bound of the approximate products' magnitude (cosine, whose features have norm about 1).
    """

    def __init__(
        self, space: SquaredRowDistance, dot_error: Tensor, result_unit: float, largest: float = 1.0
    ):
        self.metric = space.metric
        self.slack = max(float(largest) - 1.0, 0.0)  # cosine: how far above 1 an approximate product can be
        self.norms = space.norms
        self.norm_low, self.norm_high = space.norms.min(), space.norms.max()
        self.result_unit = result_unit / (1.0 - result_unit)  # relative to the rounded value
        # rounding of the few float32 operations after the dot products, in both computations (generous)
        scale = self.norms + self.norm_high + 2.0 * (self.norms * self.norm_high).sqrt() + 4.0
        self.margin = 16.0 * _UNIT_FLOAT32 * scale + torch.finfo(torch.float32).tiny
        self.dot_error = dot_error * (1.0 + 1e-4) + 8.0 * _UNIT_FLOAT32 * (1.0 + self.norms)

    def _half_width(self, approx: Tensor, rows: Tensor) -> Tensor:
        """Euclidean: ``2 * max |p - p_float32|`` for the items whose approximation is ``approx`` ``[B, K]``."""
        norms = self.norms[rows][:, None]
        largest_product = torch.maximum(
            (norms + self.norm_low - approx).abs(), (norms + self.norm_high - approx).abs()
        )  # 2 |p| over every possible norm of the other item
        return 2.0 * self.dot_error[rows][:, None] + self.result_unit * largest_product

    def _cosine_error(self, root: Tensor, rows: Tensor) -> Tensor:
        """Cosine: ``max |p - p_float32|`` where ``|1 - p| = root``; ``p <= 1 + slack``, so ``p = 1 - root`` unless
        ``root <= slack``."""
        product = torch.where(root <= self.slack, 1.0 + root, (1.0 - root).abs())
        return self.dot_error[rows][:, None] + self.result_unit * product + 4.0 * _UNIT_FLOAT32

    def lower(self, approx: Tensor, rows: Tensor) -> Tensor:
        """``[B, K]`` lower bounds of ``F`` for approximations ``approx`` of rows ``rows`` ``[B]``."""
        margin = self.margin[rows][:, None]
        if self.metric == "cosine":
            root = approx.sqrt()
            dot = self._cosine_error(root, rows)
            return (root - dot).clamp_min(0.0).square() - margin
        return approx - self._half_width(approx, rows) - margin

    def upper(self, approx: Tensor, rows: Tensor) -> Tensor:
        """``[B, K]`` upper bounds of ``F`` (see :meth:`lower`)."""
        margin = self.margin[rows][:, None]
        if self.metric == "cosine":
            root = approx.sqrt()
            dot = self._cosine_error(root, rows)
            return (root + dot).square() + margin
        return approx + self._half_width(approx, rows) + margin

    def upper_up_to(self, approx: Tensor, rows: Tensor) -> Tensor:
        """``[B, K]`` upper bounds of ``F`` for every approximation up to ``approx``: :meth:`upper` is monotone
        but for cosine, where the bound on ``|p|`` drops at ``root = slack``; the bound just below is added."""
        bound = self.upper(approx, rows)
        if self.metric == "cosine":
            dot = self.dot_error[rows][:, None] + self.result_unit * (1.0 + self.slack) + 4.0 * _UNIT_FLOAT32
            bound = torch.maximum(bound, (self.slack + dot).square() + self.margin[rows][:, None])
        return bound

    def lower_at_most(self, bound: Tensor, rows: Tensor) -> Tensor:
        """``[B, 1]`` the largest ``A`` whose lower bound may be ``<= bound`` ``[B, 1]`` (``result_unit = 0``)."""
        margin = self.margin[rows][:, None]
        dot = self.dot_error[rows][:, None]
        if self.metric == "cosine":
            limit = ((bound + margin).clamp_min(0.0).sqrt() + dot).square()
        else:
            limit = bound + 2.0 * dot + margin
        return limit * (1.0 + 1e-6) + torch.finfo(torch.float32).tiny  # rounding of this evaluation


def _norms(features: Tensor) -> Tensor:
    """``[N]`` upper bounds of the rows' Euclidean norms (float32, raised past any rounding of the sum)."""
    steps = (features.shape[1] + 2) * _UNIT_FLOAT32
    return torch.linalg.vector_norm(features, dim=1, dtype=torch.float32) * (1.0 + 4.0 * steps)


def _dot_errors(space: SquaredRowDistance, low: Tensor | None) -> Tensor:
    """``[N]`` bound of ``|p - p_float32|`` over a row's pairs: bfloat16 ``low`` features, or float32 (None)."""
    features = space.features
    dimension = features.shape[1]
    steps = (dimension + 2) * _UNIT_FLOAT32
    accumulation = steps / (1.0 - steps)  # any summation order, products rounded or not
    size = _norms(features)
    if low is None:
        return 2.0 * accumulation * size * size.max()
    low_size = _norms(low)
    residual = _norms(features - low.float())
    error = low_size * residual.max() + residual * size.max()  # |x^ . r_y| + |r_x . y|, Cauchy-Schwarz
    error += accumulation * (low_size * low_size.max() + size * size.max())
    return error


def _rescore(space: SquaredRowDistance, row_ids: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """Float32 distances of the pairs ``(row_ids[rows[p]], cols[p])`` (``rows`` ascending), by row blocks."""
    values = torch.empty(rows.shape[0], dtype=space.features.dtype, device=rows.device)
    counts = torch.bincount(rows, minlength=row_ids.shape[0])
    ends = counts.cumsum(0)
    position = torch.arange(rows.shape[0], device=rows.device) - (ends - counts)[rows]
    for start in range(0, row_ids.shape[0], _RESCORE_ROWS):
        stop = min(start + _RESCORE_ROWS, row_ids.shape[0])
        first, last = int(ends[start] - counts[start]), int(ends[stop - 1])
        if last == first:
            continue
        local, slot = rows[first:last] - start, position[first:last]
        grid = torch.zeros(
            (stop - start, int(counts[start:stop].max())), dtype=torch.int64, device=rows.device
        )
        grid[local, slot] = cols[first:last]
        values[first:last] = space.row_pairs(row_ids[start:stop], grid)[local, slot]
    return values


def _pack(rows: Tensor, cols: Tensor, values: Tensor, num_rows: int, length: int) -> tuple[Tensor, Tensor]:
    """``[num_rows, length]`` lists of ``(cols, values)`` per row in stable order, padded with -1 and inf."""
    order = torch.sort(cols, stable=True).indices
    order = order[torch.sort(values[order], stable=True).indices]
    order = order[torch.sort(rows[order], stable=True).indices]
    rows, cols, values = rows[order], cols[order], values[order]
    counts = torch.bincount(rows, minlength=num_rows)
    position = torch.arange(rows.shape[0], device=rows.device) - (counts.cumsum(0) - counts)[rows]
    keep = position < length
    index = torch.full((num_rows, length), -1, dtype=torch.int64, device=rows.device)
    distance = torch.full((num_rows, length), float("inf"), dtype=values.dtype, device=rows.device)
    index[rows[keep], position[keep]] = cols[keep]
    distance[rows[keep], position[keep]] = values[keep]
    return index, distance


def _exact_rows(space, strip: Tensor, row_ids: Tensor, bounds: _ErrorBounds, width: int, length: int):
    """Lists and maxima of rows whose float32 strip ``[B, N]`` is at hand (re-scored near the ``width``-th)."""
    kth = torch.topk(strip, width, dim=1, largest=False).values[:, -1:]
    limit = bounds.lower_at_most(bounds.upper(kth, row_ids), row_ids)
    rows, cols = (strip <= limit).nonzero(as_tuple=True)
    row_max = strip.amax(dim=1)
    with _one_thread():
        values = _rescore(space, row_ids, rows, cols)
        index, distance = _pack(rows, cols, values, row_ids.shape[0], length)
    return index, distance, row_max, rows.shape[0]


def _approximate_lists(space, product: Tensor, row_ids: Tensor, length: int, by_product: bool, slack: float):
    """The nearest and farthest items of a strip of rows by their approximate ``[B, N]`` products.

    Items are ranked by the product (``by_product``: the norms are equal but for rounding, or cosine) or by
    ``2 p - |y|^2``; only the listed entries become distances. ``slack``: cosine, how far above 1 a product
    can be (:class:`_ErrorBounds`). Returns the lists of :func:`_certify`.
    """
    norms, count = space.norms, product.shape[1]
    key = product if by_product else product.float().mul_(2.0).sub_(norms)  # larger = nearer
    near_key, near_index = torch.topk(key, length, dim=1, largest=True)
    far_key, far_index = torch.topk(key, min(_FARTHEST, count), dim=1, largest=False)
    near_key, far_key = near_key[:, -1:].float(), far_key[:, -1:].float()
    row_norms = norms[row_ids][:, None]

    def distances(index: Tensor) -> Tensor:
        values = product.gather(1, index).float()
        if space.metric == "cosine":
            return (1.0 - values).square()
        return ((row_norms + norms[index]) - 2.0 * values).clamp_min(0.0)

    near, far = distances(near_index), distances(far_index)
    near, order = torch.sort(near, dim=1)
    near_index = near_index.gather(1, order)
    far, order = torch.sort(far, dim=1, descending=True)
    far_index = far_index.gather(1, order)
    # the unlisted items' approximations lie beyond these (rounded outwards)
    rounding = (
        8.0 * _UNIT_FLOAT32 * (row_norms + norms.max() + 2.0 * near_key.abs() + 2.0 * far_key.abs() + 1.0)
    )
    if space.metric == "cosine":
        beyond = (1.0 - near_key).clamp_min(0.0).square()
        below = (1.0 - far_key).square().clamp_min(slack**2)  # products in [far_key, 1 + slack]
    elif by_product:
        beyond = row_norms + norms.min() - 2.0 * near_key
        below = row_norms + norms.max() - 2.0 * far_key
    else:
        beyond, below = row_norms - near_key, row_norms - far_key
    return near, near_index, far, far_index, beyond - rounding, below + rounding


def _certify(space, row_ids, lists, bounds: _ErrorBounds, width: int, length: int):
    """Re-score the approximate lists of rows ``row_ids``; also return which rows are certified.

    Args:
        lists: from :func:`_approximate_lists`: ``near, near_index`` ``[B, C]`` the nearest approximations,
            ascending; ``far, far_index`` ``[B, m]`` the farthest, descending; ``beyond, below`` ``[B, 1]``: no
            unlisted item's approximation is below ``beyond`` (nearest side) or above ``below`` (farthest side).
    """
    near, near_index, far, far_index, beyond, below = lists
    count = space.features.shape[0]
    # the width nearest approximations first: their largest float32 distance bounds the width-th from above
    size = row_ids.shape[0]
    rows = torch.arange(size, device=row_ids.device).repeat_interleave(width)
    cols = near_index[:, :width].reshape(-1)
    values = _rescore(space, row_ids, rows, cols)
    limit = values.view(size, width).amax(dim=1, keepdim=True)
    # then the other listed items that can still be below it
    more_rows, slots = (bounds.lower(near[:, width:], row_ids) <= limit).nonzero(as_tuple=True)
    more_cols = near_index[:, width:][more_rows, slots]
    more_values = _rescore(space, row_ids, more_rows, more_cols)
    rows, cols = torch.cat([rows, more_rows]), torch.cat([cols, more_cols])
    index, distance = _pack(rows, cols, torch.cat([values, more_values]), size, length)
    certified = torch.ones(row_ids.shape[0], dtype=torch.bool, device=row_ids.device)
    if near.shape[1] < count:  # some items were never listed: all of them must stay beyond the width-th
        certified &= bounds.lower(beyond, row_ids)[:, 0] > distance[:, width - 1]
    far_rows, far_slots = (bounds.upper(far, row_ids) >= bounds.lower(far[:, :1], row_ids)).nonzero(
        as_tuple=True
    )
    far_values = _rescore(space, row_ids, far_rows, far_index[far_rows, far_slots])
    row_max = torch.full((row_ids.shape[0],), float("-inf"), dtype=far.dtype, device=far.device)
    row_max.scatter_reduce_(0, far_rows, far_values, "amax")
    if far.shape[1] < count:
        certified &= bounds.upper_up_to(below, row_ids)[:, 0] <= row_max
    return index, distance, row_max, certified, rows.shape[0] + far_rows.shape[0]


def _certified_search(
    space: SquaredRowDistance,
    num_candidates: int,
    chunk_size: int,
    num_query: int,
    out: np.ndarray,
    width: int,
    statistics: dict | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The float32 ``width`` nearest items of every item (and more, for look-ups), from a bfloat16 product.

    Args:
        space: float32 distances; ``num_candidates``: ``C``, approximate candidates kept per gallery row
            (``>= width``); ``chunk_size``: rows per strip; ``num_query``, ``out``: the query rows' float32
            distances to the gallery are written to ``out`` ``[Q, G]``; ``width``: exact list length.
        statistics: filled with ``rows``, ``fallback_rows`` (recomputed in float32) and ``rescored_pairs``.

    Returns:
        (``[N, C]`` indices and float32 squared distances, the first ``width`` exact and in stable order, the
        rest exact values of listed pairs or padding -1 / inf; ``[N]`` row maxima).
    """
    features = space.features
    count, device = features.shape[0], features.device
    length = min(count, num_candidates)
    low = features.bfloat16()
    exact_bounds = _ErrorBounds(space, _dot_errors(space, None), 0.0)
    largest = float(_norms(low).max()) ** 2 * (1.0 + 2.0**-7)  # |p| <= |x^| |y^| (1 + u)
    approx_bounds = _ErrorBounds(space, _dot_errors(space, low), _UNIT_BFLOAT16, largest)
    # rank by the product alone when the norms are equal but for rounding (cosine, L2-normalised features)
    spread = float(space.norms.max() - space.norms.min())
    by_product = space.metric == "cosine" or spread <= 1e-3 * float(approx_bounds.dot_error.min())
    index = torch.full((count, length), -1, dtype=torch.int64, device=device)
    distance = torch.full((count, length), float("inf"), dtype=features.dtype, device=device)
    row_max = torch.empty(count, dtype=features.dtype, device=device)
    rescored, pending = 0, [torch.arange(0, num_query, device=device)]
    for start in range(num_query, count, chunk_size):  # gallery rows: approximate strips
        row_ids = torch.arange(start, min(start + chunk_size, count), device=device)
        lists = _approximate_lists(
            space, low[start : start + chunk_size] @ low.t(), row_ids, length, by_product, approx_bounds.slack
        )
        with _one_thread():
            lists = _certify(space, row_ids, lists, approx_bounds, width, length)
        index[row_ids], distance[row_ids], row_max[row_ids] = lists[:3]
        pending.append(row_ids[~lists[3]])
        rescored += lists[4]
    pending = torch.cat(pending)  # query rows (their strips give the output) and the uncertified rows
    for start in range(0, pending.shape[0], chunk_size):
        row_ids = pending[start : start + chunk_size]
        strip = space.block(row_ids, slice(None))
        if start < num_query:  # query rows come first in pending, in order
            stop = min(start + chunk_size, num_query)
            out[start:stop] = strip[: stop - start, num_query:].cpu().numpy()
        lists = _exact_rows(space, strip, row_ids, exact_bounds, width, length)
        index[row_ids], distance[row_ids], row_max[row_ids] = lists[:3]
        rescored += lists[3]
    if statistics is not None:
        statistics.update(
            search="bfloat16",
            rows=count,
            fallback_rows=int(pending.shape[0]) - num_query,
            rescored_pairs=rescored,
        )
    return index, distance, row_max
