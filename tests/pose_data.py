"""Keypoint files for the generated test sets: COCO-17 joints placed proportionally in each image's box."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from reidkit.data.keypoints import KEYPOINTS_NAME, write_keypoints

#: (x, y) of the COCO-17 joints as fractions of the image width and height, for an upright person.
PROPORTIONS = np.array(
    [
        [0.50, 0.08],
        [0.46, 0.06],
        [0.54, 0.06],
        [0.42, 0.08],
        [0.58, 0.08],  # head
        [0.35, 0.22],
        [0.65, 0.22],
        [0.30, 0.38],
        [0.70, 0.38],
        [0.28, 0.52],
        [0.72, 0.52],  # arms
        [0.40, 0.52],
        [0.60, 0.52],
        [0.40, 0.72],
        [0.60, 0.72],
        [0.40, 0.93],
        [0.60, 0.93],  # hips, legs
    ],
    dtype=np.float32,
)


def proportional_points(width: int, height: int, visible: float = 1.0) -> np.ndarray:
    """``[17, 3]`` joints of an upright person filling a ``width x height`` image."""
    points = np.empty((17, 3), dtype=np.float32)
    points[:, 0] = PROPORTIONS[:, 0] * width
    points[:, 1] = PROPORTIONS[:, 1] * height
    points[:, 2] = visible
    return points


def dataset_with_keypoints(
    source: Path, out: Path, *, skip_every: int = 5, legs_hidden_every: int = 3
) -> Path:
    """A copy of the image set ``source`` at ``out`` with a ``keypoints.json``: every ``skip_every``-th image
    has no entry, every ``legs_hidden_every``-th listed image has its knees and ankles invisible."""
    shutil.copytree(source, out)
    points = {}
    images = sorted(p for p in out.rglob("*.jpg"))
    for index, path in enumerate(images):
        if index % skip_every == 0:
            continue
        with Image.open(path) as image:
            value = proportional_points(*image.size)
        if index % legs_hidden_every == 0:
            value[13:, 2] = 0.0
        points[path.relative_to(out).as_posix()] = value
    write_keypoints(out / KEYPOINTS_NAME, points, source="proportional test joints")
    return out
