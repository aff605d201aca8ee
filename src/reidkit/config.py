"""Experiment configuration: a two-level dataclass tree, loaded from YAML, overridable with ``--set``.

Only this module, ``recipe.py`` (config -> objects) and ``cli.py`` see a :class:`Config`; the library is
called with plain arguments.
Unknown keys and values of the wrong type are errors that name the key (``model.bakbone``) and what was
expected, so a typo can never be silently ignored.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reidkit._io import atomic_write_text
from reidkit.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _default_terms() -> list[dict]:
    return [
        {"name": "cross_entropy", "weight": 1.0, "on": "logits", "params": {"epsilon": 0.1}},
        {"name": "trihard", "weight": 1.0, "on": "global", "params": {"margin": 0.3}},
    ]


@dataclass
class DataConfig:
    """Dataset, input size, augmentation and P x K batching."""

    dataset: str = "synthetic"
    root: str = "data/synthetic"
    options: dict = field(default_factory=dict)  # extra keyword arguments of load_dataset
    height: int = 256
    width: int = 128
    p: int = 16  # identities per batch
    k: int = 4  # images per identity
    workers: int = 2
    flip: float = 0.5  # probability of a horizontal flip
    pad: int = 10  # padding before the random crop (0 disables the crop)
    random_erasing: float = 0.5  # probability
    color_jitter: float = 0.0  # strength in [0, 1]; 0 disables
    mean: list = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list = field(default_factory=lambda: list(IMAGENET_STD))
    # extra unlabelled images (pid -1, for the ``lsro`` loss): {root: folder, per_batch: images per batch}
    unlabelled: dict | None = None
    # CSV ``pid,<attr1>,<attr2>,...`` of integer attribute codes per training identity (attribute heads)
    attributes: str | None = None
    # keypoint file (reidkit.data.keypoints) of the models that use body keypoints (model pose_parts); null =
    # keypoints.json in data.root. Other models ignore it.
    keypoints: str | None = None
    # video datasets (tracklets): frames per training clip and how they are drawn (random | evenly); a model
    # with model.temporal sees clips of seq_len frames, one without it trains on single frames
    seq_len: int = 8
    frames: str = "random"


@dataclass
class ModelConfig:
    """Which model to build; ``params`` go to the model's constructor as keyword arguments."""

    name: str = "baseline"
    backbone: str = "resnet50"
    pretrained: str | None = None  # None, "imagenet" or a path to a state dict
    last_stride: int = 1
    params: dict = field(default_factory=dict)
    init: str | None = None  # a reidkit checkpoint whose matching weights initialise the model (fine-tuning)
    # video ReID: the temporal head over a clip's frames (avg | max | attention | rnn | quality); null = images
    temporal: str | None = None
    temporal_hidden: int = 256  # hidden size of the attention / quality scorer and of the recurrent cell
    rnn: str = "lstm"  # the rnn head's cell: lstm | gru


@dataclass
class LossConfig:
    """Weighted loss terms ``{name, weight, on, params}``; ``params`` go to the loss function."""

    terms: list = field(default_factory=_default_terms)


@dataclass
class OptimConfig:
    name: str = "adam"  # sgd | adam | adamw
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    criterion_lr: float | None = None  # learning rate of learnable loss state (e.g. centres); None = lr
    lr_factors: dict = field(default_factory=dict)  # parameter-name prefix -> LR multiplier (0 = frozen)


@dataclass
class ScheduleConfig:
    name: str = "multistep"  # multistep | cosine | constant
    warmup_epochs: float = 10
    warmup_factor: float = 0.01  # LR multiplier at the start of warm-up
    milestones: list = field(default_factory=lambda: [40, 70])  # epochs (multistep)
    gamma: float = 0.1
    min_factor: float = 0.0  # final LR multiplier (cosine)


@dataclass
class TrainConfig:
    epochs: int = 120
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # mixed precision on CUDA (bf16 where supported, else fp16 + gradient scaler)
    cpu_amp: bool = False  # bf16 autocast on CPU (fast with AMX / AVX512-BF16; emulated and slow without)
    sync_bn: bool = False  # SyncBatchNorm across the processes of a torchrun run (CUDA only)
    channels_last: bool = True  # CUDA only
    eval_every: int = 0  # epochs between evaluations; 0 = only after the last epoch
    eval_before: bool = False  # also evaluate the untrained model
    checkpoint_every: int = 1  # epochs
    log_every: int = 20  # iterations
    tensorboard: bool = False
    grad_clip: float | None = None


@dataclass
class EvalConfig:
    metric: str = "euclidean"  # euclidean | cosine
    flip: bool = True  # average the embeddings of the image and its mirror
    batch_size: int = 128
    max_rank: int = 50
    rerank: str | None = None  # None | exact | fast
    k1: int = 20
    k2: int = 6
    lambda_value: float = 0.3
    query_expansion: int = 0  # alpha-QE neighbours; 0 disables
    # score query x gallery with the verification pair head (needs a 'verification' loss term; slow)
    pairwise: bool = False
    # video datasets: v2v (tracklets), i2v (first query frame vs tracklets), v2i; test-time clips: all | evenly
    video_mode: str = "v2v"
    frames: str = "all"


