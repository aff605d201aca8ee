"""Loss functions: plain functions of tensors and labels, combined by a Criterion."""

from __future__ import annotations

from reidkit.losses.criterion import LOSSES, Criterion, build_criterion
from reidkit.losses.identity import attribute_loss, cross_entropy, lsro
from reidkit.losses.triplet import adaptive_triplet, improved_triplet, msml, trihard, triplet

__all__ = [
    "LOSSES",
    "Criterion",
    "adaptive_triplet",
    "attribute_loss",
    "build_criterion",
    "cross_entropy",
    "improved_triplet",
    "lsro",
    "msml",
    "trihard",
    "triplet",
]
