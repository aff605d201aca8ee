"""Per-camera tracking over the ``trackers`` library: ids on synthetic moving boxes, and the parameter checks."""

from __future__ import annotations

import numpy as np
import pytest

from reidkit.errors import ConfigError
from reidkit.track.detect import Detection
from reidkit.track.tracking import TRACKER_NAMES, CameraTracker, TrackerSettings, tracker_parameters
from reidkit.track.video import Frame

WIDTH, HEIGHT = 320, 240
#: (start x, start y, dx per frame, dy per frame, BGR colour); the lanes never meet
OBJECTS = [
    (20.0, 20.0, 4.0, 0.0, (0, 0, 255)),
    (260.0, 100.0, -4.0, 1.0, (0, 255, 0)),
    (120.0, 170.0, 2.0, -0.5, (255, 0, 0)),
]
W, H = 30.0, 60.0


def _box(obj, index: int) -> tuple[float, float, float, float]:
    x, y, dx, dy, _ = obj
    return (x + dx * (index - 1), y + dy * (index - 1), W, H)


def _scene(frames: int, objects=OBJECTS) -> list[tuple[Frame, list[Detection]]]:
    """Grey frames with coloured rectangles moving linearly; the detections are exactly their boxes."""
    out = []
    for index in range(1, frames + 1):
        image = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
        found = []
        for obj in objects:
            x, y, w, h = _box(obj, index)
            image[int(y) : int(y + h), int(x) : int(x + w)] = obj[4]
            found.append(Detection(index, (x, y, w, h), 0.9))
        out.append((Frame(index, (index - 1) / 30.0, image), found))
    return out


@pytest.mark.parametrize("name", TRACKER_NAMES)
def test_every_tracker_keeps_one_id_per_object(name):
    tracker = CameraTracker(TrackerSettings(name), fps=30)
    ids_of: dict[int, set[int]] = {k: set() for k in range(len(OBJECTS))}
    reported = 0
    for frame, found in _scene(30):
        expected = {det.box: k for k, det in enumerate(found)}
        tracked = tracker.update(frame, found)
        assert len({t.track_id for t in tracked}) == len(tracked)  # one box per id per frame
        for t in tracked:
            assert t.box in expected, f"{name} reported a box {t.box} that is not a detection's"
            assert t.score == pytest.approx(0.9)
            ids_of[expected[t.box]].add(t.track_id)
        reported += len(tracked)
    assert reported >= 3 * 25  # every object is confirmed within the first few frames
    assert all(len(ids) == 1 for ids in ids_of.values()), ids_of
    ids = [next(iter(v)) for v in ids_of.values()]
    assert len(set(ids)) == 3 and min(ids) >= 1


def test_unconfirmed_tracks_are_not_reported():
    settings = TrackerSettings("sort", {"minimum_consecutive_frames": 3})
    raw = settings.build(30)  # the library's own tracker, fed the same detections
    tracker = CameraTracker(settings, fps=30)
    import supervision

    scene = _scene(5)
    for frame, found in scene:
        boxes = np.array([d.box for d in found])
        raw_out = raw.update(
            supervision.Detections(
                xyxy=np.column_stack([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]]).astype(np.float32),
                confidence=np.full(len(found), 0.9, np.float32),
                class_id=np.zeros(len(found), int),
            )
        )
        tracked = tracker.update(frame, found)
        unconfirmed = int((raw_out.tracker_id < 0).sum())
        if frame.index == 1:
            assert unconfirmed == 3  # the library does return them, with id -1
        assert len(tracked) == len(found) - unconfirmed
        assert all(t.track_id >= 1 for t in tracked)
    assert len(tracked) == 3


def test_no_detections_gives_no_tracks_and_ages_them():
    tracker = CameraTracker(TrackerSettings("bytetrack", {"lost_track_buffer": 2}), fps=30)
    scene = _scene(12, OBJECTS[:1])
    first = set()
    for frame, found in scene[:6]:
        first |= {t.track_id for t in tracker.update(frame, found)}
    for frame, _ in scene[6:10]:  # 4 frames without detections: longer than the buffer of 2
        assert tracker.update(frame, []) == []
    later = {t.track_id for frame, found in scene[10:] for t in tracker.update(frame, found)}
    assert len(first) == 1 and later and later.isdisjoint(first)  # the lost track was forgotten: a new id


def test_valid_params_reach_the_tracker():
    assert CameraTracker(TrackerSettings("bytetrack"), fps=30).lost_buffer == 30
    assert CameraTracker(TrackerSettings("bytetrack", {"lost_track_buffer": 60}), fps=30).lost_buffer == 60
    # the library scales the buffer (given in 30 fps frames) to the camera's frame rate
    assert CameraTracker(TrackerSettings("sort", {"lost_track_buffer": 60}), fps=15).lost_buffer == 30
    built = TrackerSettings("ocsort", {"minimum_iou_threshold": 0.5, "delta_t": 2}).build(30)
    assert built.minimum_iou_threshold == 0.5 and built.delta_t == 2


def test_unknown_param_lists_the_valid_ones():
    with pytest.raises(ConfigError) as error:
        TrackerSettings("bytetrack", {"lost_buffer": 3})
    message = str(error.value)
    assert "'lost_buffer'" in message
    for key in tracker_parameters("bytetrack"):
        assert key in message
    assert "frame_rate" not in tracker_parameters("bytetrack")


@pytest.mark.parametrize(
    ("name", "key", "value"),
    [
        ("bytetrack", "lost_track_buffer", 2.5),
        ("bytetrack", "lost_track_buffer", "long"),
        ("bytetrack", "lost_track_buffer", True),
        ("bytetrack", "track_activation_threshold", "high"),
        ("botsort", "enable_cmc", 1),
        ("botsort", "cmc_method", 3),
    ],
)
def test_wrong_type_names_the_param(name, key, value):
    with pytest.raises(ConfigError, match=f"'{key}' must be a"):
        TrackerSettings(name, {key: value})


def test_numbers_are_coerced_to_the_default_type():
    settings = TrackerSettings("bytetrack", {"lost_track_buffer": 2.0, "track_activation_threshold": 1})
    assert settings.params["lost_track_buffer"] == 2 and type(settings.params["lost_track_buffer"]) is int
    assert type(settings.params["track_activation_threshold"]) is float
    assert CameraTracker(settings, fps=30).lost_buffer == 2


def test_from_strings_reads_yaml_scalars():
    settings = TrackerSettings.from_strings(
        "botsort",
        ["lost_track_buffer=45", "enable_cmc=false", "track_activation_threshold = 0.5", "cmc_method=orb"],
    )
    assert settings.params == {
        "lost_track_buffer": 45,
        "enable_cmc": False,
        "track_activation_threshold": 0.5,
        "cmc_method": "orb",
    }
    with pytest.raises(ConfigError, match="'novalue' must look like key=value"):
        TrackerSettings.from_strings("bytetrack", ["novalue"])
    with pytest.raises(ConfigError, match="'lost_track_buffer' must be a int"):
        TrackerSettings.from_strings("bytetrack", ["lost_track_buffer="])


def test_bad_tracker_name():
    with pytest.raises(ConfigError) as error:
        TrackerSettings("deepsort")
    message = str(error.value)
    assert "'deepsort'" in message and all(name in message for name in TRACKER_NAMES)
