"""Embed with a reidkit PyTorch model, e.g. one rebuilt from a :class:`reidkit.checkpoint.Checkpoint`."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import torch
from torch import Tensor, nn

from reidkit.checkpoint import Checkpoint, Preprocess
from reidkit.embed.base import BatchEmbedder, iter_image_chunks
from reidkit.errors import ConfigError, EmbeddingError


def model_fingerprint(model: nn.Module, preprocess: Preprocess) -> str:
    """A short hash of the weights and preprocessing: two embedders agree only if this agrees."""
    described = {
        "height": preprocess.height,
        "width": preprocess.width,
        "mean": preprocess.mean,
        "std": preprocess.std,
        "flip": preprocess.flip,
    }
    digest = hashlib.sha256(repr(sorted(described.items())).encode())
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class TorchEmbedder(BatchEmbedder):
    """Embed images with a reidkit model (``embed(images [B, 3, H, W]) -> [B, D]``).

    A video model (:class:`reidkit.models.temporal.TemporalModel`) embeds an image as a clip of that one frame,
    so photo search, the service and image indexes work with it; :meth:`embed_clips` embeds whole clips.

    Args:
        model: the network.
        preprocess: the input pipeline it was trained with; ``preprocess.flip`` averages with the mirror.
        device: where to run the model.
        batch_size: images per forward pass.
        name: model name.
        bf16: run the network under bfloat16 autocast (fast on CPUs with AMX or AVX512-BF16 and on recent
            GPUs); the features come back as float32 and are normalised in float32. The fingerprint is the
            model's either way: bf16 features approximate the same embedding (cosine to the float32 feature 0.988 on
            average, 0.966 at worst for a MobileNetV2 checkpoint in ``benchmarks/cpu_bf16.py``), so they may be
            searched against an index built in float32, at some cost in ranking.
    """

    runtime = "PyTorch"

    def __init__(
        self,
        model: nn.Module,
        preprocess: Preprocess,
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        name: str = "reidkit",
        bf16: bool = False,
    ) -> None:
        self.device = torch.device(device)
        self.bf16 = bool(bf16)
        self.model = model.eval().to(self.device)
        self.preprocess, self.batch_size, self.name = preprocess, batch_size, name
        self.checkpoint: Checkpoint | None = None  # set by from_checkpoint
        from reidkit.models.temporal import TemporalModel

        self._takes_clips = isinstance(self.model, TemporalModel)
        self.dim = int(getattr(model, "embedding_dim", 0)) or self._probe_dim()

    @functools.cached_property
    def fingerprint(self) -> str:
        """:func:`model_fingerprint` of the weights at first use (hashing them costs a pass over every weight,
        which evaluation during training never needs)."""
        return model_fingerprint(self.model, self.preprocess)

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: Checkpoint,
        *,
        flip: bool = True,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        bf16: bool = False,
    ) -> TorchEmbedder:
        """The checkpoint's model with the preprocessing it was trained with (every checkpoint embedder)."""
        embedder = cls(
            checkpoint.build_model(device=device),
            replace(checkpoint.preprocess, flip=flip),
            device=device,
            batch_size=batch_size,
            name=checkpoint.spec.name,
            bf16=bf16,
        )
        embedder.checkpoint = checkpoint
        return embedder

    @torch.no_grad()
    def _run(self, function: Callable[[Tensor], Tensor], batch: np.ndarray) -> np.ndarray:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            output = function(torch.from_numpy(batch).to(self.device))
        return output.float().cpu().numpy()

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        return self._run(self._embed_images, batch)

    def _embed_images(self, images: Tensor) -> Tensor:
        """``model.embed`` of ``[B, 3, H, W]``; a temporal model sees each image as a clip of one frame."""
        return self.model.embed(images.unsqueeze(1) if self._takes_clips else images)

    def embed_clips(self, clips: np.ndarray) -> np.ndarray:
        """Preprocessed clips ``[B, T, 3, H, W]`` -> ``[B, D]`` float32 clip features of a temporal model.

        ``model.embed`` of each clip; with ``preprocess.flip`` plus that of the mirrored clip (every frame
        mirrored), as :meth:`embed_images` does for images. Not normalised: a tracklet's clip features are
        averaged first (:func:`reidkit.embed.tracklets.embed_tracklets`).

        Raises:
            ValueError: ``clips`` is not ``[B, T, 3, H, W]``.
            EmbeddingError: the model returned NaN or infinity.
        """
        clips = np.ascontiguousarray(clips, dtype=np.float32)
        if clips.ndim != 5 or clips.shape[2] != 3:
            raise ValueError(f"expected clips [B, T, 3, H, W], got shape {list(clips.shape)}")
        output = self._run(self.model.embed, clips).reshape(len(clips), -1)
        if self.preprocess.flip:
            output = output + self._run(self.model.embed, np.ascontiguousarray(clips[..., ::-1])).reshape(
                len(clips), -1
            )
        finite = np.isfinite(output).all(axis=1)
        if not finite.all():
            raise EmbeddingError(
                f"{self.name}: {self.runtime} returned non-finite values (NaN or infinity) for "
                f"{int((~finite).sum())} of {len(clips)} clips"
            )
        return output

    def model_features(
        self,
        paths: Sequence[str],
        function: Callable[[Tensor], Tensor],
        *,
        workers: int = 0,
        progress: bool = False,
        desc: str = "features",
    ) -> np.ndarray:
        """Image files -> ``function(images)`` per image, mean over image and mirror when flipping (raw).

        For the scorers that need more than the embedding: per-row local features (``model.embed_local``),
        the features a verification pair head scores (``model(images).select(on)``).
        """
        chunks = [
            self.map_images(images, lambda batch: self._run(function, batch), normalise=False)
            for images in iter_image_chunks(
                paths, batch_size=self.batch_size, workers=workers, progress=progress, desc=desc
            )
        ]
        if not chunks:
            raise ConfigError("no image paths given to embed")
        return np.concatenate(chunks)

    def local_features(self, paths: Sequence[str], *, workers: int = 0, progress: bool = False) -> np.ndarray:
        """Image files -> ``[N, h, C]`` per-row local features (models with ``embed_local``, e.g. AlignedReID).

        Rows are pooled over the width, so a mirrored image gives the same rows; with flip they are averaged.
        """
        embed_local = getattr(self.model, "embed_local", None)
        if embed_local is None:
            raise ConfigError(
                f"model {type(self.model).__name__} has no local features; use the global distance"
            )
        return self.model_features(paths, embed_local, workers=workers, progress=progress, desc="local")

    def output_features(
        self, paths: Sequence[str], *, on: str = "global", workers: int = 0, progress: bool = False
    ) -> np.ndarray:
        """Image files -> ``[N, D]`` raw features of the model output field ``on`` (not normalised).

        The features a loss term was trained on (``ReidOutput.select(on)``; for a list, such as
        ``global_features``, its first entry), for scoring heads that take them, e.g. the verification pair
        head.
        """

        def select(images: Tensor) -> Tensor:
            try:
                value = self.model(images).select(on)
            except (KeyError, ValueError) as error:
                raise ConfigError(f"model {type(self.model).__name__}: {error}") from None
            value = value[0] if isinstance(value, list) else value
            if value.dim() != 2:
                raise ConfigError(f"model output {on!r} is not a [B, D] feature (shape {tuple(value.shape)})")
            return value

        return self.model_features(paths, select, workers=workers, progress=progress, desc=f"features {on}")
