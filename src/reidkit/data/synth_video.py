"""Synthetic multi-camera video with ground truth: reidkit's synthetic pedestrians walking through fixed cameras.

Every identity keeps one look (built as :mod:`reidkit.data.synth` builds them, at difficulty ``easy``: every
person dressed in their own colours) and follows one itinerary over time: it walks across a camera from one
side edge to the other (sometimes on a diagonal, sometimes pausing), then either comes back into the same
camera a few seconds later from the side it left, or reappears in another camera after that pair's transit
time (3..14 s, one per camera pair, with +-15 % jitter per trip). Some people are already walking at the first
frame. People walk past and in front of each other; nearer people (lower in the frame) are drawn over farther
ones and are bigger.

Output (``generate_video``), MOTChallenge layout, one sequence per camera ``c1`` .. ``cC``::

    OUT/c1/seqinfo.ini       [Sequence] name, imDir=img1, frameRate, seqLength, imWidth, imHeight, imExt=.jpg
    OUT/c1/img1/000001.jpg   the frames
    OUT/c1/gt/gt.txt         frame,id,x,y,w,h,1,1,visibility (MOT16/17; 1-based frames, global ids, the whole
                             person box, which may extend past the frame; visibility after occlusion and
                             frame cut, a row for every frame in which the box overlaps the frame)
    OUT/c1/det/det.txt       frame,-1,x,y,w,h,conf,-1,-1,-1: a simulated detector (jittered boxes clipped to
                             the frame, misses that grow below visibility 0.4, no detection below 0.1, a few
                             false positives)
    OUT/c1.avi               the same frames as an MJPG video (only with ``video=True``)
    OUT/meta.json            parameters, cameras (start time 0, fps), transit times, per-id visits

The bytes depend only on the arguments. The folder is built beside ``OUT`` and renamed into place when complete.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from reidkit.data import _synth_draw as draw
from reidkit.data._synth_scene import (
    CameraScene,
    Figure,
    Placed,
    Walk,
    compose,
    make_scene,
    simulate_detections,
    walk_across,
)
from reidkit.data.synth import (
    _LEVELS,
    OutputExistsError,
    _check_output,
    _group_colours,
    _look,
    _member_codes,
    _rng,
    _staged_output,
)
from reidkit.errors import ConfigError, ReidkitError

__all__ = ["OutputExistsError", "generate_video"]

FORMAT_VERSION = 1
JPEG_QUALITY = 90
MIN_SIZE = (64, 48)
TRANSIT_RANGE = (3.0, 14.0)  # seconds between leaving one camera and entering another
REENTRY_GAP = (1.5, 5.0)  # seconds out of view before coming back into the same camera
REENTRY_PROBABILITY = 0.35

# stream tags, apart from those of reidkit.data.synth
_TAG_LOOK, _TAG_CAMERA, _TAG_SCENE, _TAG_TRANSIT, _TAG_PLAN, _TAG_DETECT = range(101, 107)


@dataclass(frozen=True)
class _Visit:
    """One pass of one person through one camera."""

    pid: int
    cam: int
    kind: str  # "start" (the first one), "reentry" (same camera as before) or "transit" (another camera)
    walk: Walk


# ------------------------------------------------------------------------------------------- identities
def _make_looks(seed: int, ids: int) -> dict[int, draw.Look]:
    """One look per pid 1..ids; a new draw while the (top, bottom) colour pair is taken and a free one is left."""
    looks: dict[int, draw.Look] = {}
    taken: set[tuple[int, int]] = set()
    pairs = len(draw.CLOTHING_COLOURS) ** 2
    for pid in range(1, ids + 1):
        for attempt in range(50):
            rng = _rng(seed, _TAG_LOOK, pid, attempt)
            colours = _group_colours(rng)
            pair = (colours["top_colour"], colours["bottom_colour"])
            if pair not in taken or len(taken) >= pairs // 2:
                break
        taken.add(pair)
        looks[pid] = _look(_member_codes(rng, colours, []), colours["jitter"], rng)
    return looks


# ------------------------------------------------------------------------------------------- itineraries
def _transit_times(seed: int, cams: int) -> np.ndarray:
    """``[C, C]`` symmetric seconds from leaving camera a to entering camera b (0 on the diagonal)."""
    rng = _rng(seed, _TAG_TRANSIT)
    times = np.zeros((cams, cams))
    for a in range(cams):
        for b in range(a + 1, cams):
            times[a, b] = times[b, a] = round(float(rng.uniform(*TRANSIT_RANGE)), 2)
    return times


def _plan(
    seed: int,
    looks: dict[int, draw.Look],
    scenes: list[CameraScene],
    fps: float,
    length: int,
    transit: np.ndarray,
) -> list[_Visit]:
    """Every person's visits, from before the first frame until after the last."""
    visits: list[_Visit] = []
    cams = len(scenes)
    for pid, look in looks.items():
        rng = _rng(seed, _TAG_PLAN, pid)
        size = 0.95 + 0.05 * look.height
        cam = int(rng.integers(0, cams))
        direction = float(rng.choice((-1.0, 1.0)))
        start = int(round(rng.uniform(-8.0, min(0.3 * length / fps, 6.0)) * fps)) + 1
        kind = "start"
        while start <= length:
            walk = walk_across(scenes[cam], rng, start=start, direction=direction, fps=fps, size=size)
            visits.append(_Visit(pid, cam, kind, walk))
            if cams == 1 or rng.random() < REENTRY_PROBABILITY:
                gap, kind, direction = rng.uniform(*REENTRY_GAP), "reentry", -direction
            else:
                nxt = int(rng.choice([c for c in range(cams) if c != cam]))
                gap, kind, direction = (
                    transit[cam, nxt] * rng.uniform(0.85, 1.15),
                    "transit",
                    float(rng.choice((-1.0, 1.0))),
                )
                cam = nxt
            start = int(walk.frames[-1]) + max(1, int(round(gap * fps)))
    return visits


