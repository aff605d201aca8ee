"""A hand-made tracking run for the adaptation tests: flat-colour people in two MOTChallenge sequence folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from reidkit.track.records import Tracklet
from reidkit.track.runfiles import CameraInfo, RunInfo, write_run

SIZE = (96, 64)  # width, height of the frames
FRAMES = 12
#: camera, local id, first frame, last frame, colour (RGB), box x: each tracklet is a flat rectangle
TRACKS = [
    ("cam1", 1, 1, 10, (200, 30, 30), 4),
    ("cam1", 2, 6, 12, (30, 200, 30), 40),  # shares frames 6..10 with track 1: two people
    ("cam1", 3, 11, 12, (30, 30, 200), 70),  # after track 1 ends, beside track 2
    ("cam2", 1, 1, 12, (200, 200, 30), 10),
]
BOX_W, BOX_H = 16, 40


def write_sequence(folder: Path, camera: str) -> Path:
    images = folder / "img1"
    images.mkdir(parents=True)
    for frame in range(1, FRAMES + 1):
        canvas = np.full((SIZE[1], SIZE[0], 3), 90, np.uint8)
        for name, _, first, last, colour, x in TRACKS:
            if name == camera and first <= frame <= last:
                canvas[10 : 10 + BOX_H, x : x + BOX_W] = colour
        Image.fromarray(canvas).save(images / f"{frame:06d}.png")
    (folder / "seqinfo.ini").write_text(
        f"[Sequence]\nname={camera}\nimDir=img1\nframeRate=10\nseqLength={FRAMES}\n"
        f"imWidth={SIZE[0]}\nimHeight={SIZE[1]}\nimExt=.png\n"
    )
    return folder


def write_tracking_run(tmp_path: Path) -> Path:
    """The run of :data:`TRACKS` in ``tmp_path/run`` (sources ``tmp_path/cam1``, ``tmp_path/cam2``)."""
    run = tmp_path / "run"
    cameras = [
        CameraInfo(name, str(write_sequence(tmp_path / name, name)), 10.0, 0.0, SIZE, FRAMES) for name in ("cam1", "cam2")
    ]
    tracklets = []
    for camera, local, first, last, _, x in TRACKS:
        frames = np.arange(first, last + 1)
        boxes = np.tile([x, 10, BOX_W, BOX_H], (len(frames), 1)).astype(np.float64)
        tracklets.append(Tracklet(camera, local, frames, boxes, np.ones(len(frames)), 10.0))
    write_run(run, RunInfo(cameras, {"name": None, "fingerprint": None, "dim": None}), tracklets)
    return run
