"""MOTChallenge text files: ground truth (``gt/gt.txt``) and tracker results (``<sequence>.txt``).

One box per line, comma separated (whitespace separated lines are read too), frames 1-based::

    results, any release   frame,id,x,y,w,h,conf,-1,-1,-1
    MOT16 / MOT17 / MOT20  frame,id,x,y,w,h,flag,class,visibility   (ground truth)
    MOT15 (2D MOT 2015)    frame,id,x,y,w,h,conf,wx,wy,wz          (ground truth)

In the MOT16+ ground truth, ``flag`` 0 marks a row that is not scored (an ignored region) and ``class`` is one
of the MOTChallenge classes (1 pedestrian, 2 person on vehicle, ..., 7 static person, 8 distractor, ...,
12 reflection, 13 crowd). In MOT15 the columns 8-10 are world coordinates (usually -1), not a class: reading
them as a class (as a MOT16 reader does) would drop every row. :func:`read_gt` therefore decides the release of
each file, from the sequence name when it is a known one and else from the contents, and returns MOT15 rows
with class 1 (pedestrian) and visibility 1 so that every later stage can treat all releases alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reidkit._io import atomic_write_text
from reidkit.errors import DatasetError

__all__ = [
    "MOT15_SEQUENCES",
    "RELEASES",
    "GroundTruth",
    "detect_release",
    "format_results",
    "read_gt",
    "read_results",
    "release_from_name",
    "write_results",
]

#: the releases :func:`read_gt` knows; mot16 and mot17 share one layout, mot20 adds a distractor class
RELEASES = ("mot15", "mot16", "mot17", "mot20")

#: MOTChallenge class ids (column 8 of MOT16+ ground truth)
MOT_CLASSES = frozenset(range(1, 14))

#: the sequences of the 2D MOT 2015 benchmark (train and test), whose names do not say the release
MOT15_SEQUENCES = frozenset(
    {
        "ADL-Rundle-1", "ADL-Rundle-3", "ADL-Rundle-6", "ADL-Rundle-8", "AVG-TownCentre", "ETH-Bahnhof",
        "ETH-Crossing", "ETH-Jelmoli", "ETH-Linthescher", "ETH-Pedcross2", "ETH-Sunnyday", "KITTI-13",
        "KITTI-16", "KITTI-17", "KITTI-19", "PETS09-S2L1", "PETS09-S2L2", "TUD-Campus", "TUD-Crossing",
        "TUD-Stadtmitte", "Venice-1", "Venice-2",
    }
)  # fmt: skip

_GT_FIELDS = (7, 10)  # frame,id,x,y,w,h,flag at least; 9 for MOT16+, 10 for MOT15
_RESULT_FIELDS = (6, 10)  # frame,id,x,y,w,h at least; conf and -1,-1,-1 optional
_GT_LAYOUTS = "MOT16/17/20: frame,id,x,y,w,h,flag,class,visibility; MOT15: frame,id,x,y,w,h,conf,wx,wy,wz"


@dataclass(frozen=True)
class GroundTruth:
    """One ground-truth file, read and checked.

    Attributes:
        path: the file.
        release: ``"mot15"``, ``"mot16"``, ``"mot17"`` or ``"mot20"`` (see :func:`read_gt`).
        rows: ``[N, 9]`` float64 ``(frame, id, x, y, w, h, flag, class, visibility)``, in file order; MOT15
            rows (which have no class) come with class 1 and visibility 1, their world coordinates dropped.
    """

    path: Path
    release: str
    rows: np.ndarray

    @property
    def scored(self) -> np.ndarray:
        """``[N]`` bool: the rows that count as ground truth (flag != 0 and class pedestrian)."""
        return (self.rows[:, 6] != 0) & (self.rows[:, 7] == 1)

    @property
    def last_frame(self) -> int:
        """The highest frame number in the file (0 when it is empty)."""
        return int(self.rows[:, 0].max()) if len(self.rows) else 0


def _split(line: str) -> list[str]:
    fields = [field.strip() for field in line.split(",")] if "," in line else line.split()
    if fields and fields[-1] == "":  # a trailing comma
        fields = fields[:-1]
    return fields


def _parse(
    path: Path, kind: str, field_range: tuple[int, int], layout: str
) -> tuple[list[list[float]], list[int]]:
    """The numbers of every non-blank line of ``path`` and its 1-based line numbers."""
    if not path.is_file():
        raise DatasetError(f"{kind} file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{kind} file {str(path)!r} cannot be read: {error}") from error
    low, high = field_range
    rows: list[list[float]] = []
    lines: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = _split(line)
        if not low <= len(fields) <= high:
            raise DatasetError(
                f"{str(path)!r} line {number}: expected {low} to {high} comma-separated fields ({layout}), "
                f"got {len(fields)}: {line.strip()!r}"
            )
        try:
            values = [float(field) for field in fields]
        except ValueError:
            raise DatasetError(
                f"{str(path)!r} line {number}: every field must be a number, got {line.strip()!r}"
            ) from None
        if not all(np.isfinite(values)):
            raise DatasetError(
                f"{str(path)!r} line {number}: fields must be finite numbers, got {line.strip()!r}"
            )
        rows.append(values)
        lines.append(number)
    return rows, lines


def _check_boxes(path: Path, table: np.ndarray, lines: list[int], *, min_id: int) -> None:
    """Frames integers >= 1, ids integers >= ``min_id``, w and h > 0, one box per id and frame."""
    checks = (
        (0, (table[:, 0] < 1) | (table[:, 0] != np.round(table[:, 0])), "frame must be an integer >= 1"),
        (
            1,
            (table[:, 1] < min_id) | (table[:, 1] != np.round(table[:, 1])),
            f"id must be an integer >= {min_id}",
        ),
        (4, table[:, 4] <= 0, "box width w must be > 0"),
        (5, table[:, 5] <= 0, "box height h must be > 0"),
    )
    for column, bad, what in checks:
        if bad.any():
            index = int(np.flatnonzero(bad)[0])
            raise DatasetError(
                f"{str(path)!r} line {lines[index]}: {what} (field {column + 1}), got {table[index, column]:g}"
            )
    if len(table) > 1:
        keys = table[:, 0].astype(np.int64) * (2**31) + table[:, 1].astype(np.int64)
        order = np.argsort(keys, kind="stable")
        same = np.flatnonzero(keys[order][1:] == keys[order][:-1])
        if len(same):
            first, second = sorted((int(order[same[0]]), int(order[same[0] + 1])))
            raise DatasetError(
                f"{str(path)!r} lines {lines[first]} and {lines[second]}: id {int(table[first, 1])} appears twice "
                f"in frame {int(table[first, 0])} (one box per id and frame)"
            )


def release_from_name(name: str | None) -> str | None:
    """The release a sequence name says (``MOT17-02-FRCNN`` -> ``mot17``, ``PETS09-S2L1`` -> ``mot15``), or None."""
    if not name:
        return None
    match = re.match(r"MOT(15|16|17|20)(\b|[-_])", name.strip(), flags=re.IGNORECASE)
    if match:
        return f"mot{match.group(1)}"
    return "mot15" if name.strip() in MOT15_SEQUENCES else None


def _class_column_ok(table: np.ndarray) -> np.ndarray:
    """``[N]`` bool: rows whose column 8 is a MOTChallenge class id."""
    if table.shape[1] < 9:
        return np.zeros(len(table), dtype=bool)
    classes = table[:, 7]
    return np.isin(classes, list(MOT_CLASSES))


def detect_release(table: np.ndarray, name: str | None = None) -> str:
    """The release of a ground-truth table ``[N, F]`` (F fields per row) of the sequence ``name``.

    A known sequence name decides (:func:`release_from_name`); else the contents do: 9 fields whose column 8
    holds MOTChallenge class ids (1-13) is the MOT16/17 layout (``"mot17"``), anything else (10 fields as in
    MOT15, whose columns 8-10 are world coordinates, or 7-8 fields) has no class column (``"mot15"``).
    An empty table without a known name is ``"mot17"`` (nothing to score either way).
    """
    named = release_from_name(name)
    if named is not None:
        return named
    if len(table) == 0:
        return "mot17"
    if table.shape[1] == 9 and _class_column_ok(table).all():
        return "mot17"
    return "mot15"


def read_gt(path: str | Path, release: str | None = None, *, name: str | None = None) -> GroundTruth:
    """Read and check a MOTChallenge ground-truth file.

    Args:
        path: the ``gt.txt`` file.
        release: ``"mot15"``, ``"mot16"``, ``"mot17"`` or ``"mot20"`` to force it; None (or ``"auto"``) decides
            from ``name`` and the contents (:func:`detect_release`).
        name: the sequence name (its folder or ``seqinfo.ini`` ``name``); default the folder above ``gt/``.

    Returns:
        The :class:`GroundTruth`.

    Raises:
        DatasetError: the file is missing or unreadable, or a line has the wrong number of fields, a non-number,
            a frame < 1, a non-integer or negative id, w or h <= 0, an id twice in one frame, or (MOT16+) a column
            8 that is not a class id; the message names the file and the line.
    """
    path = Path(path)
    if release == "auto":
        release = None
    if release is not None and release not in RELEASES:
        raise DatasetError(
            f"unknown MOTChallenge release {release!r}; choose from auto, {', '.join(RELEASES)}"
        )
    if name is None and path.parent.name == "gt":
        name = path.parent.parent.name
    values, lines = _parse(path, "ground-truth", _GT_FIELDS, _GT_LAYOUTS)
    widths = {len(row) for row in values}
    if len(widths) > 1:
        first = len(values[0])
        index = next(i for i, row in enumerate(values) if len(row) != first)
        raise DatasetError(
            f"{str(path)!r} line {lines[index]}: {len(values[index])} fields, but line {lines[0]} has {first} "
            "(every line of a ground-truth file has the same layout)"
        )
    table = np.asarray(values, dtype=np.float64).reshape(len(values), widths.pop() if widths else 9)
    _check_boxes(path, table, lines, min_id=0)
    chosen = release or detect_release(table, name)
    if chosen != "mot15" and len(table):
        if table.shape[1] < 9:
            raise DatasetError(
                f"{str(path)!r}: {chosen.upper()} ground truth has 9 fields per line "
                f"(frame,id,x,y,w,h,flag,class,visibility), this file has {table.shape[1]}; "
                "if it is MOT15-style (no class column), pass release mot15"
            )
        bad = np.flatnonzero(~_class_column_ok(table))
        if len(bad):
            index = int(bad[0])
            source = "the sequence name" if release is None else "the release asked for"
            raise DatasetError(
                f"{str(path)!r} line {lines[index]}: column 8 is {table[index, 7]:g}, not a MOTChallenge class "
                f"id (1-13) as {chosen.upper()} ground truth has ({source} says {chosen}); "
                "if columns 8-10 are MOT15 world coordinates, pass release mot15"
            )
    rows = np.ones((len(table), 9), dtype=np.float64)
    rows[:, :7] = table[:, :7]
    if chosen != "mot15":
        rows[:, 7:9] = table[:, 7:9]
    return GroundTruth(path=path, release=chosen, rows=rows)


def read_results(path: str | Path) -> np.ndarray:
    """Read and check a MOTChallenge tracker result file.

    Lines are ``frame,id,x,y,w,h[,conf[,...]]``: fields after the confidence are ignored and a missing
    confidence reads as 1. An empty file is a camera where nothing was tracked.

    Returns:
        ``[N, 7]`` float64 ``(frame, id, x, y, w, h, conf)`` in file order.

    Raises:
        DatasetError: the file is missing or unreadable, or a line has fewer than 6 or more than 10 fields, a
            non-number, a frame < 1, a non-integer or negative id, w or h <= 0, or an id twice in one frame; the
            message names the file and the line.
    """
    path = Path(path)
    values, lines = _parse(path, "tracker result", _RESULT_FIELDS, "frame,id,x,y,w,h,conf,-1,-1,-1")
    table = np.ones((len(values), 7), dtype=np.float64)
    for index, row in enumerate(values):
        table[index, : min(len(row), 7)] = row[:7]
    _check_boxes(path, table, lines, min_id=0)
    return table


def _checked_rows(rows: np.ndarray) -> np.ndarray:
    table = np.asarray(rows, dtype=np.float64)
    if table.ndim != 2 or table.shape[1] != 7:
        raise ValueError(f"result rows must be [N, 7] (frame, id, x, y, w, h, conf), got shape {table.shape}")
    if len(table) == 0:
        return table
    if not np.isfinite(table).all():
        raise ValueError("result rows must be finite numbers")
    frames, ids = table[:, 0], table[:, 1]
    if (frames < 1).any() or (frames != np.round(frames)).any():
        raise ValueError("result frames must be integers >= 1 (MOTChallenge frames are 1-based)")
    if (ids < 0).any() or (ids != np.round(ids)).any():
        raise ValueError("result ids must be integers >= 0")
    if (table[:, 4] <= 0).any() or (table[:, 5] <= 0).any():
        raise ValueError("result boxes must have w > 0 and h > 0")
    return table


def format_results(rows: np.ndarray) -> str:
    """MOTChallenge result text for ``rows``: ``frame,id,x,y,w,h,conf,-1,-1,-1`` per line.

    Args:
        rows: ``[N, 7]`` ``(frame, id, x, y, w, h, conf)``; frames 1-based.

    Returns:
        The lines sorted by frame then id, boxes with 2 decimals and the confidence with 4 (empty for N = 0).

    Raises:
        ValueError: ``rows`` is not ``[N, 7]``, or holds a frame < 1, a negative or non-integer id or frame, a
            w or h <= 0, or a non-finite number.
    """
    table = _checked_rows(rows)
    order = np.lexsort((table[:, 1], table[:, 0]))
    return "".join(
        f"{int(f)},{int(i)},{x:.2f},{y:.2f},{w:.2f},{h:.2f},{c:.4f},-1,-1,-1\n"
        for f, i, x, y, w, h, c in table[order]
    )


def write_results(path: str | Path, rows: np.ndarray) -> None:
    """Write :func:`format_results` to ``path`` atomically (temp file, fsync, rename): never half-written."""
    atomic_write_text(path, format_results(rows))
