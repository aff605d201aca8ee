"""Detectors: the shared threshold/clipping path by hand, det.txt parsing, and HOG / OMZ on real video frames."""

from __future__ import annotations

import itertools
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from reidkit.errors import DatasetError, ReidkitError
from reidkit.track import (
    Detection,
    Detector,
    Frame,
    HogDetector,
    ImageDetector,
    MotDetections,
    OpenVinoPedestrianDetector,
    VideoFileSource,
    apply_thresholds,
)
from reidkit.track.detect import parse_ssd_rows

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
VTEST = SHARED / "vtest.avi"
OMZ_XML = SHARED / "omz" / "pedestrian-detection-adas-0002" / "pedestrian-detection-adas-0002.xml"
REID_XML = SHARED / "omz" / "person-reidentification-retail-0287" / "person-reidentification-retail-0287.xml"


def _frame(index: int, height: int = 100, width: int = 200) -> Frame:
    return Frame(index=index, time_s=0.0, image=np.zeros((height, width, 3), np.uint8))


class _Fixed(ImageDetector):
    """Returns the same raw boxes for every image."""

    def __init__(self, boxes, **thresholds):
        super().__init__(**thresholds)
        self.boxes = np.asarray(boxes, dtype=np.float64)
        self.calls: list[int] = []

    def detect_images(self, images):
        self.calls.append(len(images))
        return [self.boxes for _ in images]


def test_apply_thresholds_by_hand():
    boxes = np.array(
        [
            [0, 0, 10, 30, 0.50],  # score exactly at the threshold: kept
            [0, 0, 10, 30, 0.49],  # score below: dropped
            [0, 0, 10, 20, 0.90],  # height exactly at the threshold: kept
            [0, 0, 10, 19.9, 0.90],  # height below: dropped
        ]
    )
    kept = apply_thresholds(boxes, min_score=0.5, min_height=20)
    np.testing.assert_array_equal(kept, boxes[[0, 2]])
    assert apply_thresholds(np.zeros((0, 5)), 0.5, 0).shape == (0, 5)
    np.testing.assert_array_equal(apply_thresholds(boxes, -np.inf, 0), boxes)


def test_image_detector_clips_thresholds_and_numbers_frames():
    raw = [
        [-10, 50, 40, 80, 0.9],  # sticks out left and bottom: clipped to x 0..30, y 50..100 (h 50)
        [150, 10, 30, 25, 0.9],  # inside, h 25 < min_height 30: dropped
        [20, 20, 30, 40, 0.2],  # score below: dropped
        [250, 0, 20, 40, 0.9],  # wholly outside the 200-wide image: dropped
    ]
    detector = _Fixed(raw, min_score=0.5, min_height=30)
    assert isinstance(detector, Detector)
    result = detector.detect([_frame(7), _frame(8)])
    assert detector.calls == [2]  # one batched call
    assert result == [
        [Detection(frame=7, box=(0.0, 50.0, 30.0, 50.0), score=0.9)],
        [Detection(frame=8, box=(0.0, 50.0, 30.0, 50.0), score=0.9)],
    ]
    assert detector.detect([]) == [] and detector.calls == [2]
    with pytest.raises(ValueError, match="frame 3.*uint8 BGR"):
        detector.detect([Frame(3, 0.0, np.zeros((4, 4), np.uint8))])
    with pytest.raises(ValueError, match="min_height"):
        _Fixed(raw, min_score=0.5, min_height=-1)
    with pytest.raises(ValueError, match="min_score"):
        _Fixed(raw, min_score=float("nan"))


def test_parse_ssd_rows_stops_at_end_marker():
    rows = np.array(
        [
            [0, 1, 0.9, 0.1, 0.2, 0.3, 0.6],
            [1, 1, 0.8, 0.5, 0.5, 1.0, 1.0],
            [0, 1, 0.7, 0.0, 0.0, 0.5, 0.5],
            [-1, 0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0, 0],  # padding after the marker, image_id 0: must be ignored
            [0, 1, 0.99, 0.1, 0.1, 0.2, 0.2],  # anything after the marker is ignored
        ]
    )
    first, second = parse_ssd_rows(rows, [(100, 200), (50, 40)])
    np.testing.assert_allclose(first, [[20, 20, 40, 40, 0.9], [0, 0, 100, 50, 0.7]])
    np.testing.assert_allclose(second, [[20, 25, 20, 25, 0.8]])


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_mot_detections_parse_and_thresholds(tmp_path):
    path = _write(
        tmp_path / "det.txt",
        "1,-1,10,20,30,60,0.9,-1,-1,-1\n"
        "1,-1,5.5,6.5,10,15,0.3,-1,-1,-1\n"
        "\n"
        "3,-1,0,0,20,40,0.8\n"
        "3.0,-1,1,2,3,25,0.95,-1,-1,-1\n",
    )
    everything = MotDetections(path)
    assert isinstance(everything, Detector)
    assert everything.frames == [1, 3]
    assert everything.boxes(1) == [
        Detection(1, (10.0, 20.0, 30.0, 60.0), 0.9),
        Detection(1, (5.5, 6.5, 10.0, 15.0), 0.3),
    ]
    assert everything.boxes(2) == []
    filtered = MotDetections(path, min_score=0.5, min_height=30)
    assert filtered.detect([_frame(1), _frame(2), _frame(3)]) == [
        [Detection(1, (10.0, 20.0, 30.0, 60.0), 0.9)],
        [],
        [Detection(3, (0.0, 0.0, 20.0, 40.0), 0.8)],
    ]
    assert filtered.frames == [1, 3]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1,-1,10,20,30", "line 2: expected at least 7 comma-separated fields.*got 5"),
        ("1,-1,10,x,30,60,0.9", "line 2: fields frame,x,y,w,h,conf must be numbers"),
        ("0,-1,10,20,30,60,0.9", "line 2: frame must be an integer >= 1.*'0'"),
        ("1.5,-1,10,20,30,60,0.9", "line 2: frame must be an integer >= 1.*'1.5'"),
        ("2,-1,10,20,0,60,0.9", "line 2: box width and height must be > 0.*w=0.0"),
        ("2,-1,10,20,30,60,nan", "line 2: x,y,w,h,conf must be finite"),
    ],
)
def test_mot_detections_malformed_rows_name_file_and_line(tmp_path, line, message):
    path = _write(tmp_path / "det.txt", f"1,-1,10,20,30,60,0.9\n{line}\n")
    with pytest.raises(DatasetError, match=f"det.txt.*{message}"):
        MotDetections(path)


