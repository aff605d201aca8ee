"""Center loss: pulls each feature towards a learnable centre of its identity.

The centres are not created here: the :class:`~reidkit.losses.criterion.Criterion` owns them as a parameter
(``[num_classes, D]``, see :func:`init_centers`) so that the optimiser updates them and checkpoints store them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from reidkit.distance import paired_distance
from reidkit.losses.triplet import check_metric_inputs


def init_centers(num_classes: int, feat_dim: int) -> nn.Parameter:
    """``[num_classes, feat_dim]`` centres drawn from a standard normal (the module initialisation RNG)."""
    return nn.Parameter(torch.randn(num_classes, feat_dim))


def center_loss(features: Tensor, pids: Tensor, centers: Tensor, *, metric: str = "sqeuclidean") -> Tensor:
    """Center loss: the mean distance of each feature to the centre of its identity.

    ``loss = mean_i d(f_i, c_{y_i})``; with the default ``metric="sqeuclidean"``,
    ``mean_i ||f_i - c_{y_i}||^2``, i.e. the per-batch mean of Wen et al.'s ``sum_i ||f_i - c_{y_i}||^2``
    without the 1/2, as in the bag-of-tricks baseline (weight 0.0005 there). The centres are learnt by
    gradient descent together with the network. An empty batch gives 0 (connected to the graph).

    Args:
        features: ``[B, D]`` features.
        pids: ``[B]`` identity labels in ``[0, C)``.
        centers: ``[C, D]`` identity centres.
        metric: ``"sqeuclidean"``, ``"euclidean"`` (finite gradient at zero distance) or ``"cosine"``.

    Returns:
        Scalar loss.

    Reference: Wen et al., "A Discriminative Feature Learning Approach for Deep Face Recognition", ECCV 2016.
    """
    check_metric_inputs(features, pids, metric)
    if centers.dim() != 2 or centers.shape[1] != features.shape[1]:
        raise ValueError(
            f"centers: expected [num_classes, {features.shape[1]}] to match features, "
            f"got shape {tuple(centers.shape)}"
        )
    bad = (pids < 0) | (pids >= centers.shape[0])
    if bool(bad.any()):
        raise ValueError(f"pids: values must be in [0, {centers.shape[0]}), got {pids[bad][:5].tolist()}")
    if features.shape[0] == 0:
        return features.sum() * 0.0 + centers.sum() * 0.0
    dtype = torch.promote_types(features.dtype, centers.dtype)
    features, own = features.to(dtype), centers[pids].to(dtype)
    return paired_distance(features, own, metric).mean()
