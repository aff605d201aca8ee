"""Embedding image files into an index, chunk by chunk, idempotently: what is already there is skipped.

An image is keyed by its resolved path (absolute, symlinks resolved), which is also the ``path`` stored for it.
Before anything is embedded, the paths are looked up in the index (chunked queries on ``items.path``):

- a path not in the index is embedded and added;
- a path in the index whose file is unchanged is skipped (not embedded again). Unchanged means: same size and
  modification time as when it was indexed, or else the same SHA-256. An item stored without a file record
  (added through :meth:`reidkit.index.Index.add`, or by a reidkit that kept none) counts as unchanged;
- a path in the index whose file changed since it was indexed is embedded again, and its old entry is
  deleted in the same write as the new one is added (reported as ``replaced``);
- a path given more than once is indexed once (its first metadata is kept).

Each chunk is one atomic write, so a run killed part-way leaves whole chunks committed and the same call
re-run adds exactly the rest. For an index written before paths were resolved, the path as given is looked
up too. A file is expected not to change while it is being indexed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reidkit.index.items import FileSource, GalleryIndexError, GalleryItem, as_items

if TYPE_CHECKING:
    from reidkit.embed import Embedder
    from reidkit.index import Index


@dataclass(frozen=True)
class IndexedImages:
    """What :func:`index_images` did.

    Attributes:
        ids: ``[N]`` int64, the id of each given path in order (new, or the one already stored).
        added: images embedded and added by this call (``replaced`` included).
        skipped: distinct paths already in the index with an unchanged file: not embedded again.
        replaced: distinct paths whose file changed since they were indexed: embedded again, old entry deleted.
        repeated: paths given more than once in this call, beyond their first occurrence.
    """

    ids: np.ndarray
    added: int
    skipped: int
    replaced: int
    repeated: int


def _stored_entries(index: Index, keys: dict[str, str]) -> dict[str, list[tuple[int, FileSource | None]]]:
    """Resolved path -> stored ``(id, source)`` entries, looking up each path resolved and as given."""
    given = {raw: key for key, raw in keys.items() if raw != key}
    stored = index.stored_files([*keys, *given])
    entries = {key: list(stored.get(key, [])) for key in keys}
    for raw, key in given.items():
        entries[key] = sorted(entries[key] + stored.get(raw, []))
    return entries


def index_images(
    index: Index,
    embedder: Embedder,
    paths: Sequence[str],
    items: Sequence[GalleryItem | Mapping[str, Any]] | None = None,
    *,
    batch_size: int = 64,
    workers: int = 0,
    progress: bool = False,
) -> IndexedImages:
    """Embed the image files not yet in ``index`` and add them chunk by chunk (each chunk one atomic write).

    See the module docstring for what is skipped, replaced and stored.

    Args:
        index: an open, writable index built for ``embedder``.
        embedder: an :class:`reidkit.embed.Embedder`.
        paths: image files.
        items: metadata per image (default: only the path); the stored ``path`` is the resolved file path.
        batch_size: images embedded and committed per chunk.
        workers: loader processes that decode the images.
        progress: show a progress bar.

    Returns:
        The ids of ``paths`` and the counts of added, skipped, replaced and repeated images.

    Raises:
        DatasetError: a file to embed is missing or not an image (named in the message); the chunks
            before it stay committed.
        FingerprintMismatchError: ``embedder`` is not the model the index was built with.
    """
    from reidkit.embed import iter_image_chunks

    records = [GalleryItem(path=str(path)) for path in paths] if items is None else as_items(items)
    if len(records) != len(paths):
        raise GalleryIndexError(f"{len(paths)} image paths but {len(records)} metadata items")
    if embedder.fingerprint != index.fingerprint:
        index.check_fingerprint(embedder.fingerprint, f"images embedded by {embedder.name}")
    keys = [str(Path(path).resolve()) for path in paths]
    first: dict[str, int] = {}  # resolved path -> position of its first occurrence
    for position, key in enumerate(keys):
        first.setdefault(key, position)
    entries = _stored_entries(index, {key: str(paths[position]) for key, position in first.items()})
    id_of: dict[str, int] = {}
    todo: list[str] = []
    stale: dict[str, list[int]] = {}
    for key, stored in entries.items():
        if stored and all(source is None or source.same_file(key) for _, source in stored):
            id_of[key] = stored[0][0]
            continue
        todo.append(key)
        if stored:
            stale[key] = [item_id for item_id, _ in stored]
    chunks = iter_image_chunks(todo, batch_size=batch_size, workers=workers, progress=progress, desc="index")
    for start in range(0, len(todo), batch_size):
        part = todo[start : start + batch_size]
        # recorded before the chunk is decoded: a file changed meanwhile looks changed on the next re-add
        sources = [FileSource.of_file(key) for key in part]
        embeddings = embedder.embed_images(next(chunks))
        new = index.add(
            embeddings,
            [replace(records[first[key]], path=key) for key in part],
            fingerprint=embedder.fingerprint,
            save=False,
            sources=sources,
            replace=[item_id for key in part for item_id in stale.get(key, [])],
        )
        id_of.update(zip(part, (int(item_id) for item_id in new), strict=True))
    index.save()
    return IndexedImages(
        ids=np.array([id_of[key] for key in keys], dtype=np.int64),
        added=len(todo),
        skipped=len(first) - len(todo),
        replaced=len(stale),
        repeated=len(keys) - len(first),
    )
