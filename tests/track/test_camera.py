"""One camera streamed end to end: synthetic scenes with known colours, the memory bound, and the real video."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from reidkit.embed import Embedder
from reidkit.track.appearance import AppearanceSettings
from reidkit.track.camera import STAGES, track_camera
from reidkit.track.detect import Detection
from reidkit.track.switches import SwitchSettings
from reidkit.track.tracking import TrackerSettings
from reidkit.track.video import Frame, FrameSource, VideoFileSource

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
VTEST = SHARED / "vtest.avi"
DETECTOR_XML = SHARED / "omz" / "pedestrian-detection-adas-0002" / "pedestrian-detection-adas-0002.xml"
REID_XML = SHARED / "omz" / "person-reidentification-retail-0287" / "person-reidentification-retail-0287.xml"

RED, GREEN, BLUE, YELLOW = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)  # RGB
Box = tuple[float, float, float, float]


class ColourEmbedder:
    """The mean RGB of a crop's central ninth, padded to 8 dims with a constant 0.5 in the last, L2-normalised."""

    name = "centre-colour"
    fingerprint = "centre-colour-1"
    dim = 8
    input_size = (64, 32)

    def __init__(self) -> None:
        self.calls = 0

    def embed_images(self, images) -> np.ndarray:
        self.calls += 1
        rows = []
        for image in images:
            pixels = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
            h, w = pixels.shape[:2]
            centre = pixels[h // 3 : max(h // 3 + 1, 2 * h // 3), w // 3 : max(w // 3 + 1, 2 * w // 3)]
            rows.append([*centre.mean(axis=(0, 1)), 0, 0, 0, 0, 0.5])
        rows = np.asarray(rows, dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def colour_feature(rgb) -> np.ndarray:
    row = np.array([*(np.asarray(rgb) / 255.0), 0, 0, 0, 0, 0.5], np.float32)
    return row / np.linalg.norm(row)


@dataclass
class Walker:
    """One synthetic person: an RGB colour and its box in each frame (None: not there)."""

    colour: tuple[int, int, int]
    box: Callable[[int], Box | None]


def linear(x: float, y: float, dx: float, dy: float = 0.0, first: int = 1, last: int = 10**9, w=30.0, h=60.0):
    def box(index: int) -> Box | None:
        if not first <= index <= last:
            return None
        t = index - first
        return (x + dx * t, y + dy * t, w, h)

    return box


class Scene(FrameSource):
    """Grey frames with coloured rectangles; it also serves as the detector (its exact boxes, score 0.9)."""

    def __init__(
        self, walkers: list[Walker], frames: int, size=(320, 240), fps: float = 30.0, camera="synth"
    ):
        self.walkers, self.camera, self.fps, self.size = walkers, camera, fps, size
        self._length = frames
        self.detected: set[tuple[int, Box]] = set()

    def boxes(self, index: int) -> list[tuple[Box, tuple[int, int, int]]]:
        return [(b, w.colour) for w in self.walkers if (b := w.box(index)) is not None]

    def __iter__(self) -> Iterator[Frame]:
        for index in range(1, self._length + 1):
            image = np.full((self.size[1], self.size[0], 3), 128, np.uint8)
            for (x, y, w, h), colour in self.boxes(index):
                image[int(y) : int(y + h), int(x) : int(x + w)] = colour[::-1]  # BGR
            yield self._frame(index, image)

    def detect(self, frames) -> list[list[Detection]]:
        out = []
        for frame in frames:
            found = [Detection(frame.index, box, 0.9) for box, _ in self.boxes(frame.index)]
            self.detected |= {(frame.index, d.box) for d in found}
            out.append(found)
        return out


def colours_of(tracklet, scene: Scene, clear_only: bool = True) -> set[tuple[int, int, int]]:
    """The true colours under a tracklet's boxes; with ``clear_only`` frames where its box touches another are skipped."""
    seen = set()
    for frame, box in zip(tracklet.frames, tracklet.boxes, strict=True):
        here = scene.boxes(int(frame))
        mine = [colour for b, colour in here if np.allclose(b, box)]
        assert len(mine) == 1, f"box {box} of frame {frame} is not one of the scene's"
        others = [b for b, _ in here if not np.allclose(b, box)]
        if clear_only and any(abs(b[0] - box[0]) < b[2] and abs(b[1] - box[1]) < b[3] for b in others):
            continue
        seen.add(mine[0])
    return seen


def test_objects_get_pure_tracklets_with_their_colour():
    scene = Scene(
        [
            Walker(RED, linear(20, 20, 4)),
            Walker(GREEN, linear(260, 100, -4, 1)),
            Walker(BLUE, linear(120, 170, 2, -0.5)),
        ],
        frames=50,
    )
    embedder = ColourEmbedder()
    result = track_camera(scene, scene, embedder, batch_frames=8)
    assert (result.camera, result.frames, result.size, result.fps) == ("synth", 50, (320, 240), 30.0)
    assert len(result.tracklets) == 3
    for tracklet in result.tracklets:
        (colour,) = colours_of(tracklet, scene, clear_only=False)
        assert float(tracklet.feature @ colour_feature(colour)) > 0.999
        assert tracklet.feature.shape == (8,) and tracklet.feature.dtype == np.float32
        assert tracklet.quality > 0 and tracklet.thumbnail.ndim == 3
        assert tracklet.camera == "synth" and tracklet.local_id >= 1
        # 1-based frames, the detections' own boxes
        assert tracklet.last_frame == 50 and tracklet.first_frame >= 1
        assert {
            (int(f), tuple(b)) for f, b in zip(tracklet.frames, tracklet.boxes, strict=True)
        } <= scene.detected
        assert tracklet.start_time == pytest.approx((tracklet.first_frame - 1) / 30.0)
    assert {c for t in result.tracklets for c in colours_of(t, scene)} == {RED, GREEN, BLUE}
    assert set(result.seconds) == set(STAGES) and all(v >= 0 for v in result.seconds.values())
    assert 0 < result.peak_crops <= 3 * AppearanceSettings().samples_per_track


def _crossing() -> Scene:
    """Red and green walk at each other along one row and turn back where they meet (frame 27.25).

    The boxes pass through each other linearly, so a motion tracker keeps each id on the box that keeps its
    direction: after the meeting each of its two tracks holds the other person.
    """

    red_right = linear(40, 90, 4)
    green_left = linear(250, 90, -4)
    meet = 1 + (250 - 40) / 8

    def red(index):
        return red_right(index) if index <= meet else green_left(index)

    def green(index):
        return green_left(index) if index <= meet else red_right(index)

    return Scene([Walker(RED, red), Walker(GREEN, green)], frames=64)


@pytest.mark.parametrize("name", ["bytetrack", "sort"])
def test_a_swap_at_a_crossing_is_cut(name):
    scene = _crossing()
    settings = TrackerSettings(name)
    whole = track_camera(
        scene, scene, ColourEmbedder(), tracker=settings, switches=SwitchSettings(enabled=False)
    )
    assert len(whole.tracklets) == 2
    assert all(colours_of(t, scene) == {RED, GREEN} for t in whole.tracklets)  # the tracker swapped them
    result = track_camera(scene, scene, ColourEmbedder(), tracker=settings)
    assert len(result.tracklets) == 4
    assert len({t.local_id for t in result.tracklets}) == 4
    for tracklet in result.tracklets:
        (colour,) = colours_of(tracklet, scene)
        assert float(tracklet.feature @ colour_feature(colour)) > 0.99
    # the parts of one track tile its frames
    frames = sorted(int(f) for t in result.tracklets for f in t.frames)
    assert frames == sorted(int(f) for t in whole.tracklets for f in t.frames)


def _crowd(frames: int) -> Scene:
    """A new short-lived walker every 10 frames, each seen for 30 frames: at most 3 on screen at once."""
    palette = [RED, GREEN, BLUE, YELLOW, (255, 0, 255), (0, 255, 255)]
    walkers = [
        Walker(
            palette[k % len(palette)],
            linear(10 + 60 * (k % 4), 20 + 50 * (k % 3), 1.5, 0.3, 1 + 10 * k, 30 + 10 * k),
        )
        for k in range(frames // 10)
    ]
    return Scene(walkers, frames=frames)


def test_crops_are_bounded_by_live_tracks_not_by_video_length():
    appearance = AppearanceSettings(samples_per_track=16, min_spacing_frames=2, embed_batch=8)
    tracker = TrackerSettings("bytetrack", {"lost_track_buffer": 10})
    long_scene, short_scene = _crowd(400), _crowd(200)
    long = track_camera(long_scene, long_scene, ColourEmbedder(), tracker=tracker, appearance=appearance)
    short = track_camera(short_scene, short_scene, ColourEmbedder(), tracker=tracker, appearance=appearance)
    objects = len(long_scene.walkers)
    assert objects == 40 and len(long.tracklets) >= objects
    assert long.peak_crops <= 8 * appearance.samples_per_track < objects * appearance.samples_per_track / 4
    assert long.peak_crops <= short.peak_crops + appearance.embed_batch  # does not grow with the video
    for tracklet in long.tracklets:  # nothing was lost on the way: every tracklet has its own colour
        (colour,) = colours_of(tracklet, long_scene)
        assert float(tracklet.feature @ colour_feature(colour)) > 0.99


def test_no_detections_gives_no_tracklets():
    scene = Scene([], frames=20)
    embedder = ColourEmbedder()
    result = track_camera(scene, scene, embedder)
    assert result.tracklets == [] and result.frames == 20 and result.peak_crops == 0 and embedder.calls == 0


def test_without_embedder_tracklets_have_no_feature():
    scene = Scene([Walker(RED, linear(20, 20, 4)), Walker(GREEN, linear(260, 100, -4))], frames=30)
    result = track_camera(scene, scene, None, batch_frames=7)  # batches not dividing the length
    assert len(result.tracklets) == 2 and result.peak_crops == 0
    for tracklet in result.tracklets:
        assert tracklet.feature is None and tracklet.thumbnail is None and tracklet.quality == 0
        assert tracklet.last_frame == 30
        assert len(colours_of(tracklet, scene, clear_only=False)) == 1
    # ByteTrack confirms a track on its second frame
    assert sorted(len(t.frames) for t in result.tracklets) == [29, 29]


class FirstFrames(FrameSource):
    """The first ``count`` frames of another source."""

    def __init__(self, source: FrameSource, count: int) -> None:
        self.source, self.camera, self.fps, self.size = source, source.camera, source.fps, source.size
        self._length = count

    def __iter__(self) -> Iterator[Frame]:
        for frame in self.source:
            if frame.index > self._length:
                return
            yield frame


def test_real_video_with_the_openvino_models():
    missing = [str(p) for p in (VTEST, DETECTOR_XML, REID_XML) if not p.is_file()]
    if missing:
        pytest.skip(f"the real video and OMZ models are not here: {', '.join(missing)}")
    pytest.importorskip("openvino", reason="the OMZ models need openvino")
    from reidkit.embed import load_embedder
    from reidkit.track.detect import OpenVinoPedestrianDetector

    embedder = load_embedder(openvino=REID_XML, preprocess="bgr255")
    assert isinstance(embedder, Embedder)
    source = FirstFrames(VideoFileSource(VTEST), 40)
    result = track_camera(source, OpenVinoPedestrianDetector(DETECTOR_XML), embedder)
    assert result.frames == 40 and result.camera == "vtest"
    assert len(result.tracklets) >= 3
    for tracklet in result.tracklets:
        assert 1 <= tracklet.first_frame <= tracklet.last_frame <= 40
        assert tracklet.feature is not None and tracklet.feature.shape == (256,)
        assert float(np.linalg.norm(tracklet.feature)) == pytest.approx(1.0, abs=1e-4)
    assert all(result.seconds[stage] > 0 for stage in STAGES)
