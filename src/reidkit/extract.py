"""Batched feature extraction: images -> L2-normalised embeddings, optionally flip-averaged; ``.npz`` files.

:class:`TorchEmbedder` is the PyTorch implementation of the embedder protocol shared with the ONNX and
OpenVINO embedders (``name``, ``fingerprint``, ``dim``, ``input_size``, ``embed_images``), so evaluation,
indexing and serving all embed the same way.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from reidkit._io import atomic_write
from reidkit.data.records import Sample
from reidkit.data.transforms import TestTransform, read_image
from reidkit.errors import ConfigError, DatasetError


class _PathDataset(Dataset):
    def __init__(self, paths: Sequence[str], transform: TestTransform) -> None:
        self.paths, self.transform = list(paths), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Tensor:
        return self.transform(read_image(self.paths[index]))


def model_fingerprint(model: nn.Module, preprocess: dict) -> str:
    """A short hash of the weights and preprocessing: two embedders agree only if this agrees."""
    digest = hashlib.sha256(repr(sorted(preprocess.items())).encode())
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class TorchEmbedder:
    """Embed images with a reidkit model.

    Args:
        model: a model with ``embed(images [B, 3, H, W]) -> [B, D]``.
        height, width, mean, std: the preprocessing the model was trained with.
        flip: average the embeddings of each image and its horizontal mirror.
        device: where to run the model.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        height: int,
        width: int,
        mean: Sequence[float],
        std: Sequence[float],
        flip: bool = True,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        name: str = "reidkit",
    ) -> None:
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.transform = TestTransform(height, width, tuple(mean), tuple(std))
        self.flip, self.batch_size, self.name = flip, batch_size, name
        self.info: dict = {}  # checkpoint contents when built from a checkpoint
        self.input_size = (height, width)
        self.dim = int(getattr(model, "embedding_dim", 0)) or self._probe_dim()
        preprocess = {"height": height, "width": width, "mean": tuple(mean), "std": tuple(std), "flip": flip}
        self.fingerprint = model_fingerprint(model, preprocess)

    def _probe_dim(self) -> int:
        height, width = self.input_size
        with torch.no_grad():
            return int(self.model.embed(torch.zeros(1, 3, height, width, device=self.device)).shape[1])

    @torch.no_grad()
    def embed_tensor(self, images: Tensor) -> Tensor:
        """``[B, 3, H, W]`` preprocessed images -> ``[B, D]`` L2-normalised embeddings (on CPU)."""
        images = images.to(self.device)
        features = self.model.embed(images).float()
        if self.flip:
            features = features + self.model.embed(torch.flip(images, dims=[3])).float()
        return F.normalize(features, dim=1).cpu()

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """PIL images -> ``[B, D]`` float32 L2-normalised embeddings."""
        chunks = []
        for start in range(0, len(images), self.batch_size):
            batch = torch.stack(
                [self.transform(image.convert("RGB")) for image in images[start : start + self.batch_size]]
            )
            chunks.append(self.embed_tensor(batch).numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, self.dim), dtype=np.float32)

    def embed_paths(self, paths: Sequence[str], *, workers: int = 0, progress: bool = False) -> np.ndarray:
        """Image files -> ``[N, D]`` embeddings, read by ``workers`` loader processes."""
        from tqdm import tqdm

        loader = DataLoader(
            _PathDataset(paths, self.transform), batch_size=self.batch_size, num_workers=workers
        )
        chunks = [
            self.embed_tensor(batch).numpy() for batch in tqdm(loader, desc="embed", disable=not progress)
        ]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.dim), dtype=np.float32)

    @torch.no_grad()
    def embed_local_paths(
        self, paths: Sequence[str], *, workers: int = 0, progress: bool = False
    ) -> np.ndarray:
        """Image files -> ``[N, h, C]`` per-row local features (models with ``embed_local``, e.g. AlignedReID).

        Rows are pooled over the width, so a mirrored image gives the same rows; with ``flip`` the two are
        averaged like the global embedding.
        """
        from tqdm import tqdm

        if not hasattr(self.model, "embed_local"):
            raise ConfigError(
                f"model {type(self.model).__name__} has no local features; use the global distance"
            )
        loader = DataLoader(
            _PathDataset(paths, self.transform), batch_size=self.batch_size, num_workers=workers
        )
        chunks = []
        for batch in tqdm(loader, desc="embed local", disable=not progress):
            batch = batch.to(self.device)
            local = self.model.embed_local(batch).float()
            if self.flip:
                local = (local + self.model.embed_local(torch.flip(batch, dims=[3])).float()) / 2
            chunks.append(local.cpu().numpy())
        return np.concatenate(chunks)

    @torch.no_grad()
    def output_features_paths(
        self, paths: Sequence[str], *, on: str = "global", workers: int = 0, progress: bool = False
    ) -> np.ndarray:
        """Image files -> ``[N, D]`` raw features of the model output field ``on`` (not normalised).

        The features a loss term was trained on (``ReidOutput.select(on)``; for a list, such as
        ``global_features``, its first entry), for scoring heads that take them, e.g. the verification pair
        head. With ``flip`` the features of the image and its mirror are averaged (the mean keeps their scale).
        """
        from tqdm import tqdm

        loader = DataLoader(
            _PathDataset(paths, self.transform), batch_size=self.batch_size, num_workers=workers
        )

        def select(images: Tensor) -> Tensor:
            try:
                value = self.model(images).select(on)
            except (KeyError, ValueError) as error:
                raise ConfigError(f"model {type(self.model).__name__}: {error}") from None
            value = value[0] if isinstance(value, list) else value
            if value.dim() != 2:
                raise ConfigError(f"model output {on!r} is not a [B, D] feature (shape {tuple(value.shape)})")
            return value.float()

        chunks = []
        for batch in tqdm(loader, desc=f"features {on}", disable=not progress):
            batch = batch.to(self.device)
            features = select(batch)
            if self.flip:
                features = (features + select(torch.flip(batch, dims=[3]))) / 2
            chunks.append(features.cpu().numpy())
        if not chunks:
            raise ValueError("output_features_paths: no image paths given")
        return np.concatenate(chunks)


