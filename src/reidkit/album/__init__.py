"""Album clustering: group photos by person with ReID embeddings, score the grouping, show it as a contact sheet.

:mod:`.clustering` (HDBSCAN / DBSCAN / agglomerative over unit embeddings, one registry of methods),
:mod:`.scores` (pairwise precision / recall / F1 and the adjusted Rand index from the contingency table; person
ids from file names), :mod:`.sheet` (``index.html`` + thumbnails), :mod:`.run` (folder -> embeddings ->
clusters -> ``clusters.csv`` / ``clusters.json`` / ``index.html``; what ``reidkit cluster`` calls).
"""

from __future__ import annotations

from reidkit.album.clustering import (
    CLUSTERERS,
    METRICS,
    cluster,
    cluster_counts,
    cosine_distances,
    method_parameters,
)
from reidkit.album.run import AlbumResult, album_images, cluster_album, cluster_images, describe
from reidkit.album.scores import (
    NAME_SCHEMES,
    adjusted_rand_index,
    pairwise_scores,
    person_ids_from_names,
    score_clustering,
)
from reidkit.album.sheet import write_contact_sheet

__all__ = [
    "CLUSTERERS",
    "METRICS",
    "NAME_SCHEMES",
    "AlbumResult",
    "adjusted_rand_index",
    "album_images",
    "cluster",
    "cluster_album",
    "cluster_counts",
    "cluster_images",
    "cosine_distances",
    "describe",
    "method_parameters",
    "pairwise_scores",
    "person_ids_from_names",
    "score_clustering",
    "write_contact_sheet",
]
