"""Keypoints follow an image through the training transform: checked against dots drawn in the image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from reidkit.data.batch import collate_items
from reidkit.data.image_dataset import ImageDataset
from reidkit.data.keypoints import FLIP_PAIRS
from reidkit.data.records import Sample
from reidkit.data.transforms import IMAGENET_MEAN, IMAGENET_STD, TrainTransform


def _dot_image(points: np.ndarray, size=(40, 80)) -> Image.Image:
    """Black image of ``size = (W, H)`` with a 1-pixel white dot in the pixel of each keypoint."""
    array = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    for x, y, _ in points:
        array[int(y), int(x)] = 255
    return Image.fromarray(array)


def _bright_pixels(tensor: torch.Tensor) -> set[tuple[int, int]]:
    """``(row, column)`` of the pixels that are white in a normalised ``[3, H, W]`` tensor."""
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    pixels = (tensor * std + mean).mean(0)
    return {(int(r), int(c)) for r, c in (pixels > 0.5).nonzero().tolist()}


@pytest.mark.parametrize("seed", range(12))
def test_points_land_on_their_dots_after_flip_and_crop(seed):
    # pixel centres (x + 0.5, y + 0.5); no resize, so every dot stays one pixel
    rng = np.random.default_rng(100 + seed)
    points = np.zeros((17, 3), dtype=np.float32)
    points[:, 0] = rng.integers(0, 40, 17) + 0.5
    points[:, 1] = rng.integers(0, 80, 17) + 0.5
    points[:, 2] = 1.0
    transform = TrainTransform(height=80, width=40, flip=0.5, pad=6, random_erasing=0.0)
    tensor, moved = transform.with_points(_dot_image(points), points, np.random.default_rng(seed))
    # the same draws as the image-only transform
    assert torch.equal(tensor, transform(_dot_image(points), np.random.default_rng(seed)))
    bright = _bright_pixels(tensor)
    for x, y, visible in moved:
        inside = 0 <= x <= 40 and 0 <= y <= 80
        assert (visible > 0) == inside
        if visible:
            assert (int(np.floor(y)), int(np.floor(x))) in bright
    # every dot left in the frame is some visible keypoint
    assert bright <= {(int(np.floor(y)), int(np.floor(x))) for x, y, v in moved if v > 0}


def test_flip_swaps_left_and_right_and_resize_scales():
    points = np.zeros((17, 3), dtype=np.float32)
    points[:, 0] = np.arange(17) + 1.0
    points[:, 1] = 10.0
    points[:, 2] = 1.0
    image = Image.new("RGB", (20, 40))
    transform = TrainTransform(height=80, width=40, flip=1.0, pad=0, random_erasing=0.0)
    _, moved = transform.with_points(image, points, np.random.default_rng(0))
    reference = points.copy()
    reference[:, 0] = 40 - 2 * points[:, 0]  # resized x2, then mirrored in a 40-wide frame
    reference[:, 1] = 20.0
    for left, right in FLIP_PAIRS:
        reference[[left, right]] = reference[[right, left]]
    np.testing.assert_allclose(moved, reference, atol=1e-5)


def test_random_erasing_leaves_points_alone():
    points = np.full((17, 3), 1.0, dtype=np.float32)
    points[:, :2] = 20.0
    transform = TrainTransform(height=40, width=40, flip=0.0, pad=0, random_erasing=1.0)
    _, moved = transform.with_points(Image.new("RGB", (40, 40), "white"), points, np.random.default_rng(1))
    np.testing.assert_array_equal(moved, points)


def test_dataset_items_collate_keypoints(tmp_path):
    paths = []
    for index in range(2):
        paths.append(tmp_path / f"{index}.jpg")
        Image.new("RGB", (20, 40)).save(paths[-1])
    samples = [Sample(str(path), 0, 0) for path in paths]
    points = [np.full((17, 3), 0.5, dtype=np.float32), np.zeros((17, 3), dtype=np.float32)]
    transform = TrainTransform(height=40, width=20, flip=0.0, pad=0, random_erasing=0.0)
    dataset = ImageDataset(samples, transform, keypoints=points)
    batch = collate_items([dataset[(0, 1)], dataset[(1, 2)]])
    assert batch.keypoints is not None and batch.keypoints.shape == (2, 17, 3)
    np.testing.assert_array_equal(batch.keypoints.numpy(), np.stack(points))
    assert ImageDataset(samples, transform)[0].keypoints is None
    with pytest.raises(ValueError, match="keypoints"):
        ImageDataset(samples, transform, keypoints=points[:1])
