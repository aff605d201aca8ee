"""The typed checkpoint: what a trained reidkit model is, and the only code that knows its file format.

A :class:`Checkpoint` holds everything needed to use a model without its config: the :class:`ModelSpec` that
rebuilds the network, the :class:`Preprocess` that turns an image into its input, the loss terms and seed that
rebuild the criterion (with its learnable state, e.g. a verification pair head), the weights, the dataset it was
trained on (:class:`DataRef`, a default for evaluation) and, while training, a :class:`TrainingState` that lets
``fit`` resume at the exact batch it stopped before.

On disk a checkpoint is a ``torch.save`` file of plain containers (dicts, lists, numbers, strings, tensors).
:func:`load` reads it with ``weights_only=True``: the unpickler accepts only tensors and plain data, so a file
from an untrusted source cannot run code; anything else is refused with a :class:`CheckpointError`. The keys of
the file are checked against an explicit schema. Files of format version 1 (reidkit 0.1 before the typed
checkpoint) are converted on load.
"""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from reidkit import __version__
from reidkit._io import atomic_write_bytes
from reidkit.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from reidkit.errors import CheckpointError, EmbeddingError

FORMAT_VERSION = 2
#: the file name ``reidkit train`` writes in its run folder
CHECKPOINT_NAME = "checkpoint.pt"

#: top-level keys of a format-2 file: required, then optional
_REQUIRED_KEYS = frozenset(
    {"format_version", "reidkit_version", "spec", "preprocess", "loss_terms", "seed", "weights"}
)
_OPTIONAL_KEYS = frozenset({"criterion_state", "data", "config", "training", "metrics", "before"})
_TRAINING_KEYS = frozenset({"optimizer", "scaler", "epoch", "batch", "global_step", "rng"})
#: what the unpickler may build beyond torch's weights-only set (tensors, dicts, lists, tuples, numbers, strings,
#: None): nothing. A reidkit checkpoint holds only those, so any class or function named in a file is refused.
ALLOWED_GLOBALS: tuple = ()


# ------------------------------------------------------------------------------------------ the parts
@dataclass(frozen=True)
class ModelSpec:
    """The keyword arguments of :func:`reidkit.models.build_model` that rebuild a trained network.

    Attributes:
        name: registered model name (``baseline``, ``pcb``, ``mgn``, ...).
        num_classes: training identities (classifier size).
        backbone: trunk name.
        last_stride: stride of the trunk's last stage.
        params: model-specific keyword arguments.
    """

    name: str
    num_classes: int
    backbone: str = "resnet50"
    last_stride: int = 1
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "params": dict(self.params)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, where: str) -> ModelSpec:
        return cls(**_fields(cls, values, where=where))

    def build(self, *, pretrained: str | None = None) -> nn.Module:
        """A new network of this spec (random or ``pretrained`` trunk; the checkpoint's weights come later)."""
        from reidkit.models import build_model

        return build_model(
            self.name,
            num_classes=self.num_classes,
            backbone=self.backbone,
            pretrained=pretrained,
            last_stride=self.last_stride,
            **dict(self.params),
        )


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes the network's input ``[3, H, W]`` (the one inference preprocessing of reidkit).

    The image is converted to RGB, resized to ``height x width`` (bilinear), put in ``channel_order``, scaled so
    that pixels span ``[0, pixel_range]`` (1.0 or 255.0), then ``(value - mean) / std`` per channel, with ``mean``
    and ``std`` in the same units and channel order as the input. With ``flip`` an embedder sums the outputs of
    the image and its mirror before L2 normalisation.
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
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise EmbeddingError(f"preprocess {name} must be a positive integer, got {value!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise EmbeddingError(
                f"preprocess mean/std must have 3 values with std > 0, got {self.mean}, {self.std}"
            )
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        object.__setattr__(self, "pixel_range", float(self.pixel_range))
        object.__setattr__(self, "flip", bool(self.flip))

    @property
    def input_size(self) -> tuple[int, int]:
        return (self.height, self.width)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

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

    def image(self, image: Image.Image) -> np.ndarray:
        """One PIL image -> ``[3, H, W]`` float32 network input."""
        image = image.convert("RGB")
        if image.size != (self.width, self.height):
            image = image.resize((self.width, self.height), Image.BILINEAR)
        array = np.asarray(image, dtype=np.float32).transpose(2, 0, 1)
        if self.channel_order == "BGR":
            array = array[::-1]
        if self.pixel_range == 1.0:
            array = array / 255.0
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        return np.ascontiguousarray((array - mean) / std, dtype=np.float32)

    def __call__(self, images: Sequence[Image.Image]) -> np.ndarray:
        """PIL images -> ``[B, 3, H, W]`` float32 network input."""
        batch = np.empty((len(images), 3, self.height, self.width), dtype=np.float32)
        for position, image in enumerate(images):
            batch[position] = self.image(image)
        return batch


