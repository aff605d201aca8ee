"""Which cameras a tracking run reads: video files, MOTChallenge sequence folders, a folder of them, or a YAML file.

A camera is one video file or one MOTChallenge sequence folder (``seqinfo.ini`` + ``img1/``). Its name defaults
to the file stem / folder name, its frame rate to the container's / ``seqinfo.ini``'s, its start time to 0
(all cameras start together). A YAML file names everything explicitly and may add transit windows::

    cameras:
      - name: lobby                       # default: the file stem
        source: videos/lobby.mp4          # relative to the YAML file
        fps: 25                           # default: from the file
        start: 2026-12-01T10:00:00Z       # seconds or ISO-8601; default 0
        detections: det/lobby.txt         # MOTChallenge det.txt (for --detector detections)
      - source: videos/street.mp4
    transit:                              # optional: seconds from leaving one camera to entering the other
      - [lobby, street, 5, 60]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reidkit.errors import ConfigError
from reidkit.index.items import to_timestamp

__all__ = ["VIDEO_SUFFIXES", "CameraInput", "cameras_from_folder", "cameras_from_paths", "cameras_from_yaml"]

VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v")


@dataclass(frozen=True)
class CameraInput:
    """One camera of a run.

    Attributes:
        source: the video file or sequence folder.
        name: camera name (unique in the run).
        fps: frames per second, or None to read it from the source.
        start: the camera's start time in seconds (Unix seconds when known; 0 = all cameras start together).
        detections: a MOTChallenge ``det.txt`` for this camera, or None (the sequence's ``det/det.txt`` is used
            by the precomputed-detections detector when it exists).
    """

    source: Path
    name: str
    fps: float | None = None
    start: float = 0.0
    detections: Path | None = None

    def detection_file(self) -> Path | None:
        """The precomputed detections: the given file, else ``<sequence>/det/det.txt`` when it exists."""
        if self.detections is not None:
            return self.detections
        default = self.source / "det" / "det.txt"
        return default if self.source.is_dir() and default.is_file() else None


def _check_unique(cameras: list[CameraInput], where: str) -> list[CameraInput]:
    if not cameras:
        raise ConfigError(f"{where}: no camera given")
    seen: dict[str, Path] = {}
    for camera in cameras:
        if not camera.name or "/" in camera.name or camera.name.startswith("."):
            raise ConfigError(f"{where}: camera name {camera.name!r} must be a plain file name")
        if camera.name in seen:
            raise ConfigError(
                f"{where}: two cameras are named {camera.name!r} ({seen[camera.name]} and {camera.source}); "
                "name them in a cameras YAML file"
            )
        seen[camera.name] = camera.source
    return cameras


def _start(value, where: str) -> float:
    if value is None:
        return 0.0
    try:
        return to_timestamp(value)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: start {error}") from None


def cameras_from_paths(
    paths: list[str | Path],
    *,
    fps: float | None = None,
    start: float | str | None = None,
    detections: list[str | Path] | None = None,
) -> list[CameraInput]:
    """One camera per path (named by its stem); ``fps`` / ``start`` apply to all, ``detections`` pair up."""
    if detections is not None and len(detections) != len(paths):
        raise ConfigError(f"give one --detections file per camera: {len(paths)} cameras, {len(detections)} files")
    cameras = [
        CameraInput(
            source=Path(path),
            name=Path(path).name if Path(path).is_dir() else Path(path).stem,
            fps=fps,
            start=_start(start, "--start-time"),
            detections=Path(detections[i]) if detections is not None else None,
        )
        for i, path in enumerate(paths)
    ]
    return _check_unique(cameras, "cameras")


def cameras_from_folder(folder: str | Path, *, fps: float | None = None, start=None) -> list[CameraInput]:
    """Every video file and sequence folder (holding ``seqinfo.ini``) directly inside ``folder``, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"--videos {str(folder)!r} is not a folder")
    found = sorted(
        path
        for path in folder.iterdir()
        if (path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES)
        or (path.is_dir() and (path / "seqinfo.ini").is_file())
    )
    if not found:
        raise ConfigError(
            f"--videos {str(folder)!r} holds no video file ({', '.join(VIDEO_SUFFIXES)}) and no sequence "
            "folder with a seqinfo.ini"
        )
    return cameras_from_paths(found, fps=fps, start=start)


def _transit(rows, where: str) -> dict[tuple[str, str], tuple[float, float]]:
    windows: dict[tuple[str, str], tuple[float, float]] = {}
    if rows is None:
        return windows
    if not isinstance(rows, list):
        raise ConfigError(f"{where}: 'transit' must be a list of [camera_a, camera_b, min_s, max_s]")
    for n, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) == 4):
            raise ConfigError(f"{where}: transit[{n}] must be [camera_a, camera_b, min_s, max_s], got {row!r}")
        a, b, low, high = row
        try:
            low, high = float(low), float(high)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: transit[{n}] min_s and max_s must be numbers, got {row!r}") from None
        if not 0 <= low <= high:
            raise ConfigError(f"{where}: transit[{n}] needs 0 <= min_s <= max_s, got {low}, {high}")
        windows[(str(a), str(b))] = (low, high)
    return windows


def cameras_from_yaml(path: str | Path) -> tuple[list[CameraInput], dict[tuple[str, str], tuple[float, float]]]:
    """The cameras and transit windows of a cameras YAML file (see the module docstring)."""
    import yaml

    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise ConfigError(f"cameras file {where!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"cameras file {where!r} is not valid YAML: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("cameras"), list):
        raise ConfigError(f"cameras file {where!r} must be a mapping with a 'cameras' list")
    unknown = set(data) - {"cameras", "transit"}
    if unknown:
        raise ConfigError(f"cameras file {where!r}: unknown keys {sorted(unknown)}; expected cameras, transit")
    cameras = []
    for n, entry in enumerate(data["cameras"]):
        here = f"{where} cameras[{n}]"
        if not isinstance(entry, dict) or "source" not in entry:
            raise ConfigError(f"{here}: must be a mapping with at least 'source'")
        bad = set(entry) - {"name", "source", "fps", "start", "detections"}
        if bad:
            raise ConfigError(f"{here}: unknown keys {sorted(bad)}; expected name, source, fps, start, detections")
        source = path.parent / str(entry["source"])
        fps = entry.get("fps")
        if fps is not None and not (isinstance(fps, (int, float)) and fps > 0):
            raise ConfigError(f"{here}: fps must be a positive number, got {fps!r}")
        detections = entry.get("detections")
        cameras.append(
            CameraInput(
                source=source,
                name=str(entry.get("name") or (source.name if source.is_dir() else source.stem)),
                fps=None if fps is None else float(fps),
                start=_start(entry.get("start"), here),
                detections=None if detections is None else path.parent / str(detections),
            )
        )
    cameras = _check_unique(cameras, where)
    transit = _transit(data.get("transit"), where)
    names = {camera.name for camera in cameras}
    for a, b in transit:
        for name in (a, b):
            if name not in names:
                raise ConfigError(f"{where}: transit names camera {name!r}, which is not in 'cameras'")
    return cameras, transit
