"""The gallery index on Milvus: the same interface as :class:`reidkit.index.Index`, stored in a Milvus collection.

One index is one collection on a Milvus server (or in a Milvus Lite file). Each row holds an item: an ``id``
(int64, assigned by Milvus, never reused), the float32 ``vector``, the metadata fields of
:class:`~reidkit.index.GalleryItem` (``path``, ``camera``, ``timestamp``, ``frame``, ``pid`` and the JSON ``extra``)
and what the image file was when it was embedded (``size``, ``mtime_ns``, ``sha256``, for
:func:`~reidkit.index.index_images` to skip unchanged files). The index's settings (dim, metric, kind, model
fingerprint) are the collection property ``reidkit.settings``.

``uri``: ``http://host:19530`` (a Milvus server or cluster, or ``milvus-lite server``), or a local path ending in
``.db``, which runs Milvus Lite inside this process (one process at a time per file; several writers share a file
through ``milvus-lite server --data-dir``).

What differs from the FAISS + SQLite backend:

- Reads use Strong consistency: every search, count and lookup sees every write committed before it, by any
  writer. There are no snapshots, so :meth:`MilvusIndex.changed` and :meth:`MilvusIndex.refresh` are always
  False and ``version`` is 0.
- An ``add`` with ``replace`` inserts the new rows, then deletes the replaced ones: a writer killed in between
  leaves both entries of a re-embedded file, which the next :func:`~reidkit.index.index_images` of that file
  embeds again and replaces.
- Kinds: ``flat`` is Milvus ``FLAT`` (exact), ``ivf`` is ``IVF_FLAT`` with ``nlist`` lists (default
  :data:`DEFAULT_NLIST`), searched with ``nprobe`` lists; Milvus trains its lists per segment itself, and ``ivfpq``
  is not offered.
- Writes are durable when ``add`` returns (Milvus's write-ahead log); :meth:`MilvusIndex.save` seals them into
  indexed segments (a flush), once per bulk build: until then Milvus scans the growing segment (on Milvus Lite,
  slowly: 2.5 s per query at 100k unsealed items, 76 ms once sealed; benchmarks/scale.py).
- Ties in distance may come in another order than FAISS's.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from reidkit.index import milvus_filters
from reidkit.index.items import (
    FileSource,
    GalleryIndexError,
    GalleryItem,
    SearchHit,
    SettingsMismatchError,
    as_items,
    check_embeddings,
    fingerprint_mismatch,
    is_integer,
)
from reidkit.index.milvus_collection import (
    DEFAULT_NLIST,
    INSERT_ROWS,
    LOOKUP,
    MAX_LIMIT,
    METADATA,
    METRICS,
    SETTINGS_PROPERTY,
    SOURCE,
    as_created,
    check_collection_name,
    connect,
    create_collection,
    create_if_missing,
    fetch_rows,
    flush,
    hit_of,
    import_pymilvus,
    index_params,
    item_of,
    read_settings,
    row_of,
    scan_rows,
    sorted_ids,
    source_of,
)
from reidkit.index.settings import IndexSettings

#: the settings :meth:`MilvusIndex.info` reports
_INFO_SETTINGS = ("dim", "metric", "kind", "structure", "trained_nlist", "nprobe", "search_nprobe")

__all__ = ["DEFAULT_NLIST", "SETTINGS_PROPERTY", "MilvusIndex", "connect", "import_pymilvus"]


class MilvusIndex:
    """A gallery of embeddings with metadata in one Milvus collection (see the module docstring).

    Create with :meth:`create`, open with :meth:`open`; use as a context manager or call :meth:`close`.
    Thread-safe: calls are serialised by a lock.
    """

    backend = "milvus"

    def __init__(self, client: Any, uri: str, name: str, *, readonly: bool) -> None:
        self._client = client
        self.uri = uri
        self.name = name
        self.directory = f"{uri} (collection {name})"
        self._readonly = readonly
        self._lock = threading.RLock()
        self._closed = False
        self._settings = read_settings(client, name, self.directory)

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(cls, uri: str, name: str, **settings: Any) -> MilvusIndex:
        """Create an empty collection ``name`` at ``uri``.

        Args:
            uri: the Milvus address or Milvus Lite file.
            name: the collection; must not exist yet.
            **settings: the arguments of :meth:`IndexSettings.create` (``kind`` ``flat`` or ``ivf``).
        """
        settings = IndexSettings.create(**settings)
        check_collection_name(name)
        client = connect(uri)
        if client.has_collection(name):
            client.close()
            raise GalleryIndexError(f"Milvus at {uri} already has a collection {name!r}")
        create_collection(client, name, settings)
        return cls(client, uri, name, readonly=False)

    @classmethod
    def create_or_resume(cls, uri: str, name: str, **settings: Any) -> tuple[MilvusIndex, bool]:
        """Create the collection, or reopen the one an earlier build left with the same settings.

        Returns:
            The open index, and True when it existed (resumed), False when created now.

        Raises:
            SettingsMismatchError: the collection holds an index with other settings or another model.
        """
        asked = IndexSettings.create(**settings)
        client = connect(uri)
        if create_if_missing(client, check_collection_name(name), asked):
            return cls(client, uri, name, readonly=False), False
        index = cls(client, uri, name, readonly=False)
        differences = index.settings.differences(as_created(asked))
        if differences and len(index) == 0:  # a build that wrote nothing blocks nothing
            client.drop_collection(name)
            create_collection(client, name, asked)
            return cls(client, uri, name, readonly=False), False
        if differences:
            index.close()
            raise SettingsMismatchError(
                f"{index.directory} already holds an index with other settings ({'; '.join(differences)})",
                differences,
            )
        return index, True

    @classmethod
    def open(cls, uri: str, name: str, *, readonly: bool = False) -> MilvusIndex:
        """Open the collection ``name`` at ``uri``."""
        check_collection_name(name)
        client = connect(uri)
        if not client.has_collection(name):
            client.close()
            raise GalleryIndexError(
                f"Milvus at {uri} has no collection {name!r} (build it with `index build`)"
            )
        return cls(client, uri, name, readonly=readonly)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            if not self._closed:
                self._client.close()
                self._closed = True

    def __enter__(self) -> MilvusIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _client_open(self) -> Any:
        if self._closed:
            raise GalleryIndexError(f"index {self.directory} is closed")
        return self._client

    def _writable(self) -> Any:
        client = self._client_open()
        if self._readonly:
            raise GalleryIndexError(f"index {self.directory} was opened read-only")
        return client

    # ------------------------------------------------------------------ state
    def refresh(self) -> bool:
        """Always False: every read already sees the newest writes (Strong consistency)."""
        self._client_open()
        return False

    def changed(self) -> bool:
        """Always False: there is no older snapshot to move from."""
        self._client_open()
        return False

    @property
    def settings(self) -> IndexSettings:
        return self._settings

    @property
    def dim(self) -> int:
        return self._settings.dim

    @property
    def fingerprint(self) -> str:
        return self._settings.fingerprint

    @property
    def version(self) -> int:
        return 0

    def check_fingerprint(self, fingerprint: str, what: str) -> None:
        """Raise :class:`FingerprintMismatchError` (naming ``what``) unless ``fingerprint`` is the index's model's."""
        if fingerprint != self._settings.fingerprint:
            raise fingerprint_mismatch(what, fingerprint, self._settings, self.directory)

    def save(self) -> None:
        """Seal the rows written so far (a Milvus flush), so that searches go through the vector index instead
        of scanning a growing segment; call it once after a bulk build (:func:`~reidkit.index.index_images`
        does). Inserts are durable without it: they are in Milvus's write-ahead log when ``add`` returns."""
        with self._lock:
            flush(self._writable(), self.name, self.directory)

    def rebuild(self) -> None:
        """Seal the rows written so far and build the vector index again (Milvus trains IVF lists on them;
        rows still in a growing segment are searched exhaustively until Milvus seals it)."""
        with self._lock:
            client = self._writable()
            flush(client, self.name, self.directory)
            client.release_collection(self.name)
            client.drop_index(self.name, "vector")
            client.create_index(self.name, index_params(client, self._settings))
            client.load_collection(self.name)

    def __len__(self) -> int:
        with self._lock:
            rows = self._client_open().query(self.name, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def info(self) -> dict[str, Any]:
        """Settings and counts, as :meth:`reidkit.index.Index.info`, with the backend, URI and collection."""
        with self._lock:
            settings = self._settings
            cameras = {row["camera"] for row in scan_rows(self._client_open(), self.name, None, ["camera"])}
            return {
                "directory": self.directory,
                "backend": self.backend,
                "uri": self.uri,
                "collection": self.name,
                "count": len(self),
                **{name: getattr(settings, name) for name in _INFO_SETTINGS},
                "fingerprint": settings.fingerprint,
                "model_name": settings.model_name,
                "version": self.version,
                "cameras": sorted(cameras, key=lambda camera: (camera is not None, camera or "")),
            }

    # ------------------------------------------------------------------ writing
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
        """Add embeddings with their metadata (see :meth:`reidkit.index.Index.add`; ``save`` is ignored: a
        flush per write would be too many, :meth:`save` seals the rows once); returns their new ids."""
        with self._lock:
            client = self._writable()
            self.check_fingerprint(fingerprint, "the embeddings to add")
            vectors = check_embeddings(embeddings, self.dim, "embeddings")
            if len(items) != len(vectors):
                raise GalleryIndexError(f"{len(vectors)} embeddings but {len(items)} metadata items")
            records = as_items(items)
            if sources is not None and len(sources) != len(records):
                raise GalleryIndexError(f"{len(records)} metadata items but {len(sources)} sources")
            sources = [None] * len(records) if sources is None else list(sources)
            rows = [row_of(v, r, s) for v, r, s in zip(vectors, records, sources, strict=True)]
            ids: list[int] = []
            for start in range(0, len(rows), INSERT_ROWS):
                answer = client.insert(self.name, rows[start : start + INSERT_ROWS])
                ids.extend(int(i) for i in answer["ids"])
            stale = [int(i) for i in replace]
            if stale:
                client.delete(self.name, ids=stale)
            return np.array(ids, dtype=np.int64)

    def delete(self, ids: Sequence[int] | np.ndarray) -> int:
        """Delete items by id; returns how many existed."""
        with self._lock:
            client = self._writable()
            present = self.items(ids)
            if present:
                client.delete(self.name, ids=sorted(present))
            return len(present)

    # ------------------------------------------------------------------ reading
    def get(self, item_id: int) -> GalleryItem | None:
        """The metadata of one item, or None if there is no such id."""
        return self.items([item_id]).get(int(item_id))

    def items(self, ids: Sequence[int] | np.ndarray) -> dict[int, GalleryItem]:
        """id -> metadata of those of ``ids`` that are in the index."""
        with self._lock:
            return {
                i: item_of(row)
                for i, row in fetch_rows(self._client_open(), self.name, ids, list(METADATA)).items()
            }

    def vectors(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """The stored embeddings ``[len(ids), D]`` of these ids, in order."""
        with self._lock:
            rows = fetch_rows(self._client_open(), self.name, ids, ["vector"])
            missing = [int(i) for i in ids if int(i) not in rows]
            if missing:
                raise GalleryIndexError(f"ids not in {self.directory}: {missing[:10]}")
            out = np.empty((len(ids), self.dim), dtype=np.float32)
            for n, item_id in enumerate(ids):
                out[n] = rows[int(item_id)]["vector"]
            return out

    def ids(self) -> np.ndarray:
        """All ids, ascending."""
        with self._lock:
            return sorted_ids(self._client_open(), self.name, None)

    def ids_with_extra(self, **values: str | int) -> np.ndarray:
        """``[M]`` int64 ids, ascending, of the items whose ``extra`` holds all these values."""
        with self._lock:
            return sorted_ids(self._client_open(), self.name, milvus_filters.extra_expression(values))

    def matching_ids(self, **filters: Any) -> np.ndarray | None:
        """``[M]`` int64 ids passing the metadata filters of :meth:`search`, or None when no filter is set."""
        expression = milvus_filters.filter_expression(**filters)
        if expression is None:
            return None
        with self._lock:
            return sorted_ids(self._client_open(), self.name, expression)

    def stored_files(self, paths: Sequence[str]) -> dict[str, list[tuple[int, FileSource | None]]]:
        """path -> ``(id, source)`` of the items stored with each of these paths (writable index only)."""
        with self._lock:
            client = self._writable()
            found: dict[str, list[tuple[int, FileSource | None]]] = {}
            unique = sorted(set(paths))
            for start in range(0, len(unique), LOOKUP):
                expression = milvus_filters.one_of("path", unique[start : start + LOOKUP], "path")
                for row in client.query(self.name, filter=expression, output_fields=["path", *SOURCE]):
                    found.setdefault(row["path"], []).append((int(row["id"]), source_of(row)))
            return {path: sorted(entries, key=lambda entry: entry[0]) for path, entries in found.items()}

    def search(
        self, queries: np.ndarray, *, fingerprint: str, top_k: int = 10, **filters: Any
    ) -> list[list[SearchHit]]:
        """Rank the gallery for each query (the arguments and filters of :meth:`reidkit.index.Index.search`)."""
        with self._lock:
            client = self._client_open()
            self.check_fingerprint(fingerprint, "the queries")
            vectors = check_embeddings(queries, self.dim, "queries")
            if not is_integer(top_k) or top_k < 1:
                raise GalleryIndexError(f"top_k must be a positive integer, got {top_k!r}")
            expression = milvus_filters.filter_expression(**filters)
            if len(vectors) == 0:
                return []
            settings = self._settings
            params: dict[str, Any] = {"metric_type": METRICS[settings.metric]}
            if settings.kind == "ivf":
                params["params"] = {"nprobe": settings.search_nprobe}
            answers = client.search(
                self.name,
                data=[row.tolist() for row in vectors],
                limit=min(int(top_k), MAX_LIMIT),
                filter=expression or "",
                output_fields=list(METADATA),
                search_params=params,
            )
            return [[hit_of(found, settings.metric) for found in answer] for answer in answers]


# ---------------------------------------------------------------------- rows and collections
