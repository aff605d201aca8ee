"""Retrieval metrics: CMC, mAP and mINP under the standard ReID protocols, exact and memory-bounded.

This package owns evaluation. Every entry point produces exactly the numbers of the field's reference definition:

* per query, the gallery is ordered by a *stable* ascending sort of the query's distance row (ties broken by
  gallery index);
* gallery items the protocol ignores for that query are removed from the ordered list;
* ``CMC(k) = 1`` when the first true match sits at rank ``<= k``;
* ``AP`` is the mean, over the true matches, of the precision at each match's rank;
* ``INP = (number of true matches) / (rank of the last true match)`` (Ye et al., "Deep Learning for Person
  Re-identification: A Survey and Outlook", TPAMI 2021);
* queries without any valid true match are skipped; CMC, mAP and mINP are averaged over the other queries.

No query row is ever sorted. Queries are processed in blocks; for each block only the distances of each query's
true matches are sorted (a handful per query). The rank of the ``k``-th true match (0-based) is then ``k + 1 +``
the number of non-matching valid items ordered before it, which is all that CMC, AP and INP need; those numbers
come from one histogram of the items' distances in buckets spanning the query's matches, and only the few items
sharing a bucket with a match are compared with it exactly (:mod:`reidkit.metrics._ranks`). Memory is
``O(chunk_size x G)`` and the ``Q x G`` distance matrix never has to exist when evaluating from features
(:func:`evaluate_features`).

From features, the block matrix products dominate (``Q x G x D`` multiply-adds); everything else costs a few
passes over each block of distances, made while the block is still in the processor's caches
(``benchmarks/eval_product.py`` measures :func:`evaluate_features` against the product alone). Skipping gallery
items with a projected lower bound (``||P(q - g)|| <= ||q - g||`` for an orthonormal ``P``, exact items only
where the bound is below the query's last true-match distance) does not pay on high-dimensional,
noise-dominated features: on the Market-1501-sized synthetic benchmark (``benchmarks/eval_speed.py``, d=2048)
the bounds from the top 64, 256 or 1024 principal directions of the gallery excluded no item at all, although
only about 1% of the items lie within that distance. So every product is computed, in blocks.

Protocols:

* cross-camera rule (Market-1501, DukeMTMC-reID, MSMT17; the default): for each query, gallery items with the
  query's identity *and* camera are ignored;
* no camera ids (``q_camids = g_camids = None``): nothing is ignored by camera; pass ``ignore`` (for example from
  :func:`same_image_ignore`) to exclude the query's own image when query and gallery overlap;
* CUHK03 classic single-gallery-shot: :func:`evaluate_single_gallery_shot`;
* multi-query (multi-shot / video): :func:`merge_queries` before evaluating;
* several random splits (small sets): :func:`average_metrics`.

Gallery items with pid 0 (distractors) need no special treatment: they never match a query.

Layout: :mod:`reidkit.metrics.core` (:class:`Metrics`, input checks, :func:`evaluate`,
:func:`evaluate_features`), :mod:`reidkit.metrics._ranks` (the exact block kernel) and
:mod:`reidkit.metrics.protocols` (single-gallery-shot, multi-query, split averaging). Import from
``reidkit.metrics``.
"""

from __future__ import annotations

from reidkit.metrics.core import (
    DEFAULT_BLOCK_ELEMENTS,
    ArrayLike,
    Metrics,
    evaluate,
    evaluate_features,
    same_image_ignore,
)
from reidkit.metrics.protocols import average_metrics, evaluate_single_gallery_shot, merge_queries

__all__ = [
    "DEFAULT_BLOCK_ELEMENTS",
    "ArrayLike",
    "Metrics",
    "average_metrics",
    "evaluate",
    "evaluate_features",
    "evaluate_single_gallery_shot",
    "merge_queries",
    "same_image_ignore",
]
