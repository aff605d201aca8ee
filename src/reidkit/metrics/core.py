"""The core of :mod:`reidkit.metrics`: the :class:`Metrics` record, input checks, and the two entry points.

:func:`evaluate` (from a distance matrix) and :func:`evaluate_features` (from features) feed blocks of query
rows to the exact block kernel (:mod:`reidkit.metrics._ranks`) and average its per-query results. The
definitions and protocols are in the :mod:`reidkit.metrics` docstring.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from reidkit._arrays import as_numpy
from reidkit.distance import GalleryDistance
from reidkit.metrics._ranks import _block_metrics, _BlockResult, _MatchTable

ArrayLike = np.ndarray | Tensor | Sequence

#: elements per block of the query x gallery matrix processed at once (about 64 MB of float32 distances).
DEFAULT_BLOCK_ELEMENTS = 1 << 24

_REPORTED_RANKS = (1, 5, 10, 20)


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
    array = as_numpy(values, name, ndim=1)
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
# blocks and their accumulation


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
    device = distmat.device if isinstance(distmat, Tensor) else torch.device("cpu")
    return _score_blocks(
        lambda start, stop: _distance_block(distmat, start, stop, device),
        tuple(distmat.shape),
        device,
        (q_pids, g_pids, q_camids, g_camids),
        max_rank=max_rank,
        ignore=ignore,
        chunk_size=chunk_size,
    )


def _score_blocks(
    rows: Callable[[int, int], Tensor | Callable[[int, int], Tensor]],
    shape: tuple[int, int],
    device: torch.device,
    labels: tuple,
    *,
    max_rank: int,
    ignore: Sequence | None,
    chunk_size: int | None,
    check_nan: bool = True,
) -> Metrics:
    """Check the labels, then accumulate the metrics of ``rows(start, stop)`` block by block.

    ``rows(start, stop)`` gives the ``[B, G]`` distances of a block, or a function of ``(a, b)`` giving those of
    its rows ``a:b`` (see :func:`reidkit.metrics._ranks._block_metrics`); ``labels`` is
    ``(q_pids, g_pids, q_camids, g_camids)``; ``check_nan=False`` when the distances cannot be NaN.
    """
    num_query, num_gallery = shape
    q_pids, g_pids, q_camids, g_camids = labels
    q_pids_np = _to_numpy_1d(q_pids, "q_pids", num_query)
    g_pids_np = _to_numpy_1d(g_pids, "g_pids", num_gallery)
    q_cams, g_cams = _check_camids(q_camids, g_camids, num_query, num_gallery)
    ignore_checked = _check_ignore(ignore, num_query, num_gallery)
    max_rank = _check_max_rank(max_rank)
    block = _block_size(chunk_size, num_gallery)
    table = _MatchTable(g_pids_np)
    accumulator = _Accumulator(max_rank)
    with torch.no_grad():
        for start in range(0, num_query, block):
            stop = min(start + block, num_query)
            accumulator.add(
                _block_metrics(
                    rows(start, stop),
                    q_pids_np[start:stop],
                    table,
                    None if q_cams is None else q_cams[start:stop],
                    g_cams,
                    None if ignore_checked is None else ignore_checked[start:stop],
                    check_nan=check_nan,
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

    Distances are computed one block of queries at a time by :class:`reidkit.distance.GalleryDistance` (one
    matrix product per block, turned into distances part by part), bit-identical to
    :func:`reidkit.distance.pairwise_distance` on each block, so the result equals
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
    distance = GalleryDistance(gallery, metric)
    with torch.no_grad():
        left, norms = distance.split(query)
        check_nan = not distance.never_nan(left, norms)
    return _score_blocks(
        _ProductBlocks(distance, left, norms, _block_size(chunk_size, gallery.shape[0])),
        (query.shape[0], gallery.shape[0]),
        query.device,
        (q_pids, g_pids, q_camids, g_camids),
        max_rank=max_rank,
        ignore=ignore,
        chunk_size=chunk_size,
        check_nan=check_nan,
    )


class _ProductBlocks:
    """``blocks(start, stop)``: one matrix product for the block's queries, then its distances part by part.

    The product of a block lands in one buffer reused by every block, and each part of its rows is turned into
    distances (see :meth:`reidkit.distance.GalleryDistance.finish`) just before the kernel reads it, while it
    is still in the processor's caches.
    """

    def __init__(self, distance: GalleryDistance, left: Tensor, norms: Tensor | None, block: int):
        self.distance, self.left, self.norms = distance, left, norms
        self.product = left.new_empty((min(block, left.shape[0]), len(distance)))
        self.local = threading.local()  # each thread's buffer for the distances of one part

    def __call__(self, start: int, stop: int) -> _ProductRows:
        product = torch.mm(self.left[start:stop], self.distance.gallery.t(), out=self.product[: stop - start])
        return _ProductRows(self, product, start)


class _ProductRows:
    """``rows(first, last)``: the distances of rows ``first:last`` of one block's product (overwrites them)."""

    def __init__(self, blocks: _ProductBlocks, product: Tensor, start: int):
        self.blocks, self.product, self.start = blocks, product, start
        self.device = product.device

    def __call__(self, first: int, last: int) -> Tensor:
        blocks = self.blocks
        if blocks.norms is None:
            return blocks.distance.finish(self.product[first:last], None)
        out = getattr(blocks.local, "out", None)
        if out is None or out.shape[0] < last - first:
            out = blocks.local.out = self.product.new_empty((last - first, self.product.shape[1]))
        norms = blocks.norms[self.start + first : self.start + last]
        return blocks.distance.finish(self.product[first:last], norms, out=out[: last - first])
