"""Embedding image files into an index, chunk by chunk."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from reidkit.index.items import GalleryIndexError, GalleryItem

if TYPE_CHECKING:
    from reidkit.index import Index


def index_images(
    index: Index,
    embedder: Any,
    paths: Sequence[str],
    items: Sequence[GalleryItem | Mapping[str, Any]] | None = None,
    *,
    batch_size: int = 64,
    progress: bool = False,
) -> np.ndarray:
    """Embed image files and add them to ``index`` chunk by chunk (each chunk one atomic write).

    Args:
        index: an open, writable index built for ``embedder``.
        embedder: an :class:`reidkit.embedders.Embedder`.
        paths: image files.
        items: metadata per image (default: only the path); each item's ``path`` must equal its file.
        batch_size: images embedded and committed per chunk.
        progress: show a progress bar.

    Returns:
        ``[N]`` ids in the order of ``paths``.
    """
    from tqdm import tqdm

    from reidkit.data.transforms import read_image

    if items is None:
        items = [GalleryItem(path=str(path)) for path in paths]
    if len(items) != len(paths):
        raise GalleryIndexError(f"{len(paths)} image paths but {len(items)} metadata items")
    if embedder.fingerprint != index.fingerprint:
        index._check_fingerprint(embedder.fingerprint, f"images embedded by {embedder.name}")
    ids = []
    with tqdm(total=len(paths), desc="index", unit="img", disable=not progress) as bar:
        for start in range(0, len(paths), batch_size):
            chunk = [str(path) for path in paths[start : start + batch_size]]
            embeddings = embedder.embed_images([read_image(path) for path in chunk])
            ids.append(
                index.add(
                    embeddings,
                    items[start : start + batch_size],
                    fingerprint=embedder.fingerprint,
                    save=False,
                )
            )
            bar.update(len(chunk))
    index.save()
    return np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