@dataclass(frozen=True)
class DataRef:
    """The dataset a model was trained on: the default of ``eval`` / ``extract`` when none is given.

    ``seq_len`` is the clip length a video model was trained with (the default clip length of its
    evaluation), None for an image dataset.
    """

    name: str
    root: str
    options: Mapping[str, Any] = field(default_factory=dict)
    seq_len: int | None = None

    def to_dict(self) -> dict[str, Any]:
        values = {"name": self.name, "root": self.root, "options": dict(self.options)}
        return values if self.seq_len is None else {**values, "seq_len": int(self.seq_len)}


@dataclass(frozen=True)
class TrainingState:
    """What ``fit`` needs to continue a run exactly: optimiser and scaler state, position and RNG state.

    ``epoch`` is the epoch in progress (0-based), ``batch`` the next batch in it.
    """

    optimizer: Mapping[str, Any]
    epoch: int = 0
    batch: int = 0
    global_step: int = 0
    scaler: Mapping[str, Any] | None = None
    rng: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Checkpoint:
    """A trained (or training) reidkit model; see the module docstring.

    Attributes:
        spec: rebuilds the network.
        preprocess: the input pipeline it was trained with (``flip`` False; embedders choose flipping).
        loss_terms: the criterion's terms ``({name, weight, on, params}, ...)``.
        seed: the training seed (random-sampling loss terms derive their seeds from it).
        weights: the network's state dict.
        criterion_state: the criterion's state dict (centres, pair head, ...).
        data: the training dataset, or None.
        config: the resolved training config as a plain dict, kept for the record (no library code reads it).
        training: present while training; ``fit`` resumes from it.
        metrics: the last evaluation during training; ``before``: the untrained model's.
    """

    spec: ModelSpec
    preprocess: Preprocess
    weights: Mapping[str, torch.Tensor]
    loss_terms: tuple[Mapping[str, Any], ...] = ()
    seed: int = 0
    criterion_state: Mapping[str, Any] = field(default_factory=dict)
    data: DataRef | None = None
    config: Mapping[str, Any] | None = None
    training: TrainingState | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    before: Mapping[str, Any] = field(default_factory=dict)
    source: str = "checkpoint"  # where it was read from, for messages; not saved

    def build_model(self, *, device: str | torch.device = "cpu") -> nn.Module:
        """The network with its trained weights, in eval mode, on ``device``."""
        model = self.spec.build()
        load_weights(model, self.weights, source=self.source)
        return model.to(device).eval()

    def build_criterion(self, model: nn.Module) -> nn.Module:
        """The loss criterion the model was trained with, holding its learnable state (eval mode).

        Raises:
            CheckpointError: no loss terms or criterion state stored, or they do not fit.
        """
        from reidkit.errors import ConfigError
        from reidkit.losses.criterion import build_criterion

        if not self.loss_terms or not self.criterion_state:
            raise CheckpointError(f"{self.source} holds no loss terms or criterion state")
        feat_dim = int(getattr(model, "feature_dim", getattr(model, "embedding_dim", 0)))
        try:
            criterion = build_criterion(
                [dict(term) for term in self.loss_terms],
                num_classes=self.spec.num_classes,
                feat_dim=feat_dim,
                seed=self.seed,
            )
            criterion.load_state_dict(dict(self.criterion_state))
        except (ConfigError, RuntimeError) as error:
            first = str(error).splitlines()[0]
            raise CheckpointError(f"{self.source}: cannot rebuild its loss criterion ({first})") from None
        return criterion.eval()

    def without_training(self) -> Checkpoint:
        """The same checkpoint without the optimiser / RNG state (what ``eval`` and ``export`` need)."""
        return replace(self, training=None)


