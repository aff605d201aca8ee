"""Quadruplet loss with batch-hard mining on a P x K batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from reidkit.losses.triplet import batch_distances, hardest_pairs, mean_or_zero


def quadruplet(
    features: Tensor,
    pids: Tensor,
    *,
    margin: float = 0.3,
    second_margin: float = 0.15,
    metric: str = "euclidean",
) -> Tensor:
    """Quadruplet loss: a triplet term plus a term that compares the positive pair with a pair of strangers.

    ``loss = mean_a [max(d_ap - d_an1 + margin, 0) + max(d_ap - d_n1n2 + second_margin, 0)]`` where, for each
    anchor ``a`` (batch-hard mining, vectorised):

    - ``d_ap`` is the distance to its farthest positive (same identity, another image);
    - ``d_an1`` is the distance to its nearest negative;
    - ``d_n1n2`` is the smallest distance between two images ``n1``, ``n2`` of two different identities,
      both different from ``a``'s (the hardest negative pair that does not involve ``a``'s identity;
      ``[B, B, B]`` memory).

    The second term makes intra-class distances smaller than inter-class ones across anchors, not only
    relative to a shared anchor; ``second_margin`` is smaller than ``margin`` as in the paper (their
    ``alpha_2 = alpha_1 / 2``). Anchors without a positive, or in a batch with fewer than three identities, are
    left out of the mean; with none left the loss is 0 (connected to the graph).

    Args:
        features: ``[B, D]`` features.
        pids: ``[B]`` identity labels.
        margin: ``alpha``, the margin of the triplet term.
        second_margin: ``beta``, the margin of the pair-of-strangers term.
        metric: ``"euclidean"``, ``"sqeuclidean"`` or ``"cosine"``.

    Returns:
        Scalar loss.

    Reference: Chen et al., "Beyond Triplet Loss: a Deep Quadruplet Network for Person Re-identification",
    CVPR 2017.
    """
    dist, positive, negative = batch_distances(features, pids, metric)
    d_ap, d_an1, valid = hardest_pairs(dist, positive, negative)
    # stranger_pairs[a, i, j]: i and j have different identities, neither of them a's.
    stranger_pairs = negative[:, :, None] & negative[:, None, :] & negative[None, :, :]
    d_n1n2 = torch.where(stranger_pairs, dist[None, :, :], dist.new_tensor(float("inf"))).amin(dim=(1, 2))
    valid = valid & stranger_pairs.flatten(1).any(dim=1)
    d_ap, d_an1, d_n1n2 = d_ap[valid], d_an1[valid], d_n1n2[valid]
    return mean_or_zero(F.relu(d_ap - d_an1 + margin) + F.relu(d_ap - d_n1n2 + second_margin), dist)
