"""Unsupervised domain adaptation: pseudo-identities from clustering and a cluster memory to train on them.

:mod:`reidkit.adapt.pseudo_labels`: Jaccard distance, DBSCAN, tracklet constraints, label quality.
"""

from __future__ import annotations

from reidkit.adapt.pseudo_labels import constrained_labels, dbscan_labels, jaccard_distance, label_quality

__all__ = [
    "constrained_labels",
    "dbscan_labels",
    "jaccard_distance",
    "label_quality",
]
