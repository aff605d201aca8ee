"""Pair-based metric loss: contrastive loss over every pair of the batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from reidkit.losses.triplet import batch_distances, mean_or_zero


def contrastive(
    features: Tensor,
    pids: Tensor,
    *,
    margin: float = 1.0,
    metric: str = "euclidean",
) -> Tensor:
    """Contrastive loss over all pairs of the batch.

    ``loss = mean_{i < j} [y_ij d_ij^2 + (1 - y_ij) max(margin - d_ij, 0)^2]`` with ``y_ij = 1`` when images
    ``i`` and ``j`` share the identity: positive pairs are pulled together, negative pairs pushed apart until
    they are ``margin`` away. The mean runs over all ``B (B - 1) / 2`` unordered pairs (a batch of one image
    gives 0, connected to the graph). Unlike the paper there is no factor 1/2.

    Args:
        features: ``[B, D]`` features.
        pids: ``[B]`` identity labels.
        margin: ``alpha``, the distance beyond which negative pairs cost nothing.
        metric: ``"euclidean"``, ``"sqeuclidean"`` or ``"cosine"`` (``d`` above).

    Returns:
        Scalar loss.

    Reference: Hadsell, Chopra and LeCun, "Dimensionality Reduction by Learning an Invariant Mapping",
    CVPR 2006.
    """
    dist, positive, _ = batch_distances(features, pids, metric)
    size = dist.shape[0]
    first, second = torch.triu_indices(size, size, offset=1, device=dist.device)
    pair_dist = dist[first, second]
    same = positive[first, second].to(dist.dtype)
    return mean_or_zero(same * pair_dist.pow(2) + (1.0 - same) * F.relu(margin - pair_dist).pow(2), dist)
