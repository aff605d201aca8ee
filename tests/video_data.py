"""Hand-made video ReID data for the video evaluation tests: an iLIDS-VID tree and a frame-colour embedder."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

#: iLIDS-VID people (folders of cam1 and cam2) and the two splits of ``ls_set`` (1-based person indices)
ILIDS_PEOPLE = ("person001", "person002", "person003", "person004")
ILIDS_SETS = ((1, 2, 3, 4), (3, 4, 1, 2))


def write_frame(path: Path, red: int, *, size: tuple[int, int] = (16, 8), seed: int = 0) -> str:
    """A ``size`` (height, width) frame whose red channel is ``red`` (green, blue: noise from ``seed``)."""
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
    array[..., 0] = red
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return str(path)


def make_ilids(folder: Path, *, frames: int = 3) -> Path:
    """An iLIDS-VID tree of :data:`ILIDS_PEOPLE` in two cameras (``frames`` frames each) and two splits.

    Person ``n`` (0-based) has red ``40 n`` in cam1 and ``40 n + 30`` in cam2, so the cross-camera nearest
    neighbour by red is not always the right person."""
    import scipy.io

    for shift, camera in enumerate(("cam1", "cam2")):
        for number, person in enumerate(ILIDS_PEOPLE):
            for frame in range(frames):
                name = f"{camera}_{person}_{frame:05d}.png"
                path = folder / "i-LIDS-VID" / "sequences" / camera / person / name
                write_frame(path, 40 * number + 30 * shift, seed=10 * shift + frame)
    splits = folder / "train-test people splits"
    splits.mkdir(parents=True)
    scipy.io.savemat(
        splits / "train_test_splits_ilidsvid.mat", {"ls_set": np.array(ILIDS_SETS, dtype=np.float64)}
    )
    return folder


class AngleEmbedder:
    """An embedder that places each image on a quarter circle by its top-left red value: ``red / 255 * 90``
    degrees. Distances between one-colour tracklets then grow with the difference of their red values."""

    name, fingerprint, dim, input_size = "angle", "angle", 2, (16, 8)

    def __init__(self) -> None:
        self.images = 0

    def embed_images(self, images) -> np.ndarray:
        self.images += len(images)
        angles = [math.radians(image.convert("RGB").getpixel((0, 0))[0] / 255 * 90) for image in images]
        return np.array([[math.cos(a), math.sin(a)] for a in angles], dtype=np.float32)
