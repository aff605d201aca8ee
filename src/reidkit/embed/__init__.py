"""Embedders: anything that turns images into L2-normalised ReID embeddings.

:class:`Embedder` is the protocol every consumer takes; :class:`BatchEmbedder` the one batching / flip / L2 loop;
:class:`TorchEmbedder` (reidkit checkpoints), :class:`OnnxEmbedder` (onnxruntime) and :class:`OpenVinoEmbedder`
(OpenVINO runtime) its implementations; :func:`embed_paths` embeds image files with any of them and
:func:`embed_tracklets` video tracklets; :func:`load_embedder` picks one from the command-line options.
"""

from __future__ import annotations

from pathlib import Path

from reidkit.checkpoint import Preprocess
from reidkit.embed.base import BatchEmbedder, Embedder, embed_paths, iter_image_chunks, normalise_rows
from reidkit.embed.runtimes import (
    FINGERPRINT_KEY,
    MODEL_NAME_KEY,
    PREPROCESS_KEY,
    PRESETS,
    OnnxEmbedder,
    OpenVinoEmbedder,
    read_onnx_metadata,
)
from reidkit.embed.torch_embedder import TorchEmbedder, model_fingerprint
from reidkit.embed.tracklets import embed_tracklets
from reidkit.errors import EmbeddingError

__all__ = [
    "FINGERPRINT_KEY",
    "MODEL_NAME_KEY",
    "PREPROCESS_KEY",
    "PRESETS",
    "BatchEmbedder",
    "Embedder",
    "EmbeddingError",
    "OnnxEmbedder",
    "OpenVinoEmbedder",
    "Preprocess",
    "TorchEmbedder",
    "embed_paths",
    "embed_tracklets",
    "iter_image_chunks",
    "load_embedder",
    "model_fingerprint",
    "normalise_rows",
    "read_onnx_metadata",
]


def load_embedder(
    *,
    checkpoint: str | Path | None = None,
    onnx: str | Path | None = None,
    openvino: str | Path | None = None,
    preprocess: str | None = None,
    flip: bool | None = None,
    batch_size: int = 32,
    device: str = "cpu",
    bf16: bool = False,
) -> Embedder:
    """The embedder for exactly one of a reidkit checkpoint, an ONNX file or an OpenVINO model.

    ``preprocess`` (a preset name of :data:`PRESETS`) is for third-party files only; a checkpoint carries its own.
    ``bf16`` (checkpoints only) runs the network under bfloat16 autocast (:class:`TorchEmbedder`).
    """
    given = [
        name for name, value in (("checkpoint", checkpoint), ("onnx", onnx), ("openvino", openvino)) if value
    ]
    if len(given) != 1:
        raise EmbeddingError(f"give exactly one of checkpoint, onnx, openvino (got {given or 'none'})")
    if bf16 and not checkpoint:
        raise EmbeddingError(
            "bf16 runs a reidkit checkpoint under PyTorch autocast; an exported model cannot"
        )
    if checkpoint:
        from reidkit import checkpoint as checkpoints

        return TorchEmbedder.from_checkpoint(
            checkpoints.load(checkpoint, map_location=device).without_training(),
            flip=True if flip is None else flip,
            device=device,
            batch_size=batch_size,
            bf16=bf16,
        )
    if onnx:
        return OnnxEmbedder(onnx, preprocess=preprocess, flip=flip, batch_size=batch_size)
    return OpenVinoEmbedder(openvino, preprocess=preprocess, flip=flip, batch_size=batch_size)
