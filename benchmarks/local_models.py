"""Local-feature models against the global baseline on misaligned, occluded synthetic pedestrians.

Trains the BNNeck baseline (bag-of-tricks losses, and ID loss only), PCB, PCB + RPP, MGN, AlignedReID,
AlignedReID with mutual learning and JLML through ``reidkit train`` on the same synthetic set (``--difficulty
hard``: detector misalignment, partial bodies and occlusion on) under one budget: the same trunk (``--backbone``:
a ResNet, random init unless ``--pretrained``, or MobileNetV2 with ``--pretrained imagenet``, whose weights are
available offline), input size, P x K batch, optimiser (Adam, one LR for every parameter), schedule and epochs
for every model; only the model and its recipe's loss terms differ. PCB + RPP is staged: it starts from the PCB
run, trains only the refined part pooling for ``--stage-epochs``, then fine-tunes everything at a tenth of the
LR for ``--stage-epochs`` more. Prints Rank-1 / mAP / mINP (mean and sample standard deviation over seeds),
parameters, training images/s and its ratio to the baseline measured in the same run.

    .venv/bin/python benchmarks/local_models.py --seeds 0 1 --epochs 6 --ids 120 --out runs/local_models

A finished run is reused from ``--out``/<recipe>/seed<N>/ (delete the folder to redo it).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import _runs
import torch
from _reference import machine_line

from reidkit.checkpoint import CHECKPOINT_NAME
from reidkit.data.synth import generate
from reidkit.distance import pairwise_distance
from reidkit.losses.aligned import local_distance

#: benchmark label -> recipe file in configs/
RECIPES = {
    "baseline": "bag_of_tricks",
    "baseline_ide": "ide",  # the same model with ID loss only, as PCB and JLML: separates model from loss
    "pcb": "pcb",
    "mgn": "mgn",
    "aligned": "aligned",
    "aligned_mutual": "aligned_mutual",
    "jlml": "jlml",
    "pcb_rpp": "pcb_rpp_finetune",  # staged, see STAGES
}
#: staged models: label -> (the run they start from, the recipes of the later stages in order). Each stage starts
#: from the previous stage's checkpoint (model.init) and runs --stage-epochs epochs; the last one is the result.
STAGES = {"pcb_rpp": ("pcb", ["pcb_rpp", "pcb_rpp_finetune"])}
BASELINE = "baseline"


def _overrides(args: argparse.Namespace, root: Path, seed: int, *, before: bool) -> list[str]:
    return [
        "data.dataset=synthetic",
        f"data.root={root}",
        f"data.height={args.height}",
        f"data.width={args.width}",
        f"data.p={args.p}",
        f"data.k={args.k}",
        f"data.workers={args.workers}",
        "data.pad=6",
        "data.random_erasing=0.5",
        f"model.backbone={args.backbone}",
        f"model.pretrained={args.pretrained or 'null'}",
        *_runs.one_budget_overrides(args.lr),
        f"train.epochs={args.epochs}",
        f"train.seed={seed}",
        "train.log_every=1000",
        "train.device=cpu",
        "train.eval_every=0",
        f"train.eval_before={'true' if before else 'false'}",
        f"eval.batch_size={args.eval_batch}",
        f"eval.flip={'true' if args.flip else 'false'}",
    ]


def _run_dir(args: argparse.Namespace, label: str, seed: int) -> Path:
    return Path(args.out) / label / f"seed{seed}"


def _train(args: argparse.Namespace, root: Path, label: str, seed: int, *, before: bool) -> None:
    overrides = _overrides(args, root, seed, before=before)
    if label not in STAGES:
        _runs.run_training(
            RECIPES[label],
            _run_dir(args, label, seed),
            overrides,
            threads=args.threads,
            what=f"{label!r}, seed {seed}",
        )
        return
    base, recipes = STAGES[label]
    _train(args, root, base, seed, before=False)
    previous = _run_dir(args, base, seed)
    for stage, recipe in enumerate(recipes, start=2):
        last = stage == len(recipes) + 1
        out = _run_dir(args, label, seed) if last else _run_dir(args, label, seed) / f"stage{stage}"
        stage_overrides = [item for item in overrides if not item.startswith(("optim.lr", "train.epochs"))]
        stage_overrides += [
            f"model.init={previous / CHECKPOINT_NAME}",
            f"train.epochs={args.stage_epochs}",
            # the recipe's lr_factors say what trains; the fine-tuning stage runs at a tenth of the LR
            f"optim.lr={args.lr / 10 if last else args.lr}",
        ]
        _runs.run_training(
            recipe, out, stage_overrides, threads=args.threads, what=f"{label!r} stage {stage}, seed {seed}"
        )
        previous = out


def _distance_cost(queries: int, gallery: int) -> None:
    """Time of the global Euclidean distance against the aligned local distance for one query x gallery."""
    generator = torch.Generator().manual_seed(0)
    print(f"\nDistance cost, {queries} queries x {gallery} gallery images (ms, best of 3):")
    global_ms = None
    cases = [("global 2048-d Euclidean", None, 2048), ("local 8 rows x 128 (128x64 input)", 8, 128)]
    cases.append(("local 16 rows x 128 (256x128 input)", 16, 128))
    for name, rows, dim in cases:
        shape = (dim,) if rows is None else (rows, dim)
        query = torch.randn(queries, *shape, generator=generator)
        items = torch.randn(gallery, *shape, generator=generator)
        timings = []
        for _ in range(3):
            start = time.perf_counter()
            if rows is None:
                pairwise_distance(query, items)
            else:
                local_distance(query, items, chunk_size=64)
            timings.append(1000 * (time.perf_counter() - start))
        best = min(timings)
        global_ms = best if global_ms is None else global_ms
        print(f"  {name:<38} {best:9.1f} ms  {best / global_ms:8.1f}x global")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="runs/local_models")
    parser.add_argument("--models", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--ids", type=int, default=120, help="synthetic identities (half train, half test)")
    parser.add_argument("--cams", type=int, default=4)
    parser.add_argument("--difficulty", default="hard")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument(
        "--backbone", default="resnet18", help="trunk of every model: a ResNet or mobilenet_v2"
    )
    parser.add_argument(
        "--pretrained",
        help="trunk weights: imagenet (offline for mobilenet_v2 with reidkit[mobilenet]) or a state-dict path",
    )
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("-p", type=int, default=8, help="identities per batch")
    parser.add_argument("-k", type=int, default=4, help="images per identity")
    parser.add_argument("--lr", type=float, default=3.5e-4)
    parser.add_argument("--stage-epochs", type=int, default=2, help="epochs of each later stage (pcb_rpp)")
    parser.add_argument("--workers", type=int, default=0, help="data-loading processes per training")
    parser.add_argument("--eval-batch", type=int, default=64)
    parser.add_argument("--flip", action="store_true", help="flip-averaged embeddings at evaluation")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of each training process")
    parser.add_argument("--distance-queries", type=int, default=200, help="0 skips the distance timing")
    parser.add_argument("--distance-gallery", type=int, default=1000)
    args = parser.parse_args()

    root = Path(args.out) / "data"
    if not (root / "bounding_box_train").is_dir():
        generate(root, ids=args.ids, cams=args.cams, seed=0, difficulty=args.difficulty)
    start = time.perf_counter()
    results: dict[str, list[_runs.RunResult]] = {}
    for index, label in enumerate(args.models):
        for seed in args.seeds:
            _train(args, root, label, seed, before=index == 0 and seed == args.seeds[0])
            result = _runs.read_run(_run_dir(args, label, seed))
            results.setdefault(label, []).append(result)
            print(
                f"  {label:<15} seed {seed}: Rank-1 {100 * result.after['rank1']:5.1f}  "
                f"mAP {100 * result.after['mAP']:5.1f}  {result.images_per_s:6.1f} img/s",
                flush=True,
            )
    total = time.perf_counter() - start

    print(
        f"\nLocal-feature models: {args.backbone} ({args.pretrained or 'random init'}) at {args.height}x{args.width}, "
        f"P x K = {args.p} x {args.k}, Adam {args.lr:g}, {args.epochs} epochs (cosine, 1 warm-up), "
        f"synthetic --ids {args.ids} --cams {args.cams} --difficulty {args.difficulty}, seeds {args.seeds}, "
        f"flip {'on' if args.flip else 'off'}"
    )
    print(
        f"machine: {machine_line()}, torch {torch.__version__}, "
        f"{args.threads} thread(s); wall {total / 60:.1f} min\n"
    )
    base_speed = statistics.mean(r.images_per_s for r in results[BASELINE]) if BASELINE in results else None
    header = (
        f"| {'model':<15} | {'recipe':<15} | {'Rank-1 %':>12} | {'mAP %':>12} | {'mINP %':>12} "
        f"| {'params M':>8} | {'img/s':>6} | {'vs base':>7} |"
    )
    print(header)
    print("|" + "|".join("-" * len(part) for part in header.split("|")[1:-1]) + "|")
    floor = next((run.before for runs in results.values() for run in runs if run.before), None)
    if floor:
        print(
            f"| {'untrained base':<15} | {'-':<15} | {100 * floor['rank1']:5.1f}        "
            f"| {100 * floor['mAP']:5.1f}        | {100 * floor['mINP']:5.1f}        "
            f"| {'-':>8} | {'-':>6} | {'-':>7} |"
        )
    for label, runs in results.items():
        speed = statistics.mean(r.images_per_s for r in runs)
        ratio = f"{speed / base_speed:6.2f}x" if base_speed else "-"
        print(
            f"| {label:<15} | {RECIPES[label]:<15} | {_runs.mean_sd([r.after['rank1'] for r in runs]):>12} "
            f"| {_runs.mean_sd([r.after['mAP'] for r in runs]):>12} | {_runs.mean_sd([r.after['mINP'] for r in runs]):>12} "
            f"| {runs[0].parameters / 1e6:8.2f} | {speed:6.1f} | {ratio:>7} |"
        )
    if args.distance_queries > 0:
        _distance_cost(args.distance_queries, args.distance_gallery)


if __name__ == "__main__":
    main()
