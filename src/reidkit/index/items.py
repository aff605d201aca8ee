"""Records and checks of the gallery index: items, hits, image-file sources, timestamps, embeddings and errors."""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from reidkit.errors import ReidkitError

#: the metadata fields of one item, in the order of the items table's columns.
ITEM_FIELDS = ("path", "camera", "timestamp", "frame", "pid", "extra")


class GalleryIndexError(ReidkitError, ValueError):
    """An index directory that is missing or malformed, or a bad argument to an index operation."""


class FingerprintMismatchError(GalleryIndexError):
    """Embeddings from a model other than the one the index was built with."""


class SettingsMismatchError(GalleryIndexError):
    """An existing index built with other settings (or another model) than the ones asked for.

    Attributes:
        differences: one line per differing setting, e.g. ``"metric: 'ip' in the index, 'l2' asked"``.
    """

    def __init__(self, message: str, differences: list[str]) -> None:
        super().__init__(message)
        self.differences = differences


def fingerprint_mismatch(what: str, fingerprint: str, settings: Any, where: str) -> FingerprintMismatchError:
    """The error for ``what``, embedded by ``fingerprint``, offered to the index at ``where`` built with ``settings``."""
    return FingerprintMismatchError(
        f"{what} were embedded by model {fingerprint!r}, but index {where} was built with model "
        f"{settings.fingerprint!r} ({settings.model_name or 'unnamed'}): embed with the same model "
        f"(checkpoint/export and preprocessing) or build a new index"
    )


def filter_values(value: Any) -> list | None:
    """A filter argument as a list: None stays None (no filter), one value becomes a list of one."""
    if value is None:
        return None
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
        return list(value)
    return [value]


def is_integer(value: Any) -> bool:
    """True for Python and NumPy integers, False for booleans and everything else."""
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
        unknown = set(values) - set(ITEM_FIELDS)
        if unknown:
            raise GalleryIndexError(
                f"{where}: unknown metadata fields {sorted(unknown)}; expected {ITEM_FIELDS}"
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
            if value is not None and not is_integer(value):
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


def as_items(items: Sequence[GalleryItem | Mapping[str, Any]]) -> list[GalleryItem]:
    """Items as records: dicts are checked and converted, with errors naming ``items[n]``."""
    return [
        item if isinstance(item, GalleryItem) else GalleryItem.from_mapping(item, where=f"items[{n}]")
        for n, item in enumerate(items)
    ]


@dataclass(frozen=True)
class FileSource:
    """What an image file was when it was embedded: enough to tell, on a re-add, whether it changed since.

    A file whose size and modification time are unchanged is taken as unchanged without reading it; otherwise
    its SHA-256 decides.

    Attributes:
        size: bytes.
        mtime_ns: modification time, nanoseconds since the epoch.
        sha256: hex digest of the content.
    """

    size: int
    mtime_ns: int
    sha256: str

    @classmethod
    def of_file(cls, path: str | os.PathLike[str]) -> FileSource | None:
        """The file's size, modification time and SHA-256; None when it cannot be read."""
        try:
            digest = hashlib.sha256()
            with open(path, "rb") as stream:
                status = os.fstat(stream.fileno())
                for block in iter(lambda: stream.read(1 << 20), b""):
                    digest.update(block)
        except OSError:
            return None
        return cls(status.st_size, status.st_mtime_ns, digest.hexdigest())

    def same_file(self, path: str | os.PathLike[str]) -> bool:
        """True when ``path`` still holds the content this record was taken from."""
        try:
            status = os.stat(path)
        except OSError:
            return False
        if (status.st_size, status.st_mtime_ns) == (self.size, self.mtime_ns):
            return True
        now = FileSource.of_file(path)
        return now is not None and now.sha256 == self.sha256


@dataclass(frozen=True)
class SearchHit:
    """One ranked gallery item: its id, its distance to the query and its metadata."""

    id: int
    distance: float
    item: GalleryItem

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "distance": self.distance, **asdict(self.item)}


def check_embeddings(embeddings: np.ndarray, dim: int, what: str) -> np.ndarray:
    """Embeddings as a C-contiguous float32 ``[N, dim]`` array (``[dim]`` is one row).

    Raises:
        GalleryIndexError: another shape, or rows with NaN or infinity; the message starts with ``what``.
    """
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