def embedder_for_checkpoint_model(
    model: nn.Module, info: dict, *, flip: bool = True, device: str = "cpu", batch_size: int = 64
) -> TorchEmbedder:
    """Wrap a model rebuilt by :func:`reidkit.engine.load_model` with its checkpoint's preprocessing.

    Everything that embeds a checkpoint builds its embedder here, so their fingerprints agree.
    """
    pre = info["preprocess"]
    embedder = TorchEmbedder(
        model,
        height=pre["height"],
        width=pre["width"],
        mean=pre["mean"],
        std=pre["std"],
        flip=flip,
        device=device,
        batch_size=batch_size,
        name=str(info["model_spec"]["name"]),
    )
    embedder.info = info
    return embedder


def load_embedder_from_checkpoint(
    path: str | Path, *, flip: bool = True, device: str = "cpu", batch_size: int = 64
) -> TorchEmbedder:
    """Rebuild a checkpoint's model and wrap it with the preprocessing it was trained with.

    The checkpoint's other contents (``config``, ``model_spec``, ``preprocess``) are kept in ``embedder.info``.
    """
    from reidkit.engine import load_model

    model, info = load_model(path, map_location=device)
    return embedder_for_checkpoint_model(model, info, flip=flip, device=device, batch_size=batch_size)


def extract_features(
    embedder, paths: Sequence[str], *, batch_size: int = 64, workers: int = 0, progress: bool = False
) -> np.ndarray:
    """Embed image files with any embedder (PyTorch, ONNX, OpenVINO) -> ``[N, D]`` float32."""
    if hasattr(embedder, "embed_paths"):
        return embedder.embed_paths(paths, workers=workers, progress=progress)
    from tqdm import tqdm

    chunks = []
    for start in tqdm(range(0, len(paths), batch_size), desc="embed", disable=not progress):
        chunks.append(embedder.embed_images([read_image(p) for p in paths[start : start + batch_size]]))
    return np.concatenate(chunks) if chunks else np.zeros((0, embedder.dim), dtype=np.float32)


def save_features(
    path: str | Path, features: np.ndarray, samples: Sequence[Sample], **extra: np.ndarray
) -> None:
    """Write features with their paths, pids and camids to an ``.npz`` file, atomically."""
    if len(features) != len(samples):
        raise ValueError(f"{len(features)} features for {len(samples)} samples")
    arrays = {
        "features": np.asarray(features, dtype=np.float32),
        "paths": np.array([s.path for s in samples]),
        "pids": np.array([s.pid for s in samples], dtype=np.int64),
        "camids": np.array([s.camid for s in samples], dtype=np.int64),
        **extra,
    }
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write(path, lambda stream: stream.write(buffer.getvalue()))


def load_features(path: str | Path) -> dict[str, np.ndarray]:
    """Read an ``.npz`` written by :func:`save_features`."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"feature file {path} does not exist")
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    missing = {"features", "paths", "pids", "camids"} - set(arrays)
    if missing:
        raise DatasetError(f"feature file {path} lacks {sorted(missing)}")
    return arrays
