"""The Milvus side of :class:`reidkit.index.milvus.MilvusIndex`: connecting, the collection's schema and settings,
rows to and from items, paged lookups.

The collection of an index: ``id`` (INT64 primary key, ``auto_id``), ``vector`` (FLOAT_VECTOR), ``path``,
``camera`` (nullable), ``timestamp`` (DOUBLE, nullable), ``frame`` and ``pid`` (INT64, nullable), ``extra``
(JSON), ``size``, ``mtime_ns`` (INT64, nullable) and ``sha256`` (nullable): the image file when embedded. The
settings are the JSON collection property :data:`SETTINGS_PROPERTY`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from reidkit.index import milvus_filters
from reidkit.index.faiss_side import to_distance
from reidkit.index.items import FileSource, GalleryIndexError, GalleryItem, SearchHit, is_integer
from reidkit.index.settings import FORMAT_VERSION, IndexSettings

#: the collection property that holds the index's settings (JSON)
SETTINGS_PROPERTY = "reidkit.settings"
#: IVF lists of an ``ivf`` collection created without ``nlist``
DEFAULT_NLIST = 1024
#: the largest ``top_k`` and page size Milvus answers in one request
MAX_LIMIT = 16384
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
METRICS = {"ip": "IP", "l2": "L2"}
METADATA = ("path", "camera", "timestamp", "frame", "pid", "extra")
SOURCE = ("size", "mtime_ns", "sha256")
#: rows per insert request (a request carries about ``rows * dim * 4`` bytes of vectors)
INSERT_ROWS = 2048
#: values per ``in [...]`` lookup
LOOKUP = 512


def import_pymilvus() -> Any:
    """The ``pymilvus`` module, or an error saying how to install it."""
    try:
        import pymilvus
    except ImportError:
        raise GalleryIndexError(
            "the Milvus backend needs pymilvus (and milvus-lite for a local .db file): "
            "pip install 'reidkit[milvus]'"
        ) from None
    return pymilvus


class _QuietScans(logging.Filter):
    """Drops the two log lines every paged scan (``query_iterator``) causes on Milvus Lite, which has no
    server timestamps: pymilvus's warning that it uses the client's time instead (what a scan here wants), and,
    when Milvus Lite runs in this process, its gRPC server's report of the unimplemented timestamp call."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "mvccTs" not in message and not message.startswith(
            "Exception calling application: Method not implemented"
        )


_QUIET = _QuietScans()


def connect(uri: str, *, timeout: float = 30.0) -> Any:
    """A ``MilvusClient`` for ``uri`` (a server address, or a ``.db`` file for Milvus Lite).

    Raises:
        GalleryIndexError: pymilvus missing, or no Milvus answers at ``uri`` (the message names it).
    """
    pymilvus = import_pymilvus()
    for name in ("pymilvus.client.iterator.query_iterator", "grpc._server"):
        if _QUIET not in logging.getLogger(name).filters:
            logging.getLogger(name).addFilter(_QUIET)
    if not isinstance(uri, str) or not uri:
        raise GalleryIndexError(f"--uri must be a Milvus address or a .db file, got {uri!r}")
    try:
        return pymilvus.MilvusClient(uri=uri, timeout=timeout)
    except Exception as error:  # pymilvus raises its own and gRPC's errors
        raise GalleryIndexError(f"cannot connect to Milvus at {uri}: {error}") from None


