"""Reading and writing a tracking run folder (the layout is in :mod:`reidkit.track.records`).

:func:`write_run` writes ``run.json``, ``tracklets.sqlite``, ``identities.json`` and ``thumbs/`` from a
:class:`RunInfo` and the tracklets; :func:`read_run` reads them back, checking every file and field.

Crash safety: every file is written to a temp file beside it, fsynced and renamed over the old one (the SQLite
file is built whole in a temp file, then renamed), so a writer killed at any moment leaves each file either
old or new, never half-written. ``run.json`` is written last and records the size and SHA-256 of the
``tracklets.sqlite`` it belongs to: a reader finding a table from another write (a run killed between the
two renames) says so instead of mixing them. Re-running :func:`write_run` on a folder replaces the run: the
thumbnails of tracklets that are gone and temp files a killed writer left are removed.

Blobs: ``boxes`` is float64 ``[N, 6]`` rows ``frame, x, y, w, h, score`` and ``feature`` float32 ``[D]``,
both little-endian.
"""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reidkit._io import atomic_write_bytes, file_sha256, fsync_directory
from reidkit.track.records import TRACKLET_COLUMNS, Tracklet
from reidkit.track.runinfo import RUN_NAME, CameraInfo, RunFileError, RunInfo, inside_run

__all__ = [
    "IDENTITIES_NAME",
    "RUN_NAME",
    "THUMBS_DIR",
    "TRACKLETS_NAME",
    "CameraInfo",
    "RunFileError",
    "RunFiles",
    "RunInfo",
    "identities_json",
    "read_run",
    "read_run_files",
    "thumbnail_name",
    "write_run",
]

TRACKLETS_NAME = "tracklets.sqlite"
IDENTITIES_NAME = "identities.json"
THUMBS_DIR = "thumbs"
_BOXES = np.dtype("<f8")
_FEATURE = np.dtype("<f4")
#: temp files this module writes: ``.<name>.<random>.tmp`` (see :func:`reidkit._io.atomic_write`).
_TEMP = re.compile(r"^\..+\.tmp$")
#: seconds two times may differ by and still be the same (REAL columns; Unix seconds keep ~0.2 us).
_TIME_TOLERANCE = 1e-6


@dataclass(frozen=True)
class RunFiles:
    """A run folder as read by :func:`read_run_files`.

    Attributes:
        directory: the run folder, absolute.
        info: its ``run.json``.
        tracklets: its tracklets (thumbnails not loaded).
        thumbnails: ``(camera, local_id)`` -> thumbnail path relative to the run folder, for the tracklets
            that have one.
    """

    directory: Path
    info: RunInfo
    tracklets: list[Tracklet]
    thumbnails: dict[tuple[str, int], str]


def thumbnail_name(camera: str, local_id: int) -> str:
    """The thumbnail path of a tracklet, relative to the run folder: ``thumbs/<camera>_<local_id>.jpg``.

    Characters of the camera name other than letters, digits, ``.``, ``_`` and ``-`` become ``_``.
    """
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", camera).lstrip(".") or "_"
    return f"{THUMBS_DIR}/{safe}_{int(local_id)}.jpg"


# ---------------------------------------------------------------------------------------------- writing
def _write_bytes(path: Path, data: bytes) -> None:
    # looked up in this module when called, so that tests can replace it with one that dies half-way
    atomic_write_bytes(path, data)


def _jpeg(image: np.ndarray, where: str) -> bytes:
    from PIL import Image

    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3 or 0 in array.shape:
        raise RunFileError(
            f"{where}: thumbnail must be a [H, W, 3] uint8 RGB image, got {array.dtype} {array.shape}"
        )
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def _row(tracklet: Tracklet, thumbnail: str | None, dim: int | None) -> tuple:
    feature = None
    if tracklet.feature is not None:
        vector = np.asarray(tracklet.feature, dtype=_FEATURE).reshape(-1)
        if dim is None:
            raise RunFileError(
                f"tracklet {tracklet.camera}:{tracklet.local_id} has a feature, but the run names no embedder"
            )
        if len(vector) != dim:
            raise RunFileError(
                f"tracklet {tracklet.camera}:{tracklet.local_id}: feature has {len(vector)} values, the run's "
                f"embedder dim is {dim}"
            )
        feature = vector.tobytes()
    return (
        tracklet.camera,
        int(tracklet.local_id),
        None if tracklet.person is None else int(tracklet.person),
        None if tracklet.global_id is None else int(tracklet.global_id),
        tracklet.first_frame,
        tracklet.last_frame,
        tracklet.start_time,
        tracklet.end_time,
        np.ascontiguousarray(tracklet.rows(), dtype=_BOXES).tobytes(),
        feature,
        float(tracklet.quality),
        thumbnail,
    )


