"""Embedding image files into an index, chunk by chunk."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from reidkit.index.items import GalleryIndexError, GalleryItem

if TYPE_CHECKING:
    from reidkit.embed import Embedder
    from reidkit.index import Index


def index_images(
    index: Index,
    embedder: Embedder,
    paths: Sequence[str],
    items: Sequence[GalleryItem | Mapping[str, Any]] | None = None,
    *,
    batch_size: int = 64,
    workers: int = 0,
    progress: bool = False,
) -> np.ndarray:
    """Embed image files and add them to ``index`` chunk by chunk (each chunk one atomic write).

    Args:
        index: an open, writable index built for ``embedder``.
        embedder: an :class:`reidkit.embed.Embedder`.
        paths: image files.
        items: metadata per image (default: only the path); each item's ``path`` must equal its file.
        batch_size: images embedded and committed per chunk.
        workers: loader processes that decode the images.
        progress: show a progress bar.

    Returns:
        ``[N]`` ids in the order of ``paths``.
    """
    from reidkit.embed import iter_image_chunks

    if items is None:
        items = [GalleryItem(path=str(path)) for path in paths]
    if len(items) != len(paths):
        raise GalleryIndexError(f"{len(paths)} image paths but {len(items)} metadata items")
    if embedder.fingerprint != index.fingerprint:
        index._check_fingerprint(embedder.fingerprint, f"images embedded by {embedder.name}")
    ids = []
    chunks = iter_image_chunks(
        [str(path) for path in paths], batch_size=batch_size, workers=workers, progress=progress, desc="index"
    )
    for number, images in enumerate(chunks):
        start = number * batch_size
        embeddings = embedder.embed_images(images)
        ids.append(
            index.add(embeddings, items[start : start + len(images)], fingerprint=embedder.fingerprint, save=False)
        )
    index.save()
    return np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
