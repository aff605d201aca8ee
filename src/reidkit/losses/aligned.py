"""AlignedReID local distance (shortest path through normalised part distances) and the aligned triplet loss.

Two images with ``H`` per-row local features each are compared through the ``H x H`` matrix of normalised
part distances ``d_ij = (exp(||a_i - b_j||) - 1) / (exp(||a_i - b_j||) + 1)`` (``= tanh(||a_i - b_j|| / 2)``,
in [0, 1)). Their local distance is the total distance of the shortest path from ``(1, 1)`` to ``(H, H)``
moving only right or down: ``S_ij = d_ij + min(S_{i-1,j}, S_{i,j-1})``. The dynamic programme runs over the
``2H - 1`` anti-diagonals, every cell of one anti-diagonal (and every pair of images) at once.

Reference: Zhang et al., "AlignedReID: Surpassing Human-Level Performance in Person Re-Identification",
arXiv 2017.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from reidkit.distance import pairwise_distance
from reidkit.losses.triplet import batch_distances, hardest_pairs, zero_loss
from reidkit.models.output import ReidOutput


def normalized_part_distance(x_local: Tensor, y_local: Tensor) -> Tensor:
    """Normalised distances between every row of ``x`` and every row of ``y``, for every pair of images.

    Args:
        x_local: ``[M, H, C]`` local features.
        y_local: ``[N, W, C]`` local features.

    Returns:
        ``[M, N, H, W]``: ``(exp(||x_mi - y_nj||) - 1) / (exp(||x_mi - y_nj||) + 1)``.
    """
    _check_local(x_local, "x_local")
    _check_local(y_local, "y_local")
    if x_local.shape[2] != y_local.shape[2]:
        raise ValueError(
            f"local features: channel counts differ, {tuple(x_local.shape)} vs {tuple(y_local.shape)}"
        )
    (num_x, height, channels), (num_y, width) = x_local.shape, y_local.shape[:2]
    # every part of x against every part of y: one [M * H, N * W] matrix, viewed as [M, N, H, W]
    distance = pairwise_distance(x_local.reshape(-1, channels), y_local.reshape(-1, channels), "euclidean")
    distance = distance.view(num_x, height, num_y, width).transpose(1, 2)
    # tanh(x / 2) == (e^x - 1) / (e^x + 1), without overflowing e^x for large distances
    return torch.tanh(distance / 2.0)


def _normalized_pair_distance(x_local: Tensor, y_local: Tensor) -> Tensor:
    """``[B, H, C] x [B, W, C] -> [B, H, W]``: the part-distance matrix of each pair ``(x_b, y_b)``."""
    return torch.tanh(pairwise_distance(x_local, y_local, "euclidean") / 2.0)  # batched over B


def shortest_path(dist: Tensor) -> Tensor:
    """Length of the shortest right/down path from the top-left to the bottom-right cell of each matrix.

    Args:
        dist: ``[..., H, W]`` non-negative cell costs.

    Returns:
        ``[...]`` path lengths (the sum of the costs of the ``H + W - 1`` cells on the path).
    """
    if dist.dim() < 2:
        raise ValueError(f"dist: expected [..., H, W], got shape {tuple(dist.shape)}")
    height, width = dist.shape[-2:]
    rows = torch.arange(height, device=dist.device)
    infinity = dist.new_tensor(float("inf"))
    # previous[..., i] = S[i, k - 1 - i] on the previous anti-diagonal (inf where that cell does not exist)
    previous = torch.full_like(dist[..., :, 0], float("inf"))
    for step in range(height + width - 1):
        columns = step - rows
        valid = (columns >= 0) & (columns < width)
        cells = dist[..., rows, columns.clamp(0, width - 1)]
        if step == 0:
            best = torch.zeros_like(previous)
        else:
            from_above = torch.cat(
                [torch.full_like(previous[..., :1], float("inf")), previous[..., :-1]], dim=-1
            )
            best = torch.minimum(previous, from_above)
        previous = torch.where(valid, cells + best, infinity)
    return previous[..., height - 1]


def local_distance(x_local: Tensor, y_local: Tensor, *, chunk_size: int = 256) -> Tensor:
    """AlignedReID local distance between every image of ``x`` and every image of ``y``.

    Args:
        x_local: ``[M, H, C]`` per-row local features.
        y_local: ``[N, H, C]`` per-row local features.
        chunk_size: rows of ``x`` processed at once (memory is ``chunk_size * N * H * H`` floats).

    Returns:
        ``[M, N]`` shortest-path distances, each in ``[0, 2H - 1)``.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size: expected >= 1, got {chunk_size}")
    chunks = [
        shortest_path(normalized_part_distance(x_local[start : start + chunk_size], y_local))
        for start in range(0, x_local.shape[0], chunk_size)
    ]
    if not chunks:
        _check_local(x_local, "x_local")
        return x_local.new_zeros(0, y_local.shape[0])
    return torch.cat(chunks, dim=0)


def local_pair_distance(x_local: Tensor, y_local: Tensor) -> Tensor:
    """Local distance of each pair ``(x_local[b], y_local[b])``: ``[B, H, C] x [B, H, C] -> [B]``."""
    _check_local(x_local, "x_local")
    _check_local(y_local, "y_local")
    if x_local.shape[0] != y_local.shape[0] or x_local.shape[2] != y_local.shape[2]:
        raise ValueError(
            f"expected paired local features, got {tuple(x_local.shape)} and {tuple(y_local.shape)}"
        )
    return shortest_path(_normalized_pair_distance(x_local, y_local))


def _check_local(local: Tensor, name: str) -> None:
    if local.dim() != 3:
        raise ValueError(f"{name}: expected [B, H, C] per-row local features, got shape {tuple(local.shape)}")


