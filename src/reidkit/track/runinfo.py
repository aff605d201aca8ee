"""The records of a run folder's ``run.json``: :class:`CameraInfo` per camera and the whole :class:`RunInfo`.

Read and written by :mod:`reidkit.track.runfiles`; every check raises :class:`RunFileError` naming the file
and the field at fault.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reidkit.errors import ReidkitError
from reidkit.track.records import RUN_FORMAT_VERSION

__all__ = ["RUN_NAME", "CameraInfo", "RunFileError", "RunInfo"]

RUN_NAME = "run.json"


class RunFileError(ReidkitError, ValueError):
    """A tracking run folder that is missing, malformed or inconsistent (the message names file and field)."""


@dataclass(frozen=True)
class CameraInfo:
    """One camera of a run.

    Attributes:
        name: camera name (unique in the run).
        source: the video file or image folder it was read from.
        fps: frames per second (> 0).
        camera_start: start time in seconds: Unix seconds when known, else 0.
        size: ``(width, height)`` of its frames in pixels.
        frames: number of frames read.
        video: a browser-playable video of this camera (WebM): a path relative to the run folder (the
            annotated video ``<camera>.webm`` of ``track --render``), or an absolute path; None when there is none.
    """

    name: str
    source: str
    fps: float
    camera_start: float = 0.0
    size: tuple[int, int] = (0, 0)
    frames: int = 0
    video: str | None = None

    @property
    def has_clock(self) -> bool:
        """True when ``camera_start`` is a real clock (Unix seconds), False when unknown (0)."""
        return self.camera_start != 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "fps": self.fps,
            "camera_start": self.camera_start,
            "size": list(self.size),
            "frames": self.frames,
            "video": self.video,
        }

    @classmethod
    def from_json(cls, value: Any, where: str) -> CameraInfo:
        """Parse one camera entry; errors name ``where`` (e.g. ``run.json: cameras[1]``) and the field."""
        if not isinstance(value, dict):
            raise RunFileError(f"{where} must be an object, got {type(value).__name__}")
        missing = [key for key in ("name", "source", "fps") if key not in value]
        if missing:
            raise RunFileError(f"{where} lacks {missing}")
        camera = cls(
            name=_string(value["name"], f"{where}.name"),
            source=_string(value["source"], f"{where}.source"),
            fps=_number(value["fps"], f"{where}.fps"),
            camera_start=_number(value.get("camera_start", 0.0), f"{where}.camera_start"),
            size=_size(value.get("size", [0, 0]), f"{where}.size"),
            frames=_count(value.get("frames", 0), f"{where}.frames"),
            video=None if value.get("video") is None else _string(value["video"], f"{where}.video"),
        )
        camera.check(where)
        return camera

    def check(self, where: str) -> None:
        """Raise :class:`RunFileError` naming ``where`` and the field when a value is out of range."""
        if not self.name:
            raise RunFileError(f"{where}.name must not be empty")
        if not self.fps > 0:
            raise RunFileError(f"{where}.fps must be > 0, got {self.fps}")
        if self.video is not None and not Path(self.video).is_absolute():
            inside_run(self.video, f"{where}.video")

    def video_path(self, run_dir: Path) -> Path | None:
        """The playable video as an absolute path (relative ones are in ``run_dir``), or None."""
        if self.video is None:
            return None
        path = Path(self.video)
        return path if path.is_absolute() else run_dir / path


@dataclass(frozen=True)
class RunInfo:
    """What ``run.json`` holds.

    Attributes:
        cameras: the cameras, in order (names unique).
        embedder: ``{"name", "fingerprint", "dim"}`` of the model that made the tracklet features; all three
            None for a run tracked without an embedder (its tracklets have no feature).
        settings: the settings the run used (any JSON).
        format_version: :data:`reidkit.track.records.RUN_FORMAT_VERSION`.
    """

    cameras: Sequence[CameraInfo]
    embedder: Mapping[str, Any]
    settings: Mapping[str, Any] = field(default_factory=dict)
    format_version: int = RUN_FORMAT_VERSION

    def camera(self, name: str) -> CameraInfo:
        """The camera called ``name``.

        Raises:
            KeyError: no such camera.
        """
        for camera in self.cameras:
            if camera.name == name:
                return camera
        raise KeyError(name)

    @property
    def dim(self) -> int | None:
        """The feature dimension, or None for a run without an embedder."""
        dim = self.embedder["dim"]
        return None if dim is None else int(dim)

    @property
    def fingerprint(self) -> str | None:
        """The embedder's fingerprint, or None for a run without an embedder."""
        fingerprint = self.embedder["fingerprint"]
        return None if fingerprint is None else str(fingerprint)

    def check(self, where: str = RUN_NAME) -> None:
        """Raise :class:`RunFileError` naming ``where`` and the field when something is malformed."""
        if self.format_version != RUN_FORMAT_VERSION:
            raise RunFileError(
                f"{where}: format_version is {self.format_version!r}; this reidkit reads version "
                f"{RUN_FORMAT_VERSION} (re-run `reidkit track` to rewrite the run)"
            )
        names = [camera.name for camera in self.cameras]
        if len(set(names)) != len(names):
            raise RunFileError(f"{where}: camera names must be unique, got {names}")
        for position, camera in enumerate(self.cameras):
            camera.check(f"{where}: cameras[{position}]")
        embedder = self.embedder
        if not isinstance(embedder, Mapping) or {"name", "fingerprint", "dim"} - set(embedder):
            raise RunFileError(f"{where}: embedder must be an object with name, fingerprint and dim")
        values = [embedder[key] for key in ("name", "fingerprint", "dim")]
        if values != [None, None, None]:
            _string(embedder["name"], f"{where}: embedder.name")
            _string(embedder["fingerprint"], f"{where}: embedder.fingerprint")
            if _count(embedder["dim"], f"{where}: embedder.dim") < 1:
                raise RunFileError(f"{where}: embedder.dim must be >= 1, got {embedder['dim']}")
        try:
            json.dumps(dict(self.settings))
        except (TypeError, ValueError) as error:
            raise RunFileError(f"{where}: settings are not JSON-serialisable ({error})") from None

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "cameras": [camera.to_json() for camera in self.cameras],
            "embedder": {key: self.embedder[key] for key in ("name", "fingerprint", "dim")},
            "settings": dict(self.settings),
        }

    @classmethod
    def from_json(cls, value: Any, where: str = RUN_NAME) -> RunInfo:
        if not isinstance(value, dict):
            raise RunFileError(f"{where} must hold a JSON object, got {type(value).__name__}")
        for key in ("format_version", "cameras", "embedder"):
            if key not in value:
                raise RunFileError(f"{where} lacks {key!r}")
        if value["format_version"] != RUN_FORMAT_VERSION:
            raise RunFileError(
                f"{where}: format_version is {value['format_version']!r}; this reidkit reads version "
                f"{RUN_FORMAT_VERSION} (re-run `reidkit track` to rewrite the run)"
            )
        if not isinstance(value["cameras"], list):
            raise RunFileError(f"{where}: cameras must be a list")
        settings = value.get("settings", {})
        if not isinstance(settings, dict):
            raise RunFileError(f"{where}: settings must be an object")
        info = cls(
            cameras=tuple(
                CameraInfo.from_json(entry, f"{where}: cameras[{n}]")
                for n, entry in enumerate(value["cameras"])
            ),
            embedder=value["embedder"],
            settings=settings,
            format_version=value["format_version"],
        )
        info.check(where)
        return info


# ---------------------------------------------------------------------------------------------- checks
def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise RunFileError(f"{where} must be a string, got {value!r}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RunFileError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RunFileError(f"{where} must be an integer >= 0, got {value!r}")
    return value


def _size(value: Any, where: str) -> tuple[int, int]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise RunFileError(f"{where} must be [width, height], got {value!r}")
    return (_count(value[0], f"{where}[0]"), _count(value[1], f"{where}[1]"))


def inside_run(value: str, where: str) -> str:
    """``value`` when it is a relative path staying inside the run folder.

    Raises:
        RunFileError: an absolute path, or one with ``..``; the message starts with ``where``.
    """
    path = Path(value)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise RunFileError(f"{where} must be a path inside the run folder (relative, no '..'), got {value!r}")
    return value
