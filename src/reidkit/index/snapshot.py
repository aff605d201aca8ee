"""The committed version of an index one process sees, and the protocol that moves it to a newer one.

A :class:`Snapshot` keeps a SQLite read transaction open on one committed version, together with that
version's settings, item count and FAISS structure, so that the metadata read and the vectors searched
always agree. A write (:meth:`Snapshot.write`) runs in an IMMEDIATE transaction on the newest version and
bumps the version number in the same commit; only after the commit does it change the in-memory structure,
train an IVF structure that now has enough data (as a version of its own) and write the FAISS file. A writer
killed at any point leaves a committed version whose FAISS file is either written whole or rebuilt from the
database on the next open.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reidkit.index import faiss_side
from reidkit.index.items import FileSource, GalleryIndexError, GalleryItem, fingerprint_mismatch
from reidkit.index.settings import IndexSettings
from reidkit.index.store import GalleryStore

#: the part of a write that runs inside its transaction: returns the write's result and the change to make
#: to the in-memory structure once the transaction has committed.
Apply = Callable[[], tuple[Any, Callable[[], Any]]]


class Snapshot:
    """One committed version of an index: its settings, item count and FAISS structure.

    Not thread-safe by itself: :class:`reidkit.index.Index` serialises its calls with a lock.

    Attributes:
        store: the index database, with a read transaction open on this version between writes.
        settings: the settings of this version.
        structure: the FAISS structure of this version.
        version: the version number (-1 before the first read).
        count: the number of items in this version.
    """

    def __init__(
        self, store: GalleryStore, *, readonly: bool, write_bytes: Callable[[Path, bytes], None]
    ) -> None:
        """Open the newest committed version.

        Args:
            store: the index database.
            readonly: refuse writes.
            write_bytes: writes one FAISS file atomically (``(path, data)``).
        """
        self.store = store
        self.readonly = readonly
        self._write_bytes = write_bytes
        self.settings: IndexSettings | None = None
        self.structure: Any = None
        self.version = -1
        self.count = 0
        if not readonly:
            store.upgrade_schema()
        self.begin()

    @property
    def directory(self) -> Path:
        return self.store.directory

    def begin(self) -> bool:
        """Start a read transaction and make the in-memory structure match its version.

        Returns:
            True when that is another version than the one this snapshot had (the structure was reloaded).
        """
        self.store.begin_read()
        settings = self.store.read_settings()
        if settings.version != self.version or self.structure is None:
            self._load(settings)
            return True
        return False

    def _load(self, settings: IndexSettings) -> None:
        """Adopt ``settings`` (read in the open transaction) and the structure of their version."""
        self.settings = settings
        count = self.store.count()
        self.structure = faiss_side.load(self.directory, settings, self.store, count)
        self.version, self.count = settings.version, count

    def check_fingerprint(self, fingerprint: str, what: str) -> None:
        """Refuse embeddings from another model than the one the index was built with."""
        if fingerprint != self.settings.fingerprint:
            raise fingerprint_mismatch(what, fingerprint, self.settings, self.directory)

    # ------------------------------------------------------------------ writing
    def vectors(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """The stored embeddings ``[len(ids), D]`` of these ids, in order; an id not in this version is an error."""
        wanted = [int(i) for i in ids]
        found = self.store.vectors(wanted)
        missing = [i for i in dict.fromkeys(wanted) if i not in found]
        if missing:
            raise GalleryIndexError(f"no items with ids {missing[:10]} in index {self.directory}")
        if not wanted:
            return np.zeros((0, self.settings.dim), dtype=np.float32)
        return np.stack([found[i] for i in wanted])

    def search(self, vectors: np.ndarray, top_k: int, filters: dict[str, Any]) -> list[list[Any]]:
        """Up to ``top_k`` hits per row of ``vectors`` among the items passing ``filters`` (exact under filters)."""
        allowed = self.store.filter_ids(**filters)
        limit = self.count if allowed is None else len(allowed)
        if limit == 0 or len(vectors) == 0:
            return [[] for _ in range(len(vectors))]
        scores, labels = faiss_side.search(
            self.structure,
            self.settings,
            self.store,
            vectors,
            k=min(top_k, limit),
            limit=limit,
            allowed=allowed,
        )
        items = self.store.items(int(i) for i in labels.ravel() if i >= 0)
        return faiss_side.to_hits(scores, labels, items, self.settings.metric)

    def check_writable(self) -> None:
        if self.readonly:
            raise GalleryIndexError(f"index {self.directory} was opened read-only")

    def write(self, apply: Apply, *, save: bool = True) -> Any:
        """Run ``apply()`` inside an IMMEDIATE transaction on the newest version, bump the version, commit,
        then bring the in-memory structure and (``save``) the FAISS file to the new version.

        Returns:
            What ``apply`` returned first.
        """
        self.check_writable()
        store = self.store
        store.begin_write()
        try:
            settings = store.read_settings()
            if settings.version != self.version:  # another process wrote since our snapshot
                self._load(settings)
            result, update_memory = apply()
            self.settings = store.update_settings(self.settings, version=self.version + 1)
            store.commit()
        except BaseException:
            store.rollback()
            self.settings, self.version = None, -1
            self.begin()
            raise
        try:
            update_memory()
            self.count = store.count()
            nlist = faiss_side.should_train(self.settings, self.count)
            if nlist is not None:
                self._train_and_commit(nlist)
            self.version = self.settings.version
            if save:
                self._save()
        finally:
            self.begin()
        return result

    def add(
        self,
        records: Sequence[GalleryItem],
        vectors: np.ndarray,
        *,
        sources: Sequence[FileSource | None] | None,
        replace: Iterable[int],
        save: bool,
    ) -> np.ndarray:
        """Store checked items and ``[N, D]`` embeddings, deleting the ids ``replace`` in the same write.

        Returns:
            ``[N]`` int64 new ids.
        """
        stale = np.unique(np.asarray(list(replace), dtype=np.int64))

        def apply() -> tuple[np.ndarray, Callable[[], None]]:
            present = self.store.existing_ids(stale)
            self.store.delete(present)
            ids = self.store.insert(records, vectors, sources)

            def update_memory() -> None:
                if len(present):
                    self.structure.remove_ids(present)
                if len(ids):
                    self.structure.add_with_ids(vectors, ids)

            return ids, update_memory

        return self.write(apply, save=save)

    def delete(self, ids: Iterable[int]) -> int:
        """Delete items by id in one write; returns how many existed."""
        wanted = np.unique(np.asarray(list(ids), dtype=np.int64))

        def apply() -> tuple[int, Callable[[], None]]:
            present = self.store.existing_ids(wanted)
            self.store.delete(present)
            return len(present), lambda: self.structure.remove_ids(present) if len(present) else None

        return self.write(apply)

    def _train_and_commit(self, nlist: int) -> None:
        """Train the IVF structure on the stored embeddings, committed as a version of its own."""
        store = self.store
        store.begin_write()
        try:
            if store.read_settings().version != self.settings.version:
                store.rollback()
                return  # another writer moved on; it trains when it sees enough data
            trained = store.update_settings(
                self.settings, trained_nlist=nlist, version=self.settings.version + 1
            )
            structure = faiss_side.build(trained, store)
            store.commit()
        except BaseException:
            store.rollback()
            raise
        self.settings, self.structure = trained, structure

    def rebuild(self) -> None:
        """Rebuild the structure from the stored embeddings as a new version; IVF kinds are (re)trained on all.

        Raises:
            GalleryIndexError: an IVF kind with fewer stored embeddings than lists.
        """

        def apply() -> tuple[None, Callable[[], None]]:
            settings, count = self.settings, self.store.count()
            nlist = None
            if settings.kind != "flat" and count:
                nlist = settings.nlist or faiss_side.default_nlist(count)
                if count < nlist:
                    raise GalleryIndexError(f"cannot train {nlist} IVF lists on {count} embeddings")
            self.settings = self.store.update_settings(settings, trained_nlist=nlist)
            structure = faiss_side.build(self.settings, self.store)

            def swap() -> None:
                self.structure = structure

            return None, swap

        self.write(apply)

    def save(self) -> None:
        """Write the FAISS file of this version if it is not on disk yet (never for a read-only snapshot)."""
        if not self.readonly and not faiss_side.vector_path(self.directory, self.version).is_file():
            self._save()

    def _save(self) -> None:
        faiss_side.save(self.directory, self.version, self.structure, self._write_bytes)

    def close(self) -> None:
        """Write any unsaved FAISS file, end the read transaction and close the database."""
        if self.structure is not None:
            self.save()
        self.store.close()
        self.structure = None
