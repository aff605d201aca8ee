"""Body keypoints per image: the file that stores them, and the geometry that follows an image through its transforms.

File (``keypoints.json``, written atomically; paths relative to the file's folder, ``/``-separated)::

    {"format": "reidkit-keypoints", "version": 1, "layout": "coco17",
     "source": "synthetic ground truth" | "mediapipe 0.10.14 pose (legacy solution)" | ...,
     "images": {"bounding_box_train/0001_c1s1_000001_00.jpg": [[x, y, visibility], ... 17 rows], ...}}

Points are COCO-17 (:data:`reidkit.models.pose_regions.COCO_KEYPOINTS` order) in continuous pixel coordinates of
the stored image: pixel ``(i, j)`` covers ``[j, j + 1) x [i, i + 1)``, so the image spans ``[0, W] x [0, H]``.
Visibility is in ``[0, 1]``: 0 for a joint that is not seen (occluded, or outside the image), otherwise the
estimator's confidence (1 for ground truth). An image absent from the file has no keypoints.

Estimators plug in through :class:`KeypointSource` (``name`` and ``estimate(images) -> [N, 17, 3]``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from reidkit._io import atomic_write_text
from reidkit.errors import DatasetError

KEYPOINTS_NAME = "keypoints.json"
FORMAT = "reidkit-keypoints"
VERSION = 1
LAYOUT = "coco17"
NUM_KEYPOINTS = 17
#: COCO-17 left/right pairs, swapped by a horizontal flip.
FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
_FLIP_ORDER = np.arange(NUM_KEYPOINTS)
for _left, _right in FLIP_PAIRS:
    _FLIP_ORDER[_left], _FLIP_ORDER[_right] = _right, _left


class KeypointSource(Protocol):
    """An estimator: ``estimate`` returns ``[N, 17, 3]`` float32 ``(x, y, visibility)`` in each image's pixels."""

    name: str

    def estimate(self, images: Sequence[Any]) -> np.ndarray: ...


@dataclass(frozen=True)
class KeypointFile:
    """The keypoints of a set of images.

    Attributes:
        root: the folder the image paths are relative to (the file's folder).
        source: what made them (ground truth, or the estimator and its version).
        points: relative image path -> ``[17, 3]`` float32.
    """

    root: Path
    source: str
    points: dict[str, np.ndarray]

    def key(self, image: str | Path) -> str:
        """The file's key of an image path (absolute, or relative to the current folder)."""
        path = Path(image).resolve()
        try:
            return path.relative_to(self.root.resolve()).as_posix()
        except ValueError:
            raise DatasetError(
                f"image {image} is not under {self.root}, the folder of its keypoint file"
            ) from None

    def get(self, image: str | Path) -> np.ndarray | None:
        """``[17, 3]`` keypoints of ``image``, or None when the file has none for it."""
        return self.points.get(self.key(image))


def check_points(points: Any, where: str) -> np.ndarray:
    """``points`` as float32 ``[17, 3]`` with finite coordinates and visibility in ``[0, 1]``.

    Raises:
        DatasetError: another shape or bad values; the message starts with ``where``.
    """
    try:
        array = np.asarray(points, dtype=np.float32)
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: keypoints must be {NUM_KEYPOINTS} rows of [x, y, visibility]") from None
    if array.shape != (NUM_KEYPOINTS, 3):
        raise DatasetError(
            f"{where}: keypoints must be {NUM_KEYPOINTS} rows of [x, y, visibility], got shape {list(array.shape)}"
        )
    if not np.isfinite(array).all():
        raise DatasetError(f"{where}: keypoints must be finite numbers")
    if (array[:, 2] < 0).any() or (array[:, 2] > 1).any():
        raise DatasetError(f"{where}: visibility must be in [0, 1]")
    return array