# ------------------------------------------------------------------------------------------- writing
def _video_writer(path: Path, fps: float, size: tuple[int, int]):
    try:
        import cv2
    except ImportError as error:
        raise ReidkitError(
            "writing video needs OpenCV: pip install 'reidkit[video]' (opencv-python-headless)"
        ) from error
    writer = cv2.VideoWriter(str(path), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    if not writer.isOpened():
        raise ReidkitError(f"{path}: OpenCV cannot open an MJPG video writer")
    return writer


def _seqinfo(name: str, fps: float, length: int, size: tuple[int, int]) -> str:
    return (
        f"[Sequence]\nname={name}\nimDir=img1\nframeRate={fps:g}\nseqLength={length}\n"
        f"imWidth={size[0]}\nimHeight={size[1]}\nimExt=.jpg\n"
    )


def _render_camera(
    folder: Path,
    scene: CameraScene,
    visits: list[tuple[int, _Visit]],
    looks: dict[int, draw.Look],
    length: int,
    writer,
    bar,
) -> tuple[list[tuple[int, Placed]], dict[int, list[int]]]:
    """Draw and write one camera's frames.

    Args:
        visits: ``(index, visit)`` of this camera's visits.
        writer: an open ``cv2.VideoWriter`` or None.

    Returns:
        ``(gt, spans)``: ``(frame, placed)`` per ground-truth row in frame order, and visit index -> [first
        frame, last frame] for the visits with at least one row.
    """
    by_frame: dict[int, list[Figure]] = {}
    visit_of: dict[tuple[int, int], int] = {}
    for index, visit in visits:
        walk = visit.walk
        for frame, (cx, feet, height, phase) in zip(walk.frames.tolist(), walk.track.tolist(), strict=True):
            if 1 <= frame <= length:
                figure = Figure(visit.pid, looks[visit.pid], cx, feet, height, walk.view, walk.facing, phase)
                by_frame.setdefault(frame, []).append(figure)
                visit_of[(frame, visit.pid)] = index
    gt: list[tuple[int, Placed]] = []
    spans: dict[int, list[int]] = {}
    images = folder / "img1"
    images.mkdir(parents=True)
    for frame in range(1, length + 1):
        image, placed = compose(scene, by_frame.get(frame, []))
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
        (images / f"{frame:06d}.jpg").write_bytes(buffer.getvalue())
        if writer is not None:
            writer.write(np.ascontiguousarray(image[..., ::-1]))
        for row in sorted(placed, key=lambda p: p.pid):
            gt.append((frame, row))
            span = spans.setdefault(visit_of[(frame, row.pid)], [frame, frame])
            span[1] = frame
        if bar is not None:
            bar.update(1)
    return gt, spans


def _write_sequence(
    folder: Path, scene: CameraScene, gt: list[tuple[int, Placed]], length: int, fps: float, rng
) -> int:
    """seqinfo.ini, gt/gt.txt and det/det.txt of one camera; returns the number of detections."""
    (folder / "seqinfo.ini").write_text(
        _seqinfo(scene.name, fps, length, (scene.width, scene.height)), "utf-8"
    )
    (folder / "gt").mkdir()
    rows = [
        f"{frame},{p.pid},{p.box[0]},{p.box[1]},{p.box[2]},{p.box[3]},1,1,{p.visibility:.3f}\n"
        for frame, p in gt
    ]
    (folder / "gt" / "gt.txt").write_text("".join(rows), "utf-8")
    (folder / "det").mkdir()
    detections = simulate_detections(scene, gt, length, rng)
    (folder / "det" / "det.txt").write_text("".join(detections), "utf-8")
    return len(detections)


# ------------------------------------------------------------------------------------------- public API
def generate_video(
    out: str | Path,
    *,
    cams: int = 3,
    ids: int = 8,
    seconds: float = 30.0,
    fps: float = 10.0,
    size: tuple[int, int] = (640, 360),
    seed: int = 0,
    video: bool = False,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write synthetic multi-camera video with MOTChallenge ground truth to ``out`` (layout: module docstring).

    Args:
        out: output folder; built in a temp folder beside it and renamed into place when complete.
        cams: number of cameras, named ``c1`` .. ``cC``; all start at time 0 with the same fps.
        ids: number of identities (global ids 1..ids, the same in every camera and on every visit).
        seconds: length of every camera's video; ``round(seconds * fps)`` frames (at least 1).
        fps: frames per second.
        size: ``(width, height)`` of the frames in pixels, at least 64 x 48.
        seed: non-negative seed; the same arguments give the same bytes.
        video: also write ``out/<camera>.avi`` (MJPG, needs OpenCV).
        overwrite: replace an existing non-empty ``out`` (only once the new one is complete).
        progress: show a progress bar.

    Returns:
        The output folder. ``meta.json`` lists the visits that show in the frames; in a very short video an
        identity may walk only before the first or after the last frame and then has no ground-truth row.

    Raises:
        ConfigError: a bad argument (names the argument and what was expected).
        OutputExistsError: ``out`` exists, is not empty and ``overwrite`` is False.
    """
    size = _check_arguments(cams, ids, seconds, fps, size, seed)
    fps, length = float(fps), max(1, int(round(seconds * fps)))
    out = Path(out)
    _check_output(out, overwrite)
    looks = _make_looks(seed, ids)
    scenes = [
        make_scene(
            f"c{cam + 1}",
            draw.make_camera(_rng(seed, _TAG_CAMERA, cam), _LEVELS["easy"]),
            size,
            _rng(seed, _TAG_SCENE, cam),
        )
        for cam in range(cams)
    ]
    transit = _transit_times(seed, cams)
    visits = _plan(seed, looks, scenes, fps, length, transit)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cams * length, unit="frame", desc="synth-video")
    try:
        with _staged_output(out, overwrite) as temp:
            spans: dict[int, list[int]] = {}
            counts = {}
            for cam, scene in enumerate(scenes):
                writer = _video_writer(temp / f"{scene.name}.avi", fps, size) if video else None
                try:
                    mine = [(index, visit) for index, visit in enumerate(visits) if visit.cam == cam]
                    gt, found = _render_camera(temp / scene.name, scene, mine, looks, length, writer, bar)
                finally:
                    if writer is not None:
                        writer.release()
                spans.update(found)
                detections = _write_sequence(
                    temp / scene.name, scene, gt, length, fps, _rng(seed, _TAG_DETECT, cam)
                )
                counts[scene.name] = {"gt_rows": len(gt), "detections": detections}
            params = {"cams": cams, "ids": ids, "seconds": seconds, "fps": fps, "size": list(size), "seed": seed}
            meta = _meta(params, scenes, length, video, transit, visits, spans, counts)
            meta_text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
            (temp / "meta.json").write_text(meta_text, encoding="utf-8")
    finally:
        if bar is not None:
            bar.close()
    return out


def _meta(params, scenes, length, video, transit, visits, spans, counts) -> dict:
    """The content of meta.json: arguments, cameras, transit seconds, per-id visits (frames with gt rows)."""
    names = [scene.name for scene in scenes]
    per_id: dict[str, list[dict]] = {}
    for index, visit in enumerate(visits):
        if index in spans:
            first, last = spans[index]
            per_id.setdefault(str(visit.pid), []).append(
                {"camera": names[visit.cam], "first_frame": first, "last_frame": last, "kind": visit.kind}
            )
    return {
        "generator": "reidkit.data.synth_video",
        "format_version": FORMAT_VERSION,
        "layout": "motchallenge",
        "gt_format": "frame,id,x,y,w,h,1,1,visibility",
        "det_format": "frame,-1,x,y,w,h,conf,-1,-1,-1",
        "jpeg_quality": JPEG_QUALITY,
        "params": params,
        "cameras": [
            {
                "name": scene.name,
                "sequence": scene.name,
                "video": f"{scene.name}.avi" if video else None,
                "start_time": 0.0,
                "fps": params["fps"],
                "frames": length,
                "width": scene.width,
                "height": scene.height,
            }
            for scene in scenes
        ],
        "transit_seconds": {
            a: {b: float(transit[i, j]) for j, b in enumerate(names) if j != i} for i, a in enumerate(names)
        },
        "counts": counts,
        "visits": dict(sorted(per_id.items(), key=lambda item: int(item[0]))),
    }


def _check_arguments(cams, ids, seconds, fps, size, seed) -> tuple[int, int]:
    def integer(value) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    def number(value) -> bool:
        return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)

    if not integer(cams) or cams < 1:
        raise ConfigError(f"cams: expected an integer >= 1, got {cams!r}")
    if not integer(ids) or ids < 1:
        raise ConfigError(f"ids: expected an integer >= 1, got {ids!r}")
    if not number(seconds) or not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"seconds: expected a finite number > 0, got {seconds!r}")
    if not number(fps) or not math.isfinite(fps) or fps <= 0:
        raise ConfigError(f"fps: expected a finite number > 0 (frames per second), got {fps!r}")
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(integer(v) for v in size)
        or size[0] < MIN_SIZE[0]
        or size[1] < MIN_SIZE[1]
    ):
        raise ConfigError(
            f"size: expected (width, height) integers of at least {MIN_SIZE[0]} x {MIN_SIZE[1]} pixels, "
            f"got {size!r}"
        )
    if not integer(seed) or seed < 0:
        raise ConfigError(f"seed: expected a non-negative integer, got {seed!r}")
    return int(size[0]), int(size[1])
