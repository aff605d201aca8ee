"""Config -> objects: the one place besides ``config.py`` and ``cli.py`` that reads a :class:`Config`.

:func:`build_training` turns a recipe into a :class:`TrainingRun` (data, model, criterion, optimiser,
learning-rate schedule, device, and what the checkpoint records: :class:`~reidkit.checkpoint.ModelSpec`,
:class:`~reidkit.checkpoint.Preprocess`, :class:`~reidkit.checkpoint.DataRef`, loss terms, seed, the resolved
config); :func:`fit_options` the :class:`~reidkit.engine.FitOptions` of ``fit``, with the periodic evaluator of
:func:`make_evaluator`. The optimiser and schedule builders below take plain arguments: a config key never
reaches them. Errors from the library get the config key they came from as a prefix (``loss.terms[0] ...``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reidkit import checkpoint
from reidkit.checkpoint import DataRef, ModelSpec, Preprocess
from reidkit.config import Config, EvalConfig, to_dict
from reidkit.data.clip_dataset import ClipDataset, frame_samples
from reidkit.data.image_dataset import ImageDataset
from reidkit.data.records import Split, VideoSplit
from reidkit.data.sampler import PKSampler, UnlabelledMixSampler
from reidkit.distributed import SINGLE_PROCESS, Distributed
from reidkit.engine import FitOptions
from reidkit.errors import CheckpointError, ConfigError, DatasetError, EmbeddingError, ReidkitError
from reidkit.losses.criterion import Criterion, build_criterion
from reidkit.optim import build_optimizer, lr_factor, model_parameter_groups

__all__ = [
    "TrainingRun",
    "build_optimizer",
    "build_training",
    "fit_options",
    "lr_factor",
    "make_evaluator",
    "model_parameter_groups",
    "optimizer_for",
    "schedule_for",
    "train_transform",
]


# ------------------------------------------------------------------------------------------ the run
@dataclass(frozen=True, eq=False)  # compared and hashed by identity: it holds live modules
class TrainingRun:
    """The objects of one training run (what :func:`reidkit.engine.fit` trains) and what its checkpoint records.

    Attributes:
        split: the dataset (``train`` for training, ``query`` / ``gallery`` for the periodic evaluation); a
            :class:`VideoSplit` of tracklets for a video dataset.
        dataset: the training images (labelled, then any unlabelled extra images) -> ``ImageItem`` s; for a
            video dataset the clips of its tracklets (a temporal model) or all their frames (a frame model).
        sampler: P x K batches of ``dataset`` indices (with unlabelled images mixed in, if any).
        model: the network, initialised (seeded, pretrained trunk or ``model.init`` weights).
        criterion: the weighted loss terms, with their learnable state.
        optimizer: over the model's trainable parameters and the criterion's state.
        lr_at: learning-rate multiplier as a function of the fractional epoch.
        device: where to train.
        spec: rebuilds ``model`` (stored in the checkpoint; a resumed run must build the same).
        preprocess: the input pipeline of the trained model.
        data: the training dataset, the default of ``eval`` / ``extract``.
        loss_terms: the criterion's terms ``({name, weight, on, params}, ...)``.
        seed: the training seed.
        config: the resolved config as a plain dict, kept in the checkpoint for the record.
    """

    split: Split | VideoSplit
    dataset: ImageDataset | ClipDataset
    sampler: PKSampler | UnlabelledMixSampler
    model: nn.Module
    criterion: Criterion
    optimizer: torch.optim.Optimizer
    lr_at: Callable[[float], float]
    device: torch.device
    spec: ModelSpec
    preprocess: Preprocess
    data: DataRef
    loss_terms: tuple[Mapping[str, Any], ...]
    seed: int
    config: Mapping[str, Any]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device: expected auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device {name!r} requested but CUDA is not available")
    return device


def train_transform(config: Config, preprocess: Preprocess | None = None):
    """The training augmentation of ``data`` at the size and normalisation of ``preprocess`` (default: ``data``'s)."""
    from reidkit.data.transforms import TrainTransform

    data = config.data
    size = preprocess or Preprocess(data.height, data.width, mean=tuple(data.mean), std=tuple(data.std))
    return TrainTransform(
        size.height,
        size.width,
        flip=data.flip,
        pad=data.pad,
        random_erasing=data.random_erasing,
        color_jitter=data.color_jitter,
        mean=size.mean,
        std=size.std,
    )


def optimizer_for(config: Config, model: nn.Module, criterion: nn.Module) -> torch.optim.Optimizer:
    """The ``optim`` optimiser over ``model`` and the criterion's learnable state."""
    optim = config.optim
    try:
        return build_optimizer(
            model,
            criterion,
            name=optim.name,
            lr=optim.lr,
            weight_decay=optim.weight_decay,
            momentum=optim.momentum,
            nesterov=optim.nesterov,
            criterion_lr=optim.criterion_lr,
            lr_factors=optim.lr_factors,
        )
    except ConfigError as error:
        raise ConfigError(f"optim.{error}") from None


def criterion_for(terms: Sequence[Mapping], model: nn.Module, *, num_classes: int, seed: int) -> nn.Module:
    """The ``loss.terms`` criterion for ``model``'s feature width; a bad term names its ``loss.`` key."""
    feat_dim = int(getattr(model, "feature_dim", getattr(model, "embedding_dim", 0)))
    try:
        return build_criterion(terms, num_classes=num_classes, feat_dim=feat_dim, seed=seed)
    except ConfigError as error:
        raise ConfigError(f"loss.{error}") from None


def schedule_for(config: Config) -> Callable[[float], float]:
    """The ``schedule`` learning-rate multiplier as a function of the fractional epoch."""
    schedule = config.schedule
    return partial(
        lr_factor,
        schedule=schedule.name,
        total_epochs=config.train.epochs,
        warmup_epochs=schedule.warmup_epochs,
        warmup_factor=schedule.warmup_factor,
        milestones=tuple(schedule.milestones),
        gamma=schedule.gamma,
        min_factor=schedule.min_factor,
    )


def _pk_sampler(config: Config, pids: Sequence[int]) -> PKSampler:
    try:
        return PKSampler(list(pids), p=config.data.p, k=config.data.k, seed=config.train.seed)
    except ValueError as error:
        raise ReidkitError(f"data.p / data.k: {error}") from None


def _training_data(
    config: Config, split: Split, model_params: dict[str, Any]
) -> tuple[ImageDataset, PKSampler | UnlabelledMixSampler]:
    """The training dataset and its sampler; sizes ``model_params["attributes"]`` from ``data.attributes``."""
    from reidkit.data.image_dataset import (
        UNKNOWN_ATTRIBUTE,
        attribute_value_counts,
        read_attribute_csv,
        train_attribute_labels,
        unlabelled_samples,
    )

    data = config.data
    records = list(split.train)
    attribute_labels = None
    if data.attributes is not None:
        if "attributes" in model_params:
            raise ConfigError(
                "model.params.attributes and data.attributes both set: the attribute heads are sized from "
                "data.attributes; remove model.params.attributes"
            )
        try:
            names, table = read_attribute_csv(data.attributes)
            attribute_labels = train_attribute_labels(split, names, table, source=data.attributes)
        except DatasetError as error:
            raise DatasetError(f"data.attributes: {error}") from None
        model_params["attributes"] = attribute_value_counts(names, table)
    unlabelled = []
    if data.unlabelled is not None:
        try:
            unlabelled = unlabelled_samples(data.unlabelled["root"])
        except DatasetError as error:
            raise DatasetError(f"data.unlabelled.root: {error}") from None
        if attribute_labels is not None:
            unknown = {name: UNKNOWN_ATTRIBUTE for name in model_params["attributes"]}
            attribute_labels += [dict(unknown) for _ in unlabelled]
    keypoints = None
    if uses_keypoints(config.model.name):
        if unlabelled:
            raise ConfigError(f"data.unlabelled: model {config.model.name!r} trains on labelled images only")
        from reidkit.data.keypoints import dataset_keypoints, points_of

        try:
            file = dataset_keypoints(data.root, data.keypoints, what=f"model {config.model.name!r}")
            keypoints = points_of(file, [record.path for record in records])
        except DatasetError as error:
            raise DatasetError(f"data.keypoints: {error}") from None
    dataset = ImageDataset(
        records + unlabelled, train_transform(config), attribute_labels=attribute_labels, keypoints=keypoints
    )
    sampler = _pk_sampler(config, [s.pid for s in split.train])
    if unlabelled:
        # the extra images sit after the training images in the dataset
        extra_indices = range(len(records), len(records) + len(unlabelled))
        sampler = UnlabelledMixSampler(sampler, extra_indices, per_batch=data.unlabelled["per_batch"])
    return dataset, sampler


def uses_keypoints(name: str) -> bool:
    """Whether the registered model ``name`` takes body keypoints (``forward(images, keypoints=...)``)."""
    from reidkit.models import MODELS

    return bool(getattr(MODELS.get(name), "uses_keypoints", False))


def _video_training_data(config: Config, split: VideoSplit) -> tuple[ImageDataset | ClipDataset, PKSampler]:
    """Clips of ``data.seq_len`` frames per tracklet (a temporal model), or every frame as an image (none)."""
    data = config.data
    for key, value in (("data.attributes", data.attributes), ("data.unlabelled", data.unlabelled)):
        if value is not None:
            raise ConfigError(f"{key} is for image datasets; {data.dataset!r} is a video dataset")
    if uses_keypoints(config.model.name):
        raise ConfigError(
            f"model {config.model.name!r} takes body keypoints of images; {data.dataset!r} is a video dataset"
        )
    if config.model.temporal is None:  # a single-frame model: P identities x K frames
        frames = frame_samples(split)
        return ImageDataset(frames, train_transform(config)), _pk_sampler(config, [s.pid for s in frames])
    try:
        dataset = ClipDataset(split.train, train_transform(config), seq_len=data.seq_len, mode=data.frames)
    except ValueError as error:
        raise DatasetError(f"data: {error}") from None
    return dataset, _pk_sampler(config, [t.pid for t in split.train])


def _initialised_model(config: Config, spec: ModelSpec) -> nn.Module:
    """The seeded network of ``spec``, with a pretrained trunk or the matching weights of ``model.init``."""
    torch.manual_seed(config.train.seed)  # model initialisation
    try:
        model = spec.build(pretrained=config.model.pretrained)
    except TypeError as error:
        raise ReidkitError(f"model.params: {error}") from None
    init = config.model.init
    if init is not None:
        try:
            report = checkpoint.load_matching_weights(model, checkpoint.load(init))
        except CheckpointError as error:
            raise CheckpointError(f"model.init: {error}") from None
        skipped = report["missing"] + report["mismatched"]
        listed = ", ".join(skipped[:6]) + (", ..." if len(skipped) > 6 else "")
        print(
            f"model.init: {len(report['loaded'])} weights from {init}; "
            f"{len(skipped)} kept their initialisation" + (f" ({listed})" if skipped else ""),
            file=sys.stderr,
        )
    return model


def _load_split(config: Config) -> Split | VideoSplit:
    """The dataset of ``data``: a video dataset's tracklets, or images (``model.temporal`` needs tracklets)."""
    from reidkit.data.datasets import load_dataset
    from reidkit.data.video_datasets import is_video_dataset, load_video_dataset

    data = config.data
    if is_video_dataset(data.dataset):
        return load_video_dataset(data.dataset, data.root, **data.options)
    if config.model.temporal is not None:
        raise ConfigError(
            f"model.temporal {config.model.temporal!r} needs a video dataset (tracklets: mars, ilidsvid, "
            f"prid2011, dukemtmc_videoreid, custom_tracklets, tracked_run); {data.dataset!r} holds images"
        )
    return load_dataset(data.dataset, data.root, **data.options)


def build_training(config: Config) -> TrainingRun:
    """The objects of one training run, built from a :class:`reidkit.config.Config`.

    Raises:
        ReidkitError: (its subclasses) naming the config key of a value that does not work: an empty train
            split, too few identities for P x K, unknown model parameters, bad loss terms or LR factors, an
            unreadable ``model.init`` checkpoint, a bad attribute CSV or unlabelled-image folder.
    """
    data, model_config, train = config.data, config.model, config.train
    split = _load_split(config)
    if not split.train:
        raise ReidkitError(f"dataset {data.dataset!r} at {data.root} has an empty train split")
    try:
        preprocess = Preprocess(data.height, data.width, mean=tuple(data.mean), std=tuple(data.std))
    except EmbeddingError as error:
        raise ConfigError(f"data: {error}") from None
    model_params = dict(model_config.params)
    if isinstance(split, VideoSplit):
        dataset, sampler = _video_training_data(config, split)
    else:
        dataset, sampler = _training_data(config, split, model_params)
    if model_config.temporal is not None:
        for key in ("temporal", "temporal_hidden", "rnn"):
            if key in model_params:
                raise ConfigError(f"model.params.{key}: set model.{key} instead")
        model_params.update(
            temporal=model_config.temporal, temporal_hidden=model_config.temporal_hidden, rnn=model_config.rnn
        )
    spec = ModelSpec(
        name=model_config.name,
        num_classes=split.num_train_pids,
        backbone=model_config.backbone,
        last_stride=model_config.last_stride,
        params=model_params,
    )
    model = _initialised_model(config, spec)
    loss_terms = tuple(dict(term) for term in config.loss.terms)
    criterion = criterion_for(loss_terms, model, num_classes=split.num_train_pids, seed=train.seed)
    optimizer = optimizer_for(config, model, criterion)
    lr_at = schedule_for(config)
    return TrainingRun(
        split=split,
        dataset=dataset,
        sampler=sampler,
        model=model,
        criterion=criterion,
        optimizer=optimizer,
        lr_at=lr_at,
        device=resolve_device(train.device),
        spec=spec,
        preprocess=preprocess,
        data=DataRef(
            name=data.dataset,
            root=str(data.root),
            options=dict(data.options),
            seq_len=data.seq_len if isinstance(split, VideoSplit) else None,
        ),
        loss_terms=loss_terms,
        seed=train.seed,
        config=to_dict(config),
    )


# --------------------------------------------------------------------------------------- fit options
def _distance(settings: EvalConfig):
    from reidkit.evaluation import GlobalDistance

    return GlobalDistance(
        metric=settings.metric,
        rerank=settings.rerank,
        k1=settings.k1,
        k2=settings.k2,
        lambda_value=settings.lambda_value,
        query_expansion=settings.query_expansion,
    )


def _split_evaluator(config: Config, run: TrainingRun) -> Callable:
    """``evaluate(embedder) -> EvalResult`` on ``run.split`` with the ``eval`` settings (images or tracklets);
    ``eval.pairwise`` scores with the live pair head of ``run.criterion``."""
    from reidkit.evaluation import evaluate_split, global_scorer, pairwise_scorer

    settings = config.eval
    common = {"max_rank": settings.max_rank, "workers": config.data.workers}
    if isinstance(run.split, VideoSplit):
        from reidkit.video_evaluation import evaluate_video_split

        if settings.pairwise:
            raise ConfigError(
                "eval.pairwise is for image datasets; score tracklets by distance (eval.metric)"
            )
        video = {"mode": settings.video_mode, "seq_len": config.data.seq_len, "frames": settings.frames}
        return partial(
            evaluate_video_split,
            split=run.split,
            distance=_distance(settings),
            batch_size=settings.batch_size,
            **video,
            **common,
        )
    if settings.pairwise:
        pair_head = run.criterion.pair_head()
        if pair_head is None:
            raise ConfigError(
                "eval.pairwise needs a 'verification' loss term (its pair head scores the pairs)"
            )
        on = next(term.on for term in run.criterion.terms if term.name == "verification")
        scorer = pairwise_scorer(pair_head, on=on)
    else:
        scorer = global_scorer(_distance(settings))
    return partial(evaluate_split, split=run.split, scorer=scorer, **common)


def make_evaluator(config: Config, run: TrainingRun, *, progress: bool) -> Callable[[nn.Module], dict]:
    """``evaluate(model) -> metrics dict`` for periodic evaluation during training (``eval`` settings).

    With ``eval.pairwise`` the pair head of ``run.criterion`` (the one being trained) scores the pairs. A video
    dataset is evaluated tracklet against tracklet (``eval.video_mode``) with clips of ``data.seq_len`` frames.
    The model's train / eval mode is restored after each evaluation.
    """
    from reidkit.embed import TorchEmbedder

    settings = config.eval
    evaluate_on_split = _split_evaluator(config, run)
    preprocess = replace(run.preprocess, flip=settings.flip)

    def evaluate(model: nn.Module) -> dict:
        was_training = model.training
        embedder = TorchEmbedder(model, preprocess, device=run.device, batch_size=settings.batch_size)
        result = evaluate_on_split(embedder, progress=progress)
        model.train(was_training)
        return result.metrics.as_dict()

    return evaluate


def fit_options(
    config: Config,
    run: TrainingRun,
    *,
    out_dir: str | Path,
    resume: str | Path | None = None,
    max_steps: int | None = None,
    progress: bool = False,
    distributed: Distributed | None = None,
) -> FitOptions:
    """The :class:`~reidkit.engine.FitOptions` of ``config.train`` / ``data.workers``, evaluating with
    :func:`make_evaluator` (``resume``, ``max_steps``, ``progress`` and ``distributed`` come from the command
    line and its launcher)."""
    train = config.train
    return FitOptions(
        out_dir=out_dir,
        epochs=train.epochs,
        workers=config.data.workers,
        amp=train.amp,
        cpu_amp=train.cpu_amp,
        sync_bn=train.sync_bn,
        distributed=distributed or SINGLE_PROCESS,
        channels_last=train.channels_last,
        grad_clip=train.grad_clip or None,  # 0 disables clipping, as null does
        evaluate=make_evaluator(config, run, progress=progress),
        eval_every=train.eval_every,
        eval_before=train.eval_before,
        checkpoint_every=train.checkpoint_every,
        log_every=train.log_every,
        tensorboard=train.tensorboard,
        resume=resume,
        max_steps=max_steps,
        progress=progress,
    )
