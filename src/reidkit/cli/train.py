"""``reidkit train``: a YAML recipe (+ ``--set`` overrides) -> a run folder with checkpoint, log and metrics."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from reidkit.cli._common import format_metrics, positive


def add_train(commands) -> None:
    p = commands.add_parser("train", help="train a model from a YAML recipe")
    p.add_argument("--config", help="YAML recipe (defaults when omitted)")
    p.add_argument("--out", required=True, help="run folder (checkpoint, log.jsonl, config.yaml)")
    p.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config value"
    )
    p.add_argument(
        "--resume", nargs="?", const="auto", help="continue from a checkpoint (default: OUT/checkpoint.pt)"
    )
    p.add_argument(
        "--max-steps", type=positive, help="stop (with a checkpoint) after this many optimiser steps"
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from reidkit.config import load_config
    from reidkit.distributed import Distributed

    config = load_config(args.config, args.set)
    distributed = Distributed.from_environment()
    if not distributed.enabled:
        return _train(args, config, distributed)
    from reidkit.recipe import resolve_device

    device = distributed.process_device(resolve_device(config.train.device))
    config.train.device = str(device)
    with distributed.joined(device):
        return _train(args, config, distributed)


def _train(args: argparse.Namespace, config, distributed) -> int:
    from reidkit._io import atomic_write_text
    from reidkit.checkpoint import CHECKPOINT_NAME
    from reidkit.config import save_config
    from reidkit.engine import fit
    from reidkit.recipe import build_training, fit_options

    out = Path(args.out)
    resume = None
    if args.resume is not None:
        resume = Path(args.resume) if args.resume != "auto" else out / CHECKPOINT_NAME
    run = build_training(config)
    if distributed.is_main:
        save_config(config, out / "config.yaml")
    options = fit_options(
        config,
        run,
        out_dir=out,
        resume=resume,
        max_steps=args.max_steps,
        progress=not args.quiet,
        distributed=distributed,
    )
    result = fit(run, options)
    if not distributed.is_main:
        return 0
    metrics = {"before": result["before"], "after": result["metrics"]}
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"checkpoint: {out / CHECKPOINT_NAME}")
    if result["before"]:
        print(format_metrics(result["before"], title="before training"))
    if result["metrics"]:
        print(format_metrics(result["metrics"], title=f"after {result['state']['epoch']} epochs"))
    return 0
