"""Per-camera tracking with the ``trackers`` library (Apache-2.0): ByteTrack, OC-SORT, BoT-SORT, SORT.

reidkit writes no Kalman filter and no assignment of its own: :class:`TrackerSettings` names a tracker of the
library and its constructor parameters (checked against the constructor's signature), and
:class:`CameraTracker` only converts reidkit's :class:`~reidkit.track.detect.Detection` records to and from
``supervision.Detections``. The boxes reported for a track are the detector's boxes the tracker matched in that
frame; tracks the tracker has not confirmed yet (``tracker_id == -1``) are not reported.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from reidkit.errors import ConfigError
from reidkit.track.detect import Detection
from reidkit.track.video import Frame

__all__ = ["TRACKER_NAMES", "CameraTracker", "TrackedBox", "TrackerSettings"]

#: reidkit name -> class name in the ``trackers`` package
_CLASSES = {
    "bytetrack": "ByteTrackTracker",
    "ocsort": "OCSORTTracker",
    "botsort": "BoTSORTTracker",
    "sort": "SORTTracker",
}
TRACKER_NAMES = tuple(_CLASSES)
_SCALARS = (bool, int, float, str)


def _tracker_class(name: str):
    if name not in _CLASSES:
        raise ConfigError(f"tracker must be one of {', '.join(TRACKER_NAMES)}, got {name!r}")
    try:
        import trackers
    except ImportError as error:
        raise ConfigError("per-camera tracking needs the trackers library: pip install 'reidkit[track]'") from error
    return getattr(trackers, _CLASSES[name])


def tracker_parameters(name: str) -> dict[str, object]:
    """The tunable constructor parameters of tracker ``name`` and their defaults (``frame_rate`` excluded)."""
    signature = inspect.signature(_tracker_class(name).__init__)
    return {
        key: p.default
        for key, p in signature.parameters.items()
        if key not in ("self", "frame_rate") and isinstance(p.default, _SCALARS)
    }


def _coerce(tracker: str, key: str, value: object, default: object) -> object:
    """``value`` as the type of the parameter's default (an int may be given as 2.0), else an error."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = number and float(value).is_integer()
        value = int(value) if ok else value
    elif isinstance(default, float):
        ok = number
        value = float(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(
            f"tracker {tracker} parameter {key!r} must be a {type(default).__name__} (default {default!r}), "
            f"got {value!r}"
        )
    return value


@dataclass(frozen=True)
class TrackerSettings:
    """A tracker of the ``trackers`` library and its constructor parameters.

    Attributes:
        name: one of :data:`TRACKER_NAMES` (ByteTrack by default).
        params: constructor keywords, e.g. ``lost_track_buffer``, ``track_activation_threshold``,
            ``minimum_consecutive_frames``, ``minimum_iou_threshold``, ``high_conf_det_threshold``,
            ``enable_cmc`` (BoT-SORT); ``frame_rate`` is always the camera's.
    """

    name: str = "bytetrack"
    params: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        allowed = tracker_parameters(self.name)
        params = dict(self.params)
        for key, value in params.items():
            if key not in allowed:
                raise ConfigError(
                    f"tracker {self.name} has no parameter {key!r}; its parameters are: {', '.join(sorted(allowed))}"
                )
            params[key] = _coerce(self.name, key, value, allowed[key])
        object.__setattr__(self, "params", params)

    @classmethod
    def from_strings(cls, name: str, pairs: list[str]) -> TrackerSettings:
        """Settings from ``["key=value", ...]`` (the CLI's ``--tracker-param``); values are read as YAML."""
        import yaml

        params = {}
        for pair in pairs:
            if "=" not in pair:
                raise ConfigError(f"--tracker-param {pair!r} must look like key=value")
            key, value = pair.split("=", 1)
            params[key.strip()] = yaml.safe_load(value)
        return cls(name=name, params=params)

    def build(self, fps: float):
        """A fresh tracker of this kind for a camera at ``fps`` frames per second."""
        return _tracker_class(self.name)(frame_rate=float(fps), **self.params)


@dataclass(frozen=True)
class TrackedBox:
    """One confirmed track's box in one frame: the tracker id (>= 1, unique in the camera), box and score."""

    track_id: int
    box: tuple[float, float, float, float]
    score: float


class CameraTracker:
    """One camera's tracker: reidkit detections in, confirmed tracks out.

    Args:
        settings: which tracker and its parameters.
        fps: the camera's frame rate.
    """

    def __init__(self, settings: TrackerSettings, fps: float) -> None:
        import supervision

        self._supervision = supervision
        self.settings = settings
        self._tracker = settings.build(fps)
        self._uses_frame = settings.name == "botsort"

    @property
    def lost_buffer(self) -> int:
        """Frames a lost track is kept before the tracker forgets it (the tracker's own, fps-scaled count)."""
        return int(self._tracker.maximum_frames_without_update)

    def update(self, frame: Frame, detections: list[Detection]) -> list[TrackedBox]:
        """Feed one frame's detections; the confirmed tracks of that frame."""
        boxes = np.asarray([d.box for d in detections], dtype=np.float64).reshape(-1, 4)
        xyxy = np.column_stack([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]]) if len(boxes) else np.zeros((0, 4))
        found = self._supervision.Detections(
            xyxy=xyxy.astype(np.float32),
            confidence=np.asarray([d.score for d in detections], dtype=np.float32),
            class_id=np.zeros(len(detections), dtype=int),
        )
        if self._uses_frame:
            tracked = self._tracker.update(found, frame=frame.image)
        else:
            tracked = self._tracker.update(found)
        out = []
        ids = tracked.tracker_id if tracked.tracker_id is not None else np.full(len(tracked), -1)
        scores = tracked.confidence if tracked.confidence is not None else np.ones(len(tracked))
        for (x0, y0, x1, y1), track_id, score in zip(tracked.xyxy, ids, scores, strict=True):
            if int(track_id) < 0:
                continue
            out.append(TrackedBox(int(track_id) + 1, (float(x0), float(y0), float(x1 - x0), float(y1 - y0)), float(score)))
        return out
