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
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from reidkit.data.datasets import load_dataset
from reidkit.data.synth import generate
from reidkit.extract import extract_features, load_embedder_from_checkpoint
from reidkit.distance import pairwise_distance
from reidkit.metrics import evaluate

sys.path.insert(0, str(Path(__file__).parent))
from synth_hardness import hellinger_distances, hsv_histogram  # noqa: E402


def argsort_evaluate(distmat: np.ndarray, q_pids, g_pids, q_cams, g_cams) -> tuple[float, float]:
    """The usual implementation: full stable argsort of every row, then per query cumulative sums."""
    order = np.argsort(distmat, axis=1, kind="stable")
    aps, first = [], []
    for i in range(len(q_pids)):
        row = order[i]
        keep = ~((g_pids[row] == q_pids[i]) & (g_cams[row] == q_cams[i]))
        matches = (g_pids[row] == q_pids[i])[keep]
        if not matches.any():
            continue
        hits = np.cumsum(matches)
        ranks = np.flatnonzero(matches) + 1
        aps.append(float(np.mean(hits[ranks - 1] / ranks)))
        first.append(ranks[0])
    return float(np.mean(np.array(first) == 1)), float(np.mean(aps))


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
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads; data {root}")
    print(f"{len(split.query)} queries, {len(split.gallery)} gallery images\n")

    embedder = load_embedder_from_checkpoint(args.checkpoint, flip=True)
    paths = [s.path for s in split.query] + [s.path for s in split.gallery]
    start = time.perf_counter()
    features = extract_features(embedder, paths, workers=args.workers)
    embed_s = time.perf_counter() - start
    qf, gf = torch.from_numpy(features[: len(split.query)]), torch.from_numpy(features[len(split.query) :])
    start = time.perf_counter()
    distmat = pairwise_distance(qf, gf).numpy()
    distance_s = time.perf_counter() - start
    start = time.perf_counter()
    metrics = evaluate(distmat, q_pids, g_pids, q_cams, g_cams)
    evaluate_s = time.perf_counter() - start
    start = time.perf_counter()
    rank1, mean_ap = argsort_evaluate(distmat, q_pids, g_pids, q_cams, g_cams)
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
    payload = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    rows = [("HSV colour histogram (centre, 6 stripes)", colour)]
    if payload.get("before"):
        rows.append((f"{payload['model_spec']['backbone']} baseline, untrained", payload["before"]))
    rows.append((f"{payload['model_spec']['backbone']} baseline, trained", metrics.as_dict()))
    print(f"\n{'matcher':<42}{'Rank-1':>8}{'Rank-5':>8}{'mAP':>8}{'mINP':>8}")
    for name, values in rows:
        print(f"{name:<42}" + "".join(f"{100 * values[k]:>8.1f}" for k in ("rank1", "rank5", "mAP", "mINP")))
    print("\n" + json.dumps({name: values for name, values in rows}))


if __name__ == "__main__":
    main()
