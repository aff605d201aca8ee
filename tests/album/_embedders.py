"""A small deterministic embedder for album tests: the colour layout of the image (no network)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
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
