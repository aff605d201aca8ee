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

Under ``torchrun`` (``distributed``), rank 0 alone opens the index and decides what to embed; the processes then
embed the chunks round-robin (process ``r`` the ``r``-th chunk of every round of ``world_size`` chunks) and rank 0
adds each round's chunks in order, one atomic write each: the index gets the same entries, in the same order, as
from one process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reidkit.index.items import FileSource, GalleryIndexError, GalleryItem, as_items

if TYPE_CHECKING:
    from reidkit.distributed import Distributed
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


@dataclass
class _Plan:
    """What :func:`index_images` embeds (``todo``, in order) and what it already knows."""

    keys: list[str]  # resolved path of each given path
    first: dict[str, int]  # resolved path -> position of its first occurrence
    records: list[GalleryItem]
    todo: list[str]
    stale: dict[str, list[int]]  # resolved path -> ids of its outdated entries
    id_of: dict[str, int]  # resolved path -> id, for the ones kept and (as they are added) the new ones

    def commit(
        self, index: Index, embedder: Embedder, part: list[str], sources, embeddings: np.ndarray
    ) -> None:
        """Add one chunk (one atomic write) and record its ids."""
        new = index.add(
            embeddings,
            [replace(self.records[self.first[key]], path=key) for key in part],
            fingerprint=embedder.fingerprint,
            save=False,
            sources=sources,
            replace=[item_id for key in part for item_id in self.stale.get(key, [])],
        )
        self.id_of.update(zip(part, (int(item_id) for item_id in new), strict=True))

    def result(self) -> IndexedImages:
        return IndexedImages(
            ids=np.array([self.id_of[key] for key in self.keys], dtype=np.int64),
            added=len(self.todo),
            skipped=len(self.first) - len(self.todo),
            replaced=len(self.stale),
            repeated=len(self.keys) - len(self.first),
        )


def _plan(index: Index, embedder: Embedder, paths: Sequence[str], items) -> _Plan:
    records = [GalleryItem(path=str(path)) for path in paths] if items is None else as_items(items)
    if len(records) != len(paths):
        raise GalleryIndexError(f"{len(paths)} image paths but {len(records)} metadata items")
    if embedder.fingerprint != index.fingerprint:
        index.check_fingerprint(embedder.fingerprint, f"images embedded by {embedder.name}")
    keys = [str(Path(path).resolve()) for path in paths]
    first: dict[str, int] = {}
    for position, key in enumerate(keys):
        first.setdefault(key, position)
    entries = _stored_entries(index, {key: str(paths[position]) for key, position in first.items()})
    plan = _Plan(keys, first, records, todo=[], stale={}, id_of={})
    for key, stored in entries.items():
        if stored and all(source is None or source.same_file(key) for _, source in stored):
            plan.id_of[key] = stored[0][0]
            continue
        plan.todo.append(key)
        if stored:
            plan.stale[key] = [item_id for item_id, _ in stored]
    return plan


def index_images(
    index: Index | None,
    embedder: Embedder,
    paths: Sequence[str],
    items: Sequence[GalleryItem | Mapping[str, Any]] | None = None,
    *,
    batch_size: int = 64,
    workers: int = 0,
    progress: bool = False,
    distributed: Distributed | None = None,
) -> IndexedImages | None:
    """Embed the image files not yet in ``index`` and add them chunk by chunk (each chunk one atomic write).

    See the module docstring for what is skipped, replaced and stored.

    Args:
        index: an open, writable index built for ``embedder`` (None on the ranks but 0 of ``distributed``).
        embedder: an :class:`reidkit.embed.Embedder`.
        paths: image files (only rank 0's are read in a distributed run; the others may pass none).
        items: metadata per image (default: only the path); the stored ``path`` is the resolved file path.
        batch_size: images embedded and committed per chunk.
        workers: loader processes that decode the images.
        progress: show a progress bar.
        distributed: a started ``torchrun`` process group: the chunks are embedded by all its processes.

    Returns:
        The ids of ``paths`` and the counts of added, skipped, replaced and repeated images (None on the
        ranks but 0).

    Raises:
        DatasetError: a file to embed is missing or not an image (named in the message); the chunks
            before it stay committed.
        FingerprintMismatchError: ``embedder`` is not the model the index was built with.
    """
    from reidkit.embed import iter_image_chunks

    if distributed is not None and distributed.enabled:
        return _index_sharded(
            index, embedder, paths, items, distributed, batch_size=batch_size, workers=workers
        )
    plan = _plan(index, embedder, paths, items)
    todo = plan.todo
    chunks = iter_image_chunks(todo, batch_size=batch_size, workers=workers, progress=progress, desc="index")
    for start in range(0, len(todo), batch_size):
        part = todo[start : start + batch_size]
        # recorded before the chunk is decoded: a file changed meanwhile looks changed on the next re-add
        sources = [FileSource.of_file(key) for key in part]
        plan.commit(index, embedder, part, sources, embedder.embed_images(next(chunks)))
    index.save()
    return plan.result()


def _index_sharded(
    index: Index | None,
    embedder: Embedder,
    paths,
    items,
    distributed: Distributed,
    *,
    batch_size: int,
    workers: int,
) -> IndexedImages | None:
    """:func:`index_images` over the processes of ``distributed`` (see the module docstring)."""
    from reidkit.embed import embed_paths

    plan = _plan(index, embedder, paths, items) if distributed.is_main else None
    todo = distributed.broadcast_object(plan.todo if plan is not None else None)
    per_round = batch_size * distributed.world_size
    for start in range(0, len(todo), per_round):
        parts = [
            todo[s : s + batch_size] for s in range(start, min(start + per_round, len(todo)), batch_size)
        ]
        sources = [[FileSource.of_file(key) for key in part] for part in parts] if plan is not None else None
        mine = parts[distributed.rank] if distributed.rank < len(parts) else []
        embeddings = embed_paths(embedder, mine, batch_size=batch_size, workers=workers)
        gathered = distributed.gather_rows(embeddings)
        if plan is not None:
            offset = 0
            for part, part_sources in zip(parts, sources, strict=True):
                plan.commit(index, embedder, part, part_sources, gathered[offset : offset + len(part)])
                offset += len(part)
    if plan is None:
        return None
    index.save()
    return plan.result()
