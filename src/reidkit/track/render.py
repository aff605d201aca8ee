"""Annotated video of a tracked camera: boxes, global ids and trails drawn on every frame.

The output is WebM (VP8), the format browsers play without proprietary codecs, so the same file is the one the
search page plays for a segment. The video is written beside the target and renamed into place when complete:
an interrupted render never leaves a truncated file under the final name.
"""

from __future__ import annotations

import os
from collections import defaultdict, deque
from pathlib import Path

import numpy as np

from reidkit.errors import ReidkitError
from reidkit.track.video import FrameSource

__all__ = ["RENDER_SUFFIX", "colour_of", "draw_frame", "render_camera"]

RENDER_SUFFIX = ".webm"
_FOURCC = "VP80"


def colour_of(identity: int) -> tuple[int, int, int]:
    """A stable, well-spread BGR colour for an identity (golden-ratio hue steps)."""
    import colorsys

    hue = (identity * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(b * 255), int(g * 255), int(r * 255)


def draw_frame(
    image: np.ndarray, rows: np.ndarray, trails: dict[int, deque] | None = None, *, thickness: int = 2
) -> np.ndarray:
    """Draw one frame's boxes (and trails) on a copy of ``image``.

    Args:
        image: ``[H, W, 3]`` uint8 BGR frame.
        rows: ``[N, 6+]`` rows ``frame, id, x, y, w, h, ...`` of this frame.
        trails: id -> recent foot points ``(x, y)``, already updated with this frame's boxes; drawn as lines.
        thickness: line width in pixels.

    Returns:
        the annotated ``[H, W, 3]`` uint8 BGR frame.
    """
    import cv2

    out = image.copy()
    for points_id, points in (trails or {}).items():
        if len(points) > 1:
            pts = np.asarray(points, dtype=np.int32).reshape(-1, 1, 2)
            cv2.polylines(out, [pts], False, colour_of(points_id), max(1, thickness - 1), cv2.LINE_AA)
    for row in rows:
        identity = int(row[1])
        x, y, w, h = (int(round(v)) for v in row[2:6])
        colour = colour_of(identity)
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, thickness)
        label = str(identity)
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        top = max(0, y - th - base - 2)
        cv2.rectangle(out, (x, top), (x + tw + 4, top + th + base + 2), colour, -1)
        cv2.putText(out, label, (x + 2, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def _rows_by_frame(rows: np.ndarray) -> dict[int, np.ndarray]:
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, rows.shape[1] if rows.ndim == 2 else 7)
    grouped: dict[int, list[np.ndarray]] = defaultdict(list)
    for row in rows:
        grouped[int(row[0])].append(row)
    return {frame: np.stack(items) for frame, items in grouped.items()}


def render_camera(source: FrameSource, rows: np.ndarray, out: str | Path, *, trail: int = 20) -> Path:
    """Write ``out`` (``.webm``): every frame of ``source`` with the result ``rows`` drawn on it.

    Args:
        source: the camera's frames.
        rows: ``[N, 6+]`` result rows ``frame, id, x, y, w, h, ...`` (1-based frames, the ids to show).
        out: the video file to write; must end in ``.webm``.
        trail: how many recent foot points of each id are drawn as its trail (0: none).

    Returns:
        ``out`` as a Path.

    Raises:
        ReidkitError: ``out`` does not end in ``.webm`` or OpenCV cannot write a VP8 video.
    """
    import cv2

    out = Path(out)
    if out.suffix != RENDER_SUFFIX:
        raise ReidkitError(f"annotated video {str(out)!r} must end in {RENDER_SUFFIX} (VP8 WebM)")
    temp = out.with_name(f".{out.stem}.partial{RENDER_SUFFIX}")
    writer = cv2.VideoWriter(str(temp), cv2.VideoWriter_fourcc(*_FOURCC), float(source.fps), source.size)
    if not writer.isOpened():
        raise ReidkitError(f"OpenCV cannot write a VP8 WebM video to {str(temp)!r}")
    by_frame = _rows_by_frame(np.asarray(rows)) if len(rows) else {}
    trails: dict[int, deque] = {}
    last_seen: dict[int, int] = {}
    empty = np.zeros((0, 6))
    try:
        for frame in source:
            here = by_frame.get(frame.index, empty)
            if trail:
                for row in here:
                    points = trails.setdefault(int(row[1]), deque(maxlen=trail))
                    points.append((row[2] + row[4] / 2, row[3] + row[5]))
                    last_seen[int(row[1])] = frame.index
                for gone in [i for i, seen in last_seen.items() if frame.index - seen > trail]:
                    del trails[gone], last_seen[gone]
            writer.write(draw_frame(frame.image, here, trails if trail else None))
    except BaseException:
        writer.release()
        temp.unlink(missing_ok=True)
        raise
    writer.release()
    os.replace(temp, out)
    return out
