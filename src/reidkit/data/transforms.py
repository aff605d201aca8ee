"""Image transforms for training and testing.

Every random choice comes from an explicit ``numpy.random.Generator`` passed per call, so an image's
augmentation depends only on its seed: a resumed run (or one with a different number of loader workers)
sees exactly the same pixels as an uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from reidkit.errors import DatasetError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def read_image(path: str) -> Image.Image:
    """Open an image file as RGB, with an error that names the file when it is missing or corrupt."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except FileNotFoundError:
        raise DatasetError(f"image file {path} does not exist") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DatasetError(f"image file {path} cannot be read as an image: {error}") from None


def _to_array(image: Image.Image, height: int, width: int) -> np.ndarray:
    """Resize to ``height x width`` (bilinear) -> float32 ``[H, W, 3]`` in [0, 1]."""
    if image.size != (width, height):
        image = image.resize((width, height), Image.BILINEAR)
    return np.asarray(image, dtype=np.float32) / 255.0


def _normalise(array: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    array = (array - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def color_jitter(array: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Random brightness, contrast and saturation, each scaled by a factor in [1 - s, 1 + s]."""
    brightness, contrast, saturation = rng.uniform(1.0 - strength, 1.0 + strength, size=3)
    array = array * brightness
    grey = array @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    array = (array - grey.mean()) * contrast + grey.mean()
    grey = (array @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    array = (array - grey) * saturation + grey
    return np.clip(array, 0.0, 1.0).astype(np.float32)


def pad_crop(array: np.ndarray, pad: int, rng: np.random.Generator, *, offset: bool = False):
    """Zero-pad by ``pad`` pixels on each side, then crop the original size at a random offset.

    Returns the crop, or with ``offset`` ``(crop, (top, left))``: the crop's corner in the padded image (the
    content moved by ``(pad - left, pad - top)``).
    """
    height, width = array.shape[:2]
    padded = np.pad(array, ((pad, pad), (pad, pad), (0, 0)))
    top, left = (int(v) for v in rng.integers(0, 2 * pad + 1, size=2))
    crop = padded[top : top + height, left : left + width]
    return (crop, (top, left)) if offset else crop


def random_erasing(
    tensor: Tensor,
    rng: np.random.Generator,
    *,
    area: tuple[float, float] = (0.02, 0.4),
    aspect: tuple[float, float] = (0.3, 1 / 0.3),
    attempts: int = 100,
) -> Tensor:
    """Replace a random rectangle of a normalised ``[3, H, W]`` image with 0 (the dataset mean).

    Reference: Zhong et al., "Random Erasing Data Augmentation", AAAI 2020.
    """
    _, height, width = tensor.shape
    for _ in range(attempts):
        target = rng.uniform(*area) * height * width
        ratio = math.exp(rng.uniform(math.log(aspect[0]), math.log(aspect[1])))
        h = int(round(math.sqrt(target * ratio)))
        w = int(round(math.sqrt(target / ratio)))
        if 0 < h < height and 0 < w < width:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            tensor = tensor.clone()
            tensor[:, top : top + h, left : left + w] = 0.0
            return tensor
    return tensor


@dataclass(frozen=True)
class TrainTransform:
    """Resize, colour jitter, horizontal flip, pad + random crop, normalise, random erasing.

    Args:
        flip: probability of a horizontal flip.
        pad: padding of the random crop (0 disables it).
        random_erasing: probability of erasing one rectangle.
        color_jitter: jitter strength in [0, 1] (0 disables it).
    """

    height: int = 256
    width: int = 128
    flip: float = 0.5
    pad: int = 10
    random_erasing: float = 0.5
    color_jitter: float = 0.0
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __call__(self, image: Image.Image, rng: np.random.Generator | None = None) -> Tensor:
        return self.with_points(image, None, rng)[0]

    def with_points(
        self, image: Image.Image, points: np.ndarray | None, rng: np.random.Generator | None = None
    ) -> tuple[Tensor, np.ndarray | None]:
        """The transformed image and its keypoints ``[17, 3]`` (see :mod:`reidkit.data.keypoints`) moved with it.

        The resize scales them, the flip mirrors them (left and right joints swapped), the pad + crop shifts them
        (a joint that leaves the frame becomes invisible); colour jitter and random erasing leave them as they
        are. The random draws are those of ``__call__``, so the same ``rng`` state gives the same pixels.
        """
        from reidkit.data.keypoints import flip_points, resize_points, shift_points

        rng = rng if rng is not None else np.random.default_rng()
        size = (self.height, self.width)
        if points is not None:
            points = resize_points(points, (image.height, image.width), size)
        array = _to_array(image, self.height, self.width)
        if self.color_jitter > 0:
            array = color_jitter(array, self.color_jitter, rng)
        if rng.random() < self.flip:
            array = array[:, ::-1]
            points = None if points is None else flip_points(points, self.width)
        if self.pad > 0:
            array, (top, left) = pad_crop(array, self.pad, rng, offset=True)
            if points is not None:
                points = shift_points(points, self.pad - left, self.pad - top, size)
        tensor = _normalise(array, self.mean, self.std)
        if rng.random() < self.random_erasing:
            tensor = random_erasing(tensor, rng)
        return tensor, points
