"""Gallery index on disk: FAISS for the embeddings, SQLite for the metadata, one directory.

Layout of an index directory::

    gallery.sqlite         source of truth: settings (dim, metric, kind, model fingerprint, version) and one
                           row per item (stable integer id, path, camera, timestamp, frame, pid, extra JSON,
                           the float32 embedding)
    vectors-<version>.faiss  the FAISS structure for that version (a cache: rebuilt from SQLite when missing)

Crash safety: every write is one SQLite transaction (WAL journal, ``synchronous=FULL``) that also bumps the
version number; the FAISS file of the new version is written to a temp file, fsynced and renamed afterwards.
A writer killed at any moment leaves either the old or the new version committed, and opening an index whose
FAISS file does not match the committed version rebuilds the FAISS structure from the stored embeddings.

Snapshots: an :class:`Index` keeps one SQLite read transaction open between its own writes, so the metadata
it returns always matches the vectors it searches, even while another process adds or deletes. A long-running
reader calls :meth:`Index.changed` (one small query on the settings table, cheap enough for every request) to
learn that another process committed a write, and :meth:`Index.refresh` to move to the newest committed
version (it reloads only when there is one). Inside one process the object is thread-safe: searches, adds
and deletes are serialised by a lock.

Re-adding images: :func:`index_images` keys an image by its resolved path and skips, before embedding, every
image already in the index whose file is unchanged, so a killed ``add`` or ``build`` re-run finishes the job
without duplicates; a file that changed since it was indexed is re-embedded and its old entry replaced.
:meth:`Index.create_or_resume` reopens the index of an earlier build with the same settings and model.

Threads: FAISS parallelises with OpenMP. On a machine whose cores are busy with other work, single-query
searches are faster with ``OMP_NUM_THREADS=1`` (flat, 100k x 256: 60 ms with 2 threads vs 13 ms with 1 on a
loaded 2-core box), because OpenMP threads spin while waiting for a core.

Distances: with ``metric="ip"`` (default) embeddings are expected L2-normalised and the reported distance is the
cosine distance ``1 - <q, g>``; with ``metric="l2"`` it is the Euclidean distance ``||q - g||``. Lists are
ranked by increasing distance.

Modules: :mod:`~reidkit.index.settings` (what an index was built with), :mod:`~reidkit.index.store` (SQLite),
:mod:`~reidkit.index.faiss_side` (FAISS), :mod:`~reidkit.index.items` (records and errors),
:mod:`~reidkit.index.images` (embedding image files into an index), :mod:`~reidkit.index.tracks` (tracklets of a
tracking run, and search answers as video segments per identity), :mod:`~reidkit.index.milvus` (the same
interface on a Milvus collection) and :mod:`~reidkit.index.backends` (opening either by name); this module holds
the :class:`Index` facade that keeps the two sides on one committed version.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from reidkit._io import atomic_write_bytes
from reidkit.index import faiss_side
from reidkit.index.backends import BACKENDS, create_or_resume_index, open_index
from reidkit.index.faiss_side import default_nlist
from reidkit.index.images import IndexedImages, index_images
from reidkit.index.items import (
    ITEM_FIELDS,
    FileSource,
    FingerprintMismatchError,
    GalleryIndexError,
    GalleryItem,
    SearchHit,
    SettingsMismatchError,
    as_items,
    check_embeddings,
    is_integer,
    to_timestamp,
)
from reidkit.index.milvus import MilvusIndex
from reidkit.index.settings import FORMAT_VERSION, KINDS, METRICS, IndexSettings
from reidkit.index.snapshot import Snapshot
from reidkit.index.store import DATABASE_NAME, GalleryStore, create_database, discard_unwritten
from reidkit.index.tracks import (
    IdentityAnswer,
    IndexedTracks,
    Segment,
    SegmentSearch,
    index_tracks,
    search_segments,
)
from reidkit.index.video import IndexedTracklets, index_tracklets

__all__ = [
    "BACKENDS",
    "DATABASE_NAME",
    "FORMAT_VERSION",
    "ITEM_FIELDS",
    "KINDS",
    "METRICS",
    "FileSource",
    "FingerprintMismatchError",
    "GalleryIndexError",
    "GalleryItem",
    "IdentityAnswer",
    "Index",
    "IndexedTracks",
    "IndexSettings",
    "IndexedImages",
    "IndexedTracklets",
    "MilvusIndex",
    "SearchHit",
    "Segment",
    "SegmentSearch",
    "SettingsMismatchError",
    "create_or_resume_index",
    "default_nlist",
    "index_images",
    "index_tracklets",
    "index_tracks",
    "open_index",
    "search_segments",
    "to_timestamp",
]


def _write_vector_file(path: Path, data: bytes) -> None:
    # looks ``atomic_write_bytes`` up in this module when called, so that the crash tests can replace
    # ``reidkit.index.atomic_write_bytes`` with one that stalls half-way through the file
    atomic_write_bytes(path, data)


#: the settings :meth:`Index.info` reports (``structure`` and ``search_nprobe`` are derived ones)
_INFO_SETTINGS = (
    "dim",
    "metric",
    "kind",
    "structure",
    "trained_nlist",
    "nprobe",
    "search_nprobe",
    "refine",
    "pq_m",
)


class Index:
    """A gallery of embeddings with metadata, stored in a directory (see the module docstring).

    Create with :meth:`create`, open with :meth:`open`; use as a context manager or call :meth:`close`.
    """

    def __init__(self, store: GalleryStore, *, readonly: bool) -> None:
        self.directory = store.directory
        self._lock = threading.RLock()
        self._snapshot = Snapshot(store, readonly=readonly, write_bytes=_write_vector_file)
        self._closed = False

    @classmethod
    def create(cls, directory: str | Path, **settings: Any) -> Index:
        """Create an empty index directory (atomically: it appears complete or not at all).

        Args:
            directory: where to create it; must not exist yet (or be an empty folder).
            **settings: the arguments of :meth:`IndexSettings.create` (``dim``, ``fingerprint``, ``model_name``,
                ``metric``, ``kind``, ``nlist``, ``pq_m``, ``pq_bits``, ``nprobe``, ``refine``).
        """
        settings = IndexSettings.create(**settings)
        faiss_side.import_faiss()
        create_database(Path(directory), settings)
        return cls.open(directory)

    @classmethod
    def create_or_resume(cls, directory: str | Path, **settings: Any) -> tuple[Index, bool]:
        """Create an index, or reopen the one an earlier (killed or failed) build left with the same settings.

        An index never written to (its build stopped before the first commit) blocks nothing: with other
        settings it is removed and created afresh.

        Args:
            directory: the index directory.
            **settings: the arguments of :meth:`create`.

        Returns:
            The open index, and True when it is an existing one (resumed), False when created now.

        Raises:
            SettingsMismatchError: ``directory`` holds an index written with other settings or another model;
                the message and ``differences`` say what differs.
            GalleryIndexError: ``directory`` exists and is neither an index nor an empty folder.
        """
        directory = Path(directory)
        asked = IndexSettings.create(**settings)
        if (directory / DATABASE_NAME).is_file():
            index = cls.open(directory)
            differences = index.settings.differences(asked)
            if not differences:
                return index, True
            index.close()
            if not discard_unwritten(directory):
                raise SettingsMismatchError(
                    f"{directory} already holds an index with other settings ({'; '.join(differences)})",
                    differences,
                )
        return cls.create(directory, **settings), False

    @classmethod
    def open(cls, directory: str | Path, *, readonly: bool = False) -> Index:
        """Open an existing index at its newest committed version.

        Args:
            directory: the index directory.
            readonly: refuse writes (several readers and one writer may open the same index).
        """
        faiss_side.import_faiss()
        return cls(GalleryStore(Path(directory)), readonly=readonly)

    def close(self) -> None:
        """Write any unsaved FAISS file, end the snapshot and close the database."""
        with self._lock:
            if not self._closed:
                self._snapshot.close()
                self._closed = True

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def refresh(self) -> bool:
        """Move this object to the newest committed version of the index (reloading only if there is one).

        Returns:
            True when it moved to another version, False when it already saw the newest.
        """
        with self._lock:
            return self._open_snapshot().begin()

    def changed(self) -> bool:
        """True when a newer version was committed (by any process) than the one this object sees.

        One query on the settings table, outside this object's snapshot: cheap enough to call per request.
        """
        with self._lock:
            snapshot = self._open_snapshot()
            return snapshot.store.committed_version() != snapshot.version

    def _open_snapshot(self) -> Snapshot:
        if self._closed:
            raise GalleryIndexError(f"index {self.directory} is closed")
        return self._snapshot

    @property
    def settings(self) -> IndexSettings:
        """The settings of the version this object sees (dim, metric, kind, fingerprint, version, ...)."""
        return self._snapshot.settings

    def check_fingerprint(self, fingerprint: str, what: str) -> None:
        """Raise :class:`FingerprintMismatchError` (naming ``what``) unless ``fingerprint`` is the index's model's."""
        self._open_snapshot().check_fingerprint(fingerprint, what)

    def save(self) -> None:
        """Write the FAISS file of the current version if an ``add(..., save=False)`` left it unwritten."""
        with self._lock:
            self._open_snapshot().save()

    def add(
        self,
        embeddings: np.ndarray,
        items: Sequence[GalleryItem | Mapping[str, Any]],
        *,
        fingerprint: str,
        save: bool = True,
        sources: Sequence[FileSource | None] | None = None,
        replace: Sequence[int] | np.ndarray = (),
    ) -> np.ndarray:
        """Add embeddings with their metadata in one atomic write.

        Items are not checked for paths already stored: :func:`index_images` is the idempotent way to add
        image files.

        Args:
            embeddings: ``[N, D]`` float32 (L2-normalised for ``metric="ip"``).
            items: N :class:`GalleryItem` or dicts with the same fields.
            fingerprint: the embedder's fingerprint (must equal the index's).
            save: write the FAISS file now. Building a large index in chunks, pass False and call
                :meth:`save` (or :meth:`close`) at the end: the items are committed either way, and an index
                whose FAISS file is missing is rebuilt from the stored embeddings when opened.
            sources: per item, what its image file was when embedded (None for an item without one), so
                that :func:`index_images` can tell a changed file on a later re-add.
            replace: ids to delete in the same write (the stale entries of re-embedded files).

        Returns:
            ``[N]`` int64 ids, new and never reused.
        """
        with self._lock:
            snapshot = self._open_snapshot()
            snapshot.check_fingerprint(fingerprint, "the embeddings to add")
            vectors = check_embeddings(embeddings, snapshot.settings.dim, "embeddings")
            if len(items) != len(vectors):
                raise GalleryIndexError(f"{len(vectors)} embeddings but {len(items)} metadata items")
            records = as_items(items)
            if sources is not None and len(sources) != len(records):
                raise GalleryIndexError(f"{len(records)} metadata items but {len(sources)} sources")
            return snapshot.add(records, vectors, sources=sources, replace=replace, save=save)

    def delete(self, ids: Sequence[int] | np.ndarray) -> int:
        """Delete items by id in one atomic write; returns how many existed."""
        with self._lock:
            return self._open_snapshot().delete(ids)

    def stored_files(self, paths: Sequence[str]) -> dict[str, list[tuple[int, FileSource | None]]]:
        """path -> ``(id, source)`` of the items stored with each of these paths (writable index only)."""
        with self._lock:
            snapshot = self._open_snapshot()
            snapshot.check_writable()
            return snapshot.store.stored_files(paths)

    def rebuild(self) -> None:
        """Rebuild the FAISS structure from the stored embeddings; IVF kinds are (re)trained on all of them.

        Use after many adds or deletes changed the distribution, or to train an IVF index on a small gallery.
        """
        with self._lock:
            self._open_snapshot().rebuild()

    def __len__(self) -> int:
        return self._snapshot.count

    @property
    def dim(self) -> int:
        return self._snapshot.settings.dim

    @property
    def fingerprint(self) -> str:
        return self._snapshot.settings.fingerprint

    @property
    def version(self) -> int:
        return self._snapshot.version

    def info(self) -> dict[str, Any]:
        """Settings and counts: dim, metric, kind, structure in use, size, cameras, model fingerprint."""
        with self._lock:
            snapshot = self._open_snapshot()
            settings = snapshot.settings
            return {
                "directory": str(self.directory),
                "count": snapshot.count,
                **{name: getattr(settings, name) for name in _INFO_SETTINGS},
                "fingerprint": settings.fingerprint,
                "model_name": settings.model_name,
                "version": snapshot.version,
                "cameras": snapshot.store.cameras(),
            }

    def get(self, item_id: int) -> GalleryItem | None:
        """The metadata of one item, or None if there is no such id in this snapshot."""
        with self._lock:
            return self._open_snapshot().store.items([int(item_id)]).get(int(item_id))

    def vectors(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """The stored embeddings ``[len(ids), D]`` of these ids, in order (e.g. to re-rank a shortlist).

        Raises:
            GalleryIndexError: an id that is not in this snapshot.
        """
        with self._lock:
            return self._open_snapshot().vectors(ids)

    def ids_with_extra(self, **values: str | int) -> np.ndarray:
        """``[M]`` int64 ids, ascending, of the items whose ``extra`` holds all these values in this snapshot.

        E.g. ``index.ids_with_extra(kind="tracklet", run="/data/run1")``; a scan of the items table.
        """
        with self._lock:
            return self._open_snapshot().store.ids_with_extra(values)

    def items(self, ids: Sequence[int] | np.ndarray) -> dict[int, GalleryItem]:
        """id -> metadata of those of ``ids`` that are in this snapshot."""
        with self._lock:
            return self._open_snapshot().store.items(int(i) for i in ids)

    def matching_ids(
        self,
        *,
        camera: str | int | Sequence[str | int] | None = None,
        exclude_camera: str | int | Sequence[str | int] | None = None,
        since: float | str | datetime | None = None,
        until: float | str | datetime | None = None,
        pid: int | Sequence[int] | None = None,
        frames: tuple[int | None, int | None] | None = None,
    ) -> np.ndarray | None:
        """``[M]`` int64 ids passing the metadata filters of :meth:`search`, or None when no filter is set."""
        with self._lock:
            return self._open_snapshot().store.filter_ids(
                camera=camera, exclude_camera=exclude_camera, since=since, until=until, pid=pid, frames=frames
            )

    def ids(self) -> np.ndarray:
        """All ids in this snapshot, ascending."""
        with self._lock:
            return self._open_snapshot().store.ids()

    def search(
        self,
        queries: np.ndarray,
        *,
        fingerprint: str,
        top_k: int = 10,
        camera: str | int | Sequence[str | int] | None = None,
        exclude_camera: str | int | Sequence[str | int] | None = None,
        since: float | str | datetime | None = None,
        until: float | str | datetime | None = None,
        pid: int | Sequence[int] | None = None,
        frames: tuple[int | None, int | None] | None = None,
    ) -> list[list[SearchHit]]:
        """Rank the gallery for each query, optionally restricted by metadata filters.

        Filters are applied inside the search (a FAISS id selector over the ids that pass them), so a
        filtered search over a flat index is exact: the top-k of the filtered gallery, never fewer hits than
        the filtered gallery holds.

        Args:
            queries: ``[Q, D]`` float32 embeddings (or ``[D]`` for one query).
            fingerprint: the embedder's fingerprint (must equal the index's).
            top_k: hits per query.
            camera: only these cameras.
            exclude_camera: not these cameras (e.g. the query's own).
            since, until: timestamp bounds, inclusive (seconds, ISO-8601 string or datetime).
            pid: only these identities.
            frames: inclusive ``(first, last)`` frame range; either may be None.

        Returns:
            Q lists of up to ``top_k`` :class:`SearchHit`, by increasing distance.
        """
        with self._lock:
            snapshot = self._open_snapshot()
            snapshot.check_fingerprint(fingerprint, "the queries")
            vectors = check_embeddings(queries, self.dim, "queries")
            if not is_integer(top_k) or top_k < 1:
                raise GalleryIndexError(f"top_k must be a positive integer, got {top_k!r}")
            filters = {"camera": camera, "exclude_camera": exclude_camera, "since": since, "until": until}
            return snapshot.search(vectors, int(top_k), {**filters, "pid": pid, "frames": frames})
