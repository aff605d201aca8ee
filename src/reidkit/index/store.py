"""The SQLite side of the gallery index: schema, transactions, settings rows, items, embeddings and filters.

The database is the source of truth. It runs in WAL mode with ``synchronous=FULL``; the connection is in
autocommit mode (``isolation_level=None``) so that transactions are begun and ended only by
:class:`GalleryStore`'s ``begin_*`` / ``commit`` / ``rollback`` calls. Every query over a list of ids or paths
goes through :func:`rows_for_keys`, which keeps each statement under SQLite's limit on bound variables.

The ``sources`` table records, for an item embedded from an image file, the file's size, modification time
and SHA-256 (:class:`~reidkit.index.items.FileSource`), so that a re-add can tell an unchanged file (skipped)
from one that changed since it was indexed (re-embedded). Indexes written before that table existed get it,
and the index on ``items.path``, when first opened for writing (:meth:`GalleryStore.upgrade_schema`); their
items have no source row.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reidkit._io import fsync_directory
from reidkit.index.items import (
    FileSource,
    GalleryIndexError,
    GalleryItem,
    filter_values,
    is_integer,
    to_timestamp,
)
from reidkit.index.settings import IndexSettings

DATABASE_NAME = "gallery.sqlite"
#: ids bound per ``IN (...)`` statement: under SQLite's limit on variables (999 before SQLite 3.32).
ID_CHUNK = 900

_SCHEMA = """
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
#: tables and indexes added after format version 1 was first written: created when missing.
_LATER_SCHEMA = {
    "sources": "CREATE TABLE IF NOT EXISTS sources "
    "(id INTEGER PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL)",
    "items_path": "CREATE INDEX IF NOT EXISTS items_path ON items (path)",
}


def rows_for_keys(
    connection: sqlite3.Connection, statement: str, keys: Iterable[int | str], *, chunk: int = ID_CHUNK
) -> list[tuple]:
    """Run a statement over a list of ids or paths, ``chunk`` keys at a time, and return all its rows.

    Args:
        connection: the database.
        statement: SQL with one ``{keys}`` where the comma-separated marks go, e.g.
            ``"SELECT id, vector FROM items WHERE id IN ({keys})"`` (a DELETE returns no rows).
        keys: integers (NumPy included) or strings; duplicates are dropped, the first occurrence keeps its
            place, so a row is returned once however often its key is listed. No keys: no statement is run.
        chunk: keys bound per statement.

    Returns:
        The rows of every chunk, chunk after chunk (the chunks follow the order of the distinct keys).
    """
    unique = list(dict.fromkeys(key if isinstance(key, str) else int(key) for key in keys))
    rows: list[tuple] = []
    for start in range(0, len(unique), chunk):
        part = unique[start : start + chunk]
        rows += connection.execute(statement.format(keys=",".join("?" * len(part))), part).fetchall()
    return rows


