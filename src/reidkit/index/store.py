"""The SQLite side of the gallery index: schema, transactions, settings rows, items, embeddings and filters.

The database is the source of truth. It runs in WAL mode with ``synchronous=FULL``; the connection is in
autocommit mode (``isolation_level=None``) so that transactions are begun and ended only by
:class:`GalleryStore`'s ``begin_*`` / ``commit`` / ``rollback`` calls. Every query over a list of ids goes
through :func:`rows_for_ids`, which keeps each statement under SQLite's limit on bound variables.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reidkit.index.items import GalleryIndexError, GalleryItem, is_integer, to_timestamp
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


def rows_for_ids(
    connection: sqlite3.Connection, statement: str, ids: Iterable[int], *, chunk: int = ID_CHUNK
) -> list[tuple]:
    """Run a statement over a list of ids, ``chunk`` ids at a time, and return all its rows.

    Args:
        connection: the database.
        statement: SQL with one ``{ids}`` where the comma-separated marks go, e.g.
            ``"SELECT id, vector FROM items WHERE id IN ({ids})"`` (a DELETE returns no rows).
        ids: any integers (NumPy included); duplicates are dropped, the first occurrence keeps its place,
            so a row is returned once however often its id is listed. No ids: no statement is run.
        chunk: ids bound per statement.

    Returns:
        The rows of every chunk, chunk after chunk (the chunks follow the order of the distinct ids).
    """
    unique = list(dict.fromkeys(int(item_id) for item_id in ids))
    rows: list[tuple] = []
    for start in range(0, len(unique), chunk):
        part = unique[start : start + chunk]
        rows += connection.execute(statement.format(ids=",".join("?" * len(part))), part).fetchall()
    return rows


def fsync_directory(directory: Path) -> None:
    """Flush a directory's entries (a rename in it) to disk."""
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


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
        rows = rows_for_ids(self.connection, "SELECT id FROM items WHERE id IN ({ids})", ids)
        return np.array(sorted(row[0] for row in rows), dtype=np.int64)

    def items(self, ids: Iterable[int]) -> dict[int, GalleryItem]:
        """id -> metadata, for those of ``ids`` that are stored."""
        rows = rows_for_ids(
            self.connection,
            "SELECT id, path, camera, timestamp, frame, pid, extra FROM items WHERE id IN ({ids})",
            ids,
        )
        return {
            item_id: GalleryItem(path, camera, timestamp, frame, pid, json.loads(extra))
            for item_id, path, camera, timestamp, frame, pid, extra in rows
        }

    def vectors(self, ids: Iterable[int]) -> dict[int, np.ndarray]:
        """id -> stored ``[D]`` float32 embedding (read-only), for those of ``ids`` that are stored."""
        rows = rows_for_ids(self.connection, "SELECT id, vector FROM items WHERE id IN ({ids})", ids)
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

    def insert(self, records: Sequence[GalleryItem], vectors: np.ndarray) -> np.ndarray:
        """Store items with their ``[N, D]`` float32 embeddings in the open transaction.

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
        return ids

    def delete(self, ids: Iterable[int]) -> None:
        """Delete these ids in the open transaction (absent ids are ignored)."""
        rows_for_ids(self.connection, "DELETE FROM items WHERE id IN ({ids})", ids)

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


def _as_list(value: Any) -> list | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
        return list(value)
    return [value]


def _membership(column: str, wanted: Any, negate: bool, values: list[Any]) -> str | None:
    """The SQL clause keeping rows whose ``column`` is (``negate``: is not) in ``wanted``; appends its values."""
    wanted = _as_list(wanted)
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
