"""The foundation end to end on the synthetic hard set: evaluation time, and the trained model against colour.

For one dataset (default: the demo's ``demo_out/data``, generated if missing) and one checkpoint (default: the
demo's ``demo_out/run/checkpoint.pt``), prints:

* the time of each evaluation stage: embedding query + gallery (flip-averaged, images/s), the distance matrix,
  ``reidkit.metrics.evaluate`` and, for comparison in the same run, a plain per-query argsort evaluation;
* Rank-1 / Rank-5 / mAP / mINP of the HSV colour-histogram matcher (the strongest of benchmarks/synth_hardness.py),
  the same model untrained (from the checkpoint's ``before`` metrics, measured by ``reidkit train``) and trained.

    .venv/bin/python benchmarks/eval_time.py [--root demo_out/data] [--checkpoint demo_out/run/checkpoint.pt]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from _reference import machine_line, reference_evaluate
from synth_hardness import hellinger_distances, hsv_histogram

from reidkit import checkpoint as checkpoints
from reidkit.data.datasets import load_dataset
from reidkit.data.synth import generate
from reidkit.distance import pairwise_distance
from reidkit.embed import TorchEmbedder, embed_paths
from reidkit.metrics import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="demo_out/data")
    parser.add_argument("--checkpoint", default="demo_out/run/checkpoint.pt")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    root = Path(args.root)
    if not root.exists():
        generate(root, ids=200, cams=6, seed=0, difficulty="hard", workers=2)
    split = load_dataset("synthetic", root)
    q_pids = np.array([s.pid for s in split.query])
    g_pids = np.array([s.pid for s in split.gallery])
    q_cams = np.array([s.camid for s in split.query])
    g_cams = np.array([s.camid for s in split.gallery])
    print(f"machine: {machine_line(torch.get_num_threads())}; data {root}")
    print(f"{len(split.query)} queries, {len(split.gallery)} gallery images\n")

    checkpoint = checkpoints.load(args.checkpoint)
    embedder = TorchEmbedder.from_checkpoint(checkpoint, flip=True)
    paths = [s.path for s in split.query] + [s.path for s in split.gallery]
    start = time.perf_counter()
    features = embed_paths(embedder, paths, workers=args.workers)
    embed_s = time.perf_counter() - start
    qf, gf = torch.from_numpy(features[: len(split.query)]), torch.from_numpy(features[len(split.query) :])
    start = time.perf_counter()
    distmat = pairwise_distance(qf, gf).numpy()
    distance_s = time.perf_counter() - start
    start = time.perf_counter()
    metrics = evaluate(distmat, q_pids, g_pids, q_cams, g_cams)
    evaluate_s = time.perf_counter() - start
    start = time.perf_counter()
    cmc, mean_ap, _ = reference_evaluate(distmat, q_pids, g_pids, q_cams, g_cams)
    rank1 = cmc[0]
    argsort_s = time.perf_counter() - start
    assert abs(rank1 - metrics.cmc[0]) < 1e-12 and abs(mean_ap - metrics.mAP) < 1e-9, "evaluations disagree"

    print(f"{'stage':<34}{'seconds':>9}  note")
    print(f"{'embed query + gallery (flip TTA)':<34}{embed_s:>9.2f}  {len(paths) / embed_s:.1f} images/s")
    print(f"{'distance matrix':<34}{distance_s:>9.3f}")
    print(
        f"{'reidkit.metrics.evaluate':<34}{evaluate_s:>9.3f}  {argsort_s / evaluate_s:.1f}x faster than argsort"
    )
    print(f"{'per-query argsort evaluation':<34}{argsort_s:>9.3f}  same Rank-1 and mAP")

    hist_q = np.stack([hsv_histogram(s.path, stripes=6, bins=(8, 4, 4), centre=True) for s in split.query])
    hist_g = np.stack([hsv_histogram(s.path, stripes=6, bins=(8, 4, 4), centre=True) for s in split.gallery])
    colour = evaluate(hellinger_distances(hist_q, hist_g), q_pids, g_pids, q_cams, g_cams).as_dict()
    rows = [("HSV colour histogram (centre, 6 stripes)", colour)]
    if checkpoint.before:
        rows.append((f"{checkpoint.spec.backbone} baseline, untrained", dict(checkpoint.before)))
    rows.append((f"{checkpoint.spec.backbone} baseline, trained", metrics.as_dict()))
    print(f"\n{'matcher':<42}{'Rank-1':>8}{'Rank-5':>8}{'mAP':>8}{'mINP':>8}")
    for name, values in rows:
        print(f"{name:<42}" + "".join(f"{100 * values[k]:>8.1f}" for k in ("rank1", "rank5", "mAP", "mINP")))
    print("\n" + json.dumps({name: values for name, values in rows}))


if __name__ == "__main__":
    main()
