"""Evaluation protocols beyond the single-split default of :func:`reidkit.metrics.evaluate`.

* CUHK03 classic single-gallery-shot: :func:`evaluate_single_gallery_shot`;
* multi-query (multi-shot / video): :func:`merge_queries` before evaluating;
* several random splits (small sets): :func:`average_metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from reidkit.metrics._ranks import _block_metrics, _MatchTable
from reidkit.metrics.core import (
    ArrayLike,
    Metrics,
    _Accumulator,
    _as_feature_tensor,
    _block_size,
    _check_camids,
    _distance_block,
    _to_numpy_1d,
    evaluate,
)


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
