"""Adaptation on real, unlabelled video: track it, adapt a model on the tracked crops, look at the clusters.

``reidkit track`` (OpenVINO pedestrian detector, ByteTrack, the given checkpoint as the appearance model) on the
video, then ``reidkit adapt --tracks`` from the same checkpoint. The crops of the run are clustered once with the
source model and once with the adapted one (the same Jaccard + DBSCAN + tracklet constraints as ``adapt``), and
each clustering is drawn as a contact sheet of its largest clusters (one row per cluster, one image per tracklet
first). The video has no labels here: the sheets are for looking, and the table counts what can be counted
without labels (clusters, outliers, tracklets per cluster, same-camera cannot-links respected).

    .venv/bin/python benchmarks/adapt_video.py --checkpoint demo_out/run/checkpoint.pt
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _reference import machine_line

from reidkit import checkpoint
from reidkit.adapt.pseudo_labels import constrained_labels, jaccard_distance
from reidkit.adapt.run_crops import extract_run_crops
from reidkit.config import load_config
from reidkit.embed import TorchEmbedder, embed_paths
from reidkit.viz import cluster_sheet

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
_CLI = "import sys; from reidkit.cli import main; sys.exit(main(sys.argv[1:]))"


def _cli(*argv: str) -> None:
    subprocess.run([sys.executable, "-c", _CLI, *argv], check=True)


def _clusters(model_path: Path, crops, settings) -> np.ndarray:
    embedder = TorchEmbedder.from_checkpoint(checkpoint.load(model_path).without_training(), flip=False)
    features = embed_paths(embedder, [s.path for s in crops.samples], batch_size=64)
    distance = jaccard_distance(features, k1=settings.k1, k2=settings.k2, max_distance=settings.eps)
    return constrained_labels(
        distance,
        groups=crops.groups,
        cannot_link=crops.cannot_link,
        eps=settings.eps,
        min_samples=settings.min_samples,
    )


def _describe(name: str, labels: np.ndarray, crops) -> str:
    clustered = labels >= 0
    tracks = (
        [len(np.unique(crops.groups[labels == c])) for c in range(labels.max() + 1)]
        if clustered.any()
        else [0]
    )
    label_of = {int(g): int(labels[crops.groups == g][0]) for g in np.unique(crops.groups)}
    broken = sum(1 for a, b in crops.cannot_link if label_of[a] >= 0 and label_of[a] == label_of[b])
    return (
        f"| {name} | {labels.max() + 1} | {int((~clustered).sum())} of {len(labels)} | {np.mean(tracks):.1f} | "
        f"{max(tracks)} | {broken} of {len(crops.cannot_link)} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True, help="the model to adapt (e.g. the demo's)")
    parser.add_argument("--video", default=str(DATA / "vtest.avi"))
    parser.add_argument(
        "--detector",
        default=str(DATA / "omz" / "pedestrian-detection-adas-0002" / "pedestrian-detection-adas-0002.xml"),
    )
    parser.add_argument("--out", default="runs/adapt_video")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--docs", default="docs", help="where the contact sheets go")
    parser.add_argument("--set", action="append", default=[], help="more adapt settings (SECTION.KEY=VALUE)")
    args = parser.parse_args()
    if not Path(args.video).is_file() or not Path(args.detector).is_file():
        raise SystemExit(
            f"needs the video {args.video} and the detector {args.detector} (see shared/data/README.md)"
        )
    out = Path(args.out)
    start = time.perf_counter()
    if not (out / "run" / "run.json").is_file():
        _cli(
            "track",
            args.video,
            "--out",
            str(out / "run"),
            "--detector",
            "openvino",
            "--detector-model",
            args.detector,
            "--checkpoint",
            args.checkpoint,
            "--no-progress",
        )
    tracked = time.perf_counter() - start
    adapted = out / "adapted" / "checkpoint.pt"
    settings = [f"train.epochs={args.epochs}", "data.workers=0", "train.device=cpu", *args.set]
    if not (out / "adapted" / "metrics.json").is_file():
        _cli(
            "adapt",
            "--checkpoint",
            args.checkpoint,
            "--tracks",
            str(out / "run"),
            "--out",
            str(out / "adapted"),
            "--quiet",
            *sum((["--set", item] for item in settings), []),
        )
    config = load_config(str(out / "adapted" / "config.yaml"), [])
    source = checkpoint.load(args.checkpoint)
    aspect = source.preprocess.width / source.preprocess.height
    crops = extract_run_crops(
        out / "run", out / "adapted" / "crops", per_tracklet=config.adapt.per_tracklet, aspect=aspect
    )
    torch.set_num_threads(2)
    before = _clusters(Path(args.checkpoint), crops, config.adapt)
    after = _clusters(adapted, crops, config.adapt)
    docs = Path(args.docs)
    paths = [s.path for s in crops.samples]
    cluster_sheet(
        paths, before, docs / "adapt_video_before.png", groups=crops.groups, clusters=10, per_cluster=12
    )
    cluster_sheet(
        paths, after, docs / "adapt_video_after.png", groups=crops.groups, clusters=10, per_cluster=12
    )
    print(
        f"\n{Path(args.video).name}: {len(crops.tracklets)} tracklets with crops, {len(paths)} crops, "
        f"{len(crops.cannot_link)} same-frame pairs; adapt {args.epochs} epochs from {args.checkpoint} "
        f"(eps {config.adapt.eps}, min_samples {config.adapt.min_samples}, k1 {config.adapt.k1}); tracking took "
        f"{tracked:.0f} s; machine: {machine_line()}\n"
    )
    print(
        "| model | clusters | outliers | tracklets per cluster | most tracklets | same-frame pairs merged |"
    )
    print("|---|---|---|---|---|---|")
    print(_describe("source", before, crops))
    print(_describe("adapted", after, crops))
    print(f"\ncontact sheets: {docs / 'adapt_video_before.png'}, {docs / 'adapt_video_after.png'}")


if __name__ == "__main__":
    main()