def write_keypoints(path: str | Path, points: Mapping[str, np.ndarray], *, source: str) -> Path:
    """Write a keypoint file atomically.

    Args:
        path: the file (``keypoints.json`` in a dataset root, by convention).
        points: image path (relative to ``path``'s folder, or absolute under it) -> ``[17, 3]``.
        source: what made the keypoints.

    Returns:
        The path written.
    """
    path = Path(path)
    root = path.parent.resolve()
    images: dict[str, list] = {}
    for image, value in points.items():
        candidate = Path(image)
        key = (candidate.resolve().relative_to(root) if candidate.is_absolute() else candidate).as_posix()
        rows = check_points(value, f"keypoints of {image}")
        images[key] = [[round(float(v), 3) for v in row] for row in rows]
    document = {"format": FORMAT, "version": VERSION, "layout": LAYOUT, "source": source, "images": images}
    atomic_write_text(path, json.dumps(document, separators=(",", ":")))
    return path


def read_keypoints(path: str | Path) -> KeypointFile:
    """Read and check a keypoint file.

    Raises:
        DatasetError: missing, not JSON, another format, version or layout, or a bad entry (named).
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"keypoint file {path} does not exist") from None
    except (OSError, ValueError) as error:
        raise DatasetError(f"keypoint file {path} is not readable JSON ({error})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise DatasetError(f'{path} is not a reidkit keypoint file (expected "format": {FORMAT!r})')
    if document.get("version") != VERSION or document.get("layout") != LAYOUT:
        raise DatasetError(
            f"{path}: version {document.get('version')!r}, layout {document.get('layout')!r}; this reidkit reads "
            f"version {VERSION}, layout {LAYOUT!r}"
        )
    images = document.get("images")
    if not isinstance(images, dict):
        raise DatasetError(f'{path}: "images" must be an object of image path -> keypoints')
    points = {str(key): check_points(value, f"{path}: images[{key!r}]") for key, value in images.items()}
    return KeypointFile(root=path.parent, source=str(document.get("source", "")), points=points)


# ---------------------------------------------------------------------- geometry
def flip_points(points: np.ndarray, width: float) -> np.ndarray:
    """Keypoints of the horizontally flipped image: ``x -> width - x``, left and right joints swapped."""
    out = np.array(points, dtype=np.float32)[..., _FLIP_ORDER, :]
    out[..., 0] = width - out[..., 0]
    return out


def resize_points(points: np.ndarray, source: tuple[int, int], target: tuple[int, int]) -> np.ndarray:
    """Keypoints of an image resized from ``source = (H, W)`` to ``target = (H, W)``."""
    out = np.array(points, dtype=np.float32)
    out[..., 0] *= target[1] / source[1]
    out[..., 1] *= target[0] / source[0]
    return out


def shift_points(points: np.ndarray, dx: float, dy: float, size: tuple[int, int]) -> np.ndarray:
    """Keypoints after the image content moved by ``(dx, dy)`` pixels inside a frame of ``size = (H, W)``
    (padding then cropping); a joint that leaves the frame becomes invisible."""
    out = np.array(points, dtype=np.float32)
    out[..., 0] += dx
    out[..., 1] += dy
    outside = (out[..., 0] < 0) | (out[..., 0] > size[1]) | (out[..., 1] < 0) | (out[..., 1] > size[0])
    out[..., 2] = np.where(outside, 0.0, out[..., 2])
    return out


def missing_points() -> np.ndarray:
    """``[17, 3]`` of an image without keypoints: every joint invisible."""
    return np.zeros((NUM_KEYPOINTS, 3), dtype=np.float32)


def points_of(file: KeypointFile, paths: Sequence[str | Path]) -> list[np.ndarray]:
    """``[17, 3]`` keypoints of each image of ``paths``; :func:`missing_points` for one the file does not list."""
    return [file.points.get(file.key(path), missing_points()) for path in paths]


def dataset_keypoints(root: str | Path, path: str | Path | None = None, *, what: str) -> KeypointFile:
    """The keypoint file of a dataset: ``path``, or ``root/keypoints.json`` when ``path`` is None.

    Args:
        what: who needs it (named in the error).

    Raises:
        DatasetError: the file does not exist (named, with how to make one) or does not read.
    """
    file = Path(path) if path is not None else Path(root) / KEYPOINTS_NAME
    if not file.is_file():
        raise DatasetError(
            f"{what} needs body keypoints, but the keypoint file {file} does not exist; write one with "
            f"reidkit.data.keypoints.write_keypoints (or set data.keypoints to the file)"
        )
    return read_keypoints(file)
