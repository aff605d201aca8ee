"""The keypoint file (round trip, checks) and the keypoint geometry of flips, resizes and shifts, by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reidkit.data.keypoints import (
    KEYPOINTS_NAME,
    flip_points,
    missing_points,
    read_keypoints,
    resize_points,
    shift_points,
    write_keypoints,
)
from reidkit.errors import DatasetError


def _points(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    points = np.column_stack([rng.uniform(0, 64, 17), rng.uniform(0, 128, 17), rng.uniform(0, 1, 17)])
    return points.astype(np.float32)


def test_round_trip_with_relative_and_absolute_paths(tmp_path):
    (tmp_path / "train").mkdir()
    image = tmp_path / "train" / "0001_c1s1_000001_00.jpg"
    image.write_bytes(b"")
    written = write_keypoints(
        tmp_path / KEYPOINTS_NAME,
        {str(image): _points(0), "query/0002_c2s1_000001_00.jpg": _points(1)},
        source="synthetic ground truth",
    )
    loaded = read_keypoints(written)
    assert loaded.source == "synthetic ground truth"
    assert sorted(loaded.points) == ["query/0002_c2s1_000001_00.jpg", "train/0001_c1s1_000001_00.jpg"]
    np.testing.assert_allclose(loaded.get(image), _points(0), atol=1e-3)  # 3 decimals are kept
    assert loaded.get(tmp_path / "train" / "other.jpg") is None
    with pytest.raises(DatasetError, match="is not under"):
        loaded.get("/elsewhere/x.jpg")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("not json", "not readable JSON"),
        ({"format": "other"}, "not a reidkit keypoint file"),
        ({"format": "reidkit-keypoints", "version": 2, "layout": "coco17"}, "this reidkit reads version 1"),
        ({"format": "reidkit-keypoints", "version": 1, "layout": "coco17", "images": []}, '"images" must be'),
        (
            {
                "format": "reidkit-keypoints",
                "version": 1,
                "layout": "coco17",
                "images": {"a.jpg": [[1, 2, 1]]},
            },
            r"images\['a.jpg'\]: keypoints must be 17 rows .* got shape \[1, 3\]",
        ),
        (
            {
                "format": "reidkit-keypoints",
                "version": 1,
                "layout": "coco17",
                "images": {"a.jpg": [[1, 2, 2]] * 17},
            },
            "visibility must be in",
        ),
    ],
)
def test_bad_files_are_refused_with_the_reason(tmp_path, document, message):
    path = tmp_path / KEYPOINTS_NAME
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    with pytest.raises(DatasetError, match=message):
        read_keypoints(path)
    with pytest.raises(DatasetError, match="does not exist"):
        read_keypoints(tmp_path / "none.json")


def test_a_failed_write_leaves_the_old_file(tmp_path):
    path = write_keypoints(tmp_path / KEYPOINTS_NAME, {"a.jpg": _points()}, source="s")
    before = path.read_bytes()
    bad = _points()
    bad[3, 0] = np.nan
    with pytest.raises(DatasetError, match="finite"):
        write_keypoints(path, {"a.jpg": _points(), "b.jpg": bad}, source="s")
    assert path.read_bytes() == before


def test_flip_mirrors_x_and_swaps_left_and_right():
    points = missing_points()
    points[5] = (10.0, 30.0, 1.0)  # left shoulder
    points[6] = (50.0, 31.0, 0.5)  # right shoulder
    points[0] = (32.0, 10.0, 1.0)  # nose
    flipped = flip_points(points, width=64)
    np.testing.assert_array_equal(flipped[5], (14.0, 31.0, 0.5))  # the old right shoulder, mirrored
    np.testing.assert_array_equal(flipped[6], (54.0, 30.0, 1.0))
    np.testing.assert_array_equal(flipped[0], (32.0, 10.0, 1.0))
    np.testing.assert_array_equal(flip_points(flipped, 64), points)  # an involution
    batch = np.stack([points, points])
    np.testing.assert_array_equal(flip_points(batch, 64)[1], flipped)


def test_resize_and_shift():
    points = missing_points()
    points[0] = (32.0, 64.0, 1.0)
    points[1] = (2.0, 3.0, 0.8)
    resized = resize_points(points, source=(128, 64), target=(256, 128))
    np.testing.assert_array_equal(resized[0], (64.0, 128.0, 1.0))
    shifted = shift_points(points, dx=-5.0, dy=10.0, size=(128, 64))
    np.testing.assert_array_equal(shifted[0], (27.0, 74.0, 1.0))
    np.testing.assert_array_equal(shifted[1], (-3.0, 13.0, 0.0))  # left the frame: no longer visible
