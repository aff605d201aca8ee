"""Pairwise distances shared by losses, evaluation and re-ranking.

Euclidean distance is computed as ``sqrt(clamp(||x||^2 + ||y||^2 - 2 x.y, min=eps))`` so that the gradient
stays finite when two features coincide (``d/dx sqrt(z)`` is infinite at ``z = 0``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

METRICS = ("euclidean", "sqeuclidean", "cosine")

#: floor under the squared distance before the square root (keeps gradients finite at d = 0).
EPS = 1e-12


def squared_euclidean(x: Tensor, y: Tensor) -> Tensor:
    """``[M, D] x [N, D] -> [M, N]`` squared Euclidean distances, clamped at 0."""
    x_norm = x.pow(2).sum(dim=1, keepdim=True)
    y_norm = y.pow(2).sum(dim=1, keepdim=True).t()
    dist = x_norm + y_norm - 2.0 * (x @ y.t())
    return dist.clamp_min(0.0)


def euclidean(x: Tensor, y: Tensor) -> Tensor:
    """``[M, D] x [N, D] -> [M, N]`` Euclidean distances with a finite gradient at zero distance."""
    return squared_euclidean(x, y).clamp_min(EPS).sqrt()


def cosine(x: Tensor, y: Tensor) -> Tensor:
    """``[M, D] x [N, D] -> [M, N]`` cosine distances ``1 - cos(x, y)`` in [0, 2]."""
    return 1.0 - F.normalize(x, dim=1) @ F.normalize(y, dim=1).t()


def pairwise_distance(x: Tensor, y: Tensor | None = None, metric: str = "euclidean") -> Tensor:
    """Distance matrix between the rows of ``x`` (``[M, D]``) and ``y`` (``[N, D]``, default ``x``).

    Args:
        metric: ``"euclidean"``, ``"sqeuclidean"`` or ``"cosine"``.

    Returns:
        ``[M, N]`` distances.
    """
    if y is None:
        y = x
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"expected [M, D] and [N, D] features, got {tuple(x.shape)} and {tuple(y.shape)}")
    if metric == "euclidean":
        return euclidean(x, y)
    if metric == "sqeuclidean":
        return squared_euclidean(x, y)
    if metric == "cosine":
        return cosine(x, y)
    raise KeyError(f"unknown distance metric {metric!r}; choose from {list(METRICS)}")