def _table_schema() -> str:
    columns = ", ".join(f"{name} {meaning.split(':', 1)[0]}" for name, meaning in TRACKLET_COLUMNS.items())
    return f"CREATE TABLE tracklets ({columns}, PRIMARY KEY (camera, local_id))"


def _write_database(target: Path, rows: Sequence[tuple]) -> None:
    """Build ``tracklets.sqlite`` whole in a temp file beside ``target``, fsync it, rename it into place."""
    handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    try:
        connection = sqlite3.connect(temp)
        try:
            connection.execute("PRAGMA journal_mode=DELETE")
            connection.execute(_table_schema())
            marks = ",".join("?" * len(TRACKLET_COLUMNS))
            connection.executemany(
                f"INSERT INTO tracklets ({','.join(TRACKLET_COLUMNS)}) VALUES ({marks})", rows
            )
            connection.commit()
        finally:
            connection.close()
        with open(temp, "rb+") as stream:
            os.fsync(stream.fileno())
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        Path(temp + "-journal").unlink(missing_ok=True)
        raise


def identities_json(tracklets: Sequence[Tracklet]) -> dict[str, Any]:
    """The content of ``identities.json``: tracklets grouped by global id (those without one left out)."""
    groups: dict[int, list[Tracklet]] = {}
    for tracklet in tracklets:
        if tracklet.global_id is not None:
            groups.setdefault(int(tracklet.global_id), []).append(tracklet)
    identities = []
    for global_id in sorted(groups):
        members = sorted(groups[global_id], key=lambda t: (t.start_time, t.camera, t.local_id))
        identities.append(
            {
                "global_id": global_id,
                "cameras": sorted({t.camera for t in members}),
                "tracklets": [[t.camera, int(t.local_id)] for t in members],
                "first_time": min(t.start_time for t in members),
                "last_time": max(t.end_time for t in members),
            }
        )
    return {"identities": identities}



def write_run(run_dir: str | Path, info: RunInfo, tracklets: Sequence[Tracklet]) -> None:
    """Write (or replace) a run folder: thumbnails, ``tracklets.sqlite``, ``identities.json``, ``run.json``.

    Each file is written atomically (see the module docstring); ``run.json`` comes last.

    Args:
        run_dir: the run folder (created when missing; other files in it are left alone).
        info: the cameras, embedder and settings.
        tracklets: the tracklets; their cameras must be in ``info``, their ``(camera, local_id)`` unique, their
            fps and camera start those of their camera, their features of the embedder's dim.

    Raises:
        RunFileError: a tracklet that does not fit ``info``, or a malformed ``info``.
    """
    run_dir = Path(run_dir)
    info.check(f"{run_dir / RUN_NAME} (to write)")
    by_name = {camera.name: camera for camera in info.cameras}
    thumbnails: dict[str, tuple[str, int]] = {}
    jpegs: dict[str, bytes] = {}
    rows = []
    for tracklet in tracklets:
        where = f"tracklet {tracklet.camera}:{tracklet.local_id}"
        camera = by_name.get(tracklet.camera)
        if camera is None:
            raise RunFileError(
                f"{where}: camera {tracklet.camera!r} is not in the run's cameras {sorted(by_name)}"
            )
        if abs(tracklet.fps - camera.fps) > 1e-9 or abs(tracklet.camera_start - camera.camera_start) > 1e-9:
            raise RunFileError(f"{where}: fps / camera_start differ from those of camera {camera.name!r}")
        name = None
        if tracklet.thumbnail is not None:
            name = thumbnail_name(tracklet.camera, tracklet.local_id)
            if name in thumbnails:
                raise RunFileError(f"{where}: thumbnail {name} is also that of tracklet {thumbnails[name]}")
            thumbnails[name] = tracklet.key
            jpegs[name] = _jpeg(tracklet.thumbnail, where)
        rows.append(_row(tracklet, name, info.dim))
    keys = [row[:2] for row in rows]
    if len(set(keys)) != len(keys):
        raise RunFileError("two tracklets share a (camera, local_id): " + str(_first_repeat(keys)))
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / THUMBS_DIR).mkdir(exist_ok=True)
    _remove_temp_files(run_dir)
    for name, data in jpegs.items():
        _write_bytes(run_dir / name, data)
    _write_database(run_dir / TRACKLETS_NAME, rows)
    _write_bytes(run_dir / IDENTITIES_NAME, json.dumps(identities_json(tracklets), indent=1).encode())
    database = run_dir / TRACKLETS_NAME
    content = {
        **info.to_json(),
        "tracklets": {"count": len(rows), "bytes": database.stat().st_size, "sha256": file_sha256(database)},
    }
    _write_bytes(run_dir / RUN_NAME, json.dumps(content, indent=1).encode())
    for stale in (run_dir / THUMBS_DIR).glob("*.jpg"):
        if f"{THUMBS_DIR}/{stale.name}" not in thumbnails:
            stale.unlink(missing_ok=True)
    fsync_directory(run_dir / THUMBS_DIR)
    fsync_directory(run_dir)


