"""Album fixtures: an embedder without a network, hand-made photos whose colours tell the people apart, and a
synthetic album."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


class ColourLayoutEmbedder:
    """An :class:`reidkit.embed.Embedder` whose embedding is the image's colours on a coarse grid.

    The image is resized to ``input_size`` (height, width) and its RGB pixels, centred on mid-grey, are the
    embedding: people in differently coloured clothes get far-apart vectors, the same clothes seen by another
    camera stay close.
    """

    name = "colour-layout"
    fingerprint = "colour-layout-v1"

    def __init__(self, input_size: tuple[int, int] = (8, 4)) -> None:
        self.input_size = input_size
        self.dim = 3 * input_size[0] * input_size[1]

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        height, width = self.input_size
        rows = np.zeros((len(images), self.dim), dtype=np.float64)
        for i, image in enumerate(images):
            pixels = np.asarray(
                image.convert("RGB").resize((width, height), Image.BILINEAR), dtype=np.float64
            )
            rows[i] = pixels.reshape(-1) / 255.0 - 0.5
        rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        return rows.astype(np.float32)


@pytest.fixture
def colour_embedder() -> ColourLayoutEmbedder:
    return ColourLayoutEmbedder()


#: person id -> (top colour, bottom colour) of the hand-made album
COLOURS = {
    1: ((200, 30, 30), (20, 20, 120)),
    2: ((30, 160, 40), (230, 230, 230)),
    3: ((240, 200, 20), (90, 50, 10)),
}


def _person(top, bottom, shade: int) -> Image.Image:
    image = Image.new("RGB", (32, 64), tuple(min(255, c + shade) for c in top))
    image.paste(Image.new("RGB", (32, 32), tuple(min(255, c + shade) for c in bottom)), (0, 32))
    return image


def write_colour_album(root: Path) -> dict[str, int]:
    """Photos of three people in sub-folders (4, 3 and 2 images, slightly different shades) and one person
    photographed once; names in Market-1501 style. Returns {relative path: person id}."""
    written = {}
    for pid, count, folder in ((1, 4, "day1"), (2, 3, "day1"), (3, 2, "day2")):
        for shot in range(count):
            name = f"{folder}/{pid:04d}_c{shot % 2 + 1}s1_{shot:06d}_00.jpg"
            written[name] = pid
    written["day2/0009_c1s1_000000_00.png"] = 9
    for index, (name, pid) in enumerate(written.items()):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        top, bottom = COLOURS.get(pid, ((0, 200, 220), (200, 0, 200)))
        _person(top, bottom, 3 * (index % 3)).save(path)
    return written


@pytest.fixture
def colour_album(tmp_path) -> Path:
    root = tmp_path / "photos"
    write_colour_album(root)
    return root


@pytest.fixture(scope="session")
def synthetic_album(tmp_path_factory) -> Path:
    """A small synthetic album: 6 people, 3 cameras (Market-1501 names carry the person ids)."""
    from reidkit.data.synth import generate

    root = tmp_path_factory.mktemp("album") / "photos"
    generate(root, ids=6, cams=3, seed=2, difficulty="easy", images_per_camera=2)
    return root
