"""``reidkit adapt``: a model adapted to a new site from unlabelled images, a dataset's train split or a tracking run."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from reidkit.cli._common import dataset_options, format_metrics, image_folder, positive
from reidkit.errors import ReidkitError

#: the settings of ``reidkit adapt`` without ``--config`` (those of configs/adapt.yaml), before any ``--set``
ADAPT_DEFAULTS = (
    "loss.terms=[{name: cluster_contrast, weight: 1.0, on: embedding, params: {temperature: 0.05, momentum: 0.2, camera_aware: true}}]",
    "data.p=16",
    "data.k=4",
    "optim.lr=3.5e-4",
    "schedule.name=constant",
    "schedule.warmup_epochs=0",
    "train.epochs=20",
)


def add_adapt(commands) -> None:
    p = commands.add_parser(
        "adapt", help="adapt a model to a new site without labels (clustering pseudo-labels + cluster memory)"
    )
    p.add_argument(
        "--checkpoint", help="the model to adapt (default: a fresh model of the config's model section)"
    )
    target = p.add_argument_group("target data (exactly one)")
    target.add_argument("--images", help="a folder of unlabelled images (camera = sub-folder)")
    target.add_argument(
        "--tracks", help="a reidkit track run folder: crops of its tracklets, with their constraints"
    )
    target.add_argument("--dataset", help="a dataset whose train split is used without its labels")
    p.add_argument("--root", help="the dataset root (with --dataset)")
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="dataset option")
    p.add_argument(
        "--out", required=True, help="run folder (checkpoint, log.jsonl, clusters.jsonl, config.yaml)"
    )
    p.add_argument("--config", help="YAML recipe (default: the settings of configs/adapt.yaml)")
    p.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config value"
    )
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out at the exact batch it stopped"
    )
    p.add_argument(
        "--max-steps", type=positive, help="stop (with a checkpoint) after this many optimiser steps"
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_adapt)


def _target(args: argparse.Namespace, config, aspect: float):
    """The :class:`~reidkit.adapt.recipe.AdaptTarget` of ``--images``, ``--tracks`` or ``--dataset``."""
    import numpy as np

    from reidkit.adapt.recipe import AdaptTarget
    from reidkit.checkpoint import DataRef
    from reidkit.data.records import NO_CAMERA, Sample, Split

    given = [name for name in ("images", "tracks", "dataset") if getattr(args, name)]
    if len(given) != 1:
        raise ReidkitError("give exactly one of --images DIR, --tracks RUN, --dataset NAME (with --root)")
    empty = Split((), (), ())
    if args.images:
        folder = Path(args.images)
        paths = image_folder("--images", args.images)
        cameras = sorted({Path(p).parent.name for p in paths if Path(p).parent != folder})
        index = {name: i for i, name in enumerate(cameras)}
        samples = tuple(Sample(p, -1, index.get(Path(p).parent.name, NO_CAMERA)) for p in paths)
        return AdaptTarget(samples, empty)
    if args.tracks:
        from reidkit.adapt.run_crops import extract_run_crops

        crops = extract_run_crops(
            args.tracks, Path(args.out) / "crops", per_tracklet=config.adapt.per_tracklet, aspect=aspect
        )
        return AdaptTarget(crops.samples, empty, groups=crops.groups, cannot_link=crops.cannot_link)
    if not args.root:
        raise ReidkitError("--dataset needs --root")
    from reidkit.data.datasets import load_dataset

    options = dataset_options(args.option)
    split = load_dataset(args.dataset, args.root, **options)
    if not split.train:
        raise ReidkitError(
            f"the train split of {args.dataset} at {args.root} is empty: no images to adapt on"
        )
    test = replace(split, train=())
    return AdaptTarget(
        tuple(replace(s, pid=-1) for s in split.train),
        test,
        data=DataRef(args.dataset, str(args.root), options),
        truth=np.array([s.pid for s in split.train], dtype=np.int64),
    )


def _source(args: argparse.Namespace):
    if not args.checkpoint:
        return None
    from reidkit import checkpoint

    source = checkpoint.load(args.checkpoint).without_training()
    if "temporal" in source.spec.params:
        raise ReidkitError(
            f"--checkpoint {args.checkpoint} is a video model (a temporal head); adapt trains image models"
        )
    return source


def run_adapt(args: argparse.Namespace) -> int:
    from reidkit._io import atomic_write_text
    from reidkit.adapt.recipe import build_adaptation
    from reidkit.checkpoint import CHECKPOINT_NAME
    from reidkit.config import load_config, save_config
    from reidkit.engine import fit
    from reidkit.recipe import fit_options

    config = load_config(args.config, args.set if args.config else [*ADAPT_DEFAULTS, *args.set])
    out = Path(args.out)
    source = _source(args)
    size = source.preprocess if source is not None else config.data
    target = _target(args, config, aspect=size.width / size.height)
    run = build_adaptation(config, target, source=source, out_dir=out)
    save_config(config, out / "config.yaml")
    resume = out / CHECKPOINT_NAME if args.resume else None
    options = fit_options(
        config, run, out_dir=out, resume=resume, max_steps=args.max_steps, progress=not args.quiet
    )
    if not (target.split.query and target.split.gallery):
        options = replace(options, evaluate=None, eval_before=False)
    result = fit(run, options)
    metrics = {"before": result["before"], "after": result["metrics"]}
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    clusters = [
        json.loads(line) for line in (out / "clusters.jsonl").read_text().splitlines() if line.strip()
    ]
    if args.json:
        print(json.dumps({**result, "clusters": clusters[-1] if clusters else None}, indent=2))
        return 0
    print(f"checkpoint: {out / CHECKPOINT_NAME}")
    if clusters:
        last = clusters[-1]
        print(
            f"last clustering: {last['clusters']} pseudo-identities, {last['outliers']} outliers of {last['images']}"
        )
    if result["before"]:
        print(format_metrics(result["before"], title="before adaptation"))
    if result["metrics"]:
        print(format_metrics(result["metrics"], title=f"after {result['state']['epoch']} epochs"))
    return 0
