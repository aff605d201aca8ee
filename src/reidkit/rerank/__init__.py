"""Re-ranking: k-reciprocal encoding (exact and fast) and alpha query expansion.

k-reciprocal re-ranking (Zhong et al., CVPR 2017) replaces each query-gallery distance by a mix of a Jaccard
distance between "k-reciprocal neighbourhoods" and the original distance. The conventions are those of the
authors' evaluation code, so published numbers carry over:

1. ``d`` is the original distance; ``D[i, j] = d[i, j]^2 / max_k d[i, k]^2`` over all ``N = Q + G`` items;
2. ``N(i, k)`` = the ``k + 1`` nearest items of ``i`` (itself included) by ``D`` (ties: lower index first);
   ``R(i, k) = {j in N(i, k) : i in N(j, k)}`` (k-reciprocal neighbours);
3. expansion: ``R*(i) = R(i, k1)`` united with every ``R(c, round(k1 / 2))``, ``c in R(i, k1)``, that shares
   more than 2/3 of its members with ``R(i, k1)`` (``round`` rounds halves to even);
4. ``V[i, j] = exp(-D[i, j]) / sum_{j' in R*(i)} exp(-D[i, j'])`` for ``j in R*(i)``, 0 elsewhere;
5. local query expansion: ``V[i] <- mean of V[j]`` over the ``k2`` nearest items ``j`` of ``i`` (itself
   included);
6. Jaccard distance, min-sum form: ``s = sum_k min(V[i, k], V[j, k])``, ``J = 1 - s / (2 - s)``;
7. ``final = (1 - lambda) * J + lambda * D`` for the query x gallery pairs.

:func:`k_reciprocal` (exact) takes the three distance matrices and follows these steps exactly: ``O(N^2)``
memory for ``D`` (about 1.5 GB in float32 at Market-1501 size) and a full sort of every row.

:func:`k_reciprocal_fast` works from features and never holds an ``N x N`` matrix: neighbour lists come from an
exhaustive, chunked nearest-neighbour search (float32 strips of the upper triangle of the distance matrix; on
CPUs with native bfloat16 products, candidates from a bfloat16 product that are re-scored in float32, with every
row the bfloat16 error bound cannot certify recomputed in float32: the same lists), ``V`` is a sparse
matrix with ``O(N * k1)`` entries and the Jaccard sums touch only the non-zeros. Its output is a dense
``[Q, G]`` matrix like the exact mode's (``Q x G`` floats; the working memory is ``O(N * k)``), and it
reproduces the exact mode.

The neighbour search stays exhaustive on purpose. Approximate searches (in a PCA-projected space) and exact
pruning with projected lower bounds ``||P(x - y)|| <= ||x - y||`` were both tried: on the Market-1501-sized
synthetic benchmark (``benchmarks/eval_speed.py``, d=2048, noise-dominated features) the 256-d approximate
search lost most of the mAP, and a lower bound from the top 64 / 256 / 1024 principal directions
excluded no item at all (every item's bound stays below the 21st-neighbour distance), so pruning only adds work.
Besides, the step-1 normalisation needs each row's *largest* distance and the output needs every
query-gallery distance, so a large part of the products cannot be skipped in any case.

:func:`kreciprocal_encoding` and :func:`jaccard_overlaps` expose steps 1-6 on one set of items, for callers
that need the encoding or the sparse Jaccard distances themselves (pseudo-labels, :mod:`reidkit.adapt`).

:func:`rerank_candidates` applies the exact mode to one query and a small candidate set (the hits of an
index search). :func:`query_expansion` implements alpha query expansion (Radenovic et al., TPAMI 2018).

Distances between features come from :mod:`reidkit.distance`.

Layout: :mod:`reidkit.rerank.exact` (:func:`k_reciprocal`, :func:`rerank_candidates`),
:mod:`reidkit.rerank.fast` (:func:`k_reciprocal_fast`), :mod:`reidkit.rerank.neighbours`
(:func:`kreciprocal_encoding`, :func:`jaccard_overlaps`), :mod:`reidkit.rerank.expansion`
(:func:`query_expansion`), ``reidkit.rerank._kreciprocal`` (the encoding both k-reciprocal modes share) and
``reidkit.rerank._candidates`` (the fast mode's certified bfloat16 search).
Import from ``reidkit.rerank``.
"""

from __future__ import annotations

from reidkit.rerank.exact import k_reciprocal, rerank_candidates
from reidkit.rerank.expansion import query_expansion
from reidkit.rerank.fast import _exhaustive_search as _exhaustive_search  # tested on its own
from reidkit.rerank.fast import k_reciprocal_fast
from reidkit.rerank.neighbours import jaccard_overlaps, kreciprocal_encoding

__all__ = [
    "jaccard_overlaps",
    "k_reciprocal",
    "k_reciprocal_fast",
    "kreciprocal_encoding",
    "query_expansion",
    "rerank_candidates",
]
