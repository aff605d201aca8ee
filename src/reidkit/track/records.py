"""The records the video pipeline passes between its stages, and the layout of a tracking run folder.

Stages: frames -> :class:`~reidkit.track.detect.Detection` per frame -> per-camera tracker -> :class:`Tracklet`
(one tracker id in one camera: its boxes, and after the appearance stage its feature and best crop) ->
re-linking inside a camera (``person`` : a camera-level identity) -> cross-camera linking (``global_id``).

A tracking run folder (written by ``reidkit track``, read by ``reidkit index add --tracks`` and ``track-eval``)::

    RUN/run.json             RunInfo: format version, cameras (name, source, fps, start time, size,
                             frames), embedder name / fingerprint / dim, the settings used
    RUN/<camera>.txt         MOTChallenge result: frame,id,x,y,w,h,conf,-1,-1,-1 (1-based frames, global ids)
    RUN/tracklets.sqlite     table ``tracklets`` (see :data:`TRACKLET_COLUMNS`)
    RUN/identities.json      {"identities": [{"global_id", "cameras", "tracklets": [[camera, local_id]...],
                              "first_time", "last_time"}...]}
    RUN/thumbs/<camera>_<local_id>.jpg   the best crop of each tracklet
    RUN/<camera>.mp4         annotated video (only with --render)

Times: a frame ``i`` (1-based) of a camera is at ``camera_start + (i - 1) / fps`` seconds, where
``camera_start`` is the camera's start time (Unix seconds when known, else 0 for every camera).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["RUN_FORMAT_VERSION", "TRACKLET_COLUMNS", "Tracklet"]

RUN_FORMAT_VERSION = 1

#: columns of the ``tracklets`` table of ``tracklets.sqlite``: name -> SQLite type and meaning.
TRACKLET_COLUMNS: dict[str, str] = {
    "camera": "TEXT: camera name",
    "local_id": "INTEGER: the tracker's id in that camera",
    "person": "INTEGER: camera-level identity after re-linking inside the camera",
    "global_id": "INTEGER: identity across cameras (the id in the MOTChallenge files)",
    "first_frame": "INTEGER: first frame (1-based)",
    "last_frame": "INTEGER: last frame (1-based)",
    "start_time": "REAL: seconds, time of first_frame",
    "end_time": "REAL: seconds, time of last_frame",
    "boxes": "BLOB: float64 [N, 6] rows frame, x, y, w, h, score (little-endian)",
    "feature": "BLOB: float32 [D] L2-normalised tracklet feature (little-endian); NULL when no crop passed",
    "quality": "REAL: total quality weight of the crops that made the feature",
    "thumbnail": "TEXT: path of the best crop, relative to the run folder; NULL when none",
}


@dataclass
class Tracklet:
    """One tracker id in one camera.

    Attributes:
        camera: camera name.
        local_id: the tracker's id (unique in the camera).
        frames: ``[N]`` int64 frame numbers (1-based), strictly increasing.
        boxes: ``[N, 4]`` float64 ``(x, y, w, h)`` in pixels.
        scores: ``[N]`` float64 detector scores.
        fps: the camera's frames per second.
        camera_start: the camera's start time in seconds (0 when unknown).
        feature: ``[D]`` float32 L2-normalised appearance, or None before the appearance stage (or when no crop
            was good enough).
        quality: total quality weight of the crops behind ``feature``.
        thumbnail: ``[H, W, 3]`` uint8 RGB best crop, or None.
        person: camera-level identity after re-linking (None before).
        global_id: identity across cameras (None before).
    """

    camera: str
    local_id: int
    frames: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    fps: float
    camera_start: float = 0.0
    feature: np.ndarray | None = None
    quality: float = 0.0
    thumbnail: np.ndarray | None = field(default=None, repr=False)
    person: int | None = None
    global_id: int | None = None

    def __post_init__(self) -> None:
        self.frames = np.asarray(self.frames, dtype=np.int64).reshape(-1)
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        n = len(self.frames)
        if n == 0:
            raise ValueError(f"tracklet {self.camera}:{self.local_id} has no boxes")
        if len(self.boxes) != n or len(self.scores) != n:
            raise ValueError(
                f"tracklet {self.camera}:{self.local_id}: {n} frames but {len(self.boxes)} boxes and "
                f"{len(self.scores)} scores"
            )
        if n > 1 and not (np.diff(self.frames) > 0).all():
            raise ValueError(f"tracklet {self.camera}:{self.local_id}: frames must be strictly increasing")
        if self.fps <= 0:
            raise ValueError(f"tracklet {self.camera}:{self.local_id}: fps must be > 0, got {self.fps}")

    @property
    def key(self) -> tuple[str, int]:
        return (self.camera, self.local_id)

    @property
    def first_frame(self) -> int:
        return int(self.frames[0])

    @property
    def last_frame(self) -> int:
        return int(self.frames[-1])

    def time_of(self, frame: int | float) -> float:
        """Seconds of frame number ``frame`` (1-based) on the camera's clock."""
        return self.camera_start + (float(frame) - 1.0) / self.fps

    @property
    def start_time(self) -> float:
        return self.time_of(self.first_frame)

    @property
    def end_time(self) -> float:
        return self.time_of(self.last_frame)

    def overlaps(self, other: Tracklet) -> bool:
        """True when both are in the same camera and share at least one frame of their spans."""
        return (
            self.camera == other.camera
            and self.first_frame <= other.last_frame
            and other.first_frame <= self.last_frame
        )

    def rows(self) -> np.ndarray:
        """``[N, 6]`` float64 rows ``frame, x, y, w, h, score``."""
        return np.column_stack([self.frames.astype(np.float64), self.boxes, self.scores])
