"""MediaPipe Pose on a real pedestrian: plausible COCO-17 keypoints (runs where ``reidkit[pose]`` is installed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reidkit.pose.mediapipe_pose import MEDIAPIPE_NAMES, MEDIAPIPE_TO_COCO, MediaPipePose

VIDEO = Path(__file__).resolve().parents[3] / "shared" / "data" / "vtest.avi"
#: frame 550 of vtest.avi: (name, rows, columns) of two pedestrians, checked by eye (one from behind, one from
#: the side, facing left)
CROPS = (("back", slice(355, 520), slice(150, 232)), ("side", slice(290, 425), slice(625, 690)))


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    pytest.importorskip("mediapipe", reason="mediapipe is not installed (pip install 'reidkit[pose]')")
    cv2 = pytest.importorskip("cv2", reason="OpenCV is not installed (pip install 'reidkit[video]')")
    if not VIDEO.is_file():
        pytest.skip(f"{VIDEO} not found: the real-frame test needs ../shared/data/vtest.avi")
    capture = cv2.VideoCapture(str(VIDEO))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 550)
    ok, image = capture.read()
    capture.release()
    assert ok, f"cannot read frame 550 of {VIDEO}"
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def test_the_mapping_names_mediapipes_landmarks():
    mediapipe = pytest.importorskip(
        "mediapipe", reason="mediapipe is not installed (pip install 'reidkit[pose]')"
    )
    landmark = mediapipe.solutions.pose.PoseLandmark
    assert MEDIAPIPE_TO_COCO == tuple(int(landmark[name]) for name in MEDIAPIPE_NAMES)


def test_keypoints_of_real_pedestrians_are_plausible(frame):
    estimator = MediaPipePose()
    try:
        crops = [frame[rows, columns] for _, rows, columns in CROPS]
        points = estimator.estimate(crops + [np.full((128, 64, 3), 127, dtype=np.uint8)])
    finally:
        estimator.close()
    assert estimator.name == "mediapipe 0.10.14 pose (legacy solution)"
    assert points.shape == (3, 17, 3) and points.dtype == np.float32
    for (name, _, _), crop, found in zip(CROPS, crops, points, strict=False):
        height, width = crop.shape[:2]
        seen = found[:, 2] > 0.5
        assert seen[[0, 5, 6, 11, 12, 15, 16]].all(), name
        assert (
            (found[:, 0] >= 0) & (found[:, 0] <= width) & (found[:, 1] >= 0) & (found[:, 1] <= height)
        ).all()
        head, shoulders, hips, ankles = (
            found[0, 1],
            found[5:7, 1].mean(),
            found[11:13, 1].mean(),
            found[15:17, 1],
        )
        assert head < 0.25 * height < shoulders < hips < 0.75 * height < ankles.min(), name
    back = points[0]
    assert back[5, 0] < back[6, 0]  # seen from behind, the left shoulder is on the image's left
    assert not (points[2, :, 2] > 0).any()  # a grey image: no pose, every keypoint invisible