def test_mot_detections_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="nothere.txt.*does not exist"):
        MotDetections(tmp_path / "nothere.txt")


def _vtest_frames(indices: tuple[int, ...]) -> list[Frame]:
    if not VTEST.is_file():
        pytest.skip(f"real pedestrian video not found at {VTEST}: these tests need ../shared/data")
    source = VideoFileSource(VTEST)
    assert (source.fps, source.size, len(source)) == (10.0, (768, 576), 795)
    return [frame for frame in itertools.islice(source, max(indices)) if frame.index in indices]


def _inside(point: tuple[float, float], box: tuple[float, float, float, float]) -> bool:
    x, y, w, h = box
    return x <= point[0] <= x + w and y <= point[1] <= y + h


@pytest.fixture(scope="module")
def omz_results():
    """OMZ detections of five vtest frames at batch sizes 1 and 4 (4 + a remainder batch of 1)."""
    frames = _vtest_frames((1, 100, 200, 300, 400))
    if not OMZ_XML.is_file():
        pytest.skip(f"OMZ pedestrian detector not found at {OMZ_XML}: this test needs ../shared/data")
    pytest.importorskip("openvino", reason="the OMZ detector test needs openvino")
    single = OpenVinoPedestrianDetector(OMZ_XML, min_score=0.5, batch_size=1).detect(frames)
    batched = OpenVinoPedestrianDetector(OMZ_XML, min_score=0.5, batch_size=4).detect(frames)
    return frames, single, batched


def test_omz_detector_finds_people_in_vtest(omz_results):
    frames, single, _ = omz_results
    for frame, detections in zip(frames, single, strict=True):
        assert 3 <= len(detections) <= 9, (frame.index, detections)
        for detection in detections:
            x, y, w, h = detection.box
            assert detection.frame == frame.index and 0.5 <= detection.score <= 1
            assert 0 <= x and 0 <= y and x + w <= 768 and y + h <= 576
            assert 40 <= h <= 250 and 1.5 <= h / w <= 6  # upright people, 2-7 per frame in this video


def test_omz_batch_sizes_agree(omz_results):
    _, single, batched = omz_results
    assert [len(d) for d in single] == [len(d) for d in batched]
    for one, four in zip(single, batched, strict=True):
        assert [d.frame for d in one] == [d.frame for d in four]
        np.testing.assert_allclose([d.box for d in one], [d.box for d in four], rtol=0, atol=1e-2)
        np.testing.assert_allclose([d.score for d in one], [d.score for d in four], rtol=0, atol=1e-4)


def test_hog_finds_people_where_omz_does(omz_results):
    pytest.importorskip("cv2")
    frames, single, _ = omz_results
    hog = HogDetector(upscale=1.5)
    found = hog.detect(frames[1:3])
    for detections, reference in zip(found, single[1:3], strict=True):
        assert len(detections) >= 3
        centres = [(x + w / 2, y + h / 2) for x, y, w, h in (d.box for d in reference)]
        hits = sum(any(_inside(centre, d.box) for d in detections) for centre in centres)
        assert hits >= 2, (detections, reference)  # HOG boxes lie on the people the OMZ network finds
    strict = HogDetector(upscale=1.5, min_score=1.5).detect(frames[1:3])
    for loose, tight in zip(found, strict, strict=True):
        assert all(d.score >= 1.5 for d in tight)
        assert set(tight) <= set(loose) and len(tight) < len(loose)


def test_omz_detector_file_errors(tmp_path, monkeypatch):
    pytest.importorskip("openvino", reason="needs openvino")
    with pytest.raises(ReidkitError, match="model file.*nothere.xml.*does not exist"):
        OpenVinoPedestrianDetector(tmp_path / "nothere.xml")
    if not OMZ_XML.is_file():
        pytest.skip(f"OMZ pedestrian detector not found at {OMZ_XML}")
    lonely = shutil.copy(OMZ_XML, tmp_path / "lonely.xml")
    with pytest.raises(
        ReidkitError, match=r"weights file \(.bin beside the .xml\).*lonely.bin.*does not exist"
    ):
        OpenVinoPedestrianDetector(lonely)
    if REID_XML.is_file():
        with pytest.raises(ReidkitError, match="0287.xml.*is not an SSD detector"):
            OpenVinoPedestrianDetector(REID_XML)
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    with pytest.raises(ReidkitError, match=r"needs openvino: pip install 'reidkit\[openvino\]'"):
        OpenVinoPedestrianDetector(OMZ_XML)
