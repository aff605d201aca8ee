"""Pose-guided parts against the global baseline, PCB and AlignedReID on misaligned, occluded synthetic pedestrians.

Trains ``pose_parts`` (with the keypoint file of the set), the bag-of-tricks baseline, PCB and AlignedReID through
``reidkit train`` on one synthetic set (``difficulty="hard"``: detector misalignment, partial bodies, occlusion)
under one budget: the same trunk (MobileNetV2 with the ImageNet weights available offline, else an untrained
ResNet-18), input size, P x K batch, optimiser (Adam, one LR for every parameter), cosine schedule and epochs;
only the model and its recipe's loss terms differ. ``pose_parts`` is scored twice: the global distance of its
whole embedding (keypoint-free, as evaluation during training does), and ``--distance visibility`` with the
keypoints. Prints mAP / Rank-1 (mean ± sample standard deviation over seeds) with the machine line.

The keypoints are ``keypoints.json`` in the set's root (``--out``/data); without it the benchmark stops with a
message saying where to put it. Called as ``bench_pose(args)`` (``benchmarks/pose_gan.py --sections pose``) or
alone::

    .venv/bin/python benchmarks/_pose_bench.py --ids 60 --epochs 4 --seeds 0 1 --out runs/pose

A finished run is reused from ``--out``/<model>/seed<N>/ (delete the folder to redo it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import _runs
import torch
from _reference import machine_line

from reidkit.checkpoint import CHECKPOINT_NAME
from reidkit.data.keypoints import KEYPOINTS_NAME

#: benchmark label -> recipe in configs/
RECIPES = {"baseline": "bag_of_tricks", "pcb": "pcb", "aligned": "aligned", "pose_parts": "pose_parts"}
BASELINE = "baseline"
_VISIBILITY = "visibility.json"


def add_pose_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the pose section (prefixed by nothing: the caller keeps them apart from its own)."""
    parser.add_argument("--out", default="runs/pose")
    parser.add_argument("--ids", type=int, default=60, help="synthetic identities (half train, half test)")
    parser.add_argument("--cams", type=int, default=4)
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic set")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="training seeds")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3.5e-4)
    parser.add_argument("--eval-batch", type=int, default=64)
    parser.add_argument("--flip", action="store_true", help="flip-averaged embeddings at evaluation")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of each training process")
    parser.add_argument("--jobs", type=int, default=2, help="trainings run at the same time")


def _backbone() -> str:
    from reidkit.models import find_mobilenet_v2_weights

    return "mobilenet_v2" if find_mobilenet_v2_weights() is not None else "resnet18"


def _overrides(args: argparse.Namespace, root: Path, backbone: str, seed: int) -> list[str]:
    common = _runs.synthetic_overrides(
        root, backbone=backbone, height=args.height, width=args.width, epochs=args.epochs, seed=seed
    )
    return common + [
        "data.pad=6",
        "data.random_erasing=0.5",
        *_runs.one_budget_overrides(args.lr),
        "train.eval_every=0",
        "train.eval_before=false",
        f"eval.batch_size={args.eval_batch}",
        f"eval.flip={'true' if args.flip else 'false'}",
    ]


def _visibility(out: Path, root: Path, flip: bool) -> dict:
    """Metrics of ``--distance visibility`` for the run in ``out`` (kept in ``out/visibility.json``)."""
    cached = out / _VISIBILITY
    if cached.is_file():
        return json.loads(cached.read_text())
    from reidkit import checkpoint
    from reidkit.data.datasets import load_dataset
    from reidkit.data.keypoints import read_keypoints
    from reidkit.embed import TorchEmbedder
    from reidkit.evaluation import evaluate_split, visibility_scorer

    embedder = TorchEmbedder.from_checkpoint(checkpoint.load(out / CHECKPOINT_NAME), flip=flip)
    split = load_dataset("synthetic", str(root))
    result = evaluate_split(embedder, split, visibility_scorer(read_keypoints(root / KEYPOINTS_NAME)))
    metrics = {"rank1": float(result.metrics.cmc[0]), "mAP": float(result.metrics.mAP)}
    cached.write_text(json.dumps(metrics))
    return metrics


def bench_pose(args: argparse.Namespace) -> None:
    """Train every model of :data:`RECIPES` for each seed and print the table (see the module docstring).

    Raises:
        SystemExit: the set has no keypoint file, or a training failed.
    """
    from reidkit.data.synth import generate

    root = Path(args.out) / "data"
    if not (root / "bounding_box_train").is_dir():
        generate(root, ids=args.ids, cams=args.cams, seed=args.data_seed, difficulty="hard")
    if not (root / KEYPOINTS_NAME).is_file():
        raise SystemExit(
            f"the pose benchmark needs body keypoints for its synthetic set: {root / KEYPOINTS_NAME} does not "
            "exist (reidkit synth writes it once it records ground-truth joints; or write one with "
            "reidkit.data.keypoints.write_keypoints)"
        )
    backbone = _backbone()
    planned = [
        _runs.PlannedRun(
            f"{label} seed {seed}",
            recipe,
            Path(args.out) / label / f"seed{seed}",
            tuple(_overrides(args, root, backbone, seed)),
        )
        for seed in args.seeds
        for label, recipe in RECIPES.items()
    ]
    start = time.perf_counter()
    _runs.train_all(planned, jobs=args.jobs, threads=args.threads)
    rows: list[tuple[str, str, list[dict], float]] = []
    speeds: dict[str, float] = {}
    for label in RECIPES:
        runs = [_runs.read_run(Path(args.out) / label / f"seed{seed}") for seed in args.seeds]
        speeds[label] = statistics.mean(run.images_per_s for run in runs)
        rows.append((label, "global", [run.after for run in runs], speeds[label]))
        if label == "pose_parts":
            visibility = [
                _visibility(Path(args.out) / label / f"seed{s}", root, args.flip) for s in args.seeds
            ]
            rows.append((label, "visibility", visibility, speeds[label]))
    total = time.perf_counter() - start
    pretrained = "ImageNet weights" if backbone == "mobilenet_v2" else "random init"
    print(
        f"\nPose-guided parts: {backbone} ({pretrained}) at {args.height}x{args.width}, P x K = 8 x 4, "
        f"Adam {args.lr:g}, {args.epochs} epochs (cosine, 1 warm-up), synthetic --ids {args.ids} --cams "
        f"{args.cams} --difficulty hard, keypoints {root / KEYPOINTS_NAME}, seeds {args.seeds}, flip "
        f"{'on' if args.flip else 'off'}"
    )
    print(
        f"machine: {machine_line()}, torch {torch.__version__}, {args.threads} thread(s) x {args.jobs} jobs; "
        f"wall {total / 60:.1f} min\n"
    )
    print("| model | distance | mAP (%) | Rank-1 (%) | train img/s | vs baseline |")
    print("|---|---|---|---|---|---|")
    for label, distance, metrics, speed in rows:
        ratio = speed / speeds[BASELINE] if speeds.get(BASELINE) else float("nan")
        print(
            f"| {label} | {distance} | {_runs.mean_sd([m['mAP'] for m in metrics])} | "
            f"{_runs.mean_sd([m['rank1'] for m in metrics])} | {speed:.1f} | {ratio:.2f}x |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_pose_arguments(parser)
    bench_pose(parser.parse_args())


if __name__ == "__main__":
    main()
