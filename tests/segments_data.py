"""A hand-made tracking run folder for the segment-search tests (index, CLI, service, browser).

Two cameras on one wall clock (10 fps, start :data:`START`), two people across them, a tracklet without a
global id and one without a feature; camera ``cam1`` has a 10 s VP8 WebM video, ``cam2`` none. Every
tracklet's feature is the embedding of its thumbnail (a two-tone "person": top and bottom colours), so a query
photo of a person's colours is closest to that person's tracklets, the less shaded the closer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

START = 1_700_000_000.0
FPS = 10.0
VIDEO_FRAMES = 100
VIDEO_SIZE = (64, 48)
#: global id -> (top colour, bottom colour) of the person.
PEOPLE = {1: ((200, 30, 30), (30, 30, 200)), 2: ((30, 200, 30), (220, 220, 40))}
#: (camera, local_id, global_id, first_frame, last_frame, shade): shade darkens the person's colours.
TRACKLETS = [
    ("cam1", 1, 1, 21, 50, 0),
    ("cam2", 3, 1, 61, 80, 25),
    ("cam1", 4, 1, 91, 100, 50),
    ("cam1", 2, 2, 1, 40, 0),
    ("cam2", 5, 2, 10, 30, 30),
    ("cam2", 6, None, 1, 5, 0),  # no feature
    ("cam2", 7, None, 50, 60, 0),
]
LONER_COLOURS = ((150, 60, 200), (40, 200, 220))


class ColourEmbedder:
    """A deterministic stand-in model: the mean colour of the top and bottom halves of the image."""

    name = "colour-halves"
    fingerprint = "colour-halves-v1"
    dim = 7
    input_size = (8, 4)

    def embed_images(self, images):
        rows = []
        for image in images:
            pixels = np.asarray(image.convert("RGB").resize((4, 8), Image.BILINEAR), dtype=np.float64) / 255.0
            feature = np.concatenate(
                [pixels[:4].mean(axis=(0, 1)) - 0.5, pixels[4:].mean(axis=(0, 1)) - 0.5, [0.05]]
            )
            rows.append(feature / np.linalg.norm(feature))
        return np.asarray(rows, dtype=np.float32).reshape(len(images), self.dim)


def person(top, bottom, shade: int = 0, size=(16, 32)) -> Image.Image:
    """A two-tone crop ``size`` (width, height), both colours darkened by ``shade``."""
    top = tuple(max(0, c - shade) for c in top)
    bottom = tuple(max(0, c - shade) for c in bottom)
    image = Image.new("RGB", size, top)
    image.paste(Image.new("RGB", (size[0], size[1] // 2), bottom), (0, size[1] // 2))
    return image


def write_video(path: Path) -> None:
    """A VP8 WebM of :data:`VIDEO_FRAMES` frames at :data:`FPS`: a bar moving right, brightness by frame."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"VP80"), FPS, VIDEO_SIZE)
    assert writer.isOpened(), "OpenCV cannot write VP8 WebM here"
    for n in range(VIDEO_FRAMES):
        frame = np.full((VIDEO_SIZE[1], VIDEO_SIZE[0], 3), 40 + 2 * n, dtype=np.uint8)
        x = (n * 3) % (VIDEO_SIZE[0] - 8)
        frame[10:38, x : x + 8] = (20, 20, 220)
        writer.write(frame)
    writer.release()


def write_tracked_run(run_dir: Path, embedder, *, video: bool = True) -> Path:
    """Write the run folder (see the module docstring) with tracklet features from ``embedder``."""
    from reidkit.track.records import Tracklet
    from reidkit.track.runfiles import CameraInfo, RunInfo, write_run

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if video:
        write_video(run_dir / "cam1.webm")
    info = RunInfo(
        cameras=[
            CameraInfo(
                "cam1",
                "/videos/cam1.avi",
                FPS,
                START,
                VIDEO_SIZE,
                VIDEO_FRAMES,
                "cam1.webm" if video else None,
            ),
            CameraInfo("cam2", "/videos/cam2.avi", FPS, START, VIDEO_SIZE, VIDEO_FRAMES, None),
        ],
        embedder={"name": embedder.name, "fingerprint": embedder.fingerprint, "dim": int(embedder.dim)},
        settings={"tracker": "test"},
    )
    tracklets = []
    for camera, local_id, global_id, first, last, shade in TRACKLETS:
        top, bottom = PEOPLE[global_id] if global_id is not None else LONER_COLOURS
        crop = person(top, bottom, shade)
        frames = np.arange(first, last + 1)
        boxes = np.column_stack(
            [frames % 40, np.full(len(frames), 5.0), np.full(len(frames), 8.0), np.full(len(frames), 28.0)]
        )
        tracklets.append(
            Tracklet(
                camera=camera,
                local_id=local_id,
                frames=frames,
                boxes=boxes,
                scores=np.full(len(frames), 0.9),
                fps=FPS,
                camera_start=START,
                feature=None if local_id == 6 else embedder.embed_images([crop])[0],
                quality=float(len(frames)),
                thumbnail=np.asarray(crop),
                person=local_id,
                global_id=global_id,
            )
        )
    write_run(run_dir, info, tracklets)
    return run_dir


def query_photo(path: Path, global_id: int = 1) -> Path:
    """A PNG photo of person ``global_id`` (unshaded)."""
    person(*PEOPLE[global_id]).save(path)
    return path
