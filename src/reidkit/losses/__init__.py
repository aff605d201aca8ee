"""Loss functions: plain functions of tensors and labels, combined by a Criterion."""

from __future__ import annotations

from reidkit.losses.center import center_loss
from reidkit.losses.criterion import LOSSES, Criterion, build_criterion
from reidkit.losses.identity import attribute_loss, cross_entropy, lsro
from reidkit.losses.pairwise import contrastive
from reidkit.losses.quadruplet import quadruplet
from reidkit.losses.triplet import adaptive_triplet, improved_triplet, msml, trihard, triplet
from reidkit.losses.verification import PairHead, pair_scores, verification

__all__ = [
    "LOSSES",
    "Criterion",
    "PairHead",
    "adaptive_triplet",
    "attribute_loss",
    "build_criterion",
    "center_loss",
    "contrastive",
    "cross_entropy",
    "improved_triplet",
    "lsro",
    "msml",
    "pair_scores",
    "quadruplet",
    "trihard",
    "triplet",
    "verification",
]
