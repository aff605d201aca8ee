"""CPU mixed precision: bfloat16 autocast against float32 for training and embedding, on this machine.

Three tables, each measured in one run:

1. Throughput: images/s of one training step (``reidkit.engine.train_step``: forward + CE + triplet loss +
   backward + Adam, P x K batch of random tensors) and of ``embed`` (inference), in float32 and under bf16
   autocast (``train.cpu_amp`` / ``--bf16``), and the bf16 / fp32 ratio. On CPUs without native bf16
   (AVX512-BF16 or AMX) autocast is emulated and the ratio falls below 1.
2. Embedding agreement: cosine between the float32 and the bf16 embedding of the same images (a trained run's
   checkpoint from table 3, on the synthetic test split), and the mAP of each.
3. Accuracy over a short run: the same ``reidkit train`` (configs/bag_of_tricks.yaml on a synthetic set, same
   seed) in float32 and with ``train.cpu_amp=true``: Rank-1, mAP and the logged training images/s.

Usage::

    python benchmarks/cpu_bf16.py                       # all three tables (about 15 minutes on 2 cores)
    python benchmarks/cpu_bf16.py --skip-runs           # throughput only
    python benchmarks/cpu_bf16.py --epochs 4 --ids 40   # a quick accuracy run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import _runs
import numpy as np
import torch
from _reference import machine_line

from reidkit.checkpoint import CHECKPOINT_NAME
from reidkit.data.batch import Batch
from reidkit.losses.criterion import build_criterion
from reidkit.models import build_model
from reidkit.precision import cpu_has_bf16

CASES = [("resnet50", 256, 128), ("mobilenet_v2", 256, 128), ("resnet50", 128, 64)]
TERMS = [
    {"name": "cross_entropy", "on": "logits", "params": {"epsilon": 0.1}},
    {"name": "trihard", "on": "global"},
]


def _embed_rate(model: torch.nn.Module, images: torch.Tensor, *, bf16: bool, steps: int) -> float:
    import time

    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        model.embed(images)
        best = float("inf")
        for _ in range(steps):
            start = time.perf_counter()
            model.embed(images)
            best = min(best, time.perf_counter() - start)
    return len(images) / best


def throughput(args: argparse.Namespace) -> None:
    rows = []
    for backbone, height, width in CASES:
        rates = {}
        for bf16 in (False, True):
            torch.manual_seed(0)
            model = build_model("baseline", num_classes=100, backbone=backbone, last_stride=1)
            criterion = build_criterion(TERMS, num_classes=100, feat_dim=model.embedding_dim)
            optimizer = torch.optim.Adam(model.parameters(), lr=3.5e-4)
            images = torch.randn(args.batch, 3, height, width)
            pids = torch.arange(args.batch) // 4
            batch = Batch(images, pids, torch.zeros_like(pids))
            train = _runs.time_train_steps(model, criterion, optimizer, batch, steps=args.steps, amp=bf16)
            rates[bf16] = (train, _embed_rate(model, images, bf16=bf16, steps=args.steps))
        (train32, embed32), (train16, embed16) = rates[False], rates[True]
        rows.append(
            f"| {backbone} {height}x{width} | {train32:.1f} | {train16:.1f} | {train16 / train32:.2f}x "
            f"| {embed32:.1f} | {embed16:.1f} | {embed16 / embed32:.2f}x |"
        )
    print(f"\nThroughput, batch {args.batch} (P x K = {args.batch // 4} x 4), images/s")
    print("| model | train fp32 | train bf16 | bf16/fp32 | embed fp32 | embed bf16 | bf16/fp32 |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows), flush=True)


def _overrides(args: argparse.Namespace, root: Path, seed: int, cpu_amp: bool) -> tuple[str, ...]:
    common = _runs.synthetic_overrides(
        root, backbone=args.backbone, height=args.height, width=args.width, epochs=args.epochs, seed=seed
    )
    return (
        *common,
        f"train.cpu_amp={'true' if cpu_amp else 'false'}",
        "schedule.name=multistep",
        "schedule.warmup_epochs=2",
        f"schedule.milestones=[{round(0.67 * args.epochs)},{round(0.9 * args.epochs)}]",
    )


def _eval(out: Path, *, bf16: bool) -> tuple[dict, np.ndarray]:
    """``reidkit eval --json`` of a run's checkpoint, and its gallery features."""
    features = out / ("bf16" if bf16 else "fp32")
    argv = ["eval", "--checkpoint", str(out / CHECKPOINT_NAME), "--json", "--quiet", "--workers", "0"]
    argv += ["--features", str(features), *(["--bf16"] if bf16 else [])]
    launcher = "import sys; from reidkit.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", launcher, *argv], capture_output=True, text=True, check=True)
    gallery = np.load(features.with_name(features.name + ".gallery.npz"))["features"]
    return json.loads(done.stdout), gallery


