"""Export a checkpoint's ``embed`` to ONNX or TorchScript, with its preprocessing and a parity check.

The exported network maps ``images [N, 3, H, W]`` (RGB, normalised with the checkpoint's mean/std) to the raw
retrieval feature ``[N, D]`` (not flipped, not L2-normalised: the embedder does both), with a dynamic batch
axis. A video model (a temporal head, :class:`reidkit.models.temporal.TemporalModel`) maps ``clips [N, T, 3, H,
W]`` to one feature per clip, with ``T`` fixed (``seq_len``, by default the clip length it was trained with) or
dynamic (``dynamic_length``); ``reidkit.clip_length`` in the metadata says which (a number, or ``dynamic``).
The file carries what a runtime needs to use it without the checkpoint:

- ONNX: ``metadata_props`` ``reidkit.preprocess`` (JSON of :class:`reidkit.checkpoint.Preprocess`),
  ``reidkit.fingerprint``, ``reidkit.model_name``, ``reidkit.embedding_dim``, ``reidkit.version``;
- TorchScript: the same keys as ``_extra_files``.

The fingerprint is the checkpoint's :class:`reidkit.embed.TorchEmbedder` fingerprint, so an index built with
the checkpoint can be searched with the export (the parity check is what makes that sound). Before the file
is put in place, the export is run on random inputs and on real images (two batch sizes) and compared with
PyTorch: a maximum absolute difference above ``tolerance`` raises :class:`ExportError` and writes nothing.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from reidkit import __version__
from reidkit._io import atomic_write_bytes
from reidkit.checkpoint import Preprocess
from reidkit.embed import FINGERPRINT_KEY, MODEL_NAME_KEY, PREPROCESS_KEY, TorchEmbedder
from reidkit.errors import ReidkitError

FORMATS = ("onnx", "torchscript")
EMBEDDING_DIM_KEY = "reidkit.embedding_dim"
VERSION_KEY = "reidkit.version"
#: metadata of a clip model: its fixed clip length T, or ``dynamic``; absent for an image model
CLIP_LENGTH_KEY = "reidkit.clip_length"


class ExportError(ReidkitError, RuntimeError):
    """An export that cannot be made or that does not reproduce the PyTorch model."""


@dataclass(frozen=True)
class ExportReport:
    """What was written and how closely it matches PyTorch.

    Attributes:
        path: the exported file.
        format: ``"onnx"`` or ``"torchscript"``.
        dim: embedding dimension D.
        fingerprint: the embedder fingerprint stored in the file.
        max_abs_diff_random: max |export - PyTorch| of ``embed`` on random inputs.
        max_abs_diff_real: the same on the real images (the given ones, or a generated pedestrian-like image).
    """

    path: Path
    format: str
    dim: int
    fingerprint: str
    max_abs_diff_random: float
    max_abs_diff_real: float


class _Embed(nn.Module):
    """``images [N, 3, H, W]`` (or ``clips [N, T, 3, H, W]``) ``-> model.embed(...) [N, D]``: the exported graph."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        return self.model.embed(images)


def _parity_inputs(
    preprocess: Preprocess, images: Sequence[str | Path] | None, seed: int, length: int | None = None
) -> tuple[Tensor, Tensor]:
    """Random inputs (batch 3) and real ones (batch 2): the given image files, or generated pedestrian-like ones.

    With ``length``: clips ``[3, length, 3, H, W]`` and ``[2, length, 3, H, W]`` (the real clips are made of the
    given images, then generated ones).
    """
    from PIL import Image

    frames = length or 1
    generator = torch.Generator().manual_seed(seed)
    random = torch.randn(3 * frames, 3, preprocess.height, preprocess.width, generator=generator)
    pictures = []
    for path in list(images or [])[: 2 * frames]:
        from reidkit.data.transforms import read_image

        pictures.append(read_image(str(path)))
    rng = np.random.default_rng(seed)
    while (
        len(pictures) < 2 * frames
    ):  # a figure-like picture: background, torso and legs colours, sensor noise
        canvas = np.empty((128, 64, 3), np.float32)
        canvas[:] = rng.uniform(60, 200, size=3)
        canvas[20:70, 16:48] = rng.uniform(0, 255, size=3)
        canvas[70:124, 20:44] = rng.uniform(0, 255, size=3)
        canvas += rng.normal(0, 12, size=canvas.shape)
        pictures.append(Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8)))
    real = torch.from_numpy(preprocess(pictures))
    if length is None:
        return random, real
    return random.reshape(3, length, *random.shape[1:]), real.reshape(2, length, *real.shape[1:])


