"""MediaPipe Pose as a keypoint estimator: the legacy ``mediapipe.solutions.pose`` solution, its 33 landmarks
mapped to COCO-17.

The model is ``model_complexity=1``, the one that ships inside the mediapipe wheel (0 and 2 are downloaded on
first use, so they are not offered: estimation runs offline). Images are processed one at a time in static
image mode (every image is a new person: no tracking from one image to the next).

Mapping (MediaPipe landmark -> COCO-17 keypoint, :data:`MEDIAPIPE_TO_COCO`): nose 0, left eye 2 (MediaPipe's
"left eye", not its inner or outer corner), right eye 5, left ear 7, right ear 8, left / right shoulder 11 / 12,
elbow 13 / 14, wrist 15 / 16, hip 23 / 24, knee 25 / 26, ankle 27 / 28. MediaPipe's normalised ``(x, y)`` are
multiplied by the image's width and height (continuous pixel coordinates, as the keypoint file stores them), its
``visibility`` becomes the visibility (clipped to [0, 1]); a landmark outside the image gets visibility 0, and
so does every keypoint of an image in which no pose is found.

Small crops (ReID images are often 128 x 64) are enlarged before estimation so that their height is at least
``min_height`` pixels (default 256; bicubic) and padded by ``pad`` of their size on every side with the edge
colour (default 0.1), which gives the person detector the margin around the body that it was trained with;
the keypoints are mapped back to the pixels of the image as given.

Needs ``pip install 'reidkit[pose]'`` (mediapipe 0.10.14). mediapipe 0.10.14 requires protobuf < 5 and pymilvus
(``reidkit[milvus]``) protobuf >= 5.27, so the two extras cannot share an environment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from reidkit.data.keypoints import NUM_KEYPOINTS, missing_points
from reidkit.errors import ReidkitError

MEDIAPIPE_VERSION = "0.10.14"
#: MediaPipe Pose landmark index of each COCO-17 keypoint, in COCO order
MEDIAPIPE_TO_COCO = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
#: MediaPipe's names of those landmarks (``mediapipe.solutions.pose.PoseLandmark``), in the same order
MEDIAPIPE_NAMES = (
    "NOSE", "LEFT_EYE", "RIGHT_EYE", "LEFT_EAR", "RIGHT_EAR", "LEFT_SHOULDER", "RIGHT_SHOULDER", "LEFT_ELBOW",
    "RIGHT_ELBOW", "LEFT_WRIST", "RIGHT_WRIST", "LEFT_HIP", "RIGHT_HIP", "LEFT_KNEE", "RIGHT_KNEE", "LEFT_ANKLE",
    "RIGHT_ANKLE",
)  # fmt: skip


class PoseDependencyError(ReidkitError, ImportError):
    """The estimator's package is not installed."""


def import_mediapipe():
    """The ``mediapipe`` module.

    Raises:
        PoseDependencyError: it is not installed (the message says how to install it).
    """
    try:
        import mediapipe
    except ImportError as error:
        raise PoseDependencyError(
            f"the mediapipe estimator needs mediapipe {MEDIAPIPE_VERSION}: pip install 'reidkit[pose]' (in an "
            "environment without reidkit[milvus]: mediapipe needs protobuf<5, pymilvus protobuf>=5.27)"
        ) from error
    return mediapipe


def _rgb(image: Any) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB of a PIL image or an array (``[H, W, 3]`` RGB, or ``[H, W]`` grey)."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(
            f"images: expected PIL images or [H, W, 3] uint8 RGB arrays, got {array.dtype} {array.shape}"
        )
    return np.ascontiguousarray(array)


class MediaPipePose:
    """MediaPipe Pose (legacy solution, ``model_complexity=1``) as a :class:`~reidkit.data.keypoints.KeypointSource`.

    Args:
        min_height: images lower than this are enlarged to it before estimation (keeping their aspect).
        pad: margin added on every side before estimation, as a fraction of the (enlarged) image's size.
        min_detection_confidence: MediaPipe's threshold of the person detector.
    """

    def __init__(
        self, *, min_height: int = 256, pad: float = 0.1, min_detection_confidence: float = 0.5
    ) -> None:
        mediapipe = import_mediapipe()
        self.name = f"mediapipe {mediapipe.__version__} pose (legacy solution)"
        self.min_height, self.pad = int(min_height), float(pad)
        self._pose = mediapipe.solutions.pose.Pose(
            static_image_mode=True, model_complexity=1, min_detection_confidence=min_detection_confidence
        )

    def estimate(self, images: Sequence[Any]) -> np.ndarray:
        """``[N, 17, 3]`` float32 ``(x, y, visibility)`` in each image's pixels (PIL images or RGB arrays)."""
        out = np.zeros((len(images), NUM_KEYPOINTS, 3), dtype=np.float32)
        for i, image in enumerate(images):
            out[i] = self._one(_rgb(image))
        return out

    def _one(self, rgb: np.ndarray) -> np.ndarray:
        height, width = rgb.shape[:2]
        scale = max(1.0, self.min_height / height)
        work = rgb
        if scale > 1.0:
            size = (round(width * scale), round(height * scale))
            work = np.asarray(Image.fromarray(rgb).resize(size, Image.BICUBIC))
        pad_y, pad_x = round(work.shape[0] * self.pad), round(work.shape[1] * self.pad)
        work = np.pad(work, ((pad_y, pad_y), (pad_x, pad_x), (0, 0)), mode="edge")
        result = self._pose.process(np.ascontiguousarray(work))
        if result.pose_landmarks is None:
            return missing_points()
        landmarks = result.pose_landmarks.landmark
        points = np.zeros((NUM_KEYPOINTS, 3), dtype=np.float32)
        for row, index in enumerate(MEDIAPIPE_TO_COCO):
            mark = landmarks[index]  # normalised to the padded image
            x = (mark.x * work.shape[1] - pad_x) / scale
            y = (mark.y * work.shape[0] - pad_y) / scale
            inside = 0.0 <= x <= width and 0.0 <= y <= height
            points[row] = (x, y, min(1.0, max(0.0, mark.visibility)) if inside else 0.0)
        return points

    def close(self) -> None:
        """Free MediaPipe's graph."""
        self._pose.close()
