"""Training runs shared by the benchmarks: ``reidkit train`` in a child process, what a finished run left, and
timed optimiser steps.

Imported as a sibling module (``import _runs``): a benchmark runs as ``python benchmarks/<name>.py`` from the
repository root, and Python puts the script's own folder on ``sys.path``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from reidkit import checkpoint
from reidkit.checkpoint import CHECKPOINT_NAME
from reidkit.data.batch import Batch
from reidkit.engine import train_step

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
_LAUNCHER = "import sys; from reidkit.cli import main; sys.exit(main(sys.argv[1:]))"
_WALL = "wall_s.txt"


# ------------------------------------------------------------------------------------ reidkit train runs
def train_command(recipe: str, out: Path, overrides: Sequence[str]) -> list[str]:
    """``reidkit train --config configs/<recipe>.yaml --out <out> --quiet --set ...`` as a child command."""
    argv = ["train", "--config", str(CONFIGS / f"{recipe}.yaml"), "--out", str(out), "--quiet"]
    argv += sum((["--set", item] for item in overrides), [])
    return [sys.executable, "-c", _LAUNCHER, *argv]


def synthetic_overrides(
    root: Path, *, backbone: str, height: int, width: int, epochs: int, seed: int, log_every: int = 1000
) -> list[str]:
    """``--set`` items of a CPU run on a synthetic set: P x K = 8 x 4, no loader workers, ImageNet weights for
    MobileNetV2 (the offline ones), ``epochs`` epochs."""
    from reidkit.models.backbones import find_mobilenet_v2_weights

    weights = find_mobilenet_v2_weights() if backbone == "mobilenet_v2" else None
    return [
        "data.dataset=synthetic",
        f"data.root={root}",
        f"data.height={height}",
        f"data.width={width}",
        "data.p=8",
        "data.k=4",
        "data.workers=0",
        f"model.backbone={backbone}",
        f"model.pretrained={weights if weights is not None else 'null'}",
        f"train.epochs={epochs}",
        f"train.seed={seed}",
        "train.device=cpu",
        f"train.log_every={log_every}",
    ]


def one_budget_overrides(lr: float) -> list[str]:
    """``--set`` items that give every model of a comparison the same budget: last stride 1, Adam at ``lr`` for
    every parameter, cosine schedule with one warm-up epoch."""
    return [
        "model.last_stride=1",
        "optim.name=adam",
        f"optim.lr={lr}",
        "optim.weight_decay=5e-4",
        "optim.lr_factors={}",  # one learning rate for every parameter of every model
        "schedule.name=cosine",
        "schedule.warmup_epochs=1",
    ]


def add_ablation_arguments(
    parser: argparse.ArgumentParser, *, ids: int, difficulty: str, epochs: int, k: int, k_help: str
) -> None:
    """The options every training ablation shares: data, seeds, frame encoder, input size, batch, jobs."""
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--ids", type=int, default=ids, help="synthetic identities (half train, half test)")
    parser.add_argument("--cams", type=int, default=4)
    parser.add_argument("--difficulty", default=difficulty)
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--no-pretrained", dest="pretrained", action="store_false")
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("-p", type=int, default=8, help="identities per batch")
    parser.add_argument("-k", type=int, default=k, help=k_help)
    parser.add_argument("--workers", type=int, default=0, help="data-loading processes per training")
    parser.add_argument("--eval-batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of each training process")
    parser.add_argument("--jobs", type=int, default=2, help="trainings run at the same time")


def _environment(threads: int) -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))


def is_finished(out: Path) -> bool:
    """Whether the run in ``out`` completed (``reidkit train`` writes ``metrics.json`` last)."""
    return (out / "metrics.json").is_file()


def start_training(recipe: str, out: Path, overrides: Sequence[str], *, threads: int) -> subprocess.Popen:
    """Start a training in the background with ``threads`` CPU threads."""
    return subprocess.Popen(train_command(recipe, out, overrides), env=_environment(threads))


def record_wall_time(out: Path, seconds: float) -> None:
    (out / _WALL).write_text(f"{seconds:.1f}\n")


def run_training(recipe: str, out: Path, overrides: Sequence[str], *, threads: int, what: str) -> None:
    """Train unless ``out`` already holds a finished run; record its wall time.

    Raises:
        SystemExit: the training failed (``what`` names it).
    """
    if is_finished(out):
        return
    start = time.perf_counter()
    process = subprocess.run(train_command(recipe, out, overrides), env=_environment(threads), check=False)
    if process.returncode != 0:
        raise SystemExit(
            f"reidkit train failed for {what} (configs/{recipe}.yaml, exit {process.returncode})"
        )
    record_wall_time(out, time.perf_counter() - start)


@dataclass(frozen=True)
class PlannedRun:
    """One training of a benchmark: ``configs/<recipe>.yaml`` with ``overrides``, kept in ``out``."""

    label: str
    recipe: str
    out: Path
    overrides: tuple[str, ...]


def train_all(runs: Sequence[PlannedRun], *, jobs: int, threads: int) -> None:
    """Run the unfinished trainings, at most ``jobs`` at a time with ``threads`` CPU threads each; print each result.

    Raises:
        SystemExit: a training failed (its label is named).
    """
    pending = [run for run in runs if not is_finished(run.out)]
    running: list[tuple[PlannedRun, subprocess.Popen, float]] = []
    while pending or running:
        while pending and len(running) < jobs:
            run = pending.pop(0)
            running.append(
                (
                    run,
                    start_training(run.recipe, run.out, run.overrides, threads=threads),
                    time.perf_counter(),
                )
            )
        time.sleep(1.0)
        for item in list(running):
            run, process, started = item
            if process.poll() is None:
                continue
            running.remove(item)
            if process.returncode != 0:
                raise SystemExit(
                    f"reidkit train failed for {run.label} (configs/{run.recipe}.yaml, exit {process.returncode})"
                )
            wall = time.perf_counter() - started
            record_wall_time(run.out, wall)
            result = read_run(run.out)
            print(
                f"  {run.label:<24}: Rank-1 {100 * result.after['rank1']:5.1f}  mAP {100 * result.after['mAP']:5.1f}  "
                f"{result.images_per_s:6.1f} img/s  {wall:.0f} s",
                flush=True,
            )


@dataclass(frozen=True)
class RunResult:
    """What a finished run left in its folder.

    Attributes:
        after: the trained model's metrics (``rank1``, ``mAP``, ``mINP``, ...).
        before: the untrained model's, or None when the run did not evaluate it.
        images_per_s: training throughput, mean over the epochs.
        wall_s: wall time of the whole run (NaN when not recorded).
        parameters: parameters of the trained network, rebuilt from its checkpoint.
    """

    after: dict
    before: dict | None
    images_per_s: float
    wall_s: float
    parameters: int


def read_run(out: Path) -> RunResult:
    """The metrics (from the run's checkpoint), throughput (from its log) and wall time of a finished run."""
    saved = checkpoint.load(out / CHECKPOINT_NAME).without_training()
    entries = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]
    speeds = [entry["images_per_s"] for entry in entries if entry.get("kind") == "epoch"]
    wall = float((out / _WALL).read_text()) if (out / _WALL).is_file() else float("nan")
    return RunResult(
        after=dict(saved.metrics),
        before=dict(saved.before) or None,
        images_per_s=statistics.mean(speeds) if speeds else float("nan"),
        wall_s=wall,
        parameters=sum(parameter.numel() for parameter in saved.build_model().parameters()),
    )


def mean_sd(values: Sequence[float]) -> str:
    """``"mean ± sample standard deviation"`` of fractions, in percent."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):5.1f} ± {100 * spread:4.1f}"


# ------------------------------------------------------------------------------------- timed steps
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_train_steps(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    *,
    steps: int,
    amp: bool = False,
) -> float:
    """Images (frames, for a batch of clips) per second of :func:`reidkit.engine.train_step` on one batch.

    One untimed step warms up first; ``batch`` must already be on the model's device.
    """
    device = batch.images.device
    model.train()
    train_step(model, criterion, optimizer, batch, amp=amp)
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        train_step(model, criterion, optimizer, batch, amp=amp)
    _sync(device)
    return batch.num_frames * steps / (time.perf_counter() - start)