def _max_difference(run, model: nn.Module, inputs: Tensor) -> float:
    with torch.no_grad():
        expected = model(inputs).float().numpy()
    got = np.asarray(run(inputs.numpy()), dtype=np.float32)
    if got.shape != expected.shape:
        raise ExportError(f"the export returns shape {list(got.shape)}, PyTorch {list(expected.shape)}")
    if not np.isfinite(got).all():
        return float("inf")
    return float(np.abs(got - expected).max())


def _export_onnx(
    wrapper: nn.Module, example: Tensor, metadata: dict[str, str], opset: int, *, dynamic_length: bool = False
) -> bytes:
    import warnings

    try:
        import onnx
    except ImportError as error:
        raise ImportError("ONNX export needs onnx and onnxruntime: pip install 'reidkit[onnx]'") from error
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notices are not for users
        torch.onnx.export(
            wrapper,
            (example,),
            buffer,
            input_names=["images"],
            output_names=["embedding"],
            dynamic_axes={
                "images": {0: "batch", 1: "frames"} if dynamic_length else {0: "batch"},
                "embedding": {0: "batch"},
            },
            opset_version=opset,
            dynamo=False,
        )
    model = onnx.load_from_string(buffer.getvalue())
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _onnx_runner(data: bytes):
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError("ONNX export needs onnx and onnxruntime: pip install 'reidkit[onnx]'") from error
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    return lambda batch: session.run(["embedding"], {"images": batch})[0]


def _export_torchscript(wrapper: nn.Module, example: Tensor, metadata: dict[str, str]) -> bytes:
    import warnings

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(wrapper, example, check_trace=False)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.save's deprecation notice
        torch.jit.save(traced, buffer, _extra_files=dict(metadata))
    return buffer.getvalue()


def _load_torchscript(source, **options):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
        return torch.jit.load(source, map_location="cpu", **options)


def _torchscript_runner(data: bytes):
    module = _load_torchscript(io.BytesIO(data))

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(batch)).numpy()

    return run


def read_torchscript_metadata(path: str | Path) -> dict[str, str]:
    """The reidkit metadata stored in a TorchScript export's ``_extra_files``."""
    files = {
        PREPROCESS_KEY: "",
        FINGERPRINT_KEY: "",
        MODEL_NAME_KEY: "",
        EMBEDDING_DIM_KEY: "",
        VERSION_KEY: "",
    }
    _load_torchscript(str(path), _extra_files=files)
    return {
        key: value.decode() if isinstance(value, bytes) else value for key, value in files.items() if value
    }


