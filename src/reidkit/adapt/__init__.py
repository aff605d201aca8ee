"""Unsupervised domain adaptation: pseudo-identities from clustering and a cluster memory to train on them.

:mod:`reidkit.adapt.pseudo_labels` (Jaccard distance, DBSCAN, tracklet constraints, label quality) and
:mod:`reidkit.adapt.memory` (:class:`ClusterMemory`, :class:`CameraMemory`; the ``cluster_contrast`` loss term
of :mod:`reidkit.losses.criterion` holds one).
"""

from __future__ import annotations

from reidkit.adapt.memory import CameraMemory, ClusterMemory, centroids_of, proxies_of
from reidkit.adapt.pseudo_labels import constrained_labels, dbscan_labels, jaccard_distance, label_quality

__all__ = [
    "CameraMemory",
    "ClusterMemory",
    "centroids_of",
    "constrained_labels",
    "dbscan_labels",
    "jaccard_distance",
    "label_quality",
    "proxies_of",
]
