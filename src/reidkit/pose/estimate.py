"""Estimate the keypoints of a set of images into a keypoint file, skipping the images it already has.

The file (:mod:`reidkit.data.keypoints`) keys images by their path relative to its folder, so every image must
be under that folder (a dataset's ``keypoints.json`` sits in its root). An image whose path is already in the
file is not estimated again (a changed image keeps its old keypoints: ``overwrite`` re-estimates everything).
The file is rewritten atomically every ``save_every`` seconds and at the end, also when estimation stops with
an error or an interrupt, so a stopped run resumes where it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from reidkit.data.keypoints import KeypointSource, check_points, read_keypoints, write_keypoints
from reidkit.errors import DatasetError


def relative_keys(images: Sequence[str | Path], out: str | Path) -> list[str]:
    """The keypoint file's key of each image: its path relative to ``out``'s folder, ``/``-separated.

    Raises:
        DatasetError: an image is not under that folder.
    """
    root = Path(out).resolve().parent
    keys = []
    for image in images:
        try:
            keys.append(Path(image).resolve().relative_to(root).as_posix())
        except ValueError:
            raise DatasetError(
                f"image {image} is not under {root}, the folder of the keypoint file {out}; write the file into "
                "a folder that holds every image (a dataset's root)"
            ) from None
    return keys


def estimate_file(
    estimator: KeypointSource,
    images: Sequence[str | Path],
    out: str | Path,
    *,
    batch_size: int = 16,
    overwrite: bool = False,
    save_every: float = 30.0,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Estimate the keypoints of the ``images`` that the keypoint file ``out`` lacks, and write the file.

    Args:
        estimator: makes the keypoints (its ``name`` is the file's ``source``).
        images: image files under ``out``'s folder.
        batch_size: images per call of ``estimator.estimate``.
        overwrite: start a new file (every image estimated, the old file's entries dropped).
        save_every: seconds between writes of the file while estimating.
        progress: called with the number of images done after every batch.

    Returns:
        ``{"out", "source", "images", "estimated", "cached", "no_pose", "entries"}``: ``no_pose`` counts the
        estimated images without a single visible keypoint, ``entries`` the images in the file.

    Raises:
        DatasetError: an image outside ``out``'s folder, an unreadable image, ``out`` is not a keypoint file, or
            it was made by another estimator (``overwrite`` replaces it).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: expected an integer >= 1, got {batch_size}")
    out = Path(out)
    keys = relative_keys(images, out)
    points: dict[str, np.ndarray] = {}
    if out.exists() and not overwrite:
        known = read_keypoints(out)
        if known.points and known.source != estimator.name:
            raise DatasetError(
                f"{out} holds keypoints of {known.source!r}, not of {estimator.name!r}; give another file or "
                "--overwrite to replace it"
            )
        points = dict(known.points)
    todo = [(key, image) for key, image in dict(zip(keys, images, strict=True)).items() if key not in points]
    cached = len(set(keys)) - len(todo)
    no_pose = 0
    saved = time.monotonic()
    try:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            found = np.asarray(estimator.estimate([_load(image) for _, image in batch]), dtype=np.float32)
            if found.shape != (len(batch), 17, 3):
                raise ValueError(
                    f"{estimator.name}: estimate returned {list(found.shape)}, not [{len(batch)}, 17, 3]"
                )
            for (key, _), value in zip(batch, found, strict=True):
                points[key] = check_points(value, f"{estimator.name} on {key}")
                no_pose += int(not (value[:, 2] > 0).any())
            if progress is not None:
                progress(len(batch))
            if time.monotonic() - saved >= save_every:
                write_keypoints(out, dict(sorted(points.items())), source=estimator.name)
                saved = time.monotonic()
    finally:
        if todo or overwrite or not out.exists():
            write_keypoints(out, dict(sorted(points.items())), source=estimator.name)
    return {
        "out": str(out),
        "source": estimator.name,
        "images": len(set(keys)),
        "estimated": len(todo),
        "cached": cached,
        "no_pose": no_pose,
        "entries": len(points),
    }


def _load(path: str | Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError) as error:
        raise DatasetError(f"cannot read image {path} ({error})") from None
