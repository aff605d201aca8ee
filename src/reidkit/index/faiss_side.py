"""The FAISS side of the gallery index: flat / IVF / IVF-PQ structures, training, vector files, search.

A structure is a cache of the embeddings stored in SQLite (:class:`reidkit.index.store.GalleryStore`):
``vectors-<version>.faiss`` holds the one of that committed version, and a structure that is missing or
does not match the database is rebuilt from the stored embeddings. Until an IVF kind is trained the
structure is flat (exact); training uses a fixed random sample, so a rebuild always gives the same structure.

Scores are FAISS's: inner products for ``metric="ip"`` (higher is closer), squared Euclidean distances for
``"l2"``; :func:`to_distance` turns them into the distances the index reports.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from reidkit.index.items import GalleryItem, SearchHit
from reidkit.index.settings import IndexSettings
from reidkit.index.store import GalleryStore, fsync_directory

_VECTOR_FILE = re.compile(r"^vectors-(\d+)\.faiss$")
#: training points per IVF list (and per PQ centroid) FAISS needs to train without warnings.
POINTS_PER_LIST = 39
#: training sample: this many points per list (k-means wants 39 at least; more gives better lists), at most
#: MAX_TRAINING_POINTS (at 1M items and 4000 lists, recall@10 was 0.927 trained on 100k points, 0.964 on 256k)
TRAINING_POINTS_PER_LIST = 64
MAX_TRAINING_POINTS = 300_000
#: below this many embeddings an IVF index with an automatic ``nlist`` stays flat (exact).
AUTOMATIC_IVF_MINIMUM = 10000


def import_faiss() -> Any:
    """The ``faiss`` module, or an ImportError saying what to install."""
    try:
        import faiss
    except ImportError as error:
        raise ImportError("the gallery index needs FAISS: pip install 'reidkit[faiss]'") from error
    return faiss


def default_nlist(count: int) -> int:
    """Number of IVF lists for ``count`` vectors: about 4 sqrt(N), at least 39 training points per list."""
    return int(max(1, min(4 * math.sqrt(max(count, 1)), count // POINTS_PER_LIST, 65536)))


def should_train(settings: IndexSettings, count: int) -> int | None:
    """The number of lists to train with, when an untrained IVF index now holds enough embeddings."""
    if settings.kind == "flat" or settings.trained_nlist is not None:
        return None
    nlist = settings.nlist or default_nlist(count)
    needed = POINTS_PER_LIST * nlist
    if settings.kind == "ivfpq":
        needed = max(needed, POINTS_PER_LIST * 2**settings.pq_bits)
    if settings.nlist is None and count < AUTOMATIC_IVF_MINIMUM:
        return None  # automatic IVF only pays off on large galleries: stay exact until then
    return nlist if count >= needed else None


# ---------------------------------------------------------------------- building
def _empty_flat(settings: IndexSettings) -> Any:
    faiss = import_faiss()
    flat = faiss.IndexFlatIP(settings.dim) if settings.metric == "ip" else faiss.IndexFlatL2(settings.dim)
    return faiss.IndexIDMap2(flat)


def _train_ivf(settings: IndexSettings, store: GalleryStore) -> Any:
    """A trained, empty IVF structure with ``settings.trained_nlist`` lists, trained on a stored sample."""
    faiss = import_faiss()
    nlist = settings.trained_nlist
    metric = faiss.METRIC_INNER_PRODUCT if settings.metric == "ip" else faiss.METRIC_L2
    if settings.kind == "ivf":
        description = f"IVF{nlist},Flat"
    else:
        description = f"IVF{nlist},PQ{settings.pq_m}x{settings.pq_bits}"
    structure = faiss.index_factory(settings.dim, description, metric)
    ids = store.ids()
    sample_size = min(
        len(ids), max(TRAINING_POINTS_PER_LIST * nlist, 2**settings.pq_bits * 40, 10000), MAX_TRAINING_POINTS
    )
    # a fixed generator: the same data always trains the same structure (a rebuild is reproducible)
    chosen = np.sort(np.random.default_rng(0).choice(ids, size=sample_size, replace=False))
    stored = store.vectors(chosen)
    vectors = np.empty((len(chosen), settings.dim), dtype=np.float32)
    for row, item_id in enumerate(chosen):
        vectors[row] = stored[int(item_id)]
    if settings.kind == "ivfpq":
        structure.do_polysemous_training = False  # only for Hamming-filtered search, which is not used; slow
    structure.train(vectors)
    structure.nprobe = settings.search_nprobe
    return structure


def build(settings: IndexSettings, store: GalleryStore) -> Any:
    """The structure of the current snapshot from the stored embeddings (trained when ``trained_nlist`` is set)."""
    if settings.trained_nlist is not None and settings.kind != "flat":
        structure = _train_ivf(settings, store)
    else:
        structure = _empty_flat(settings)
    for ids, vectors in store.iter_vectors(settings.dim):
        structure.add_with_ids(vectors, ids)
    return structure


# ---------------------------------------------------------------------- files
def vector_path(directory: Path, version: int) -> Path:
    """The FAISS file of one committed version."""
    return directory / f"vectors-{version}.faiss"


def load(directory: Path, settings: IndexSettings, store: GalleryStore, count: int) -> Any:
    """The structure of ``settings.version``: its file when that matches the ``count`` stored items, else rebuilt."""
    faiss = import_faiss()
    try:
        loaded = faiss.read_index(str(vector_path(directory, settings.version)))
    except (RuntimeError, OSError):
        loaded = None  # missing (a writer stopped before saving it) or unreadable: rebuild below
    if loaded is not None and loaded.ntotal == count and loaded.d == settings.dim:
        return loaded
    return build(settings, store)


def save(directory: Path, version: int, structure: Any, write_bytes: Callable[[Path, bytes], None]) -> None:
    """Write the file of ``version`` with ``write_bytes`` (atomic), then remove the files of older versions.

    A file of a newer version belongs to a newer writer and is kept.
    """
    faiss = import_faiss()
    write_bytes(vector_path(directory, version), faiss.serialize_index(structure).tobytes())
    fsync_directory(directory)
    for name in os.listdir(directory):
        match = _VECTOR_FILE.match(name)
        if match and int(match.group(1)) < version:
            try:
                os.unlink(directory / name)
            except FileNotFoundError:
                pass


# ---------------------------------------------------------------------- searching
def search(
    structure: Any,
    settings: IndexSettings,
    store: GalleryStore,
    queries: np.ndarray,
    *,
    k: int,
    limit: int,
    allowed: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` scores and ids per query, restricted to ``allowed`` ids when given.

    A trained IVF-PQ structure fetches ``refine * k`` candidates from the compressed codes and re-ranks them
    with the exact stored embeddings (:func:`rerank_exact`).

    Args:
        structure: the snapshot's FAISS structure.
        settings: the snapshot's settings.
        store: the snapshot's database (for the exact embeddings).
        queries: ``[Q, D]`` float32.
        k: hits wanted per query, at most ``limit``.
        limit: how many items may be returned (the gallery or the filtered gallery size).
        allowed: ids passing the filters, or None for all.

    Returns:
        ``[Q, K]`` float32 scores and ``[Q, K]`` int64 ids (``-1`` past the last hit), best first.
    """
    faiss = import_faiss()
    trained = settings.trained_nlist is not None
    params = None
    # the selector is kept referenced here for as long as the search runs
    selector = faiss.IDSelectorBatch(allowed) if allowed is not None else None
    if trained:
        params = faiss.SearchParametersIVF(nprobe=settings.search_nprobe)
        if selector is not None:
            params.sel = selector
    elif selector is not None:
        params = faiss.SearchParameters(sel=selector)
    refine = settings.refine_factor
    scores, labels = structure.search(queries, int(min(k * refine, limit)), params=params)
    if refine > 1:
        scores, labels = rerank_exact(queries, labels, store.vectors(labels[labels >= 0]), settings.metric, k)
    return scores, labels


