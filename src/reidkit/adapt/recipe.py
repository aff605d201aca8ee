"""Config -> the :class:`~reidkit.recipe.TrainingRun` of ``reidkit adapt`` (the adaptation counterpart of
:func:`reidkit.recipe.build_training`; with ``config.py``, ``recipe.py`` and ``cli.py`` one of the few readers of a
:class:`~reidkit.config.Config`).

The run trains with :func:`reidkit.engine.fit` unchanged; its sampler is a
:class:`~reidkit.adapt.sampler.PseudoLabelSampler` whose labels come from :func:`relabeller`: at the start of
every epoch, the current model embeds every target image (no flip), the k-reciprocal Jaccard distance and DBSCAN
(with the tracklet constraints when the images come from a tracking run) give the pseudo-identities, the cluster
memory of the ``cluster_contrast`` loss term is reset to their centroids, and one line per epoch goes to
``clusters.jsonl`` (clusters, outliers, sizes, and purity / NMI when the target's true identities are known).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reidkit._io import atomic_write_text
from reidkit.checkpoint import Checkpoint, DataRef, ModelSpec, Preprocess
from reidkit.config import Config, to_dict
from reidkit.data.image_dataset import ImageDataset
from reidkit.data.records import NO_CAMERA, Sample, Split
from reidkit.errors import ConfigError

__all__ = ["AdaptTarget", "CLUSTERS_LOG", "UNSUPPORTED_TERMS", "build_adaptation", "relabeller"]

#: the per-epoch clustering log in the run folder
CLUSTERS_LOG = "clusters.jsonl"
#: loss terms that need a fixed set of identities (a classifier or per-identity state): not for pseudo-labels
UNSUPPORTED_TERMS = ("cross_entropy", "lsro", "center", "verification", "attributes")


@dataclass(frozen=True, eq=False)  # holds arrays
class AdaptTarget:
    """The unlabelled target data.

    Attributes:
        samples: the training images (their pids are not used; they are replaced by pseudo-labels).
        split: for evaluation during adaptation (query / gallery with labels) and the checkpoint's dataset;
            an image folder or a tracking run gives a split without query and gallery (no evaluation).
        data: the dataset the checkpoint names (None: none to name).
        truth: ``[N]`` the true identities of ``samples`` when known (logged as purity / NMI only), else None.
        groups: ``[N]`` the tracklet of each image (tracking runs), else None.
        cannot_link: pairs of tracklets that share a frame of one camera.
    """

    samples: tuple[Sample, ...]
    split: Split
    data: DataRef | None = None
    truth: np.ndarray | None = None
    groups: np.ndarray | None = None
    cannot_link: tuple[tuple[int, int], ...] = ()


def _append_cluster_log(path: Path, entry: dict[str, Any]) -> None:
    """Rewrite ``path`` with the entries of earlier epochs and ``entry`` (a resumed run rewrites its epoch)."""
    kept = []
    if path.is_file():
        kept = [
            line
            for line in path.read_text().splitlines()
            if line.strip() and json.loads(line)["epoch"] < entry["epoch"]
        ]
    atomic_write_text(path, "".join(line + "\n" for line in [*kept, json.dumps(entry)]))


def relabeller(
    model: nn.Module,
    criterion: nn.Module,
    preprocess: Preprocess,
    target: AdaptTarget,
    settings,
    *,
    device: torch.device,
    log_path: Path,
    workers: int = 0,
) -> Callable[[int], np.ndarray]:
    """``relabel(epoch) -> [N]`` pseudo-labels of the target images from the current model (see the module docstring).

    ``settings`` has ``k1``, ``k2``, ``eps``, ``min_samples``, ``batch_size`` (:class:`reidkit.config.AdaptConfig`).
    """
    from reidkit.adapt.memory import CameraMemory, centroids_of, proxies_of
    from reidkit.adapt.pseudo_labels import constrained_labels, jaccard_distance, label_quality
    from reidkit.embed import TorchEmbedder, embed_paths

    paths = [s.path for s in target.samples]
    camids = torch.as_tensor([s.camid for s in target.samples], dtype=torch.int64)

    def relabel(epoch: int) -> np.ndarray:
        was_training = model.training
        embedder = TorchEmbedder(
            model, replace(preprocess, flip=False), device=device, batch_size=settings.batch_size
        )
        features = embed_paths(embedder, paths, batch_size=settings.batch_size, workers=workers)
        model.train(was_training)
        distance = jaccard_distance(features, k1=settings.k1, k2=settings.k2, max_distance=settings.eps)
        labels = constrained_labels(
            distance,
            groups=target.groups,
            cannot_link=target.cannot_link,
            eps=settings.eps,
            min_samples=settings.min_samples,
        )
        memory = criterion.cluster_memory()
        if memory is not None:
            tensor, label_tensor = torch.from_numpy(features).to(device), torch.from_numpy(labels).to(device)
            if isinstance(memory, CameraMemory):
                memory.reset(*proxies_of(tensor, label_tensor, camids.to(device)))
            else:
                memory.reset(centroids_of(tensor, label_tensor))
        truth = target.truth if target.truth is not None else np.full(len(labels), -1)
        quality = label_quality(labels, truth)
        if target.truth is None:  # purity and NMI against nothing mean nothing
            quality = {key: value for key, value in quality.items() if key not in ("purity", "nmi")}
        _append_cluster_log(log_path, {"epoch": epoch + 1, "images": len(labels), **quality})
        return labels

    return relabel


def _source_parts(config: Config, source: Checkpoint | None) -> tuple[ModelSpec, Preprocess, nn.Module]:
    """The model to adapt: the source checkpoint's (its spec, preprocessing, weights), or a fresh one of ``model``."""
    if source is not None:
        return source.spec, replace(source.preprocess, flip=False), source.build_model().train()
    data, model_config = config.data, config.model
    if model_config.temporal is not None:
        raise ConfigError("adapt works on images: model.temporal must be null")
    spec = ModelSpec(
        name=model_config.name,
        num_classes=1,  # no classifier is trained: the pseudo-identities change every epoch
        backbone=model_config.backbone,
        last_stride=model_config.last_stride,
        params=dict(model_config.params),
    )
    torch.manual_seed(config.train.seed)
    model = spec.build(pretrained=model_config.pretrained)
    return spec, Preprocess(data.height, data.width, mean=tuple(data.mean), std=tuple(data.std)), model