# ---------------------------------------------------------------------------------------- weights
def load_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Load weights strictly, turning a mismatch into an error that says which model the file holds."""
    try:
        model.load_state_dict(dict(state_dict))
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise CheckpointError(f"{source} does not hold weights for this model ({first})") from None


def load_matching_weights(model: nn.Module, checkpoint: Checkpoint) -> dict[str, list[str]]:
    """Copy every weight of ``checkpoint`` whose name and shape match into ``model`` (fine-tuning, staging).

    The model's other weights keep their initialisation (e.g. a layer added after the checkpoint, or
    classifiers sized for other identities).

    Returns:
        ``{"loaded": [...], "missing": [...] (not in the file), "mismatched": [...] (other shape)}``.

    Raises:
        CheckpointError: no weight of the checkpoint fits the model.
    """
    source = checkpoint.weights
    report: dict[str, list[str]] = {"loaded": [], "missing": [], "mismatched": []}
    update = {}
    for key, value in model.state_dict().items():
        if key not in source:
            report["missing"].append(key)
        elif source[key].shape != value.shape:
            report["mismatched"].append(key)
        else:
            update[key] = source[key]
            report["loaded"].append(key)
    if not any(key in update for key, _ in model.named_parameters()):
        raise CheckpointError(
            f"{checkpoint.source}: no weight of the checkpoint fits this model "
            f"({len(report['mismatched'])} names with another shape, {len(report['missing'])} missing)"
        )
    model.load_state_dict(update, strict=False)
    return report


# ------------------------------------------------------------------------------------------ files
def _fields(cls, values: Any, *, where: str) -> dict[str, Any]:
    if not isinstance(values, Mapping):
        raise CheckpointError(f"{where}: expected a mapping, got {type(values).__name__}")
    known = set(cls.__dataclass_fields__)
    unknown = set(values) - known
    if unknown:
        raise CheckpointError(f"{where}: unknown fields {sorted(unknown)}; expected {sorted(known)}")
    return dict(values)


def to_payload(checkpoint: Checkpoint) -> dict[str, Any]:
    """The plain-data form of a checkpoint written to disk."""
    payload: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "reidkit_version": __version__,
        "spec": checkpoint.spec.to_dict(),
        "preprocess": checkpoint.preprocess.to_dict(),
        "loss_terms": [dict(term) for term in checkpoint.loss_terms],
        "seed": int(checkpoint.seed),
        "weights": dict(checkpoint.weights),
        "criterion_state": dict(checkpoint.criterion_state),
        "metrics": dict(checkpoint.metrics),
        "before": dict(checkpoint.before),
    }
    if checkpoint.data is not None:
        payload["data"] = checkpoint.data.to_dict()
    if checkpoint.config is not None:
        payload["config"] = dict(checkpoint.config)
    if checkpoint.training is not None:  # shallow: asdict would deep-copy the optimiser state
        training = checkpoint.training
        payload["training"] = {name: getattr(training, name) for name in TrainingState.__dataclass_fields__}
    return payload


def save(path: str | Path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` atomically (a crash mid-write leaves the previous file intact)."""
    buffer = io.BytesIO()
    torch.save(to_payload(checkpoint), buffer)
    atomic_write_bytes(path, buffer.getvalue())


