"""Embedders: anything that turns PIL images into L2-normalised ReID embeddings, and the ONNX / OpenVINO ones.

The :class:`Embedder` protocol (``name``, ``fingerprint``, ``dim``, ``input_size``, ``embed_images``) is what the
index, the search command and the HTTP service use; :class:`reidkit.extract.TorchEmbedder` implements it for
reidkit checkpoints, :class:`OnnxEmbedder` (onnxruntime) and :class:`OpenVinoEmbedder` (OpenVINO runtime) for
exported or third-party networks.

Preprocessing (:class:`Preprocess`) is read from the file's metadata when reidkit exported it (ONNX
``metadata_props`` key :data:`PREPROCESS_KEY`); other files need it spelled out, e.g. ``preprocess="imagenet"``
(RGB, pixels in [0, 1], ImageNet mean/std) or ``preprocess="bgr255"`` (BGR, raw 0-255: the Open Model Zoo
convention, with normalisation inside the network).

A runtime that returns NaN or infinity raises :class:`EmbeddingError` instead of handing garbage to the index.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from reidkit.errors import EmbeddingError, ReidkitError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: metadata keys written by :mod:`reidkit.export` and read here
PREPROCESS_KEY = "reidkit.preprocess"
FINGERPRINT_KEY = "reidkit.fingerprint"
MODEL_NAME_KEY = "reidkit.model_name"


@runtime_checkable
class Embedder(Protocol):
    """What the index, search and service need from a model.

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


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes the network's input ``[3, H, W]``.

    The image is converted to RGB, resized to ``height x width`` (bilinear), put in ``channel_order``, scaled
    so that pixels span ``[0, pixel_range]`` (1.0 or 255.0), then ``(value - mean) / std`` per channel, with
    ``mean`` and ``std`` in the same units and channel order as the input. With ``flip`` the embedding is the
    sum of the image's and its mirror's, L2-normalised.
    """

    height: int
    width: int
    channel_order: str = "RGB"
    pixel_range: float = 1.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    flip: bool = False

    def __post_init__(self) -> None:
        if self.channel_order not in ("RGB", "BGR"):
            raise EmbeddingError(
                f"preprocess channel_order must be 'RGB' or 'BGR', got {self.channel_order!r}"
            )
        if self.pixel_range not in (1.0, 255.0):
            raise EmbeddingError(f"preprocess pixel_range must be 1.0 or 255.0, got {self.pixel_range!r}")
        for name in ("height", "width"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise EmbeddingError(f"preprocess {name} must be a positive integer, got {value!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise EmbeddingError(
                f"preprocess mean/std must have 3 values with std > 0, got {self.mean}, {self.std}"
            )
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, where: str) -> Preprocess:
        known = set(cls.__dataclass_fields__)
        unknown = set(values) - known
        if unknown or not {"height", "width"} <= set(values):
            raise EmbeddingError(
                f"{where}: expected preprocessing fields {sorted(known)}, got {sorted(values)}"
            )
        values = dict(values)
        for key in ("mean", "std"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    def __call__(self, images: Sequence[Image.Image]) -> np.ndarray:
        """PIL images -> ``[B, 3, H, W]`` float32 network input."""
        batch = np.empty((len(images), 3, self.height, self.width), dtype=np.float32)
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        for position, image in enumerate(images):
            image = image.convert("RGB")
            if image.size != (self.width, self.height):
                image = image.resize((self.width, self.height), Image.BILINEAR)
            array = np.asarray(image, dtype=np.float32).transpose(2, 0, 1)
            if self.channel_order == "BGR":
                array = array[::-1]
            if self.pixel_range == 1.0:
                array = array / 255.0
            batch[position] = (array - mean) / std
        return batch


#: named preprocessing conventions; height and width come from the model's input shape
PRESETS: dict[str, dict[str, Any]] = {
    "imagenet": {"channel_order": "RGB", "pixel_range": 1.0, "mean": IMAGENET_MEAN, "std": IMAGENET_STD},
    "bgr255": {"channel_order": "BGR", "pixel_range": 255.0, "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)},
    "rgb255": {"channel_order": "RGB", "pixel_range": 255.0, "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)},
}


def _resolve_preprocess(
    path: Path,
    metadata: Mapping[str, str],
    preprocess: Preprocess | str | Mapping[str, Any] | None,
    input_shape: Sequence[Any],
    flip: bool | None,
) -> tuple[Preprocess, bool]:
    """The preprocessing to use and whether it is exactly what the file's reidkit metadata says."""
    from_file = None
    if PREPROCESS_KEY in metadata:
        try:
            from_file = Preprocess.from_mapping(
                json.loads(metadata[PREPROCESS_KEY]), where=f"{path} metadata"
            )
        except json.JSONDecodeError as error:
            raise EmbeddingError(f"{path}: metadata {PREPROCESS_KEY!r} is not JSON ({error})") from None
    static = [int(s) if isinstance(s, (int, np.integer)) and s > 0 else None for s in input_shape]
    if len(static) != 4 or static[1] not in (3, None):
        raise EmbeddingError(f"{path}: expected an input of shape [N, 3, H, W], got {list(input_shape)}")
    if preprocess is None:
        if from_file is None:
            raise EmbeddingError(
                f"{path} has no reidkit preprocessing metadata: pass preprocess= one of {sorted(PRESETS)} "
                "or a Preprocess(height, width, channel_order, pixel_range, mean, std)"
            )
        chosen = from_file
    elif isinstance(preprocess, Preprocess):
        chosen = preprocess
    else:
        if isinstance(preprocess, str):
            if preprocess not in PRESETS:
                raise EmbeddingError(
                    f"unknown preprocess preset {preprocess!r}; choose from {sorted(PRESETS)}"
                )
            values = dict(PRESETS[preprocess])
        else:
            values = dict(preprocess)
        height = values.pop("height", None) or static[2] or (from_file.height if from_file else None)
        width = values.pop("width", None) or static[3] or (from_file.width if from_file else None)
        if height is None or width is None:
            raise EmbeddingError(f"{path} has a dynamic input size: give height and width in preprocess")
        chosen = Preprocess.from_mapping({"height": height, "width": width, **values}, where="preprocess")
    if flip is not None:
        chosen = replace(chosen, flip=flip)
    for axis, size in ((2, chosen.height), (3, chosen.width)):
        if static[axis] is not None and static[axis] != size:
            raise EmbeddingError(
                f"{path} expects inputs of {static[2]}x{static[3]}, preprocessing gives {chosen.height}x{chosen.width}"
            )
    return chosen, from_file is not None and chosen == from_file


