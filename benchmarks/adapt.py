"""Adaptation without labels: direct transfer, ``reidkit adapt`` and the supervised ceiling on a synthetic domain shift.

Source = synthetic domain ``--source-domain`` (labelled), target = ``--target-domain`` (its train split used
without labels, its test split scored with labels). Per seed, with the same backbone and input size:

- ``source``: ``reidkit train`` on the source (the ``--recipe``), scored on the source and on the target
  (*direct transfer*);
- ``adapt``: ``reidkit adapt`` from that checkpoint on the target's train images (``configs/adapt.yaml``, one
  centroid per cluster in the memory), and the same with the camera-aware memory (one proxy per cluster and
  camera);
- ``unsupervised``: ``reidkit adapt`` (camera-aware) from ImageNet weights only (no source model);
- ``ceiling``: ``reidkit train`` on the target with its labels.

The table gives target mAP / Rank-1 (mean ± sd over seeds) and the share of the direct-transfer -> ceiling gap
that adaptation closes. The last table times the clustering step (k-reciprocal Jaccard distance + DBSCAN) on
clustered random features of 10k and 50k images, each size in a fresh process (peak RSS from the kernel).

    .venv/bin/python benchmarks/adapt.py --seeds 0 1 --jobs 2 --threads 1

Runs are kept in ``--out`` and reused when finished (delete a folder to redo it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import _runs
import numpy as np
from _reference import machine_line

from reidkit.data.synth import generate
from reidkit.models.backbones import find_mobilenet_v2_weights

_ADAPT = "import sys; from reidkit.cli import main; sys.exit(main(sys.argv[1:]))"


def _common(args: argparse.Namespace, seed: int, backbone: str | None = None) -> list[str]:
    backbone = backbone or args.backbone
    weights = find_mobilenet_v2_weights() if backbone == "mobilenet_v2" and args.pretrained else None
    return [
        f"data.height={args.height}",
        f"data.width={args.width}",
        f"data.p={args.p}",
        f"data.k={args.k}",
        f"data.workers={args.workers}",
        f"model.backbone={backbone}",
        f"model.pretrained={weights if weights is not None else 'null'}",
        f"model.last_stride={args.last_stride}",
        f"train.seed={seed}",
        "train.log_every=1000",
        "train.device=cpu",
        f"eval.batch_size={args.eval_batch}",
    ]


def _supervised(args: argparse.Namespace, root: Path, seed: int) -> tuple[str, ...]:
    return (
        *_common(args, seed),
        "data.dataset=synthetic",
        f"data.root={root}",
        "schedule.name=multistep",
        "schedule.warmup_epochs=2",
        f"schedule.milestones=[{round(0.67 * args.epochs)},{round(0.9 * args.epochs)}]",
        f"train.epochs={args.epochs}",
    )


def _adapt_command(
    args: argparse.Namespace, out: Path, target: Path, seed: int, source: Path | None, camera_aware: bool
) -> list[str]:
    # without a source model: ImageNet weights (the MobileNetV2 ones ship with the mobilenet extra)
    items = [
        *_common(args, seed, None if source else args.unsupervised_backbone),
        f"train.epochs={args.adapt_epochs}",
        f"adapt.eps={args.eps}",
        f"adapt.min_samples={args.min_samples}",
        f"adapt.k1={args.k1}",
        "loss.terms=[{name: cluster_contrast, weight: 1.0, on: embedding, params: {temperature: 0.05, "
        f"momentum: 0.2, camera_aware: {str(camera_aware).lower()}}}}}]",
    ]
    argv = ["adapt", "--dataset", "synthetic", "--root", str(target), "--out", str(out), "--quiet"]
    argv += [
        "--config",
        str(_runs.CONFIGS / "adapt.yaml"),
        *(["--checkpoint", str(source)] if source else []),
    ]
    return [sys.executable, "-c", _ADAPT, *argv, *sum((["--set", item] for item in items), [])]


def _metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())["after"]


def _transfer(checkpoint: Path, target: Path, out: Path, threads: int) -> dict:
    """The source model scored on the target test split (``reidkit eval``), cached in ``out``."""
    if not out.is_file():
        command = [
            sys.executable,
            "-c",
            _ADAPT,
            "eval",
            "--checkpoint",
            str(checkpoint),
            "--dataset",
            "synthetic",
        ]
        command += [
            "--root",
            str(target),
            "--quiet",
            "--json",
            "--workers",
            "0",
            "--report",
            str(out.parent / "report_b"),
        ]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        result = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
        out.write_text(result.stdout)
    return json.loads(out.read_text())


def _adapt_all(args: argparse.Namespace, target: Path) -> None:
    """The adaptation runs (two at a time), after the source runs they start from."""
    todo = []
    for seed in args.seeds:
        base = Path(args.out) / f"seed{seed}"
        source = base / "source" / "checkpoint.pt"
        todo.append(_adapt_command(args, base / "adapt", target, seed, source, camera_aware=False))
        todo.append(_adapt_command(args, base / "adapt_camera", target, seed, source, camera_aware=True))
        todo.append(_adapt_command(args, base / "unsupervised", target, seed, None, camera_aware=True))
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    pending = [c for c in todo if not (Path(c[c.index("--out") + 1]) / "metrics.json").is_file()]
    while pending:
        batch, pending = pending[: args.jobs], pending[args.jobs :]
        processes = [subprocess.Popen(command, env=env) for command in batch]
        for command, process in zip(batch, processes, strict=True):
            if process.wait() != 0:
                raise SystemExit(f"reidkit adapt failed: {' '.join(command[3:8])}")


def _clustering_cost(size: int, dim: int, identities: int) -> dict:
    """Time and peak memory of jaccard_distance + dbscan_labels on ``size`` clustered features (this process)."""
    import torch

    from reidkit.adapt.pseudo_labels import dbscan_labels, jaccard_distance

    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(identities, dim)).astype(np.float32)
    features = centres[rng.integers(0, identities, size)] + 0.7 * rng.normal(size=(size, dim)).astype(
        np.float32
    )
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    start = time.perf_counter()
    distance = jaccard_distance(features, k1=30, k2=6, max_distance=0.6)
    jaccard_s = time.perf_counter() - start
    start = time.perf_counter()
    labels = dbscan_labels(distance, eps=0.6, min_samples=4)
    dbscan_s = time.perf_counter() - start
    product_s = float("nan")
    if size <= 20000:  # the best of three (the first call also starts the thread pool)
        tensor, times = torch.from_numpy(features), []
        for _ in range(3):
            start = time.perf_counter()
            _ = tensor @ tensor.T
            times.append(time.perf_counter() - start)
        product_s = min(times)
    return {
        "size": size,
        "jaccard_s": jaccard_s,
        "dbscan_s": dbscan_s,
        "product_s": product_s,
        "stored": int(distance.nnz),
        "clusters": int(labels.max() + 1),
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="runs/adapt_benchmark")
    parser.add_argument("--source-domain", default="default")
    parser.add_argument("--target-domain", default="mall")
    parser.add_argument("--recipe", default="bag_of_tricks")
    parser.add_argument("--adapt-epochs", type=int, default=30)
    parser.add_argument("--eps", type=float, default=0.4)
    parser.add_argument("--min-samples", type=int, default=2)
    parser.add_argument("--k1", type=int, default=10, help="about the images per identity of the target")
    parser.add_argument("--last-stride", type=int, default=1)
    parser.add_argument(
        "--target-cams", type=int, help="target cameras (default: the target domain's own count)"
    )
    parser.add_argument(
        "--unsupervised-backbone", default="mobilenet_v2", help="the ImageNet-initialised model"
    )
    parser.add_argument("--sizes", type=int, nargs="*", default=[10000, 50000], help="clustering cost sizes")
    parser.add_argument("--cost-only", type=int, help=argparse.SUPPRESS)
    _runs.add_ablation_arguments(
        parser, ids=100, difficulty="medium", epochs=30, k=4, k_help="images per identity"
    )
    args = parser.parse_args()
    if args.cost_only:
        print(json.dumps(_clustering_cost(args.cost_only, 256, max(10, args.cost_only // 20))))
        return

    out = Path(args.out)
    domains = {"source": args.source_domain, "target": args.target_domain}
    roots = {}
    for side, domain in domains.items():
        roots[side] = out / f"data_{side}"
        if not (roots[side] / "bounding_box_train").is_dir():
            generate(
                roots[side],
                ids=args.ids,
                cams=args.cams if side == "source" else args.target_cams,
                seed=1 if side == "target" else 0,
                difficulty=args.difficulty,
                domain=domain,
                workers=2,
            )
    start = time.perf_counter()
    planned = []
    for seed in args.seeds:
        base = out / f"seed{seed}"
        planned.append(
            _runs.PlannedRun(
                f"source seed {seed}", args.recipe, base / "source", _supervised(args, roots["source"], seed)
            )
        )
        planned.append(
            _runs.PlannedRun(
                f"ceiling seed {seed}",
                args.recipe,
                base / "ceiling",
                _supervised(args, roots["target"], seed),
            )
        )
    _runs.train_all(planned, jobs=args.jobs, threads=args.threads)
    _adapt_all(args, roots["target"])
    rows: dict[str, list[dict]] = {
        "source on source": [],
        "direct transfer": [],
        "adapt": [],
        "adapt, camera-aware": [],
        "unsupervised, camera-aware": [],
        "ceiling": [],
    }
    for seed in args.seeds:
        base = out / f"seed{seed}"
        rows["source on source"].append(_metrics(base / "source"))
        rows["direct transfer"].append(
            _transfer(
                base / "source" / "checkpoint.pt", roots["target"], base / "transfer.json", args.threads
            )
        )
        rows["adapt"].append(_metrics(base / "adapt"))
        rows["adapt, camera-aware"].append(_metrics(base / "adapt_camera"))
        rows["unsupervised, camera-aware"].append(_metrics(base / "unsupervised"))
        rows["ceiling"].append(_metrics(base / "ceiling"))
    total = time.perf_counter() - start
    print(
        f"\nAdaptation: {args.backbone} at {args.height}x{args.width}, P x K = {args.p} x {args.k}; source: {args.recipe} "
        f"{args.epochs} epochs on domain {args.source_domain!r}; target domain {args.target_domain!r}; adapt "
        f"{args.adapt_epochs} epochs (eps {args.eps}, min_samples {args.min_samples}, k1 {args.k1}); synthetic --ids "
        f"{args.ids} --cams {args.cams} --difficulty {args.difficulty}; seeds {args.seeds}"
    )
    print(
        f"machine: {machine_line()}, {args.jobs} runs at a time x {args.threads} thread(s); {total / 60:.1f} min\n"
    )
    transfer = statistics.mean(r["mAP"] for r in rows["direct transfer"])
    ceiling = statistics.mean(r["mAP"] for r in rows["ceiling"])
    print("| model | scored on | mAP % | Rank-1 % | gap closed |")
    print("|---|---|---|---|---|")
    for name, values in rows.items():
        mean_map = statistics.mean(r["mAP"] for r in values)
        closed = (
            "-"
            if name in ("source on source", "direct transfer", "ceiling")
            else f"{100 * (mean_map - transfer) / (ceiling - transfer):.0f} %"
        )
        scored = "source test" if name == "source on source" else "target test"
        print(
            f"| {name} | {scored} | {_runs.mean_sd([r['mAP'] for r in values])} | "
            f"{_runs.mean_sd([r['rank1'] for r in values])} | {closed} |"
        )
    for run in ("adapt", "adapt_camera", "unsupervised"):
        log = out / f"seed{args.seeds[0]}" / run / "clusters.jsonl"
        clusters = [json.loads(line) for line in log.read_text().splitlines()]
        print(f"\nPseudo-labels of {run}, seed {args.seeds[0]} (epoch: clusters, outliers, purity, NMI):")
        print(
            "  "
            + "; ".join(
                f"{c['epoch']}: {c['clusters']}, {c['outliers']}, {c['purity']:.2f}, {c['nmi']:.2f}"
                for c in clusters
                if c["epoch"] in (1, 2, 5) or c["epoch"] % 10 == 0
            )
        )

    print(
        "\nClustering step (k-reciprocal Jaccard k1=30 k2=6 + DBSCAN eps 0.6), 256-d clustered features, 2 threads:"
    )
    print("| images | Jaccard s | DBSCAN s | stored pairs | clusters | peak RSS MB | N x N product s |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        line = subprocess.run(
            [sys.executable, __file__, "--cost-only", str(size)], check=True, capture_output=True, text=True
        )
        cost = json.loads(line.stdout.strip().splitlines()[-1])
        print(
            f"| {size} | {cost['jaccard_s']:.1f} | {cost['dbscan_s']:.1f} | {cost['stored']} | {cost['clusters']} | "
            f"{cost['peak_mb']:.0f} | {cost['product_s']:.2f} |"
        )


if __name__ == "__main__":
    main()
