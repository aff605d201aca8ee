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
it returns always matches the vectors it searches, even while another process adds or deletes. Call
:meth:`Index.refresh` to move to the newest committed version. Inside one process the object is thread-safe:
searches, adds and deletes are serialised by a lock.

Threads: FAISS parallelises with OpenMP. On a machine whose cores are busy with other work, single-query
searches are faster with ``OMP_NUM_THREADS=1`` (flat, 100k x 256: 60 ms with 2 threads vs 13 ms with 1 on a
loaded 2-core box), because OpenMP threads spin while waiting for a core.

Distances: with ``metric="ip"`` (default) embeddings are expected L2-normalised and the reported distance is the
cosine distance ``1 - <q, g>``; with ``metric="l2"`` it is the Euclidean distance ``||q - g||``. Lists are
ranked by increasing distance.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from reidkit._io import atomic_write_bytes
from reidkit.errors import ReidkitError

FORMAT_VERSION = 1
DATABASE_NAME = "gallery.sqlite"
METRICS = ("ip", "l2")
KINDS = ("flat", "ivf", "ivfpq")
_VECTOR_FILE = re.compile(r"^vectors-(\d+)\.faiss$")
_ITEM_FIELDS = ("path", "camera", "timestamp", "frame", "pid", "extra")


class GalleryIndexError(ReidkitError, ValueError):
    """An index directory that is missing or malformed, or a bad argument to an index operation."""


class FingerprintMismatchError(GalleryIndexError):
    """Embeddings from a model other than the one the index was built with."""


def _import_faiss():
    try:
        import faiss
    except ImportError as error:
        raise ImportError("the gallery index needs FAISS: pip install 'reidkit[faiss]'") from error
    return faiss


@dataclass(frozen=True)
class GalleryItem:
    """Metadata of one gallery image.

    Attributes:
        path: the image file (or any string locating it).
        camera: camera name or number (stored as text; ``1`` and ``"1"`` are the same camera).
        timestamp: seconds since the Unix epoch (UTC), or None.
        frame: frame number in the camera's video, or None.
        pid: known identity, or None.
        extra: any other JSON-serialisable fields.
    """

    path: str
    camera: str | None = None
    timestamp: float | None = None
    frame: int | None = None
    pid: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, where: str = "item") -> GalleryItem:
        """Build an item from a dict, with an error naming ``where`` and the bad field."""
        unknown = set(values) - set(_ITEM_FIELDS)
        if unknown:
            raise GalleryIndexError(
                f"{where}: unknown metadata fields {sorted(unknown)}; expected {_ITEM_FIELDS}"
            )
        if "path" not in values or not isinstance(values["path"], str):
            raise GalleryIndexError(f"{where}: 'path' must be a string")
        camera = values.get("camera")
        timestamp = values.get("timestamp")
        frame, pid = values.get("frame"), values.get("pid")
        extra = values.get("extra") or {}
        try:
            timestamp = None if timestamp is None else to_timestamp(timestamp)
        except (TypeError, ValueError) as error:
            raise GalleryIndexError(f"{where}: 'timestamp' {error}") from None
        for name, value in (("frame", frame), ("pid", pid)):
            if value is not None and not _is_integer(value):
                raise GalleryIndexError(f"{where}: {name!r} must be an integer, got {value!r}")
        if not isinstance(extra, dict):
            raise GalleryIndexError(f"{where}: 'extra' must be a dict, got {type(extra).__name__}")
        try:
            json.dumps(extra)
        except (TypeError, ValueError) as error:
            raise GalleryIndexError(f"{where}: 'extra' is not JSON-serialisable ({error})") from None
        return cls(
            path=values["path"],
            camera=None if camera is None else str(camera),
            timestamp=timestamp,
            frame=None if frame is None else int(frame),
            pid=None if pid is None else int(pid),
            extra=dict(extra),
        )


@dataclass(frozen=True)
class SearchHit:
    """One ranked gallery item: its id, its distance to the query and its metadata."""

    id: int
    distance: float
    item: GalleryItem

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "distance": self.distance, **asdict(self.item)}