def _file_digest(paths: Sequence[Path], preprocess: Preprocess) -> str:
    digest = hashlib.sha256(preprocess.to_json().encode())
    for path in paths:
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _normalise_rows(features: np.ndarray, name: str, runtime: str) -> np.ndarray:
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


class _RuntimeEmbedder:
    """Shared batching, flipping and checking; subclasses provide ``_run(batch [B, 3, H, W]) -> [B, D]``."""

    runtime = ""
    name: str
    fingerprint: str
    dim: int
    input_size: tuple[int, int]
    preprocess: Preprocess

    def __init__(self, *, batch_size: int, static_batch: int | None) -> None:
        self.batch_size = static_batch or batch_size
        self._static_batch = static_batch

    def _run(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        if self._static_batch is None:
            return self._run(batch)
        outputs = []
        for start in range(0, len(batch), self._static_batch):
            part = batch[start : start + self._static_batch]
            missing = self._static_batch - len(part)
            if missing:  # pad a fixed-batch network's last chunk
                part = np.concatenate([part, np.zeros((missing, *part.shape[1:]), np.float32)])
            outputs.append(self._run(part).reshape(self._static_batch, -1)[: self._static_batch - missing])
        return np.concatenate(outputs)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """PIL images -> ``[B, D]`` float32 L2-normalised embeddings (EmbeddingError on NaN/inf output)."""
        chunks = []
        for start in range(0, len(images), self.batch_size):
            batch = self.preprocess(images[start : start + self.batch_size])
            features = self._forward(batch).reshape(len(batch), -1).astype(np.float32)
            if self.preprocess.flip:
                features = features + self._forward(np.ascontiguousarray(batch[..., ::-1])).reshape(
                    len(batch), -1
                )
            chunks.append(_normalise_rows(features, self.name, self.runtime))
        return np.concatenate(chunks) if chunks else np.zeros((0, self.dim), dtype=np.float32)

    def _probe_dim(self) -> int:
        height, width = self.input_size
        return int(self._forward(np.zeros((1, 3, height, width), np.float32)).reshape(1, -1).shape[1])


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (weights are not loaded)."""
    try:
        import onnx
    except ImportError as error:
        raise ImportError("reading ONNX metadata needs onnx: pip install 'reidkit[onnx]'") from error
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises DecodeError and others for a corrupt file
        raise EmbeddingError(f"{path} cannot be read as an ONNX model: {error}") from None
    return {prop.key: prop.value for prop in model.metadata_props}


class OnnxEmbedder(_RuntimeEmbedder):
    """Run an ONNX network with onnxruntime on CPU.

    Args:
        path: the ``.onnx`` file (input ``[N or 1, 3, H, W]``, first output ``[N, D]``).
        preprocess: None (read the file's reidkit metadata), a preset name (:data:`PRESETS`), a mapping of
            :class:`Preprocess` fields or a :class:`Preprocess`.
        flip: override the flip setting.
        batch_size: images per run (a network with a fixed batch of 1 is run image by image).
        threads: onnxruntime intra-op threads (None: its default).
        name: model name (default: the file's metadata or stem).
    """

    runtime = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        *,
        preprocess: Preprocess | str | Mapping[str, Any] | None = None,
        flip: bool | None = None,
        batch_size: int = 32,
        threads: int | None = None,
        name: str | None = None,
    ) -> None:
        try:
            import onnxruntime
        except ImportError as error:
            raise ImportError("the ONNX embedder needs onnxruntime: pip install 'reidkit[onnx]'") from error
        self.path = Path(path)
        if not self.path.is_file():
            raise EmbeddingError(f"ONNX model {self.path} does not exist")
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # initialiser clean-up warnings are noise for users
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = onnxruntime.InferenceSession(
                str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own exception types for bad files
            raise EmbeddingError(f"{self.path} cannot be loaded by onnxruntime: {error}") from None
        metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        model_input = self.session.get_inputs()[0]
        self._input_name = model_input.name
        self._output_name = self.session.get_outputs()[0].name
        self.preprocess, from_metadata = _resolve_preprocess(
            self.path, metadata, preprocess, model_input.shape, flip
        )
        batch_axis = model_input.shape[0]
        super().__init__(
            batch_size=batch_size, static_batch=batch_axis if isinstance(batch_axis, int) else None
        )
        self.input_size = (self.preprocess.height, self.preprocess.width)
        self.name = name or metadata.get(MODEL_NAME_KEY) or self.path.stem
        self.fingerprint = (
            metadata[FINGERPRINT_KEY]
            if from_metadata and FINGERPRINT_KEY in metadata
            else _file_digest([self.path], self.preprocess)
        )
        self.dim = self._probe_dim()

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self._output_name], {self._input_name: batch})[0]


class OpenVinoEmbedder(_RuntimeEmbedder):
    """Run an OpenVINO IR (``.xml`` + ``.bin``) or ONNX network with the OpenVINO runtime on CPU.

    Args:
        path: the ``.xml`` (its ``.bin`` beside it) or an ``.onnx`` file.
        preprocess: as for :class:`OnnxEmbedder`; the Open Model Zoo ReID IRs take ``"bgr255"``.
        flip, batch_size, name: as for :class:`OnnxEmbedder`.
        threads: OpenVINO inference threads (None: its default).
    """

    runtime = "OpenVINO"

    def __init__(
        self,
        path: str | Path,
        *,
        preprocess: Preprocess | str | Mapping[str, Any] | None = None,
        flip: bool | None = None,
        batch_size: int = 32,
        threads: int | None = None,
        name: str | None = None,
    ) -> None:
        try:
            import openvino
        except ImportError as error:
            raise ImportError(
                "the OpenVINO embedder needs openvino: pip install 'reidkit[openvino]'"
            ) from error
        self.path = Path(path)
        if not self.path.is_file():
            raise EmbeddingError(f"OpenVINO model {self.path} does not exist")
        files = [self.path]
        if self.path.suffix == ".xml":
            files.append(self.path.with_suffix(".bin"))
            if not files[1].is_file():
                raise EmbeddingError(f"OpenVINO model {self.path} needs its weights file {files[1]}")
        core = openvino.Core()
        try:
            model = core.read_model(str(self.path))
        except RuntimeError as error:
            raise EmbeddingError(
                f"{self.path} cannot be read by OpenVINO: {str(error).splitlines()[-1]}"
            ) from None
        metadata = read_onnx_metadata(self.path) if self.path.suffix == ".onnx" else {}
        shape = model.inputs[0].get_partial_shape()
        dims = [d.get_length() if d.is_static else None for d in shape]
        self.preprocess, from_metadata = _resolve_preprocess(self.path, metadata, preprocess, dims, flip)
        static_batch = dims[0]
        try:  # a dynamic batch axis lets one request take a whole batch
            model.reshape({model.inputs[0]: [-1, 3, self.preprocess.height, self.preprocess.width]})
            static_batch = None
        except RuntimeError:
            pass
        # float32 throughout: recent OpenVINO releases default to bf16 inference and dynamic int8 quantisation
        # on CPUs that support them, which moves embeddings by ~1e-3 and breaks parity with the exported model
        config: dict = {"EXECUTION_MODE_HINT": "ACCURACY", "INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self._compiled = core.compile_model(model, "CPU", config)
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()  # one infer request: serialise callers
        super().__init__(batch_size=batch_size, static_batch=static_batch)
        self.input_size = (self.preprocess.height, self.preprocess.width)
        self.name = name or metadata.get(MODEL_NAME_KEY) or self.path.stem
        self.fingerprint = (
            metadata[FINGERPRINT_KEY]
            if from_metadata and FINGERPRINT_KEY in metadata
            else _file_digest(files, self.preprocess)
        )
        self.dim = self._probe_dim()

    def _run(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            self._request.infer({0: batch})
            return np.array(self._request.get_output_tensor(0).data, copy=True)


def load_embedder(
    *,
    checkpoint: str | Path | None = None,
    onnx: str | Path | None = None,
    openvino: str | Path | None = None,
    preprocess: str | None = None,
    flip: bool | None = None,
    batch_size: int = 32,
    device: str = "cpu",
) -> Embedder:
    """The embedder for exactly one of a reidkit checkpoint, an ONNX file or an OpenVINO model (CLI helper)."""
    given = [
        name for name, value in (("checkpoint", checkpoint), ("onnx", onnx), ("openvino", openvino)) if value
    ]
    if len(given) != 1:
        raise EmbeddingError(f"give exactly one of checkpoint, onnx, openvino (got {given or 'none'})")
    if checkpoint:
        from reidkit.extract import load_embedder_from_checkpoint

        return load_embedder_from_checkpoint(
            checkpoint, flip=True if flip is None else flip, device=device, batch_size=batch_size
        )
    if onnx:
        return OnnxEmbedder(onnx, preprocess=preprocess, flip=flip, batch_size=batch_size)
    return OpenVinoEmbedder(openvino, preprocess=preprocess, flip=flip, batch_size=batch_size)
