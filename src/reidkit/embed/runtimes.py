"""ONNX Runtime and OpenVINO embedders, for exported reidkit models and third-party ReID networks.

Preprocessing (:class:`reidkit.checkpoint.Preprocess`) is read from the file's metadata when reidkit exported it
(ONNX ``metadata_props`` key :data:`PREPROCESS_KEY`); other files need it spelled out, e.g.
``preprocess="imagenet"`` (RGB, pixels in [0, 1], ImageNet mean/std) or ``preprocess="bgr255"`` (BGR, raw 0-255:
the Open Model Zoo convention, with normalisation inside the network). Both run the shared loop of
:class:`reidkit.embed.base.BatchEmbedder`; a runtime that returns NaN or infinity raises
:class:`reidkit.errors.EmbeddingError` instead of handing garbage to the index.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from reidkit._io import update_file_digest
from reidkit.checkpoint import Preprocess
from reidkit.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from reidkit.embed.base import BatchEmbedder, forward_in_fixed_batches
from reidkit.errors import EmbeddingError

#: metadata keys written by :mod:`reidkit.export` and read here
PREPROCESS_KEY = "reidkit.preprocess"
FINGERPRINT_KEY = "reidkit.fingerprint"
MODEL_NAME_KEY = "reidkit.model_name"

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
        update_file_digest(digest, path)
    return digest.hexdigest()[:16]


class _RuntimeEmbedder(BatchEmbedder):
    """A network in a file, run by an inference runtime; subclasses open it and run batches.

    Args:
        path: the model file.
        preprocess: None (read the file's reidkit metadata), a preset name (:data:`PRESETS`), a mapping of
            :class:`Preprocess` fields or a :class:`Preprocess`.
        flip: override the flip setting.
        batch_size: images per run (a network with a fixed batch axis is run in chunks of that size).
        threads: the runtime's intra-op threads (None: its default).
        name: model name (default: the file's metadata or stem).
    """

    kind = "model"
    _static_batch: int | None = None

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
        self.path = Path(path)
        if not self.path.is_file():
            raise EmbeddingError(f"{self.kind} {self.path} does not exist")
        files, metadata, input_shape = self._open(threads)
        if len(input_shape) == 5 or "reidkit.clip_length" in metadata:
            raise EmbeddingError(
                f"{self.path} is a video model export (input clips [N, T, 3, H, W], shape {list(input_shape)}); "
                "an image embedder runs image models: embed tracklets with its reidkit checkpoint instead"
            )
        self.preprocess, from_metadata = _resolve_preprocess(self.path, metadata, preprocess, input_shape, flip)
        self._static_batch = self._prepare(threads)
        self.batch_size = self._static_batch or batch_size
        self.name = name or metadata.get(MODEL_NAME_KEY) or self.path.stem
        # the export's own fingerprint when its preprocessing is used as written, else one of the file's bytes
        self.fingerprint = (
            metadata[FINGERPRINT_KEY]
            if from_metadata and FINGERPRINT_KEY in metadata
            else _file_digest(files, self.preprocess)
        )
        self.dim = self._probe_dim()

    def _open(self, threads: int | None) -> tuple[list[Path], Mapping[str, str], Sequence[Any]]:
        """Load the file: ``(files it consists of, reidkit metadata, input shape [N, 3, H, W])``."""
        raise NotImplementedError

    def _prepare(self, threads: int | None) -> int | None:
        """Ready the network for ``self.preprocess``; returns its fixed batch size, or None when dynamic."""
        raise NotImplementedError

    def _run(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        if self._static_batch is None:
            return self._run(batch)
        return forward_in_fixed_batches(self._run, batch, self._static_batch)


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
    """Run an ONNX network (input ``[N or 1, 3, H, W]``, first output ``[N, D]``) with onnxruntime on CPU.

    Arguments as for every runtime embedder (see ``_RuntimeEmbedder``): ``path``, ``preprocess``, ``flip``,
    ``batch_size``, ``threads``, ``name``.
    """

    runtime = "onnxruntime"
    kind = "ONNX model"

    def _open(self, threads):
        try:
            import onnxruntime
        except ImportError as error:
            raise ImportError("the ONNX embedder needs onnxruntime: pip install 'reidkit[onnx]'") from error
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
        model_input = self.session.get_inputs()[0]
        self._input_name = model_input.name
        self._output_name = self.session.get_outputs()[0].name
        return [self.path], dict(self.session.get_modelmeta().custom_metadata_map), model_input.shape

    def _prepare(self, threads):
        batch_axis = self.session.get_inputs()[0].shape[0]
        return batch_axis if isinstance(batch_axis, int) else None

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self._output_name], {self._input_name: batch})[0]


class OpenVinoEmbedder(_RuntimeEmbedder):
    """Run an OpenVINO IR (``.xml`` + ``.bin``) or ONNX network with the OpenVINO runtime on CPU.

    Arguments as for :class:`OnnxEmbedder`; ``path`` is the ``.xml`` (its ``.bin`` beside it) or an ``.onnx``
    file; the Open Model Zoo ReID IRs take ``preprocess="bgr255"``.
    """

    runtime = "OpenVINO"
    kind = "OpenVINO model"

    def _open(self, threads):
        try:
            import openvino
        except ImportError as error:
            raise ImportError(
                "the OpenVINO embedder needs openvino: pip install 'reidkit[openvino]'"
            ) from error
        files = [self.path]
        if self.path.suffix == ".xml":
            files.append(self.path.with_suffix(".bin"))
            if not files[1].is_file():
                raise EmbeddingError(f"OpenVINO model {self.path} needs its weights file {files[1]}")
        self._core = openvino.Core()
        try:
            self._model = self._core.read_model(str(self.path))
        except RuntimeError as error:
            raise EmbeddingError(
                f"{self.path} cannot be read by OpenVINO: {str(error).splitlines()[-1]}"
            ) from None
        metadata = read_onnx_metadata(self.path) if self.path.suffix == ".onnx" else {}
        shape = self._model.inputs[0].get_partial_shape()
        return files, metadata, [d.get_length() if d.is_static else None for d in shape]

    def _prepare(self, threads):
        model = self._model
        static_batch = model.inputs[0].get_partial_shape()[0]
        static_batch = static_batch.get_length() if static_batch.is_static else None
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
        self._compiled = self._core.compile_model(model, "CPU", config)
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()  # one infer request: serialise callers
        return static_batch

    def _run(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            self._request.infer({0: batch})
            return np.array(self._request.get_output_tensor(0).data, copy=True)
