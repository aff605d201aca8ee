"""One camera, streamed: frames -> detections (batched) -> tracker -> sampled crops -> tracklets with features.

:func:`track_camera` holds one batch of frames, the boxes of every track (a few numbers per box) and at most
``samples_per_track`` small crops per live track; the crops of a track are embedded, and dropped, once the
tracker has lost it for longer than its lost-track buffer, so memory does not grow with the video's length.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from reidkit.track.appearance import AppearanceSettings, CropSampler, box_quality, embed_tracks, summarise
from reidkit.track.records import Tracklet
from reidkit.track.switches import SwitchSettings, split_points
from reidkit.track.tracking import CameraTracker, TrackerSettings
from reidkit.track.video import Frame, FrameSource

__all__ = ["CameraResult", "track_camera"]

STAGES = ("decode", "detect", "track", "appearance")


@dataclass
class CameraResult:
    """What one camera produced.

    Attributes:
        camera: its name.
        tracklets: one per tracker id, boxes and (with an embedder) feature, quality and thumbnail filled.
        frames: frames read.
        size: ``(width, height)``.
        fps: frames per second.
        seconds: seconds spent per stage (:data:`STAGES`).
        peak_crops: the most crops held at once (the bounded-memory check).
    """

    camera: str
    tracklets: list[Tracklet]
    frames: int
    size: tuple[int, int]
    fps: float
    seconds: dict[str, float] = field(default_factory=dict)
    peak_crops: int = 0


def _batches(frames: Iterator[Frame], size: int, seconds: dict[str, float]) -> Iterator[list[Frame]]:
    batch: list[Frame] = []
    while True:
        began = time.perf_counter()
        frame = next(frames, None)
        seconds["decode"] += time.perf_counter() - began
        if frame is None:
            break
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Tracks:
    """Boxes per track id, and which tracks are finished."""

    def __init__(self) -> None:
        self.rows: dict[int, list[tuple[float, ...]]] = {}
        self.last_seen: dict[int, int] = {}

    def add(self, frame: int, track_id: int, box, score: float) -> None:
        self.rows.setdefault(track_id, []).append((frame, *box, score))
        self.last_seen[track_id] = frame

    def finished(self, frame: int, buffer: int) -> list[int]:
        return [t for t, seen in self.last_seen.items() if frame - seen > buffer + 1]  # one frame after the tracker drops it


def _parts(rows: np.ndarray, crops: list, embedded: np.ndarray, settings: SwitchSettings):
    """``(rows, crops, embeddings)`` of each part of a track after cutting it at identity switches."""
    if not crops:
        return [(rows, [], None)]
    crop_frames = np.array([c.frame for c in crops])
    cuts = split_points(
        rows[:, 0].astype(np.int64), rows[:, 1:5], crop_frames, embedded, np.array([c.quality for c in crops]), settings
    )
    edges = [-np.inf, *cuts, np.inf]
    parts = []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        keep = (rows[:, 0] >= low) & (rows[:, 0] < high)
        mine = (crop_frames >= low) & (crop_frames < high)
        parts.append((rows[keep], [c for c, m in zip(crops, mine, strict=True) if m], embedded[mine]))
    return [part for part in parts if len(part[0])]


def _tracklets(
    rows_by_track, features, source: FrameSource, camera_start: float, switches: SwitchSettings, min_boxes: int
):
    tracklets = []
    next_id = max(rows_by_track, default=0) + 1
    for track_id in sorted(rows_by_track):
        rows = np.asarray(rows_by_track[track_id], dtype=np.float64)
        if len(rows) < min_boxes:
            continue
        crops, embedded = features.get(track_id, ([], None))
        for n, (part, part_crops, part_features) in enumerate(_parts(rows, crops, embedded, switches)):
            feature, quality, thumbnail = summarise(part_crops, part_features) if part_crops else (None, 0.0, None)
            local_id = track_id if n == 0 else next_id
            next_id += n > 0
            tracklets.append(
                Tracklet(
                    camera=source.camera,
                    local_id=local_id,
                    frames=part[:, 0].astype(np.int64),
                    boxes=part[:, 1:5],
                    scores=part[:, 5],
                    fps=source.fps,
                    camera_start=camera_start,
                    feature=feature,
                    quality=quality,
                    thumbnail=thumbnail,
                )
            )
    return tracklets


def track_camera(
    source: FrameSource,
    detector,
    embedder=None,
    *,
    tracker: TrackerSettings | None = None,
    appearance: AppearanceSettings | None = None,
    switches: SwitchSettings | None = None,
    min_boxes: int = 1,
    camera_start: float = 0.0,
    batch_frames: int = 8,
    progress: bool = False,
) -> CameraResult:
    """Track one camera; see the module docstring.

    Args:
        source: the camera's frames.
        detector: any :class:`reidkit.track.detect.Detector` (called on ``batch_frames`` frames at a time).
        embedder: any :class:`reidkit.embed.Embedder`, or None for tracklets without appearance.
        tracker: the tracker (ByteTrack by default).
        appearance: crop sampling settings.
        switches: when a track is cut where the tracker swapped people (:mod:`reidkit.track.switches`).
        min_boxes: tracks the tracker reported on fewer frames are dropped (detector flicker).
        camera_start: the camera's start time, seconds.
        batch_frames: frames per detector call.
        progress: show a progress bar named after the camera.

    Returns:
        the camera's :class:`CameraResult`; a camera without detections gives no tracklets.
    """
    tracker = tracker or TrackerSettings()
    appearance = appearance or AppearanceSettings()
    seconds = dict.fromkeys(STAGES, 0.0)
    state = CameraTracker(tracker, source.fps)
    sampler = CropSampler(appearance, tuple(embedder.input_size) if embedder is not None else (256, 128))
    tracks = _Tracks()
    features: dict[int, tuple[list, np.ndarray]] = {}
    pending: dict[int, list] = {}
    peak, frames = 0, 0

    def flush(force: bool) -> None:
        if embedder is None or not pending:
            return
        if force or sum(len(c) for c in pending.values()) >= appearance.embed_batch:
            features.update(embed_tracks(pending, embedder, appearance.embed_batch))
            pending.clear()

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=source.num_frames, desc=source.camera, unit="frame")
    try:
        for batch in _batches(iter(source), batch_frames, seconds):
            began = time.perf_counter()
            detections = detector.detect(batch)
            seconds["detect"] += time.perf_counter() - began
            for frame, found in zip(batch, detections, strict=True):
                began = time.perf_counter()
                tracked = state.update(frame, found)
                for box in tracked:
                    tracks.add(frame.index, box.track_id, box.box, box.score)
                seconds["track"] += time.perf_counter() - began
                began = time.perf_counter()
                if embedder is not None and tracked:
                    quality = box_quality([b.box for b in tracked], source.size, appearance)
                    for box, q in zip(tracked, quality, strict=True):
                        sampler.offer(box.track_id, frame.index, frame.image, box.box, float(q))
                for track_id in tracks.finished(frame.index, state.lost_buffer):
                    del tracks.last_seen[track_id]
                    pending[track_id] = sampler.pop(track_id)
                peak = max(peak, sampler.held + sum(len(c) for c in pending.values()))
                flush(False)
                seconds["appearance"] += time.perf_counter() - began
            frames += len(batch)
            if bar is not None:
                bar.update(len(batch))
        began = time.perf_counter()
        for track_id in list(tracks.last_seen):
            pending[track_id] = sampler.pop(track_id)
        flush(True)
        seconds["appearance"] += time.perf_counter() - began
    finally:
        if bar is not None:
            bar.close()
    tracklets = _tracklets(tracks.rows, features, source, camera_start, switches or SwitchSettings(), min_boxes)
    return CameraResult(
        camera=source.camera,
        tracklets=tracklets,
        frames=frames,
        size=tuple(source.size),
        fps=float(source.fps),
        seconds=seconds,
        peak_crops=peak,
    )