def _is_integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def to_timestamp(value: float | int | str | datetime) -> float:
    """Seconds since the epoch from a number, a numeric string, a ``datetime`` or an ISO-8601 string (naive = UTC)."""
    if isinstance(value, bool):
        raise TypeError(f"must be a number, an ISO-8601 string or a datetime, got {value!r}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        if not math.isfinite(float(value)):
            raise ValueError(f"must be finite, got {value!r}")
        return float(value)
    if isinstance(value, str):
        try:
            return to_timestamp(float(value))
        except ValueError:
            pass
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"must be seconds or an ISO-8601 date-time, got {value!r}") from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.timestamp()
    raise TypeError(f"must be a number, an ISO-8601 string or a datetime, got {value!r}")


def _as_list(value: Any) -> list | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
        return list(value)
    return [value]


def _check_embeddings(embeddings: np.ndarray, dim: int, what: str) -> np.ndarray:
    array = np.asarray(embeddings)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != dim:
        raise GalleryIndexError(f"{what} must have shape [N, {dim}], got {list(np.shape(embeddings))}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array).all(axis=1)).sum())
        raise GalleryIndexError(f"{what}: {bad} of {len(array)} rows contain NaN or infinity")
    return array


def _fsync_directory(directory: Path) -> None:
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def default_nlist(count: int) -> int:
    """Number of IVF lists for ``count`` vectors: about 4 sqrt(N), at least 39 training points per list."""
    return int(max(1, min(4 * math.sqrt(max(count, 1)), count // 39, 65536)))


class Index:
    """A gallery of embeddings with metadata, stored in a directory (see the module docstring).

    Create with :meth:`create`, open with :meth:`open`; use as a context manager or call :meth:`close`.
    """

    def __init__(self, directory: Path, connection: sqlite3.Connection, *, readonly: bool) -> None:
        self.directory = directory
        self._connection = connection
        self._readonly = readonly
        self._lock = threading.RLock()
        self._settings: dict[str, Any] = {}
        self._faiss_index = None
        self._version = -1
        self._count = 0
        self._begin_snapshot()

    # ------------------------------------------------------------------ creating and opening
    @classmethod
    def create(
        cls,
        directory: str | Path,
        *,
        dim: int,
        fingerprint: str,
        model_name: str = "",
        metric: str = "ip",
        kind: str = "flat",
        nlist: int | None = None,
        pq_m: int | None = None,
        pq_bits: int = 8,
        nprobe: int = 16,
        refine: int = 4,
    ) -> Index:
        """Create an empty index directory (atomically: it appears complete or not at all).

        Args:
            directory: where to create it; must not exist yet (or be an empty folder).
            dim: embedding dimension D.
            fingerprint: the embedder's fingerprint; adds and searches must present the same string.
            model_name: shown by :meth:`info`.
            metric: ``"ip"`` (inner product on L2-normalised embeddings, exact cosine) or ``"l2"``.
            kind: ``"flat"`` (exact), ``"ivf"`` (inverted lists, exact vectors) or ``"ivfpq"`` (inverted
                lists + product quantisation, for millions of images). IVF kinds are trained on the stored
                embeddings once there are enough of them (39 per list); until then search is exact.
            nlist: number of IVF lists (default: about 4 sqrt(N) at training time).
            pq_m: number of PQ sub-quantisers (must divide ``dim``; default ``dim // 8``).
            pq_bits: bits per PQ code.
            nprobe: lists visited per query for IVF kinds.
            refine: for ``"ivfpq"``, fetch ``refine * top_k`` candidates from the compressed codes and re-rank
                them with the exact stored embeddings (1: no re-ranking); the distances returned are exact.
        """
        directory = Path(directory)
        if metric not in METRICS:
            raise GalleryIndexError(f"metric must be one of {METRICS}, got {metric!r}")
        if kind not in KINDS:
            raise GalleryIndexError(f"kind must be one of {KINDS}, got {kind!r}")
        if not _is_integer(dim) or dim < 1:
            raise GalleryIndexError(f"dim must be a positive integer, got {dim!r}")
        if not isinstance(fingerprint, str) or not fingerprint:
            raise GalleryIndexError("fingerprint must be a non-empty string (the embedder's fingerprint)")
        if kind == "ivfpq":
            pq_m = pq_m or max(1, dim // 8)
            if dim % pq_m:
                raise GalleryIndexError(f"pq_m={pq_m} must divide dim={dim}")
        if not _is_integer(refine) or refine < 1:
            raise GalleryIndexError(f"refine must be an integer >= 1, got {refine!r}")
        if nlist is not None and (not _is_integer(nlist) or nlist < 1):
            raise GalleryIndexError(f"nlist must be a positive integer, got {nlist!r}")
        if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
            raise GalleryIndexError(
                f"cannot create an index at {directory}: it exists and is not an empty folder"
            )
        _import_faiss()
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent))
        try:
            connection = sqlite3.connect(staging / DATABASE_NAME)
            connection.executescript(
                """
                PRAGMA journal_mode=WAL;
                CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                CREATE TABLE items (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    path TEXT NOT NULL,
                    camera TEXT,
                    timestamp REAL,
                    frame INTEGER,
                    pid INTEGER,
                    extra TEXT NOT NULL DEFAULT '{}',
                    vector BLOB NOT NULL
                );
                CREATE INDEX items_camera ON items (camera);
                CREATE INDEX items_timestamp ON items (timestamp);
                CREATE INDEX items_pid ON items (pid);
                """
            )
            settings = {
                "format_version": FORMAT_VERSION,
                "dim": int(dim),
                "fingerprint": fingerprint,
                "model_name": model_name,
                "metric": metric,
                "kind": kind,
                "nlist": nlist,
                "pq_m": pq_m,
                "pq_bits": int(pq_bits),
                "nprobe": int(nprobe),
                "refine": int(refine),
                "trained_nlist": None,
                "version": 0,
            }
            connection.executemany(
                "INSERT INTO settings VALUES (?, ?)", [(k, json.dumps(v)) for k, v in settings.items()]
            )
            connection.commit()
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            connection.close()
            for name in os.listdir(staging):
                if name != DATABASE_NAME:
                    os.unlink(staging / name)
            with open(staging / DATABASE_NAME, "rb+") as stream:
                os.fsync(stream.fileno())
            if directory.exists():
                directory.rmdir()
            os.replace(staging, directory)
            _fsync_directory(directory.parent)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return cls.open(directory)

    @classmethod
    def open(cls, directory: str | Path, *, readonly: bool = False) -> Index:
        """Open an existing index at its newest committed version.

        Args:
            directory: the index directory.
            readonly: refuse writes (several readers and one writer may open the same index).
        """
        directory = Path(directory)
        database = directory / DATABASE_NAME
        if not database.is_file():
            raise GalleryIndexError(f"{directory} is not a reidkit index (no {DATABASE_NAME} in it)")
        _import_faiss()
        try:
            connection = sqlite3.connect(database, isolation_level=None, check_same_thread=False, timeout=60)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
        except sqlite3.DatabaseError as error:
            raise GalleryIndexError(f"{database} cannot be opened as an index database: {error}") from None
        return cls(directory, connection, readonly=readonly)

    def close(self) -> None:
        """Write any unsaved FAISS file, end the snapshot and close the database."""
        with self._lock:
            if self._connection is not None:
                if not self._readonly and self._faiss_index is not None:
                    self.save()
                if self._connection.in_transaction:
                    self._connection.execute("COMMIT")
                self._connection.close()
                self._connection = None
                self._faiss_index = None

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ snapshot handling
    def _read_settings(self) -> dict[str, Any]:
        try:
            rows = self._connection.execute("SELECT key, value FROM settings").fetchall()
        except sqlite3.DatabaseError as error:
            raise GalleryIndexError(
                f"{self.directory / DATABASE_NAME} is not a valid index database: {error}"
            ) from None
        settings = {key: json.loads(value) for key, value in rows}
        if settings.get("format_version") != FORMAT_VERSION:
            raise GalleryIndexError(
                f"{self.directory} has index format version {settings.get('format_version')}; "
                f"this reidkit reads version {FORMAT_VERSION}"
            )
        return settings

    def _begin_snapshot(self) -> None:
        """Start a read transaction and make the in-memory FAISS structure match its version."""
        if self._connection.in_transaction:
            self._connection.execute("COMMIT")
        self._connection.execute("BEGIN")
        settings = self._read_settings()
        if settings["version"] != self._version or self._faiss_index is None:
            self._settings = settings
            self._load_vectors()

    def refresh(self) -> None:
        """Move this object to the newest committed version of the index."""
        with self._lock:
            self._require_open()
            self._begin_snapshot()

    def _require_open(self) -> None:
        if self._connection is None:
            raise GalleryIndexError(f"index {self.directory} is closed")

    def _vector_path(self, version: int) -> Path:
        return self.directory / f"vectors-{version}.faiss"

    def _load_vectors(self) -> None:
        faiss = _import_faiss()
        version = self._settings["version"]
        count = self._connection.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        loaded = None
        try:
            loaded = faiss.read_index(str(self._vector_path(version)))
        except (RuntimeError, OSError):
            loaded = None  # missing (a writer stopped before saving it) or unreadable: rebuild below
        if loaded is not None and loaded.ntotal == count and loaded.d == self._settings["dim"]:
            self._faiss_index = loaded
        else:
            self._faiss_index = self._build_from_database(train=self._settings["trained_nlist"] is not None)
        self._version, self._count = version, count

    def _iter_vectors(self, chunk: int = 65536) -> Iterable[tuple[np.ndarray, np.ndarray]]:
        dim = self._settings["dim"]
        last = -1
        while True:
            rows = self._connection.execute(
                "SELECT id, vector FROM items WHERE id > ? ORDER BY id LIMIT ?", (last, chunk)
            ).fetchall()
            if not rows:
                return
            ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
            vectors = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32).reshape(
                len(rows), dim
            )
            last = int(ids[-1])
            yield ids, vectors

    def _empty_flat(self):
        faiss = _import_faiss()
        dim = self._settings["dim"]
        flat = faiss.IndexFlatIP(dim) if self._settings["metric"] == "ip" else faiss.IndexFlatL2(dim)
        return faiss.IndexIDMap2(flat)

    def _train_ivf(self, nlist: int):
        """A trained, empty IVF structure, trained on (a sample of) the stored embeddings."""
        faiss = _import_faiss()
        dim = self._settings["dim"]
        metric = faiss.METRIC_INNER_PRODUCT if self._settings["metric"] == "ip" else faiss.METRIC_L2
        if self._settings["kind"] == "ivf":
            description = f"IVF{nlist},Flat"
        else:
            description = f"IVF{nlist},PQ{self._settings['pq_m']}x{self._settings['pq_bits']}"
        structure = faiss.index_factory(dim, description, metric)
        ids = np.array(
            [row[0] for row in self._connection.execute("SELECT id FROM items ORDER BY id")], dtype=np.int64
        )
        sample_size = min(len(ids), max(40 * nlist, 2 ** self._settings["pq_bits"] * 40, 10000), 100000)
        # a fixed generator: the same data always trains the same structure (a rebuild is reproducible)
        chosen = np.sort(np.random.default_rng(0).choice(ids, size=sample_size, replace=False))
        vectors = np.empty((sample_size, dim), dtype=np.float32)
        for start in range(0, sample_size, 900):
            part = chosen[start : start + 900].tolist()
            rows = self._connection.execute(
                f"SELECT id, vector FROM items WHERE id IN ({','.join('?' * len(part))}) ORDER BY id", part
            ).fetchall()
            vectors[start : start + len(rows)] = np.frombuffer(
                b"".join(r[1] for r in rows), np.float32
            ).reshape(len(rows), dim)
        if self._settings["kind"] == "ivfpq":
            structure.do_polysemous_training = (
                False  # only for Hamming-filtered search, which is not used; slow
            )
        structure.train(vectors)
        structure.nprobe = self._settings["nprobe"]
        return structure

    def _build_from_database(self, *, train: bool):
        """The FAISS structure for the current snapshot, from the embeddings stored in SQLite."""
        structure = self._empty_flat()
        if train and self._settings["kind"] != "flat":
            structure = self._train_ivf(self._settings["trained_nlist"])
        for ids, vectors in self._iter_vectors():
            structure.add_with_ids(vectors, ids)
        return structure

    def _should_train(self) -> int | None:
        """The number of lists to train with, when an untrained IVF index now has enough embeddings."""
        if self._settings["kind"] == "flat" or self._settings["trained_nlist"] is not None:
            return None
        nlist = self._settings["nlist"] or default_nlist(self._count)
        needed = 39 * nlist
        if self._settings["kind"] == "ivfpq":
            needed = max(needed, 39 * 2 ** self._settings["pq_bits"])
        if self._settings["nlist"] is None and self._count < 10000:
            return None  # automatic IVF only pays off on large galleries: stay exact until then
        return nlist if self._count >= needed else None

    # ------------------------------------------------------------------ writing
    def _check_fingerprint(self, fingerprint: str, what: str) -> None:
        expected = self._settings["fingerprint"]
        if fingerprint != expected:
            raise FingerprintMismatchError(
                f"{what} were embedded by model {fingerprint!r}, but index {self.directory} was built with model "
                f"{expected!r} ({self._settings['model_name'] or 'unnamed'}): embed with the same model "
                f"(checkpoint/export and preprocessing) or build a new index"
            )

    def _write(self, apply, save: bool = True) -> Any:
        """Run ``apply()`` inside an IMMEDIATE transaction on the newest version, bump the version, commit,
        then bring the in-memory structure and the FAISS file to the new version."""
        if self._readonly:
            raise GalleryIndexError(f"index {self.directory} was opened read-only")
        self._require_open()
        connection = self._connection
        if connection.in_transaction:
            connection.execute("COMMIT")
        connection.execute("BEGIN IMMEDIATE")
        try:
            settings = self._read_settings()
            if settings["version"] != self._version:  # another process wrote since our snapshot
                self._settings = settings
                self._load_vectors()
            result, update_memory = apply()
            self._settings["version"] = self._version + 1
            connection.execute(
                "UPDATE settings SET value = ? WHERE key = 'version'",
                (json.dumps(self._settings["version"]),),
            )
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            self._settings = {}
            self._version = -1
            self._begin_snapshot()
            raise
        try:
            update_memory()
            self._count = connection.execute("SELECT COUNT(*) FROM items").fetchone()[0]
            nlist = self._should_train()
            if nlist is not None:
                self._train_and_commit(nlist)
            self._version = self._settings["version"]
            if save:
                self._save_vectors()
        finally:
            self._begin_snapshot()
        return result

    def _train_and_commit(self, nlist: int) -> None:
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            if self._read_settings()["version"] != self._settings["version"]:
                connection.execute("ROLLBACK")
                return  # another writer moved on; it trains when it sees enough data
            self._settings["trained_nlist"] = nlist
            structure = self._build_from_database(train=True)
            self._settings["version"] += 1
            connection.executemany(
                "UPDATE settings SET value = ? WHERE key = ?",
                [(json.dumps(nlist), "trained_nlist"), (json.dumps(self._settings["version"]), "version")],
            )
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            self._settings["trained_nlist"] = None
            raise
        self._faiss_index = structure

    def save(self) -> None:
        """Write the FAISS file of the current version if an ``add(..., save=False)`` left it unwritten."""
        with self._lock:
            self._require_open()
            if not self._readonly and not self._vector_path(self._version).is_file():
                self._save_vectors()

    def _save_vectors(self) -> None:
        faiss = _import_faiss()
        path = self._vector_path(self._version)
        atomic_write_bytes(path, faiss.serialize_index(self._faiss_index).tobytes())
        _fsync_directory(self.directory)
        for name in os.listdir(self.directory):
            match = _VECTOR_FILE.match(name)
            if match and int(match.group(1)) < self._version:  # a newer file belongs to a newer writer
                try:
                    os.unlink(self.directory / name)
                except FileNotFoundError:
                    pass

    def add(
        self,
        embeddings: np.ndarray,
        items: Sequence[GalleryItem | Mapping[str, Any]],
        *,
        fingerprint: str,
        save: bool = True,
    ) -> np.ndarray:
        """Add embeddings with their metadata in one atomic write.

        Args:
            embeddings: ``[N, D]`` float32 (L2-normalised for ``metric="ip"``).
            items: N :class:`GalleryItem` or dicts with the same fields.
            fingerprint: the embedder's fingerprint (must equal the index's).
            save: write the FAISS file now. Building a large index in chunks, pass False and call
                :meth:`save` (or :meth:`close`) at the end: the items are committed either way, and an index
                whose FAISS file is missing is rebuilt from the stored embeddings when opened.

        Returns:
            ``[N]`` int64 ids, new and never reused.
        """
        with self._lock:
            self._require_open()
            self._check_fingerprint(fingerprint, "the embeddings to add")
            vectors = _check_embeddings(embeddings, self._settings["dim"], "embeddings")
            if len(items) != len(vectors):
                raise GalleryIndexError(f"{len(vectors)} embeddings but {len(items)} metadata items")
            records = [
                item if isinstance(item, GalleryItem) else GalleryItem.from_mapping(item, where=f"items[{n}]")
                for n, item in enumerate(items)
            ]

            def apply():
                row = self._connection.execute(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'items'"
                ).fetchone()
                first = (row[0] if row else 0) + 1
                ids = np.arange(first, first + len(records), dtype=np.int64)
                self._connection.executemany(
                    "INSERT INTO items (id, path, camera, timestamp, frame, pid, extra, vector) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        (
                            int(i),
                            r.path,
                            r.camera,
                            r.timestamp,
                            r.frame,
                            r.pid,
                            json.dumps(r.extra),
                            v.tobytes(),
                        )
                        for i, r, v in zip(ids, records, vectors, strict=True)
                    ),
                )
                return ids, lambda: self._faiss_index.add_with_ids(vectors, ids) if len(ids) else None

            return self._write(apply, save=save)

    def delete(self, ids: Sequence[int] | np.ndarray) -> int:
        """Delete items by id in one atomic write; returns how many existed."""
        with self._lock:
            self._require_open()
            wanted = np.unique(np.asarray(list(ids), dtype=np.int64))

            def apply():
                present = self._existing_ids(wanted)
                for start in range(0, len(present), 900):
                    part = present[start : start + 900].tolist()
                    self._connection.execute(
                        f"DELETE FROM items WHERE id IN ({','.join('?' * len(part))})", part
                    )
                return len(present), lambda: self._faiss_index.remove_ids(present) if len(present) else None

            return self._write(apply)

    def rebuild(self) -> None:
        """Rebuild the FAISS structure from the stored embeddings; IVF kinds are (re)trained on all of them.

        Use after many adds or deletes changed the distribution, or to train an IVF index on a small gallery.
        """
        with self._lock:
            self._require_open()

            def apply():
                kind = self._settings["kind"]
                count = self._connection.execute("SELECT COUNT(*) FROM items").fetchone()[0]
                nlist = None
                if kind != "flat" and count:
                    nlist = self._settings["nlist"] or default_nlist(count)
                    if count < nlist:
                        raise GalleryIndexError(f"cannot train {nlist} IVF lists on {count} embeddings")
                self._settings["trained_nlist"] = nlist
                self._connection.execute(
                    "UPDATE settings SET value = ? WHERE key = 'trained_nlist'", (json.dumps(nlist),)
                )
                structure = self._build_from_database(train=nlist is not None)

                def swap():
                    self._faiss_index = structure

                return None, swap

            self._write(apply)

    def _existing_ids(self, ids: np.ndarray) -> np.ndarray:
        found = []
        for start in range(0, len(ids), 900):
            part = ids[start : start + 900].tolist()
            found += [
                row[0]
                for row in self._connection.execute(
                    f"SELECT id FROM items WHERE id IN ({','.join('?' * len(part))})", part
                )
            ]
        return np.array(sorted(found), dtype=np.int64)

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return self._count

    @property
    def dim(self) -> int:
        return int(self._settings["dim"])

    @property
    def fingerprint(self) -> str:
        return str(self._settings["fingerprint"])

    @property
    def version(self) -> int:
        return self._version

    def info(self) -> dict[str, Any]:
        """Settings and counts: dim, metric, kind, structure in use, size, cameras, model fingerprint."""
        with self._lock:
            self._require_open()
            cameras = [
                row[0]
                for row in self._connection.execute("SELECT DISTINCT camera FROM items ORDER BY camera")
            ]
            structure = self._settings["kind"] if self._settings["trained_nlist"] is not None else "flat"
            return {
                "directory": str(self.directory),
                "count": self._count,
                "dim": self.dim,
                "metric": self._settings["metric"],
                "kind": self._settings["kind"],
                "structure": structure,
                "trained_nlist": self._settings["trained_nlist"],
                "nprobe": self._settings["nprobe"],
                "refine": self._settings.get("refine", 1),
                "pq_m": self._settings["pq_m"],
                "fingerprint": self.fingerprint,
                "model_name": self._settings["model_name"],
                "version": self._version,
                "cameras": cameras,
            }

    def get(self, item_id: int) -> GalleryItem | None:
        """The metadata of one item, or None if there is no such id in this snapshot."""
        with self._lock:
            self._require_open()
            return self._fetch_items([int(item_id)]).get(int(item_id))

    def vectors(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """The stored embeddings ``[len(ids), D]`` of these ids, in order (e.g. to re-rank a shortlist).

        Raises:
            GalleryIndexError: an id that is not in this snapshot.
        """
        with self._lock:
            self._require_open()
            wanted = [int(i) for i in ids]
            found: dict[int, np.ndarray] = {}
            unique = list(dict.fromkeys(wanted))
            for start in range(0, len(unique), 900):
                part = unique[start : start + 900]
                rows = self._connection.execute(
                    f"SELECT id, vector FROM items WHERE id IN ({','.join('?' * len(part))})", part
                )
                found.update((item_id, np.frombuffer(blob, dtype=np.float32)) for item_id, blob in rows)
            missing = [i for i in unique if i not in found]
            if missing:
                raise GalleryIndexError(f"no items with ids {missing[:10]} in index {self.directory}")
            if not wanted:
                return np.zeros((0, self.dim), dtype=np.float32)
            return np.stack([found[i] for i in wanted])

    def ids(self) -> np.ndarray:
        """All ids in this snapshot, ascending."""
        with self._lock:
            self._require_open()
            return np.array(
                [r[0] for r in self._connection.execute("SELECT id FROM items ORDER BY id")], np.int64
            )

    def _fetch_items(self, ids: Sequence[int]) -> dict[int, GalleryItem]:
        found: dict[int, GalleryItem] = {}
        ids = list(dict.fromkeys(ids))
        for start in range(0, len(ids), 900):
            part = ids[start : start + 900]
            rows = self._connection.execute(
                "SELECT id, path, camera, timestamp, frame, pid, extra FROM items "
                f"WHERE id IN ({','.join('?' * len(part))})",
                part,
            )
            for item_id, path, camera, timestamp, frame, pid, extra in rows:
                found[item_id] = GalleryItem(path, camera, timestamp, frame, pid, json.loads(extra))
        return found

    def _filter_ids(
        self, camera: Any, exclude_camera: Any, since: Any, until: Any, pid: Any, frames: tuple | None
    ) -> np.ndarray | None:
        clauses, values = [], []
        for column, wanted, negate in (
            ("camera", camera, False),
            ("camera", exclude_camera, True),
            ("pid", pid, False),
        ):
            wanted = _as_list(wanted)
            if wanted is None:
                continue
            if column == "camera":
                wanted = [str(w) for w in wanted]
            elif not all(_is_integer(w) for w in wanted):
                raise GalleryIndexError(f"pid filter must be integers, got {wanted!r}")
            if not wanted:
                clauses.append("0" if not negate else "1")
                continue
            marks = ",".join("?" * len(wanted))
            clauses.append(
                f"{column} {'NOT IN' if negate else 'IN'} ({marks})"
                + (f" OR {column} IS NULL" if negate else "")
            )
            values += [w if isinstance(w, str) else int(w) for w in wanted]
        for operator, bound, name in ((">=", since, "since"), ("<=", until, "until")):
            if bound is not None:
                try:
                    values.append(to_timestamp(bound))
                except (TypeError, ValueError) as error:
                    raise GalleryIndexError(f"{name} {error}") from None
                clauses.append(f"timestamp {operator} ?")
        if frames is not None:
            low, high = frames
            if low is not None:
                clauses.append("frame >= ?")
                values.append(int(low))
            if high is not None:
                clauses.append("frame <= ?")
                values.append(int(high))
        if not clauses:
            return None
        where = " AND ".join(f"({c})" for c in clauses)
        return np.array(
            [r[0] for r in self._connection.execute(f"SELECT id FROM items WHERE {where}", values)], np.int64
        )

    def _rerank_exact(self, queries: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Re-rank candidate ids ``[Q, K']`` by exact scores against the stored embeddings -> ``[Q, k]``."""
        wanted = np.unique(labels[labels >= 0])
        stored: dict[int, np.ndarray] = {}
        for start in range(0, len(wanted), 900):
            part = wanted[start : start + 900].tolist()
            rows = self._connection.execute(
                f"SELECT id, vector FROM items WHERE id IN ({','.join('?' * len(part))})", part
            )
            for item_id, blob in rows:
                stored[item_id] = np.frombuffer(blob, dtype=np.float32)
        ip = self._settings["metric"] == "ip"
        worst = -np.inf if ip else np.inf
        out_scores = np.full((len(queries), k), worst, dtype=np.float32)
        out_labels = np.full((len(queries), k), -1, dtype=np.int64)
        for row, (query, candidates) in enumerate(zip(queries, labels, strict=True)):
            candidates = np.array([c for c in candidates if c in stored], dtype=np.int64)
            if not len(candidates):
                continue
            matrix = np.stack([stored[int(c)] for c in candidates])
            exact = matrix @ query if ip else ((matrix - query) ** 2).sum(axis=1)
            order = np.argsort(-exact if ip else exact, kind="stable")[:k]
            out_scores[row, : len(order)] = exact[order]
            out_labels[row, : len(order)] = candidates[order]
        return out_scores, out_labels

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
        faiss = _import_faiss()
        with self._lock:
            self._require_open()
            self._check_fingerprint(fingerprint, "the queries")
            vectors = _check_embeddings(queries, self.dim, "queries")
            if not _is_integer(top_k) or top_k < 1:
                raise GalleryIndexError(f"top_k must be a positive integer, got {top_k!r}")
            allowed = self._filter_ids(camera, exclude_camera, since, until, pid, frames)
            if self._count == 0 or len(vectors) == 0 or (allowed is not None and len(allowed) == 0):
                return [[] for _ in range(len(vectors))]
            k = int(min(top_k, self._count if allowed is None else len(allowed)))
            ivf = self._settings["trained_nlist"] is not None
            params = None
            if allowed is not None or ivf:
                selector = faiss.IDSelectorBatch(allowed) if allowed is not None else None
                if ivf:
                    params = faiss.SearchParametersIVF(nprobe=int(self._settings["nprobe"]))
                    if selector is not None:
                        params.sel = selector
                else:
                    params = faiss.SearchParameters(sel=selector)
            refine = self._settings.get("refine", 1) if ivf and self._settings["kind"] == "ivfpq" else 1
            limit = self._count if allowed is None else len(allowed)
            scores, labels = self._faiss_index.search(
                vectors, int(min(k * max(refine, 1), limit)), params=params
            )
            if refine > 1:
                scores, labels = self._rerank_exact(vectors, labels, k)
            items = self._fetch_items([int(i) for i in labels.ravel() if i >= 0])
            results = []
            for row_scores, row_labels in zip(scores, labels, strict=True):
                hits = []
                for score, label in zip(row_scores, row_labels, strict=True):
                    if label < 0 or int(label) not in items:
                        continue
                    if self._settings["metric"] == "ip":
                        distance = 1.0 - float(score)
                    else:
                        distance = math.sqrt(max(float(score), 0.0))
                    hits.append(SearchHit(int(label), distance, items[int(label)]))
                results.append(hits)
            return results


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
