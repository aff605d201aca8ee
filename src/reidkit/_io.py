"""Atomic file writes: write a temp file in the target's folder, fsync, then rename over the target.

A crash or an exception mid-write leaves the previous file untouched and no partial file behind. Also the
one streamed file hash (:func:`update_file_digest`, :func:`file_sha256`).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(stream)`` on a temp file beside ``path``, then atomically replace ``path`` with it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda stream: stream.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def fsync_directory(directory: str | Path) -> None:
    """Flush a directory's entries (a rename in it) to disk."""
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def update_file_digest(digest, path: str | Path) -> None:
    """Feed the bytes of ``path`` to a :mod:`hashlib` object, 1 MiB at a time."""
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)


def file_sha256(path: str | Path) -> str:
    """The hex SHA-256 of the file at ``path`` (streamed: bounded memory)."""
    digest = hashlib.sha256()
    update_file_digest(digest, path)
    return digest.hexdigest()