def _check_terms(terms: Sequence[dict]) -> None:
    names = [term.get("name") for term in terms]
    bad = [name for name in names if name in UNSUPPORTED_TERMS]
    if bad:
        raise ConfigError(
            f"loss.terms: {bad} need a fixed set of identities; adapt trains on pseudo-identities that change "
            "every epoch: use cluster_contrast (and metric terms such as trihard)"
        )
    if "cluster_contrast" not in names:
        raise ConfigError(
            "loss.terms: adapt needs a cluster_contrast term (its cluster memory holds the pseudo-identities)"
        )


def _one_camera_if_unknown(target: AdaptTarget) -> AdaptTarget:
    """Images without a camera id (a flat ``--images`` folder) count as one camera of the camera-aware memory."""
    if not any(s.camid == NO_CAMERA for s in target.samples):
        return target
    samples = tuple(replace(s, camid=0) if s.camid == NO_CAMERA else s for s in target.samples)
    return replace(target, samples=samples)


def build_adaptation(config: Config, target: AdaptTarget, *, source: Checkpoint | None, out_dir: str | Path):
    """The :class:`~reidkit.recipe.TrainingRun` that adapts ``source`` (or a fresh model) to ``target``.

    Images without a camera id count as one camera (for a camera-aware memory: one proxy per cluster).

    Raises:
        ConfigError: loss terms that need fixed identities, or no ``cluster_contrast`` term.
        ReidkitError: fewer than two target images.
    """
    from reidkit.adapt.sampler import PseudoLabelSampler
    from reidkit.errors import ReidkitError
    from reidkit.recipe import (
        TrainingRun,
        criterion_for,
        optimizer_for,
        resolve_device,
        schedule_for,
        train_transform,
    )

    if len(target.samples) < 2:
        raise ReidkitError(f"adapt needs at least two target images to cluster, got {len(target.samples)}")
    terms = tuple(dict(term) for term in config.loss.terms)
    _check_terms(terms)
    target = _one_camera_if_unknown(target)
    spec, preprocess, model = _source_parts(config, source)
    data, train = config.data, config.train
    transform = train_transform(config, preprocess)
    criterion = criterion_for(terms, model, num_classes=1, seed=train.seed)
    device = resolve_device(train.device)
    dataset = ImageDataset(list(target.samples), transform)
    relabel = relabeller(
        model,
        criterion,
        preprocess,
        target,
        config.adapt,
        device=device,
        log_path=Path(out_dir) / CLUSTERS_LOG,
    )
    sampler = PseudoLabelSampler(
        dataset, relabel, Path(out_dir) / "pseudo_labels", p=data.p, k=data.k, seed=train.seed
    )
    return TrainingRun(
        split=target.split,
        dataset=dataset,
        sampler=sampler,
        model=model,
        criterion=criterion,
        optimizer=optimizer_for(config, model, criterion),
        lr_at=schedule_for(config),
        device=device,
        spec=spec,
        preprocess=preprocess,
        data=target.data,
        loss_terms=terms,
        seed=train.seed,
        config=to_dict(config),
    )