def from_payload(payload: Any, *, source: str) -> Checkpoint:
    """Validate a loaded payload against the schema and build the :class:`Checkpoint`."""
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(f"{source} is not a reidkit checkpoint (no format_version)")
    version = payload["format_version"]
    if version == 1:
        payload = _convert_v1(payload, source=source)
    elif version != FORMAT_VERSION:
        raise CheckpointError(
            f"{source} has format version {version!r}; this reidkit reads versions 1 and {FORMAT_VERSION}"
        )
    missing = _REQUIRED_KEYS - set(payload)
    unknown = set(payload) - _REQUIRED_KEYS - _OPTIONAL_KEYS
    if missing or unknown:
        raise CheckpointError(
            f"{source}: malformed checkpoint (missing {sorted(missing)}, unknown {sorted(unknown)})"
        )
    training = payload.get("training")
    if training is not None:
        fields = _fields(TrainingState, training, where=f"{source} training")
        if "optimizer" not in fields or not set(fields) <= _TRAINING_KEYS:
            raise CheckpointError(f"{source}: training state lacks the optimizer state")
        training = TrainingState(**fields)
    data = payload.get("data")
    try:
        return Checkpoint(
            spec=ModelSpec.from_dict(payload["spec"], where=f"{source} spec"),
            preprocess=Preprocess.from_mapping(payload["preprocess"], where=f"{source} preprocess"),
            weights=payload["weights"],
            loss_terms=tuple(payload["loss_terms"]),
            seed=int(payload["seed"]),
            criterion_state=payload.get("criterion_state") or {},
            data=DataRef(**_fields(DataRef, data, where=f"{source} data")) if data is not None else None,
            config=payload.get("config"),
            training=training,
            metrics=payload.get("metrics") or {},
            before=payload.get("before") or {},
            source=source,
        )
    except (TypeError, EmbeddingError) as error:
        raise CheckpointError(f"{source}: malformed checkpoint ({error})") from None


def _convert_v1(payload: dict, *, source: str) -> dict:
    """A format-1 file (untyped dict of reidkit 0.1) in the format-2 layout."""
    for key in ("model", "model_spec", "preprocess"):
        if key not in payload:
            raise CheckpointError(f"{source} lacks {key!r}")
    config = payload.get("config") or {}
    data_config = config.get("data") or {}
    converted: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "reidkit_version": payload.get("reidkit_version", "0.1"),
        "spec": payload["model_spec"],
        "preprocess": dict(payload["preprocess"]),
        "loss_terms": list((config.get("loss") or {}).get("terms") or []),
        "seed": int((config.get("train") or {}).get("seed", 0)),
        "weights": payload["model"],
        "criterion_state": payload.get("criterion") or {},
        "metrics": payload.get("metrics") or {},
        "before": payload.get("before") or {},
    }
    if config:
        converted["config"] = config
    if data_config.get("dataset") and data_config.get("root"):
        converted["data"] = {
            "name": data_config["dataset"],
            "root": data_config["root"],
            "options": data_config.get("options") or {},
        }
    if payload.get("optimizer") is not None and payload.get("state") is not None:
        converted["training"] = {
            "optimizer": payload["optimizer"],
            "scaler": payload.get("scaler"),
            "rng": payload.get("rng") or {},
            **payload["state"],
        }
    return converted


def load(path: str | Path, *, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint; never runs code from the file.

    Raises:
        CheckpointError: the file is missing, corrupt, holds objects other than tensors and plain data (a pickle
            that could run code), is of an unknown format version, or does not match the schema.
    """
    path = Path(path)
    source = f"checkpoint {path}"
    if not path.is_file():
        raise CheckpointError(f"{source} does not exist")
    try:
        with torch.serialization.safe_globals(list(ALLOWED_GLOBALS)):
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        reason = next((line.strip() for line in str(error).splitlines() if "Unsupported" in line), str(error))
        if "global" not in reason.lower():  # not a pickle of objects at all: a corrupt or foreign file
            raise CheckpointError(f"{source} cannot be read (corrupt or not a torch file): {reason}") from None
        raise CheckpointError(
            f"{source} was refused: it holds objects other than tensors and plain data, which could run code "
            f"when loaded ({reason[:160]}); a reidkit checkpoint never does"
        ) from None
    except Exception as error:  # torch raises many types for a corrupt file
        raise CheckpointError(f"{source} cannot be read (corrupt or not a torch file): {error}") from None
    return from_payload(payload, source=source)
