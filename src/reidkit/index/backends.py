"""Where a gallery index lives: a FAISS + SQLite directory, or a collection on Milvus.

Both backends offer the same interface (:class:`reidkit.index.Index`, :class:`reidkit.index.milvus.MilvusIndex`):
``add``, ``delete``, ``search`` with the same filters and results, ``items``, ``vectors``, ``info``, and what
:func:`~reidkit.index.index_images`, :func:`~reidkit.index.index_tracks` and the HTTP service use. An index is
named by ``location``: the directory for ``faiss``, the collection name for ``milvus`` (with ``uri``, the Milvus
address or a Milvus Lite ``.db`` file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reidkit.index.items import GalleryIndexError

BACKENDS = ("faiss", "milvus")


def check_backend(backend: str, uri: str | None) -> str | None:
    """The Milvus URI for ``backend`` (None for FAISS), or an error for a backend without / with a stray URI."""
    if backend not in BACKENDS:
        raise GalleryIndexError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "milvus" and not uri:
        raise GalleryIndexError(
            "the milvus backend needs --uri: a Milvus address (http://host:19530) or a Milvus Lite .db file"
        )
    if backend == "faiss" and uri:
        raise GalleryIndexError(f"--uri {uri} is for --backend milvus; a FAISS index is a directory")
    return uri if backend == "milvus" else None


def open_index(location: str | Path, *, backend: str = "faiss", uri: str | None = None, readonly: bool = False):
    """Open the index at ``location`` (a directory, or a collection at ``uri``)."""
    uri = check_backend(backend, uri)
    if uri is None:
        from reidkit.index import Index

        return Index.open(location, readonly=readonly)
    from reidkit.index.milvus import MilvusIndex

    return MilvusIndex.open(uri, str(location), readonly=readonly)


def create_or_resume_index(
    location: str | Path, *, backend: str = "faiss", uri: str | None = None, **settings: Any
) -> tuple[Any, bool]:
    """Create the index at ``location``, or reopen one an earlier build left with the same settings.

    Returns:
        The open index, and True when it was resumed (False: created now).
    """
    uri = check_backend(backend, uri)
    if uri is None:
        from reidkit.index import Index

        return Index.create_or_resume(location, **settings)
    from reidkit.index.milvus import MilvusIndex

    return MilvusIndex.create_or_resume(uri, str(location), **settings)