def _first_repeat(keys: list) -> Any:
    seen = set()
    for key in keys:
        if key in seen:
            return key
        seen.add(key)
    return None


def _remove_temp_files(run_dir: Path) -> None:
    """Remove the temp files a killed writer left in the run folder and its thumbnails folder."""
    for folder in (run_dir, run_dir / THUMBS_DIR):
        for path in folder.iterdir():
            if _TEMP.match(path.name) and path.is_file():
                path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- reading
def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise RunFileError(
            f"{path} is missing: {path.parent} is not a tracking run folder (run `reidkit track`)"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise RunFileError(f"{path} cannot be read as JSON ({error})") from None


def _check_database_record(record: Any, database: Path, where: str) -> None:
    """Check that ``tracklets.sqlite`` is the one ``run.json`` was written with."""
    if record is None:
        return
    if not isinstance(record, dict) or not {"bytes", "sha256"} <= set(record):
        raise RunFileError(f"{where}: 'tracklets' must be an object with bytes and sha256")
    if database.stat().st_size != record["bytes"] or file_sha256(database) != record["sha256"]:
        raise RunFileError(
            f"{database} is not the table {where} was written with (a write of the run was interrupted, or "
            "the file was replaced): re-run `reidkit track`"
        )


def _open_table(database: Path) -> sqlite3.Connection:
    if not database.is_file():
        raise RunFileError(f"{database} is missing (the tracklets of the run)")
    try:
        connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        columns = [row[1] for row in connection.execute("PRAGMA table_info(tracklets)")]
    except sqlite3.DatabaseError as error:
        raise RunFileError(f"{database} cannot be opened as SQLite ({error})") from None
    if not columns:
        connection.close()
        raise RunFileError(f"{database} has no table 'tracklets'")
    missing = [name for name in TRACKLET_COLUMNS if name not in columns]
    extra = [name for name in columns if name not in TRACKLET_COLUMNS]
    if missing or extra:
        connection.close()
        raise RunFileError(
            f"{database}: table tracklets has columns {columns}; expected {list(TRACKLET_COLUMNS)}"
            + (f" (missing {missing})" if missing else "")
            + (f" (unexpected {extra})" if extra else "")
        )
    return connection


def _tracklet_of_row(values: dict[str, Any], info: RunInfo, where: str) -> Tracklet:
    """One table row as a :class:`Tracklet`, every column checked."""
    camera_name = values["camera"]
    if not isinstance(camera_name, str):
        raise RunFileError(f"{where}: column camera must be TEXT, got {camera_name!r}")
    try:
        camera = info.camera(camera_name)
    except KeyError:
        raise RunFileError(
            f"{where}: camera {camera_name!r} is not among the cameras of {RUN_NAME}"
        ) from None
    for name in ("local_id", "first_frame", "last_frame"):
        if not isinstance(values[name], int):
            raise RunFileError(f"{where}: column {name} must be an INTEGER, got {values[name]!r}")
    for name in ("person", "global_id"):
        if values[name] is not None and not isinstance(values[name], int):
            raise RunFileError(f"{where}: column {name} must be an INTEGER or NULL, got {values[name]!r}")
    boxes = values["boxes"]
    if not isinstance(boxes, bytes) or not boxes or len(boxes) % (6 * _BOXES.itemsize):
        raise RunFileError(
            f"{where}: column boxes must be a BLOB of float64 [N, 6] rows (a multiple of 48 bytes), got "
            f"{len(boxes) if isinstance(boxes, bytes) else type(boxes).__name__}"
        )
    rows = np.frombuffer(boxes, dtype=_BOXES).reshape(-1, 6).astype(np.float64)
    feature = values["feature"]
    if feature is not None:
        if info.dim is None:
            raise RunFileError(f"{where}: column feature is set, but {RUN_NAME} names no embedder")
        if not isinstance(feature, bytes) or len(feature) != info.dim * _FEATURE.itemsize:
            size = len(feature) if isinstance(feature, bytes) else type(feature).__name__
            raise RunFileError(
                f"{where}: column feature must be a BLOB of {info.dim} float32 ({info.dim * 4} bytes, the "
                f"embedder dim of {RUN_NAME}), got {size}"
            )
        feature = np.frombuffer(feature, dtype=_FEATURE).astype(np.float32)
    try:
        tracklet = Tracklet(
            camera=camera_name,
            local_id=values["local_id"],
            frames=rows[:, 0].astype(np.int64),
            boxes=rows[:, 1:5],
            scores=rows[:, 5],
            fps=camera.fps,
            camera_start=camera.camera_start,
            feature=feature,
            quality=float(values["quality"] or 0.0),
            person=values["person"],
            global_id=values["global_id"],
        )
    except ValueError as error:
        raise RunFileError(f"{where}: column boxes: {error}") from None
    if (tracklet.first_frame, tracklet.last_frame) != (values["first_frame"], values["last_frame"]):
        raise RunFileError(
            f"{where}: first_frame/last_frame {values['first_frame']}/{values['last_frame']} do not match the "
            f"boxes (frames {tracklet.first_frame}..{tracklet.last_frame})"
        )
    for name, expected in (("start_time", tracklet.start_time), ("end_time", tracklet.end_time)):
        stored = values[name]
        if not isinstance(stored, (int, float)) or abs(stored - expected) > _TIME_TOLERANCE:
            raise RunFileError(
                f"{where}: column {name} is {stored!r}, but camera {camera_name!r} of {RUN_NAME} (fps "
                f"{camera.fps}, start {camera.camera_start}) puts that frame at {expected}"
            )
    return tracklet


def read_run_files(run_dir: str | Path) -> RunFiles:
    """Read and check a run folder's ``run.json`` and ``tracklets.sqlite``.

    Raises:
        RunFileError: a missing or malformed file; the message names the file, and the row and column (or the
            JSON field) at fault.
    """
    run_dir = Path(run_dir).resolve()
    run_path = run_dir / RUN_NAME
    content = _read_json(run_path)
    info = RunInfo.from_json(content, str(run_path))
    database = run_dir / TRACKLETS_NAME
    connection = _open_table(database)
    try:
        _check_database_record(content.get("tracklets"), database, str(run_path))
        cursor = connection.execute(f"SELECT {','.join(TRACKLET_COLUMNS)} FROM tracklets ORDER BY rowid")
        tracklets, thumbnails = [], {}
        for number, row in enumerate(cursor, 1):
            values = dict(zip(TRACKLET_COLUMNS, row, strict=True))
            where = f"{database}: row {number} ({values['camera']}:{values['local_id']})"
            tracklet = _tracklet_of_row(values, info, where)
            if values["thumbnail"] is not None:
                thumbnail = _thumbnail_column(values["thumbnail"], where)
                thumbnails[tracklet.key] = thumbnail
            tracklets.append(tracklet)
    except sqlite3.DatabaseError as error:
        raise RunFileError(f"{database} cannot be read ({error})") from None
    finally:
        connection.close()
    return RunFiles(run_dir, info, tracklets, thumbnails)


def read_run(run_dir: str | Path, *, load_thumbnails: bool = False) -> tuple[RunInfo, list[Tracklet]]:
    """Read a run folder written by :func:`write_run`.

    Args:
        run_dir: the run folder.
        load_thumbnails: also decode each tracklet's thumbnail into ``Tracklet.thumbnail`` (``[H, W, 3]``
            uint8 RGB; JPEG, so not bit-exact).

    Returns:
        The run's :class:`RunInfo` and its tracklets in table order.

    Raises:
        RunFileError: see :func:`read_run_files`; with ``load_thumbnails`` also a missing or unreadable
            thumbnail.
    """
    files = read_run_files(run_dir)
    if load_thumbnails:
        for tracklet in files.tracklets:
            name = files.thumbnails.get(tracklet.key)
            if name is not None:
                tracklet.thumbnail = _load_image(files.directory / name)
    return files.info, files.tracklets


def _thumbnail_column(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise RunFileError(f"{where}: column thumbnail must be TEXT or NULL, got {value!r}")
    return inside_run(value, f"{where}: column thumbnail")


def _load_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as error:
        raise RunFileError(f"thumbnail {path} cannot be read ({error})") from None