def short_runs(args: argparse.Namespace, workdir: Path) -> None:
    from reidkit.data.synth import generate

    root = workdir / "data"
    if not root.is_dir():
        generate(root, ids=args.ids, cams=4, seed=0, difficulty=args.difficulty)
    runs = [
        _runs.PlannedRun(
            f"{'bf16' if amp else 'fp32'} seed {seed}",
            "bag_of_tricks",
            workdir / f"{amp:d}-{seed}",
            _overrides(args, root, seed, amp),
        )
        for seed in args.seeds
        for amp in (False, True)
    ]
    _runs.train_all(runs, jobs=1, threads=args.threads)
    print(
        f"\nShort run: {args.backbone} {args.height}x{args.width}, {args.ids} synthetic ids ({args.difficulty}),"
    )
    print(f"{args.epochs} epochs, P x K = 8 x 4, {args.threads} threads; evaluated in float32")
    print("| training | seed | Rank-1 % | mAP % | train img/s |")
    print("|---|---|---|---|---|")
    for run in runs:
        result = _runs.read_run(run.out)
        label, seed = run.label.split(" seed ")
        print(
            f"| {label} | {seed} | {100 * result.after['rank1']:.1f} | {100 * result.after['mAP']:.1f} "
            f"| {result.images_per_s:.1f} |"
        )
    print("\nEmbedding the fp32-trained model in float32 and in bf16 (--bf16), same test split")
    print("| seed | mAP fp32 embed % | mAP bf16 embed % | cosine fp32 vs bf16 (min / mean) |")
    print("|---|---|---|---|")
    for run in runs:
        if run.label.startswith("fp32"):
            (plain, a), (mixed, b) = _eval(run.out, bf16=False), _eval(run.out, bf16=True)
            cosine = (a * b).sum(axis=1)
            print(
                f"| {run.label.split(' seed ')[1]} | {100 * plain['mAP']:.1f} | {100 * mixed['mAP']:.1f} "
                f"| {cosine.min():.4f} / {cosine.mean():.4f} |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32, help="P x K batch of the throughput table")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (best of) per throughput cell")
    parser.add_argument("--skip-runs", action="store_true", help="only the throughput table")
    parser.add_argument("--skip-throughput", action="store_true", help="only the short runs")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--ids", type=int, default=60)
    parser.add_argument("--difficulty", default="medium")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--workdir", help="keep the runs here (default: a temp folder)")
    args = parser.parse_args()
    print(machine_line())
    print(f"torch {torch.__version__}; native CPU bf16 (oneDNN): {cpu_has_bf16()}")
    if not args.skip_throughput:
        throughput(args)
    if args.skip_runs:
        return
    if args.workdir:
        short_runs(args, Path(args.workdir))
    else:
        with tempfile.TemporaryDirectory() as temp:
            short_runs(args, Path(temp))


if __name__ == "__main__":
    main()
