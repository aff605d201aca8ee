"""Past one process: DDP training under ``torchrun`` against one process, and the gallery on Milvus against FAISS.

Section ``train``: training on several processes, ``torchrun --nproc-per-node N`` against one process, same
recipe and seed.

Trains configs/bag_of_tricks.yaml on a synthetic set once as a single process with every core and once per
``--processes`` value under torchrun (gloo on CPU, the cores split between the processes), and prints for each:
training images/s (all processes together, from the log), its ratio to the single process, the loss of every
epoch (the same seed gives the same batches, so the curves should agree up to batch-norm statistics, which each
process computes on its own share), and the final mAP.

Section ``gallery`` (``_gallery_backends.py``): Milvus Lite against FAISS flat / IVF at ``--gallery-size`` items:
build items/s, single-query p50 / p99 and recall@10 against the exact top-10, each latency as a ratio to the
NumPy exact product of the same run; then two writer processes on one Milvus Lite server.

    python benchmarks/scale.py                          # both sections, about 10 minutes on 2 cores
    python benchmarks/scale.py --sections train --epochs 2 --ids 24      # a quick training run
    python benchmarks/scale.py --sections gallery --gallery-size 100000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _gallery_backends import bench_gallery
from _reference import machine_line
from _runs import CONFIGS, synthetic_overrides

from reidkit.data.synth import generate


def _train(out: Path, root: Path, args: argparse.Namespace, processes: int) -> float:
    size = {"height": args.height, "width": args.width}
    sets = synthetic_overrides(root, backbone=args.backbone, **size, epochs=args.epochs, seed=0, log_every=1)
    argv = ["-m", "reidkit", "train", "--config", str(CONFIGS / "bag_of_tricks.yaml"), "--out", str(out)]
    argv += ["--quiet", *sum((["--set", item] for item in sets), [])]
    threads = max(1, (os.cpu_count() or 1) // processes)
    if processes > 1:
        argv = ["-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(processes), *argv]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    started = time.perf_counter()
    subprocess.run([sys.executable, *argv], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def _read(out: Path) -> tuple[list[float], float, float]:
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    epochs = [entry for entry in log if entry["kind"] == "epoch"]
    metrics = json.loads((out / "metrics.json").read_text())["after"]
    speed = sum(entry["images_per_s"] for entry in epochs) / len(epochs)
    return [entry["loss"] for entry in epochs], speed, metrics["mAP"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[2])
    parser.add_argument("--ids", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--sections", nargs="+", choices=["train", "gallery"], default=["train", "gallery"])
    parser.add_argument("--gallery-size", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--writer-items", type=int, default=20_000, help="items per writer process (0: skip)")
    args = parser.parse_args()
    print(f"machine: {machine_line()}")
    if "train" in args.sections:
        bench_training(args)
    if "gallery" in args.sections:
        bench_gallery(args.gallery_size, args.dim, args.queries, args.writer_items)


def bench_training(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="reidkit-scale-") as temp:
        root = Path(temp) / "data"
        generate(root, ids=args.ids, cams=4, seed=0, difficulty="medium")
        rows = []
        for processes in [1, *args.processes]:
            out = Path(temp) / f"p{processes}"
            wall = _train(out, root, args, processes)
            rows.append((processes, wall, *_read(out)))
    base = rows[0][3]
    print(
        f"\n{args.backbone} {args.height}x{args.width}, P x K = 8 x 4 (global), {args.ids} synthetic ids, "
        f"{args.epochs} epochs, seed 0, gloo on CPU, cores split between the processes"
    )
    print("| processes | threads each | train img/s | vs 1 process | wall s | loss per epoch | mAP % |")
    print("|---|---|---|---|---|---|---|")
    for processes, wall, losses, speed, mAP in rows:
        threads = max(1, (os.cpu_count() or 1) // processes)
        curve = " / ".join(f"{loss:.3f}" for loss in losses)
        print(
            f"| {processes} | {threads} | {speed:.1f} | {speed / base:.2f}x | {wall:.0f} | {curve} | {100 * mAP:.1f} |"
        )


if __name__ == "__main__":
    main()