def _global_local_pairs(output: ReidOutput) -> list[tuple[Tensor, Tensor]]:
    """``(global [B, D], local [B, H, C])`` per model: one for an AlignedReID model, one per member of a
    mutual-learning wrapper (its ``extra["mutual.global"]`` ``[M, B, D]`` and ``extra["mutual.local"]``
    ``[M, B, H, C]``)."""
    if output.local_features is not None:
        if not output.global_features:
            raise ValueError("aligned_triplet: the model output has local features but no global feature")
        return [(output.global_features[0], output.local_features)]
    if "mutual.local" in output.extra and "mutual.global" in output.extra:
        return list(
            zip(output.extra["mutual.global"].unbind(0), output.extra["mutual.local"].unbind(0), strict=True)
        )
    raise ValueError(
        "aligned_triplet: the model output has no per-row local features (use an AlignedReID model, "
        "or a mutual wrapper of AlignedReID models)"
    )


def aligned_triplet(
    output: ReidOutput,
    pids: Tensor,
    *,
    margin: float = 0.3,
    local_margin: float = 0.3,
    global_weight: float = 1.0,
    local_weight: float = 1.0,
) -> Tensor:
    """AlignedReID triplet loss: hard examples mined with the global distance, the triplet on both distances.

    Per anchor ``a`` with hardest positive ``p = argmax_{p} d_g(a, p)`` and hardest negative
    ``n = argmin_{n} d_g(a, n)`` under the global Euclidean distance ``d_g``:
    ``loss = global_weight * mean_a [d_g(a,p) - d_g(a,n) + margin]_+``
    ``     + local_weight * mean_a [d_l(a,p) - d_l(a,n) + local_margin]_+``
    where ``d_l`` is :func:`local_pair_distance`. Anchors without a positive or negative are left out.
    A mutual-learning output (several members) gives the mean of this loss over the members.

    Args:
        output: the model's whole :class:`ReidOutput` (needs ``global_features[0]`` ``[B, D]`` and
            ``local_features`` ``[B, H, C]``), i.e. a loss term with ``on: output``.
        pids: ``[B]`` identity labels.
        margin: triplet margin on the global distance.
        local_margin: triplet margin on the local distance.
        global_weight, local_weight: weights of the two parts.

    Returns:
        Scalar loss.

    Reference: Zhang et al., "AlignedReID: Surpassing Human-Level Performance in Person
    Re-Identification", arXiv 2017.
    """
    losses = []
    for global_features, local_features in _global_local_pairs(output):
        if global_features.shape[0] != pids.shape[0] or local_features.shape[0] != pids.shape[0]:
            raise ValueError(
                f"aligned_triplet: batch sizes differ: global {tuple(global_features.shape)}, "
                f"local {tuple(local_features.shape)}, pids {tuple(pids.shape)}"
            )
        global_distance, positive, negative = batch_distances(global_features, pids, "euclidean")
        d_ap, d_an, valid = hardest_pairs(global_distance, positive, negative)
        if not bool(valid.any()):
            losses.append(zero_loss(global_distance) + zero_loss(local_features))
            continue
        anchors = torch.nonzero(valid).squeeze(1)
        far = torch.where(positive, global_distance.detach(), float("-inf")).argmax(dim=1)[anchors]
        near = torch.where(negative, global_distance.detach(), float("inf")).argmin(dim=1)[anchors]
        anchor_local = local_features[anchors]
        local_ap = local_pair_distance(anchor_local, local_features[far])
        local_an = local_pair_distance(anchor_local, local_features[near])
        global_term = F.relu(d_ap[anchors] - d_an[anchors] + margin).mean()
        local_term = F.relu(local_ap - local_an + local_margin).mean()
        losses.append(global_weight * global_term + local_weight * local_term)
    return torch.stack(losses).mean()


DISTANCE_MODES = ("global", "local", "combined")


def aligned_distance(
    q_global: Tensor,
    g_global: Tensor,
    q_local: Tensor | None = None,
    g_local: Tensor | None = None,
    *,
    mode: str = "global",
    local_weight: float = 1.0,
    metric: str = "euclidean",
    chunk_size: int = 256,
) -> Tensor:
    """Query-gallery distances of AlignedReID features for evaluation.

    ``"global"``: ``d_g`` between the global features; ``"local"``: the shortest-path local distance
    :func:`local_distance`; ``"combined"``: ``d_g + local_weight * d_l`` (the paper's optional test-time
    combination). The local distance costs ``O(h^2 C)`` per pair plus a ``2h - 1``-step programme, against
    ``O(D)`` for the global one.

    Args:
        q_global, g_global: ``[M, D]`` and ``[N, D]`` global features.
        q_local, g_local: ``[M, h, C]`` and ``[N, h, C]`` local features (needed by ``local``/``combined``).
        mode: ``"global"``, ``"local"`` or ``"combined"``.
        local_weight: weight of the local distance in ``combined``.
        metric: distance of the global features (see :func:`reidkit.distance.pairwise_distance`).
        chunk_size: query rows of the local distance computed at once.

    Returns:
        ``[M, N]`` distances.
    """
    if mode not in DISTANCE_MODES:
        raise ValueError(f"mode: expected one of {list(DISTANCE_MODES)}, got {mode!r}")
    if mode == "global":
        return pairwise_distance(q_global, g_global, metric)
    if q_local is None or g_local is None:
        raise ValueError(f"mode {mode!r} needs the local features of the query and the gallery")
    local = local_distance(q_local, g_local, chunk_size=chunk_size)
    if mode == "local":
        return local
    return pairwise_distance(q_global, g_global, metric) + local_weight * local