def export(
    checkpoint: str | Path,
    out: str | Path,
    *,
    format: str = "onnx",
    flip: bool = True,
    images: Sequence[str | Path] | None = None,
    tolerance: float = 1e-4,
    opset: int = 17,
    seed: int = 0,
    seq_len: int | None = None,
    dynamic_length: bool = False,
) -> ExportReport:
    """Export a checkpoint's ``embed`` with a dynamic batch axis, check parity, then write ``out`` atomically.

    Args:
        checkpoint: a reidkit checkpoint (weights + model spec + preprocessing).
        out: the file to write (``.onnx`` or ``.pt``).
        format: ``"onnx"`` or ``"torchscript"``.
        flip: the flip-averaging the runtime embedder should apply (stored in the metadata; part of the
            fingerprint, as for :class:`reidkit.embed.TorchEmbedder`).
        images: real image files for the parity check (the first two are used; default: generated ones).
        tolerance: largest accepted max absolute difference of ``embed`` between export and PyTorch.
        opset: ONNX opset.
        seed: seed of the random parity inputs.
        seq_len: a video model's clip length T (default: the one it was trained with, else 8).
        dynamic_length: a video model takes clips of any length (ONNX: a dynamic ``frames`` axis; the parity
            check also runs a second length).

    Returns:
        An :class:`ExportReport`.

    Raises:
        ExportError: unknown format, an export failure, or a parity check above ``tolerance`` (nothing written).
        CheckpointError: the checkpoint cannot be read.
    """
    from reidkit import checkpoint as checkpoints

    if format not in FORMATS:
        raise ExportError(f"export format must be one of {FORMATS}, got {format!r}")
    loaded = checkpoints.load(checkpoint).without_training()
    torch_embedder = TorchEmbedder.from_checkpoint(loaded, flip=flip)
    model = torch_embedder.model.float().eval()
    if getattr(model, "uses_keypoints", False):
        raise ExportError(
            f"model {loaded.spec.name!r} takes body keypoints beside the images; exporting it (a second input) "
            "is not supported: evaluate and search it with its reidkit checkpoint"
        )
    preprocess = torch_embedder.preprocess
    name = torch_embedder.name
    wrapper = _Embed(model).eval()
    length = _clip_length(model, loaded, seq_len, dynamic_length)
    random, real = _parity_inputs(preprocess, images, seed, length)
    with torch.no_grad():
        dim = int(wrapper(random[:1]).shape[1])
    metadata = {
        PREPROCESS_KEY: preprocess.to_json(),
        FINGERPRINT_KEY: torch_embedder.fingerprint,
        MODEL_NAME_KEY: name,
        EMBEDDING_DIM_KEY: str(dim),
        VERSION_KEY: __version__,
    }
    if length is not None:
        metadata[CLIP_LENGTH_KEY] = "dynamic" if dynamic_length else str(length)
    example = random[:2]
    try:
        if format == "onnx":
            data = _export_onnx(wrapper, example, metadata, opset, dynamic_length=dynamic_length)
            run = _onnx_runner(data)
        else:
            data = _export_torchscript(wrapper, example, metadata)
            run = _torchscript_runner(data)
    except ImportError:
        raise
    except Exception as error:  # exporters raise many types; the user needs the model name and the cause
        raise ExportError(
            f"exporting model {name!r} from {checkpoint} to {format} failed: {error}"
        ) from error
    difference_random = _max_difference(run, wrapper, random)
    if dynamic_length:  # another clip length through the same graph
        other, _ = _parity_inputs(preprocess, None, seed + 1, length + 3)
        difference_random = max(difference_random, _max_difference(run, wrapper, other))
    difference_real = _max_difference(run, wrapper, real)
    worst = max(difference_random, difference_real)
    if not worst <= tolerance:
        raise ExportError(
            f"parity check failed for {format} export of {checkpoint}: max |export - PyTorch| of embed is "
            f"{difference_random:.3g} on random inputs and {difference_real:.3g} on real images "
            f"(tolerance {tolerance:g}); nothing was written to {out}"
        )
    out = Path(out)
    atomic_write_bytes(out, data)
    return ExportReport(out, format, dim, torch_embedder.fingerprint, difference_random, difference_real)


def _clip_length(model: nn.Module, loaded, seq_len: int | None, dynamic_length: bool) -> int | None:
    """The clip length T of a video model's parity inputs (None for an image model, which takes neither option)."""
    from reidkit.models.temporal import TemporalModel

    if not isinstance(model, TemporalModel):
        if seq_len is not None or dynamic_length:
            raise ExportError(
                "seq_len / dynamic_length are for video models (a temporal head); this is an image model"
            )
        return None
    length = seq_len or (loaded.data.seq_len if loaded.data is not None else None) or 8
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ExportError(f"seq_len must be an integer >= 1 (frames per clip), got {length!r}")
    return length


def export_main(
    *,
    checkpoint: str | Path,
    out: str | Path | None = None,
    format: str = "onnx",
    flip: bool = True,
    images: Sequence[str | Path] | None = None,
    tolerance: float = 1e-4,
    seq_len: int | None = None,
    dynamic_length: bool = False,
) -> ExportReport:
    """``reidkit export``: default output beside the checkpoint; prints what was written and the parity."""
    if out is None:
        out = Path(checkpoint).with_suffix(".onnx" if format == "onnx" else ".torchscript.pt")
    report = export(
        checkpoint,
        out,
        format=format,
        flip=flip,
        images=images,
        tolerance=tolerance,
        seq_len=seq_len,
        dynamic_length=dynamic_length,
    )
    print(
        json.dumps(
            {
                "path": str(report.path),
                "format": report.format,
                "dim": report.dim,
                "fingerprint": report.fingerprint,
                "max_abs_diff_random": report.max_abs_diff_random,
                "max_abs_diff_real": report.max_abs_diff_real,
            }
        )
    )
    return report