def create_database(directory: Path, settings: IndexSettings) -> None:
    """Create an index directory holding only its database, atomically: it appears complete or not at all.

    The database is built in a temp folder beside ``directory``, checkpointed into one fsynced file, and the
    folder is renamed into place.

    Raises:
        GalleryIndexError: ``directory`` exists and is not an empty folder.
    """
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise GalleryIndexError(
            f"cannot create an index at {directory}: it exists and is not an empty folder"
        )
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent))
    try:
        connection = sqlite3.connect(staging / DATABASE_NAME)
        connection.executescript(_SCHEMA)
        for statement in _LATER_SCHEMA.values():
            connection.execute(statement)
        settings.insert(connection)
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
        fsync_directory(directory.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def discard_unwritten(directory: Path) -> bool:
    """Remove an index directory that was created but never written to (version 0, no items).

    This is what a build killed or failed before its first commit leaves; removing it lets the next build
    start afresh, with any settings. Only the index's own files are removed: a directory holding anything
    else is left as it is.

    Returns:
        True when the directory was removed.
    """
    store = GalleryStore(directory)
    try:
        store.begin_read()
        unwritten = store.read_settings().version == 0 and store.count() == 0
    finally:
        store.close()
    own = re.compile(
        rf"^({re.escape(DATABASE_NAME)}(-wal|-shm|-journal)?|\.?vectors-\d+\.faiss(\..+\.tmp)?)$"
    )
    names = os.listdir(directory)
    if not unwritten or not all(own.match(name) for name in names):
        return False
    for name in names:
        os.unlink(directory / name)
    directory.rmdir()
    fsync_directory(directory.parent)
    return True


class GalleryStore:
    """The database of one index directory: transactions, settings, items and their stored embeddings.

    Not thread-safe by itself: :class:`reidkit.index.Index` serialises its calls with a lock.
    """

    def __init__(self, directory: Path) -> None:
        """Open the database of ``directory``.

        Raises:
            GalleryIndexError: no database in ``directory``, or one SQLite cannot open.
        """
        self.directory = directory
        self.database = directory / DATABASE_NAME
        if not self.database.is_file():
            raise GalleryIndexError(f"{directory} is not a reidkit index (no {DATABASE_NAME} in it)")
        try:
            connection = sqlite3.connect(
                self.database, isolation_level=None, check_same_thread=False, timeout=60
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
        except sqlite3.DatabaseError as error:
            raise GalleryIndexError(
                f"{self.database} cannot be opened as an index database: {error}"
            ) from None
        self.connection = connection
        self._probe: sqlite3.Connection | None = None

    def upgrade_schema(self) -> None:
        """Create the tables and indexes added since the index was written, if any are missing (one commit)."""
        present = {
            row[0]
            for row in rows_for_keys(
                self.connection, "SELECT name FROM sqlite_master WHERE name IN ({keys})", _LATER_SCHEMA
            )
        }
        if present == set(_LATER_SCHEMA):
            return
        self.begin_write()
        try:
            for statement in _LATER_SCHEMA.values():
                self.connection.execute(statement)
            self.commit()
        except BaseException:
            self.rollback()
            raise

    def committed_version(self) -> int:
        """The newest committed version, read outside this store's snapshot (one small query)."""
        if self._probe is None:
            self._probe = sqlite3.connect(
                self.database, isolation_level=None, check_same_thread=False, timeout=60
            )
        row = self._probe.execute("SELECT value FROM settings WHERE key = 'version'").fetchone()
        if row is None:
            raise GalleryIndexError(f"{self.database}: the settings table lacks 'version'")
        return int(json.loads(row[0]))

    # ------------------------------------------------------------------ transactions
    def begin_read(self) -> None:
        """End any open transaction and begin a read transaction (its snapshot starts at the first read)."""
        self.end()
        self.connection.execute("BEGIN")

    def begin_write(self) -> None:
        """End any open transaction and begin a write transaction on the newest version (waits for writers)."""
        self.end()
        self.connection.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.connection.execute("COMMIT")

    def rollback(self) -> None:
        """Roll back the open transaction, if any."""
        if self.connection.in_transaction:
            self.connection.execute("ROLLBACK")

    def end(self) -> None:
        """Commit the open transaction, if any (for a read transaction: leave its snapshot)."""
        if self.connection.in_transaction:
            self.connection.execute("COMMIT")

    def close(self) -> None:
        self.end()
        self.connection.close()
        if self._probe is not None:
            self._probe.close()

    # ------------------------------------------------------------------ settings
    def read_settings(self) -> IndexSettings:
        return IndexSettings.read(self.connection, directory=self.directory, database=self.database)

    def update_settings(self, settings: IndexSettings, **changes: Any) -> IndexSettings:
        """``settings`` with ``changes``, written in the open transaction."""
        return settings.update(self.connection, **changes)

    # ------------------------------------------------------------------ items
    def count(self) -> int:
        return self.connection.execute("SELECT COUNT(*) FROM items").fetchone()[0]

    def ids(self) -> np.ndarray:
        """``[N]`` int64: every id, ascending."""
        rows = self.connection.execute("SELECT id FROM items ORDER BY id")
        return np.array([row[0] for row in rows], dtype=np.int64)

    def cameras(self) -> list[str | None]:
        """The distinct cameras, sorted (None first, for items without one)."""
        return [
            row[0] for row in self.connection.execute("SELECT DISTINCT camera FROM items ORDER BY camera")
        ]

    def existing_ids(self, ids: Iterable[int]) -> np.ndarray:
        """``[M]`` int64: those of ``ids`` that are stored, ascending and distinct."""
        rows = rows_for_keys(self.connection, "SELECT id FROM items WHERE id IN ({keys})", ids)
        return np.array(sorted(row[0] for row in rows), dtype=np.int64)

    def items(self, ids: Iterable[int]) -> dict[int, GalleryItem]:
        """id -> metadata, for those of ``ids`` that are stored."""
        rows = rows_for_keys(
            self.connection,
            "SELECT id, path, camera, timestamp, frame, pid, extra FROM items WHERE id IN ({keys})",
            ids,
        )
        return {
            item_id: GalleryItem(path, camera, timestamp, frame, pid, json.loads(extra))
            for item_id, path, camera, timestamp, frame, pid, extra in rows
        }

    def vectors(self, ids: Iterable[int]) -> dict[int, np.ndarray]:
        """id -> stored ``[D]`` float32 embedding (read-only), for those of ``ids`` that are stored."""
        rows = rows_for_keys(self.connection, "SELECT id, vector FROM items WHERE id IN ({keys})", ids)
        return {item_id: np.frombuffer(blob, dtype=np.float32) for item_id, blob in rows}

    def iter_vectors(self, dim: int, chunk: int = 65536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every stored embedding by ascending id: ``([n] int64 ids, [n, dim] float32)`` per chunk."""
        last = -1
        while True:
            rows = self.connection.execute(
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

    def stored_files(self, paths: Iterable[str]) -> dict[str, list[tuple[int, FileSource | None]]]:
        """path -> ``(id, source)`` of each stored item with that path, ascending id, for those of ``paths`` stored.

        ``source`` is None for an item stored without one (added by :meth:`reidkit.index.Index.add` without
        ``sources``, or by a reidkit that did not record them).
        """
        rows = rows_for_keys(
            self.connection,
            "SELECT items.id, items.path, sources.size, sources.mtime_ns, sources.sha256 FROM items "
            "LEFT JOIN sources ON sources.id = items.id WHERE items.path IN ({keys})",
            paths,
        )
        found: dict[str, list[tuple[int, FileSource | None]]] = {}
        for item_id, path, size, mtime_ns, sha256 in sorted(rows):
            source = None if sha256 is None else FileSource(size, mtime_ns, sha256)
            found.setdefault(path, []).append((item_id, source))
        return found

    def insert(
        self,
        records: Sequence[GalleryItem],
        vectors: np.ndarray,
        sources: Sequence[FileSource | None] | None = None,
    ) -> np.ndarray:
        """Store items with their ``[N, D]`` float32 embeddings (and image-file sources) in the open transaction.

        Returns:
            ``[N]`` int64 new ids, above every id ever stored (deleted ids are never reused).
        """
        row = self.connection.execute("SELECT seq FROM sqlite_sequence WHERE name = 'items'").fetchone()
        first = (row[0] if row else 0) + 1
        ids = np.arange(first, first + len(records), dtype=np.int64)
        self.connection.executemany(
            "INSERT INTO items (id, path, camera, timestamp, frame, pid, extra, vector) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (int(i), r.path, r.camera, r.timestamp, r.frame, r.pid, json.dumps(r.extra), v.tobytes())
                for i, r, v in zip(ids, records, vectors, strict=True)
            ),
        )
        if sources is not None:
            self.connection.executemany(
                "INSERT INTO sources (id, size, mtime_ns, sha256) VALUES (?, ?, ?, ?)",
                (
                    (int(i), s.size, s.mtime_ns, s.sha256)
                    for i, s in zip(ids, sources, strict=True)
                    if s is not None
                ),
            )
        return ids

    def delete(self, ids: Iterable[int]) -> None:
        """Delete these ids (and their sources) in the open transaction (absent ids are ignored)."""
        ids = list(ids)
        rows_for_keys(self.connection, "DELETE FROM items WHERE id IN ({keys})", ids)
        rows_for_keys(self.connection, "DELETE FROM sources WHERE id IN ({keys})", ids)

    def ids_with_extra(self, values: dict[str, str | int]) -> np.ndarray:
        """``[M]`` int64 ids, ascending, of the items whose ``extra`` has every key of ``values`` with that value.

        Raises:
            GalleryIndexError: a key that is not a plain name, or a value that is not a string or an integer.
        """
        clauses, bound = [], []
        for key, value in values.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise GalleryIndexError(f"extra key {key!r} must be a plain name (letters, digits, _)")
            if not (isinstance(value, str) or is_integer(value)):
                raise GalleryIndexError(
                    f"extra {key!r} must be matched with a string or an integer, got {value!r}"
                )
            clauses.append(f"json_extract(extra, '$.{key}') = ?")
            bound.append(value if isinstance(value, str) else int(value))
        where = " AND ".join(clauses) or "1"
        rows = self.connection.execute(f"SELECT id FROM items WHERE {where} ORDER BY id", bound)
        return np.array([row[0] for row in rows], dtype=np.int64)

    # ------------------------------------------------------------------ filters
    def filter_ids(
        self,
        *,
        camera: Any = None,
        exclude_camera: Any = None,
        since: Any = None,
        until: Any = None,
        pid: Any = None,
        frames: tuple[int | None, int | None] | None = None,
    ) -> np.ndarray | None:
        """``[M]`` int64 ids of the items passing every filter, or None when no filter is set.

        See :meth:`reidkit.index.Index.search` for the filters; ``camera`` and ``pid`` take one value or a
        list (an empty list passes nothing; an empty ``exclude_camera`` list excludes nothing).

        Raises:
            GalleryIndexError: a pid that is not an integer, or a time bound that is not a timestamp.
        """
        clauses: list[str] = []
        values: list[Any] = []
        for column, wanted, negate in (
            ("camera", camera, False),
            ("camera", exclude_camera, True),
            ("pid", pid, False),
        ):
            clause = _membership(column, wanted, negate, values)
            if clause is not None:
                clauses.append(clause)
        for operator, bound, name in ((">=", since, "since"), ("<=", until, "until")):
            if bound is not None:
                try:
                    values.append(to_timestamp(bound))
                except (TypeError, ValueError) as error:
                    raise GalleryIndexError(f"{name} {error}") from None
                clauses.append(f"timestamp {operator} ?")
        low, high = frames if frames is not None else (None, None)
        for operator, bound in ((">=", low), ("<=", high)):
            if bound is not None:
                clauses.append(f"frame {operator} ?")
                values.append(int(bound))
        if not clauses:
            return None
        where = " AND ".join(f"({clause})" for clause in clauses)
        rows = self.connection.execute(f"SELECT id FROM items WHERE {where}", values)
        return np.array([row[0] for row in rows], dtype=np.int64)


def _membership(column: str, wanted: Any, negate: bool, values: list[Any]) -> str | None:
    """The SQL clause keeping rows whose ``column`` is (``negate``: is not) in ``wanted``; appends its values."""
    wanted = filter_values(wanted)
    if wanted is None:
        return None
    if column == "camera":
        wanted = [str(w) for w in wanted]
    elif not all(is_integer(w) for w in wanted):
        raise GalleryIndexError(f"{column} filter must be integers, got {wanted!r}")
    if not wanted:
        return "1" if negate else "0"
    values += [w if isinstance(w, str) else int(w) for w in wanted]
    marks = ",".join("?" * len(wanted))
    if negate:
        return f"{column} NOT IN ({marks}) OR {column} IS NULL"
    return f"{column} IN ({marks})"
