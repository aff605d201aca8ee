"""The tracklets of a video dataset in an index: one entry per tracklet, idempotently.

A tracklet is embedded with :func:`reidkit.embed.embed_tracklets` (a temporal model's clips, or the mean of an
image model's frame embeddings) and stored as one :class:`~reidkit.index.items.GalleryItem` whose ``path`` is
its first frame (resolved; the thumbnail a search answer shows), with its camera, identity and
``extra = {"tracklet_frames": number of frames, "tracklet_last": resolved last frame}``. The first frame keys
the entry: a tracklet already in the index is skipped, so re-running a build after a crash adds exactly the
rest (each chunk of tracklets is one atomic write). Tracking runs have their own path,
:func:`reidkit.index.tracks.index_tracks`, which keeps the run's times and segments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from reidkit.data.records import NO_CAMERA, Tracklet
from reidkit.errors import DatasetError
from reidkit.index.items import GalleryItem

if TYPE_CHECKING:
    from reidkit.embed import Embedder
    from reidkit.index import Index

__all__ = ["IndexedTracklets", "index_tracklets", "tracklet_item"]


@dataclass(frozen=True)
class IndexedTracklets:
    """What :func:`index_tracklets` did: the id of each tracklet in order, how many were added and skipped."""

    ids: np.ndarray
    added: int
    skipped: int


def tracklet_item(tracklet: Tracklet) -> GalleryItem:
    """The index entry of a tracklet (see the module docstring)."""
    first, last = (str(Path(path).resolve()) for path in (tracklet.paths[0], tracklet.paths[-1]))
    return GalleryItem(
        path=first,
        camera=None if tracklet.camid == NO_CAMERA else str(tracklet.camid),
        pid=int(tracklet.pid),
        extra={"tracklet_frames": len(tracklet.paths), "tracklet_last": last},
    )


def index_tracklets(
    index: Index,
    embedder: Embedder,
    tracklets: Sequence[Tracklet],
    *,
    seq_len: int = 8,
    frames: str = "all",
    chunk: int = 64,
    batch_size: int = 64,
    workers: int = 0,
    progress: bool = False,
) -> IndexedTracklets:
    """Embed the tracklets not yet in ``index`` and add them, ``chunk`` tracklets per atomic write.

    Args:
        index: an open, writable index built for ``embedder``.
        embedder: any :class:`reidkit.embed.Embedder` (a temporal checkpoint embeds clips).
        tracklets: the tracklets (each with at least one frame).
        seq_len, frames: the clips of :func:`reidkit.embed.embed_tracklets`.
        chunk: tracklets embedded and committed per write.
        batch_size: frames per network call.
        workers: loader processes that decode the frames.
        progress: show a progress bar per chunk.

    Raises:
        DatasetError: a tracklet without frames or a frame that is not an image (earlier chunks stay).
        FingerprintMismatchError: ``embedder`` is not the model the index was built with.
    """
    from reidkit.embed import embed_tracklets
    from reidkit.embed.tracklets import check_tracklet_arguments

    check_tracklet_arguments(seq_len, frames, batch_size)
    if embedder.fingerprint != index.fingerprint:
        index.check_fingerprint(embedder.fingerprint, f"tracklets embedded by {embedder.name}")
    for position, tracklet in enumerate(tracklets):
        if not tracklet.paths:
            raise DatasetError(
                f"tracklet {position} (pid {tracklet.pid}, camera {tracklet.camid}) has no frames to index"
            )
    items = [tracklet_item(t) for t in tracklets]
    keys = [item.path for item in items]
    stored = index.stored_files(sorted(set(keys)))
    id_of = {path: entries[0][0] for path, entries in stored.items() if entries}
    todo, seen = [], set(id_of)
    for position, key in enumerate(keys):
        if key not in seen:  # new, and its first occurrence
            seen.add(key)
            todo.append(position)
    for start in range(0, len(todo), chunk):
        part = todo[start : start + chunk]
        features = embed_tracklets(
            embedder,
            [tracklets[p] for p in part],
            seq_len=seq_len,
            frames=frames,
            batch_size=batch_size,
            workers=workers,
            progress=progress,
        )
        new = index.add(features, [items[p] for p in part], fingerprint=embedder.fingerprint, save=False)
        id_of.update({keys[p]: int(item_id) for p, item_id in zip(part, new, strict=True)})
    index.save()
    return IndexedTracklets(
        ids=np.array([id_of[key] for key in keys], dtype=np.int64),
        added=len(todo),
        skipped=len(set(keys)) - len(todo),
    )
