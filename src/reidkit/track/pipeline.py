"""The whole video job: cameras -> detections -> per-camera tracks -> appearance -> re-linking -> global ids.

:func:`track_cameras` runs every camera through :func:`reidkit.track.camera.track_camera` (streamed, bounded
memory), links the tracklets of all cameras (:func:`reidkit.track.linking.link_tracklets`) and writes the run
folder (layout in :mod:`reidkit.track.records`): the MOTChallenge result of each camera with global ids,
``tracklets.sqlite``, ``identities.json``, thumbnails, ``run.json`` and, with ``render``, an annotated WebM per
camera. The run is built in a temporary folder beside ``out`` and swapped in when complete, so an interrupted
run leaves the previous one as it was, and re-running replaces it whole.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reidkit.errors import ConfigError, ReidkitError
from reidkit.track.appearance import AppearanceSettings
from reidkit.track.camera import CameraResult, track_camera
from reidkit.track.cameras import CameraInput
from reidkit.track.linking import LinkSettings, RelinkSettings, link_tracklets
from reidkit.track.records import Tracklet
from reidkit.track.switches import SwitchSettings
from reidkit.track.tracking import TrackerSettings
from reidkit.track.video import open_source

__all__ = ["DETECTORS", "DetectorSettings", "TrackOptions", "TrackSummary", "result_rows", "track_cameras"]

DETECTORS = ("hog", "openvino", "detections")
_DEFAULT_MIN_SCORE = {"hog": 0.0, "openvino": 0.5, "detections": -math.inf}


@dataclass(frozen=True)
class DetectorSettings:
    """Which detector finds the people, and its thresholds.

    Attributes:
        kind: ``hog`` (OpenCV, built in), ``openvino`` (the OMZ pedestrian detector, ``model`` = its .xml) or
            ``detections`` (each camera's MOTChallenge ``det.txt``).
        model: the OpenVINO IR .xml for ``openvino``.
        min_score: lowest score kept (default: 0 for HOG margins, 0.5 for OpenVINO, all for det.txt).
        min_height: lowest box height kept, in pixels.
        batch_size: frames per detector call.
    """

    kind: str = "detections"
    model: Path | None = None
    min_score: float | None = None
    min_height: float = 0.0
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.kind not in DETECTORS:
            raise ConfigError(f"detector must be one of {', '.join(DETECTORS)}, got {self.kind!r}")
        if self.kind == "openvino" and self.model is None:
            raise ConfigError("--detector openvino needs --detector-model (the IR .xml file)")
        if self.batch_size < 1:
            raise ConfigError(f"detector batch size must be >= 1, got {self.batch_size}")

    @property
    def score(self) -> float:
        return _DEFAULT_MIN_SCORE[self.kind] if self.min_score is None else float(self.min_score)

    def build_shared(self):
        """The image detector shared by all cameras, or None for per-camera detection files."""
        from reidkit.track import detect

        if self.kind == "hog":
            return detect.HogDetector(min_score=self.score, min_height=self.min_height)
        if self.kind == "openvino":
            return detect.OpenVinoPedestrianDetector(
                self.model, min_score=self.score, min_height=self.min_height, batch_size=self.batch_size
            )
        return None

    def for_camera(self, camera: CameraInput, shared):
        """The detector of one camera: the shared one, or that camera's detection file."""
        from reidkit.track.detect import MotDetections

        if shared is not None:
            return shared
        path = camera.detection_file()
        if path is None:
            raise ConfigError(
                f"camera {camera.name!r} ({camera.source}): --detector detections needs a det.txt for it "
                "(--detections, 'detections' in the cameras file, or <sequence>/det/det.txt)"
            )
        return MotDetections(path, min_score=self.score, min_height=self.min_height)


@dataclass(frozen=True)
class TrackOptions:
    """Every setting of a tracking run (each stage's own settings object; tracks the tracker reported on fewer
    than ``min_boxes`` frames are dropped as detector flicker)."""

    detector: DetectorSettings = field(default_factory=DetectorSettings)
    tracker: TrackerSettings = field(default_factory=TrackerSettings)
    appearance: AppearanceSettings = field(default_factory=AppearanceSettings)
    switches: SwitchSettings = field(default_factory=SwitchSettings)
    relink: RelinkSettings = field(default_factory=RelinkSettings)
    link: LinkSettings = field(default_factory=LinkSettings)
    min_boxes: int = 3
    render: bool = False


@dataclass
class TrackSummary:
    """What a run did: per camera results, the linked tracklets, and seconds per stage."""

    out: Path
    cameras: list[CameraResult]
    tracklets: list[Tracklet]
    seconds: dict[str, float]

    @property
    def frames(self) -> int:
        return sum(result.frames for result in self.cameras)

    @property
    def identities(self) -> int:
        return len({t.global_id for t in self.tracklets})

    def table(self) -> str:
        """Per camera: frames, tracklets, identities; then seconds and frames/s per stage."""
        lines = [f"{'camera':<16} {'frames':>7} {'tracklets':>9} {'ids':>5}"]
        for result in self.cameras:
            mine = [t for t in self.tracklets if t.camera == result.camera]
            ids = len({t.global_id for t in mine})
            lines.append(f"{result.camera:<16} {result.frames:>7} {len(mine):>9} {ids:>5}")
        lines.append(f"{'all':<16} {self.frames:>7} {len(self.tracklets):>9} {self.identities:>5}")
        lines.append("")
        lines.append(f"{'stage':<12} {'seconds':>8} {'frames/s':>9}")
        for stage, seconds in self.seconds.items():
            rate = self.frames / seconds if seconds > 0 else float("inf")
            lines.append(f"{stage:<12} {seconds:>8.2f} {rate:>9.1f}")
        return "\n".join(lines)


def result_rows(tracklets: list[Tracklet], camera: str) -> np.ndarray:
    """``[N, 7]`` MOTChallenge rows ``frame, global_id, x, y, w, h, score`` of one camera, sorted by frame, id."""
    parts = []
    for t in tracklets:
        if t.camera != camera:
            continue
        ids = np.full(len(t.frames), float(t.global_id))
        parts.append(np.column_stack([t.frames.astype(np.float64), ids, t.boxes, t.scores]))
    if not parts:
        return np.zeros((0, 7))
    rows = np.concatenate(parts)
    return rows[np.lexsort((rows[:, 1], rows[:, 0]))]


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ReidkitError(f"--out {str(out)!r} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "run.json").is_file():
        raise ReidkitError(
            f"--out {str(out)!r} is a non-empty folder that is not a tracking run (no run.json); "
            "refusing to replace it"
        )


def _swap_into_place(temp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rmdir(old)
        os.replace(out, old)
    os.replace(temp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _camera_info(camera: CameraInput, result: CameraResult, source, video: str | None):
    from reidkit.track.runfiles import CameraInfo

    return CameraInfo(
        name=camera.name,
        source=str(camera.source.resolve()),
        fps=float(result.fps),
        camera_start=float(camera.start),
        size=tuple(result.size),
        frames=int(result.frames),
        video=video,
    )


def track_cameras(
    cameras: list[CameraInput],
    embedder,
    options: TrackOptions,
    out: str | Path,
    *,
    progress: bool = False,
) -> TrackSummary:
    """Track every camera, link the tracklets, write the run folder ``out``; see the module docstring.

    Args:
        cameras: the cameras (unique names).
        embedder: any :class:`reidkit.embed.Embedder`, or None (no appearance: no re-linking or cross-camera
            linking, every tracklet keeps its own id).
        options: the settings of every stage.
        out: the run folder (created or replaced; refused when it is a non-empty folder that is not a run).
        progress: one progress bar per camera.

    Returns:
        the summary (per-camera results, linked tracklets, seconds per stage).
    """
    from reidkit.track.motfiles import write_results
    from reidkit.track.render import RENDER_SUFFIX, render_camera
    from reidkit.track.runfiles import RunInfo, write_run

    out = Path(out)
    _check_out(out)
    sources = [open_source(camera.source, camera=camera.name, fps=camera.fps) for camera in cameras]
    shared = options.detector.build_shared()
    detectors = [options.detector.for_camera(camera, shared) for camera in cameras]
    seconds: dict[str, float] = {}
    results: list[CameraResult] = []
    for camera, source, detector in zip(cameras, sources, detectors, strict=True):
        result = track_camera(
            source,
            detector,
            embedder,
            tracker=options.tracker,
            appearance=options.appearance,
            switches=options.switches,
            min_boxes=options.min_boxes,
            camera_start=camera.start,
            batch_frames=options.detector.batch_size,
            progress=progress,
        )
        results.append(result)
        for stage, spent in result.seconds.items():
            seconds[stage] = seconds.get(stage, 0.0) + spent
    tracklets = [t for result in results for t in result.tracklets]
    began = time.perf_counter()
    sizes = {result.camera: tuple(result.size) for result in results}
    link_tracklets(tracklets, options.relink, options.link, frame_sizes=sizes)
    seconds["link"] = time.perf_counter() - began

    out.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        began = time.perf_counter()
        infos = []
        for camera, source, result in zip(cameras, sources, results, strict=True):
            rows = result_rows(tracklets, camera.name)
            write_results(temp / f"{camera.name}.txt", rows)
            video = None
            if options.render:
                render_began = time.perf_counter()
                render_camera(source, rows, temp / f"{camera.name}{RENDER_SUFFIX}")
                seconds["render"] = seconds.get("render", 0.0) + time.perf_counter() - render_began
                video = f"{camera.name}{RENDER_SUFFIX}"
            elif camera.source.suffix.lower() in (".webm", ".mp4"):
                video = str(camera.source.resolve())
            infos.append(_camera_info(camera, result, source, video))
        info = RunInfo(
            cameras=infos,
            embedder=_embedder_info(embedder),
            settings=_settings_dict(options),
        )
        write_run(temp, info, tracklets)
        seconds["write"] = time.perf_counter() - began - seconds.get("render", 0.0)
        _swap_into_place(temp, out)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return TrackSummary(out=out, cameras=results, tracklets=tracklets, seconds=seconds)


def _embedder_info(embedder) -> dict:
    if embedder is None:
        return {"name": None, "fingerprint": None, "dim": None}
    return {"name": embedder.name, "fingerprint": embedder.fingerprint, "dim": int(embedder.dim)}


def _settings_dict(options: TrackOptions) -> dict:
    from dataclasses import asdict

    def plain(value):
        if isinstance(value, dict):
            return {(k if isinstance(k, str) else "->".join(map(str, k))): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        return value

    return {name: plain(asdict(getattr(options, name))) for name in ("detector", "tracker", "appearance", "switches", "relink", "link")} | {
        "min_boxes": options.min_boxes,
        "render": options.render,
    }