def check_collection_name(name: str) -> str:
    """``name`` when Milvus accepts it as a collection name (letters, digits, ``_``; not a digit first)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise GalleryIndexError(
            f"a Milvus index name must be 1-255 letters, digits or underscores, not starting with a digit; "
            f"got {name!r}"
        )
    return name


def read_settings(client: Any, name: str, where: str) -> IndexSettings:
    """The settings stored with collection ``name`` (``where`` names it in errors), after a schema check."""
    description = client.describe_collection(name)
    text = (description.get("properties") or {}).get(SETTINGS_PROPERTY)
    if text is None:
        raise GalleryIndexError(f"{where} is not a reidkit index (no {SETTINGS_PROPERTY!r} property)")
    fields = {field["name"] for field in description["fields"]}
    missing = [field for field in ("id", "vector", *METADATA, *SOURCE) if field not in fields]
    if missing:
        raise GalleryIndexError(f"{where} lacks the fields {missing} of a reidkit index")
    try:
        values = json.loads(text)
    except ValueError as error:
        raise GalleryIndexError(f"{where}: the settings are not valid JSON ({error})") from None
    return IndexSettings.from_values(values, where=where)


def flush(client: Any, name: str, where: str, *, attempts: int = 4) -> None:
    """Seal the collection's written rows; Milvus Lite 3.2 can refuse a flush that overlaps another writer's,
    so it is retried ``attempts`` times before a :class:`GalleryIndexError` naming ``where``."""
    for attempt in range(attempts):
        try:
            client.flush(name)
            return
        except Exception as error:  # pymilvus's MilvusException
            if attempt + 1 == attempts:
                raise GalleryIndexError(f"{where}: flush failed ({error})") from None
            time.sleep(0.2 * (attempt + 1))


def fetch_rows(client: Any, name: str, ids: Sequence[int] | np.ndarray, fields: list[str]) -> dict[int, dict]:
    """id -> row (``fields``) of those of ``ids`` in the collection."""
    wanted = sorted({as_id(i) for i in ids})
    rows: dict[int, dict[str, Any]] = {}
    for start in range(0, len(wanted), LOOKUP):
        for row in client.query(name, ids=wanted[start : start + LOOKUP], output_fields=fields):
            rows[int(row["id"])] = row
    return rows


def scan_rows(client: Any, name: str, expression: str | None, fields: list[str]) -> Iterator[dict[str, Any]]:
    """Every row passing ``expression`` (all for None), page by page."""
    pages = client.query_iterator(
        name, batch_size=MAX_LIMIT // 4, filter=expression or "", output_fields=fields
    )
    try:
        while page := pages.next():
            yield from page
    finally:
        pages.close()


def sorted_ids(client: Any, name: str, expression: str | None) -> np.ndarray:
    """``[M]`` int64 ids, ascending, of the rows passing ``expression``."""
    return np.array(
        sorted(int(row["id"]) for row in scan_rows(client, name, expression, ["id"])), dtype=np.int64
    )


def as_created(settings: IndexSettings) -> IndexSettings:
    """The settings a collection is created with: ``ivf`` gets its lists (trained by Milvus) at once."""
    if settings.kind == "ivf":
        nlist = settings.nlist or DEFAULT_NLIST
        return replace(settings, nlist=nlist, trained_nlist=nlist)
    return settings


def index_params(client: Any, settings: IndexSettings) -> Any:
    params = client.prepare_index_params()
    if settings.kind == "ivf":
        params.add_index(
            "vector",
            index_type="IVF_FLAT",
            metric_type=METRICS[settings.metric],
            # the flat key is what a Milvus server reads; Milvus Lite reads the legacy JSON "params" entry
            params={"nlist": settings.trained_nlist, "params": {"nlist": settings.trained_nlist}},
        )
    else:
        params.add_index("vector", index_type="FLAT", metric_type=METRICS[settings.metric])
    return params


def create_collection(client: Any, name: str, settings: IndexSettings) -> None:
    from pymilvus import DataType

    if settings.kind not in ("flat", "ivf"):
        raise GalleryIndexError(
            f"the Milvus backend offers kinds 'flat' and 'ivf', got {settings.kind!r} "
            "(use the FAISS backend for ivfpq)"
        )
    settings = as_created(settings)
    schema = client.create_schema(auto_id=True, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=settings.dim)
    schema.add_field("path", DataType.VARCHAR, max_length=65535)
    schema.add_field("camera", DataType.VARCHAR, max_length=1024, nullable=True)
    schema.add_field("timestamp", DataType.DOUBLE, nullable=True)
    schema.add_field("frame", DataType.INT64, nullable=True)
    schema.add_field("pid", DataType.INT64, nullable=True)
    schema.add_field("extra", DataType.JSON)
    schema.add_field("size", DataType.INT64, nullable=True)
    schema.add_field("mtime_ns", DataType.INT64, nullable=True)
    schema.add_field("sha256", DataType.VARCHAR, max_length=64, nullable=True)
    values = {"format_version": FORMAT_VERSION, **asdict(settings)}
    client.create_collection(
        name,
        schema=schema,
        index_params=index_params(client, settings),
        consistency_level="Strong",
        properties={SETTINGS_PROPERTY: milvus_filters.settings_property(values)},
    )


def as_id(value: Any) -> int:
    if not is_integer(value):
        raise GalleryIndexError(f"ids must be integers, got {value!r}")
    return int(value)


def row_of(vector: np.ndarray, item: GalleryItem, source: FileSource | None) -> dict[str, Any]:
    row: dict[str, Any] = {"vector": vector.tolist(), **asdict(item)}
    row.update(asdict(source) if source is not None else dict.fromkeys(SOURCE))
    return row


def item_of(row: Mapping[str, Any]) -> GalleryItem:
    return GalleryItem(
        path=row["path"],
        camera=row["camera"],
        timestamp=row["timestamp"],
        frame=row["frame"],
        pid=row["pid"],
        extra=dict(row["extra"] or {}),
    )


def source_of(row: Mapping[str, Any]) -> FileSource | None:
    if row["sha256"] is None:
        return None
    return FileSource(int(row["size"]), int(row["mtime_ns"]), row["sha256"])


def hit_of(found: Mapping[str, Any], metric: str) -> SearchHit:
    """A Milvus search result as a hit: Milvus reports the inner product, or the squared L2 distance."""
    return SearchHit(int(found["id"]), to_distance(found["distance"], metric), item_of(found["entity"]))


def create_if_missing(client: Any, name: str, settings: IndexSettings) -> bool:
    """Create collection ``name`` unless it exists (or another writer creates it meanwhile); True when created."""
    if client.has_collection(name):
        return False
    try:
        create_collection(client, name, settings)
    except Exception:  # pymilvus's or gRPC's error: created by another writer first, or a real failure
        if not client.has_collection(name):
            client.close()
            raise
        return False
    return True


@contextlib.contextmanager
def lite_server(data_dir: str | Path, *, start_timeout: float = 60.0) -> Iterator[str]:
    """Run ``milvus-lite server --data-dir data_dir`` on a free loopback port for the duration; yields its URI.

    What several writer processes on one machine share (a ``.db`` URI is one process's own); stopped on exit.

    Raises:
        GalleryIndexError: milvus-lite is not installed, or the server did not accept connections in time.
    """
    import_pymilvus()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data_dir)]
    server = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    server.kill()
                    reason = server.communicate()[1].decode(errors="replace")[-2000:]
                    raise GalleryIndexError(
                        f"milvus-lite server on {data_dir} did not start: {reason}"
                    ) from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=30)
