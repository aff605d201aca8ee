"""The embedder protocol and the one batching / flip / L2 loop every reidkit embedder runs.

An :class:`Embedder` turns PIL images into L2-normalised ReID embeddings; it is the type that evaluation, the
index, the search command and the HTTP service take. :class:`BatchEmbedder` implements it once for every
runtime: preprocess a chunk of images (:class:`reidkit.checkpoint.Preprocess`), run the network, add the
mirrored images' output when ``preprocess.flip``, refuse non-finite output, normalise the rows. A runtime only
provides ``_forward(batch [B, 3, H, W]) -> [B, D]``. :func:`embed_paths` reads image files (in loader
processes) and feeds any embedder, so files are embedded the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from reidkit.checkpoint import Preprocess
from reidkit.errors import EmbeddingError


@runtime_checkable
class Embedder(Protocol):
    """What evaluation, the index, search and the service need from a model.

    Attributes:
        name: a human-readable model name.
        fingerprint: a string that changes whenever the weights or the preprocessing change; an index refuses
            embeddings whose fingerprint differs from the one it was built with.
        dim: embedding dimension D.
        input_size: ``(height, width)`` the images are resized to.
    """

    name: str
    fingerprint: str
    dim: int
    input_size: tuple[int, int]

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """PIL images (any size, any mode) -> ``[B, D]`` float32, L2-normalised rows."""
        ...


def normalise_rows(features: np.ndarray, name: str, runtime: str) -> np.ndarray:
    """``[B, D]`` -> L2-normalised float32 rows; non-finite or all-zero output raises :class:`EmbeddingError`."""
    features = features.reshape(len(features), -1).astype(np.float32)
    finite = np.isfinite(features).all(axis=1)
    if not finite.all():
        raise EmbeddingError(
            f"{name}: {runtime} returned non-finite values (NaN or infinity) for {int((~finite).sum())} of "
            f"{len(features)} images; this runtime does not run the model correctly, so nothing was embedded "
            "(try another runtime, e.g. OpenVinoEmbedder on the same file)"
        )
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    if (norms == 0).any():
        raise EmbeddingError(
            f"{name}: {runtime} returned an all-zero embedding for {int((norms == 0).sum())} images"
        )
    return features / norms


class BatchEmbedder:
    """The shared loop of every embedder; subclasses set the attributes and provide ``_forward``.

    Attributes:
        preprocess: image -> network input (and whether to flip-average).
        batch_size: images per network call.
        runtime: the runtime's name, for error messages.
    """

    runtime = ""
    name: str
    fingerprint: str
    dim: int
    preprocess: Preprocess
    batch_size: int

    @property
    def input_size(self) -> tuple[int, int]:
        return self.preprocess.input_size

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        """``[B, 3, H, W]`` float32 network input -> ``[B, ...]`` raw output."""
        raise NotImplementedError

    def map_images(
        self,
        images: Sequence[Image.Image],
        forward: Callable[[np.ndarray], np.ndarray],
        *,
        normalise: bool,
    ) -> np.ndarray:
        """Run ``forward`` over preprocessed chunks of ``images``; with ``preprocess.flip`` add the mirror's.

        Args:
            forward: ``[B, 3, H, W] -> [B, ...]``.
            normalise: True: sum of image and mirror, L2-normalised rows (embeddings); False: their mean,
                any output shape (raw features, e.g. local or pair-head features).
        """
        chunks = []
        for start in range(0, len(images), self.batch_size):
            batch = self.preprocess(images[start : start + self.batch_size])
            output = np.asarray(forward(batch), dtype=np.float32)
            if self.preprocess.flip:
                mirrored = np.asarray(forward(np.ascontiguousarray(batch[..., ::-1])), dtype=np.float32)
                output = output + mirrored if normalise else (output + mirrored) / 2
            chunks.append(normalise_rows(output, self.name, self.runtime) if normalise else output)
        if not chunks:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(chunks)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """PIL images -> ``[B, D]`` float32 L2-normalised embeddings (EmbeddingError on NaN/inf output)."""
        return self.map_images(images, self._forward, normalise=True)

    def _probe_dim(self) -> int:
        height, width = self.input_size
        return int(self._forward(np.zeros((1, 3, height, width), np.float32)).reshape(1, -1).shape[1])


def forward_in_fixed_batches(run: Callable[[np.ndarray], np.ndarray], batch: np.ndarray, size: int) -> np.ndarray:
    """Run a network whose batch axis is fixed at ``size`` on any batch (the last chunk is zero-padded)."""
    outputs = []
    for start in range(0, len(batch), size):
        part = batch[start : start + size]
        missing = size - len(part)
        if missing:
            part = np.concatenate([part, np.zeros((missing, *part.shape[1:]), np.float32)])
        outputs.append(run(part).reshape(size, -1)[: size - missing])
    return np.concatenate(outputs)


class _ImageFiles:
    """A map-style dataset of decoded images (decoded in loader processes)."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Image.Image:
        from reidkit.data.transforms import read_image

        return read_image(self.paths[index])


def _as_list(images: list) -> list:
    return images


def iter_image_chunks(
    paths: Sequence[str], *, batch_size: int = 64, workers: int = 0, progress: bool = False, desc: str = "embed"
):
    """Decoded images of ``paths`` in chunks of ``batch_size``, read by ``workers`` loader processes, in order."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    loader = DataLoader(_ImageFiles(paths), batch_size=batch_size, num_workers=workers, collate_fn=_as_list)
    yield from tqdm(loader, desc=desc, disable=not progress)


def embed_paths(
    embedder: Embedder,
    paths: Sequence[str],
    *,
    batch_size: int = 64,
    workers: int = 0,
    progress: bool = False,
) -> np.ndarray:
    """Embed image files with any embedder -> ``[N, D]`` float32 L2-normalised rows.

    Raises:
        DatasetError: a file is missing or not an image (named in the message).
    """
    chunks = [
        embedder.embed_images(images)
        for images in iter_image_chunks(paths, batch_size=batch_size, workers=workers, progress=progress)
    ]
    return np.concatenate(chunks) if chunks else np.zeros((0, embedder.dim), dtype=np.float32)