@dataclass
class AdaptConfig:
    """``reidkit adapt``: the pseudo-labels of every epoch (k-reciprocal Jaccard distance + DBSCAN)."""

    k1: int = 30  # k-reciprocal neighbours of the Jaccard distance
    k2: int = 6  # local query expansion of the encodings
    eps: float = 0.6  # DBSCAN radius on the Jaccard distance (in [0, 1])
    min_samples: int = 4  # DBSCAN: images within eps that make a core point (itself included)
    per_tracklet: int = 8  # --tracks: crops cut per tracklet
    batch_size: int = 128  # images per forward pass of the feature extraction


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)


class _Loader(yaml.SafeLoader):
    """YAML 1.2 scalars: only true/false are booleans (YAML 1.1 also reads on/off/yes/no as booleans, which
    turns a loss term's ``on:`` key into ``True``), and ``1e-3`` is a float."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


# YAML 1.2 floats without a dot, such as 1e-3 (YAML 1.1 reads them as strings); checked after the int rule.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def yaml_load(text: str):
    """Parse YAML with only true/false as booleans (``on``, ``yes``, ``no`` stay strings)."""
    return yaml.load(text, Loader=_Loader)


def _accepts(annotation: Any, value: Any) -> bool:
    """Whether ``value`` fits a (string) annotation of the config dataclasses."""
    hint = annotation
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(arg, value) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint in (str, list, dict):
        return isinstance(value, hint)
    return True


def _coerce(hint: Any, value: Any) -> Any:
    """Int -> float where a float is expected; YAML 1.1 leaves ``1e-3`` as a string, so parse that too."""
    wants_float = hint is float or (
        typing.get_origin(hint) in (typing.Union, types.UnionType) and float in typing.get_args(hint)
    )
    if wants_float:
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return value
    return value


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(hint))
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def _section_from_dict(cls: type, values: Any, prefix: str) -> Any:
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"config section {prefix!r} must be a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"unknown config key {prefix}.{unknown[0]}; {prefix} accepts {names}")
    kwargs = {}
    for name, value in values.items():
        value = _coerce(hints[name], value)
        if not _accepts(hints[name], value):
            raise ConfigError(f"config key {prefix}.{name} expects {_type_name(hints[name])}, got {value!r}")
        kwargs[name] = value
    return cls(**kwargs)


def from_dict(values: dict) -> Config:
    """Build a validated :class:`Config` from a nested dict (missing keys take defaults)."""
    if not isinstance(values, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(values).__name__}")
    sections = {f.name: f for f in dataclasses.fields(Config)}
    unknown = sorted(set(values) - set(sections))
    if unknown:
        raise ConfigError(f"unknown config section {unknown[0]!r}; choose from {list(sections)}")
    hints = typing.get_type_hints(Config)
    config = Config(**{name: _section_from_dict(hints[name], values.get(name), name) for name in sections})
    validate(config)
    return config


def to_dict(config: Config) -> dict:
    """The resolved config as a plain nested dict (what checkpoints and ``config.yaml`` store)."""
    return dataclasses.asdict(config)


def validate(config: Config) -> None:
    """Value checks beyond types: ranges and choices."""
    checks = [
        (config.data.height > 0 and config.data.width > 0, "data.height and data.width must be positive"),
        (config.data.p >= 1, "data.p (identities per batch) must be >= 1"),
        (config.data.k >= 1, "data.k (images per identity) must be >= 1"),
        (config.data.workers >= 0, "data.workers must be >= 0"),
        (0.0 <= config.data.flip <= 1.0, "data.flip is a probability in [0, 1]"),
        (0.0 <= config.data.random_erasing <= 1.0, "data.random_erasing is a probability in [0, 1]"),
        (config.data.pad >= 0, "data.pad must be >= 0"),
        (len(config.data.mean) == 3 and len(config.data.std) == 3, "data.mean and data.std need 3 values"),
        (
            config.optim.name in ("sgd", "adam", "adamw"),
            f"optim.name must be sgd, adam or adamw, got {config.optim.name!r}",
        ),
        (config.optim.lr > 0, "optim.lr must be positive"),
        (
            config.schedule.name in ("multistep", "cosine", "constant"),
            f"schedule.name must be multistep, cosine or constant, got {config.schedule.name!r}",
        ),
        (config.schedule.warmup_epochs >= 0, "schedule.warmup_epochs must be >= 0"),
        (config.train.epochs >= 0, "train.epochs must be >= 0"),
        (config.train.checkpoint_every >= 1, "train.checkpoint_every must be >= 1"),
        (config.train.log_every >= 1, "train.log_every must be >= 1"),
        (config.train.eval_every >= 0, "train.eval_every must be >= 0"),
        (
            config.eval.metric in ("euclidean", "cosine"),
            f"eval.metric must be euclidean or cosine, got {config.eval.metric!r}",
        ),
        (
            config.eval.rerank in (None, "exact", "fast"),
            f"eval.rerank must be null, exact or fast, got {config.eval.rerank!r}",
        ),
        (
            isinstance(config.loss.terms, list) and len(config.loss.terms) > 0,
            "loss.terms must be a non-empty list",
        ),
        *_video_checks(config),
        (config.adapt.k1 >= 1 and config.adapt.k2 >= 1, "adapt.k1 and adapt.k2 must be >= 1"),
        (0.0 < config.adapt.eps < 1.0, f"adapt.eps is a Jaccard distance in (0, 1), got {config.adapt.eps}"),
        (config.adapt.min_samples >= 1, "adapt.min_samples must be >= 1"),
        (config.adapt.per_tracklet >= 1, "adapt.per_tracklet must be >= 1"),
        (config.adapt.batch_size >= 1, "adapt.batch_size must be >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    _validate_unlabelled(config.data.unlabelled)
    if config.eval.pairwise and not any(
        isinstance(term, dict) and term.get("name") == "verification" for term in config.loss.terms
    ):
        raise ConfigError("eval.pairwise needs a 'verification' loss term (its pair head scores the pairs)")
    if config.eval.pairwise and (config.eval.rerank or config.eval.query_expansion):
        raise ConfigError("eval.pairwise does not combine with eval.rerank or eval.query_expansion")
    if config.data.attributes is not None and not config.data.attributes.strip():
        raise ConfigError("data.attributes must name a CSV file (pid,<attribute>,...) or be null")
    if config.data.keypoints is not None and not str(config.data.keypoints).strip():
        raise ConfigError("data.keypoints must name a keypoint file (reidkit.data.keypoints) or be null")
    for index, term in enumerate(config.loss.terms):
        if not isinstance(term, dict) or "name" not in term:
            raise ConfigError(f"loss.terms[{index}] must be a mapping with at least a 'name', got {term!r}")


def _video_checks(config: Config) -> list[tuple[bool, str]]:
    """The video keys: clip length, frame sampling, temporal head, evaluation mode."""
    model, data, settings = config.model, config.data, config.eval
    heads = ("avg", "max", "attention", "rnn", "quality")
    return [
        (data.seq_len >= 1, "data.seq_len (frames per training clip) must be >= 1"),
        (data.frames in ("random", "evenly"), f"data.frames must be random or evenly, got {data.frames!r}"),
        (
            model.temporal is None or model.temporal in heads,
            f"model.temporal must be null or one of {', '.join(heads)}, got {model.temporal!r}",
        ),
        (model.temporal_hidden >= 1, "model.temporal_hidden must be >= 1"),
        (model.rnn in ("lstm", "gru"), f"model.rnn must be lstm or gru, got {model.rnn!r}"),
        (
            settings.video_mode in ("v2v", "i2v", "v2i"),
            f"eval.video_mode must be v2v, i2v or v2i, got {settings.video_mode!r}",
        ),
        (settings.frames in ("all", "evenly"), f"eval.frames must be all or evenly, got {settings.frames!r}"),
    ]


_UNLABELLED_KEYS = ("root", "per_batch")


def _validate_unlabelled(section: dict | None) -> None:
    """``data.unlabelled`` is null or ``{root: folder of images, per_batch: integer >= 1}``."""
    if section is None:
        return
    unknown = sorted(str(key) for key in set(section) - set(_UNLABELLED_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown config key data.unlabelled.{unknown[0]}; data.unlabelled accepts {list(_UNLABELLED_KEYS)}"
        )
    root = section.get("root")
    if not isinstance(root, str) or not root.strip():
        raise ConfigError(f"data.unlabelled.root must name a folder of images, got {root!r}")
    per_batch = section.get("per_batch")
    if isinstance(per_batch, bool) or not isinstance(per_batch, int) or per_batch < 1:
        raise ConfigError(
            f"data.unlabelled.per_batch must be an integer >= 1 (extra images per batch), got {per_batch!r}"
        )


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=3e-4"`` -> (["train", "lr"], 3e-4); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    path = [part for part in key.strip().split(".") if part]
    if len(path) < 2:
        raise ConfigError(f"override {text!r} must name section.key (e.g. train.epochs=10)")
    try:
        value = yaml_load(raw) if raw.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({error})") from error
    return path, value


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """Return a copy of the nested dict ``values`` with ``section.key=value`` overrides applied."""
    result = copy.deepcopy(values)
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return result


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML recipe (or the defaults when ``path`` is None) and apply ``--set`` overrides."""
    values: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            loaded = yaml_load(path.read_text())
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {path} is not valid YAML: {error}") from error
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(
                f"config file {path} must hold a mapping of sections, got {type(loaded).__name__}"
            )
        values = loaded or {}
    values = apply_overrides(values, overrides or [])
    try:
        return from_dict(values)
    except ConfigError as error:
        where = f" (in {path})" if path is not None else ""
        raise ConfigError(f"{error}{where}") from None


def save_config(config: Config | dict, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    values = to_dict(config) if isinstance(config, Config) else config
    atomic_write_text(Path(path), yaml.safe_dump(values, sort_keys=False))