def rerank_exact(
    queries: np.ndarray, labels: np.ndarray, stored: dict[int, np.ndarray], metric: str, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Re-rank candidate ids by exact scores against their stored embeddings.

    Args:
        queries: ``[Q, D]`` float32.
        labels: ``[Q, K']`` candidate ids (``-1``: none); ids missing from ``stored`` are dropped.
        stored: id -> ``[D]`` stored embedding.
        metric: ``"ip"`` (score: inner product, higher first) or ``"l2"`` (squared distance, lower first).
        k: hits kept per query.

    Returns:
        ``[Q, k]`` float32 scores and ``[Q, k]`` int64 ids, best first, padded with the worst score and -1.
    """
    ip = metric == "ip"
    out_scores = np.full((len(queries), k), -np.inf if ip else np.inf, dtype=np.float32)
    out_labels = np.full((len(queries), k), -1, dtype=np.int64)
    for row, (query, candidates) in enumerate(zip(queries, labels, strict=True)):
        candidates = np.array([c for c in candidates if c in stored], dtype=np.int64)
        if not len(candidates):
            continue
        matrix = np.stack([stored[int(c)] for c in candidates])
        exact = matrix @ query if ip else _squared_distances(query, matrix)
        order = np.argsort(-exact if ip else exact, kind="stable")[:k]
        out_scores[row, : len(order)] = exact[order]
        out_labels[row, : len(order)] = candidates[order]
    return out_scores, out_labels


def _squared_distances(query: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``[D]`` x ``[N, D]`` -> ``[N]`` squared Euclidean distances (in float64, so near-duplicates stay near 0)."""
    import torch

    from reidkit.distance import pairwise_distance

    distances = pairwise_distance(
        torch.from_numpy(np.asarray(query, np.float64)[None]),
        torch.from_numpy(matrix.astype(np.float64)),
        "sqeuclidean",
    )
    return distances[0].numpy()


def to_distance(score: float, metric: str) -> float:
    """A FAISS score as the reported distance: ``1 - <q, g>`` for ``"ip"``, ``||q - g||`` for ``"l2"``."""
    if metric == "ip":
        return 1.0 - float(score)
    return math.sqrt(max(float(score), 0.0))


def to_hits(
    scores: np.ndarray, labels: np.ndarray, items: dict[int, GalleryItem], metric: str
) -> list[list[SearchHit]]:
    """``[Q, K]`` scores and ids -> Q lists of hits, skipping ``-1`` and ids missing from ``items``."""
    return [
        [
            SearchHit(int(label), to_distance(score, metric), items[int(label)])
            for score, label in zip(row_scores, row_labels, strict=True)
            if label >= 0 and int(label) in items
        ]
        for row_scores, row_labels in zip(scores, labels, strict=True)
    ]
