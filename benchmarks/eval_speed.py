"""Evaluation and re-ranking: time and peak memory at Market-1501 and MSMT17 sizes, against a numpy baseline.

Features are generated, never loaded: "clustered" features are identity centres plus camera bias plus noise
(L2-normalised, d=2048, with Market-like identities / cameras / distractors), "random" features have no
structure (every query's matches are scattered through the whole ranking: the worst case for a method that
skips what lies beyond the last true match).

Each measurement runs in its own subprocess, which generates the same features from the same seed and then runs
one method; the table reports the method's wall time and the subprocess's peak RSS (``ru_maxrss``, the features
included; the "data" column is the RSS right after generating them).

Methods:

* ``baseline``: the usual way — the full ``Q x G`` distance matrix (``reidkit.distance.pairwise_distance``,
  float32), ``np.argsort`` of every row, then per query the kept list, cumulative sums, AP, INP (vectorised
  numpy per query). Its distance matrix is computed with the same function as reidkit's, so the numbers must be
  identical.
* ``reidkit``: :func:`reidkit.metrics.evaluate_features` (blocks of queries, no sort, no ``Q x G`` matrix).
* ``baseline-matrix`` / ``reidkit-matrix``: the same two, timed on an already computed distance matrix.
* ``rerank-exact``: the three distance matrices + :func:`reidkit.rerank.k_reciprocal`.
* ``rerank-fast``: :func:`reidkit.rerank.k_reciprocal_fast` from the features (exhaustive neighbour search; the
  certified bfloat16 search on CPUs with native bfloat16 products). ``benchmarks/rerank_speed.py`` times it
  against the neighbour product.

Usage::

    python benchmarks/eval_speed.py                 # Market and MSMT17 sizes (several minutes on 2 cores)
    python benchmarks/eval_speed.py --scale 0.1     # a quick run on 10% of each size
    python benchmarks/eval_speed.py --sizes market --kinds clustered --no-rerank
    python benchmarks/eval_speed.py --sizes market --kinds clustered --methods rerank-exact,rerank-fast
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
from _reference import reference_evaluate as baseline_evaluate

SIZES = {
    # queries, gallery, test identities, cameras, fraction of pid-0 distractors in the gallery
    "market": (3368, 15913, 750, 6, 2793 / 15913),
    "msmt17": (11659, 82161, 3060, 15, 0.0),
}
DIM = 2048
#: noise and camera-bias strengths of the clustered features (relative to the identity centre's norm)
NOISE = 2.2
CAMERA = 0.7
#: above this estimated peak (GB), the dense baselines are skipped rather than run out of memory
MEMORY_LIMIT_GB = 12.0


def make_features(size: str, kind: str, scale: float, seed: int):
    """Deterministic features and labels: ``(qf [Q, D], gf [G, D], q_pids, g_pids, q_camids, g_camids)``."""
    num_query, num_gallery, num_ids, num_cams, distractors = SIZES[size]
    num_query, num_gallery = max(10, int(num_query * scale)), max(50, int(num_gallery * scale))
    num_ids = max(5, int(num_ids * scale))
    rng = np.random.default_rng(seed)
    unit = 1.0 / np.sqrt(DIM)
    centres = rng.standard_normal((num_ids + 1, DIM), dtype=np.float32) * unit
    camera_bias = rng.standard_normal((num_cams, DIM), dtype=np.float32) * unit
    q_pids = rng.integers(1, num_ids + 1, num_query)
    g_pids = rng.integers(1, num_ids + 1, num_gallery)
    g_pids[rng.random(num_gallery) < distractors] = 0
    q_camids = rng.integers(0, num_cams, num_query)
    g_camids = rng.integers(0, num_cams, num_gallery)

    def features(pids: np.ndarray, camids: np.ndarray) -> np.ndarray:
        out = np.empty((len(pids), DIM), dtype=np.float32)
        for start in range(0, len(pids), 4096):
            part = slice(start, start + 4096)
            noise = rng.standard_normal((len(pids[part]), DIM), dtype=np.float32) * unit
            if kind == "random":
                block = noise
            else:
                identity = np.where((pids[part] > 0)[:, None], centres[pids[part]], 0.0)
                block = identity + CAMERA * camera_bias[camids[part]] + NOISE * noise
            out[part] = block / np.linalg.norm(block, axis=1, keepdims=True)
        return out

    qf = features(q_pids, q_camids)
    gf = features(g_pids, g_camids)
    return qf, gf, q_pids, g_pids, q_camids, g_camids


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def generated_case(size: str, kind: str, scale: float, seed: int):
    """``(query, gallery, labels, data_gb)``: :func:`make_features` as tensors and
    ``(q_pids, g_pids, q_camids, g_camids)``, and the peak RSS right after generating them."""
    import torch

    qf, gf, q_pids, g_pids, q_camids, g_camids = make_features(size, kind, scale, seed)
    return torch.from_numpy(qf), torch.from_numpy(gf), (q_pids, g_pids, q_camids, g_camids), _rss_gb()


def worker(method: str, size: str, kind: str, scale: float, seed: int, sort_kind: str) -> dict:
    """Run one method in this process; return its time, results and memory."""
    import torch

    from reidkit.distance import pairwise_distance
    from reidkit.metrics import evaluate, evaluate_features
    from reidkit.rerank import k_reciprocal, k_reciprocal_fast

    query, gallery, labels, data_gb = generated_case(size, kind, scale, seed)
    result: dict = {"threads": torch.get_num_threads()}
    start = time.perf_counter()
    if method == "baseline":
        distmat = pairwise_distance(query, gallery).numpy()
        cmc, mean_ap, mean_inp = baseline_evaluate(distmat, *labels, sort_kind=sort_kind)
    elif method == "baseline-matrix":
        distmat = pairwise_distance(query, gallery).numpy()
        start = time.perf_counter()
        cmc, mean_ap, mean_inp = baseline_evaluate(distmat, *labels, sort_kind=sort_kind)
    elif method == "reidkit":
        metrics = evaluate_features(query, gallery, *labels)
        cmc, mean_ap, mean_inp = metrics.cmc, metrics.mAP, metrics.mINP
    elif method == "reidkit-matrix":
        distmat = pairwise_distance(query, gallery).numpy()
        start = time.perf_counter()
        metrics = evaluate(distmat, *labels)
        cmc, mean_ap, mean_inp = metrics.cmc, metrics.mAP, metrics.mINP
    elif method == "rerank-exact":
        q_g = pairwise_distance(query, gallery).numpy()
        q_q = pairwise_distance(query, query).numpy()
        g_g = pairwise_distance(gallery, gallery).numpy()
        reranked = k_reciprocal(q_g, q_q, g_g)
        del q_q, g_g
        result["seconds"] = time.perf_counter() - start
        metrics = evaluate(reranked, *labels)
        cmc, mean_ap, mean_inp = metrics.cmc, metrics.mAP, metrics.mINP
    elif method == "rerank-fast":
        reranked = k_reciprocal_fast(query, gallery)
        result["seconds"] = time.perf_counter() - start
        metrics = evaluate(reranked, *labels)
        cmc, mean_ap, mean_inp = metrics.cmc, metrics.mAP, metrics.mINP
    else:
        raise KeyError(f"unknown method {method!r}")
    result.setdefault("seconds", time.perf_counter() - start)
    result.update(
        rank1=float(cmc[0]),
        mAP=float(mean_ap),
        mINP=float(mean_inp),
        cmc=[float(x) for x in cmc],
        data_gb=data_gb,
        peak_gb=_rss_gb(),
    )
    return result


def run_in_subprocess(method: str, size: str, kind: str, args) -> dict:
    command = [sys.executable, __file__, "--worker", method, "--sizes", size, "--kinds", kind]
    command += ["--scale", str(args.scale), "--seed", str(args.seed), "--baseline-sort", args.baseline_sort]
    environment = dict(os.environ)
    if args.threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            environment[name] = str(args.threads)
    return run_json(command, environment)


def run_json(command: list[str], environment: dict | None = None) -> dict:
    """Run ``command``; the JSON object on the last line of its output, or ``{"error": last stderr line}``."""
    completed = subprocess.run(command, capture_output=True, text=True, check=False, env=environment)
    if completed.returncode != 0:
        return {"error": (completed.stderr.strip().splitlines() or [f"exit code {completed.returncode}"])[-1]}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def report(rows, print_table, path: str | None) -> None:
    """Print the table of the ``(size, kind, results)`` rows, and write them as JSON to ``path`` if given."""
    print()
    print_table(rows)
    if path:
        write_json(path, rows)


def write_json(path: str, rows) -> None:
    """Write the ``(size, kind, results)`` rows as JSON, atomically."""
    with open(path + ".tmp", "w") as stream:
        json.dump([list(row) for row in rows], stream, indent=1)
    os.replace(path + ".tmp", path)


def dense_estimate_gb(size: str, scale: float, method: str) -> float:
    num_query, num_gallery = (max(10, int(n * scale)) for n in SIZES[size][:2])
    elements = num_query * num_gallery
    if method.startswith("baseline"):
        # float32 matrix + int64 argsort + bool matches + int64 gathers per query
        return elements * (4 + 8 + 1 + 8) / 1024**3
    if method == "rerank-exact":
        count = num_query + num_gallery
        return (count * count * 4 * 2 + elements * 4) / 1024**3
    return 0.0


def case_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options that choose the generated cases: ``--sizes``, ``--kinds``, ``--scale``, ``--seed``."""
    parser.add_argument("--sizes", default="market,msmt17")
    parser.add_argument("--kinds", default="clustered,random")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of each size (0.1 = quick run)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main() -> None:
    parser = case_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--no-rerank", action="store_true", help="skip the re-ranking rows")
    parser.add_argument("--memory-limit-gb", type=float, default=MEMORY_LIMIT_GB)
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--threads", type=int, default=0, help="threads per measurement (0: library default)")
    parser.add_argument("--baseline-sort", default="stable", choices=["stable", "quicksort"])
    parser.add_argument("--methods", help="comma-separated subset of the methods to run (default: all)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(
            json.dumps(worker(args.worker, args.sizes, args.kinds, args.scale, args.seed, args.baseline_sort))
        )
        return

    rows = []
    print(
        f"cpu cores visible: {os.cpu_count()}, threads per measurement: {args.threads or 'default'}, "
        f"load average: {os.getloadavg()[0]:.1f}, scale {args.scale}, d={DIM}, baseline sort: {args.baseline_sort}",
        flush=True,
    )
    for size in args.sizes.split(","):
        for kind in args.kinds.split(","):
            methods = ["baseline", "reidkit"]
            if size == "market":  # the evaluation step alone, from an already computed matrix
                methods += ["baseline-matrix", "reidkit-matrix"]
            if not args.no_rerank and size == "market" and kind == "clustered":
                methods += ["rerank-exact", "rerank-fast"]
            if args.methods:
                methods = [method for method in methods if method in args.methods.split(",")]
            results = {}
            for method in methods:
                estimate = dense_estimate_gb(size, args.scale, method)
                if estimate > args.memory_limit_gb:
                    results[method] = {"skipped": f"needs ~{estimate:.0f} GB"}
                else:
                    results[method] = run_in_subprocess(method, size, kind, args)
                print(f"  {size:7s} {kind:9s} {method:16s} {results[method]}", flush=True)
            rows.append((size, kind, results))
    report(rows, print_table, args.json)


def print_table(rows) -> None:
    header = (
        f"| {'size':7s} | {'features':9s} | {'method':16s} | {'time s':>8s} | {'vs baseline':>11s} | "
        f"{'peak GB':>7s} | {'data GB':>7s} | {'Rank-1':>7s} | {'mAP':>7s} | {'mINP':>7s} | {'same as baseline':16s} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    for size, kind, results in rows:
        for method, result in results.items():
            reference_name = {
                "reidkit": "baseline",
                "reidkit-matrix": "baseline-matrix",
                "rerank-fast": "rerank-exact",
            }.get(method)
            reference = results.get(reference_name, {}) if reference_name else {}
            if "skipped" in result or "error" in result:
                note = result.get("skipped") or "error: " + result["error"]
                print(f"| {size:7s} | {kind:9s} | {method:16s} | {note} |")
                continue
            ratio = same = ""
            if "seconds" in reference:
                ratio = f"{reference['seconds'] / result['seconds']:.2f}x"
                if method.startswith("rerank-fast"):
                    same = f"mAP diff {100 * abs(result['mAP'] - reference['mAP']):.3f} pt"
                else:
                    identical = result["cmc"] == reference["cmc"] and all(
                        abs(result[key] - reference[key]) < 1e-12 for key in ("mAP", "mINP")
                    )
                    same = (
                        "identical"
                        if identical
                        else (f"DIFFERENT (mAP diff {abs(result['mAP'] - reference['mAP']):.2e})")
                    )
            elif reference_name:
                status = "not run" if not reference else "skipped" if "skipped" in reference else "failed"
                ratio, same = "n/a", f"{reference_name} {status}"
            print(
                f"| {size:7s} | {kind:9s} | {method:16s} | {result['seconds']:8.2f} | {ratio:>11s} | "
                f"{result['peak_gb']:7.2f} | {result['data_gb']:7.2f} | {100 * result['rank1']:7.2f} | "
                f"{100 * result['mAP']:7.2f} | {100 * result['mINP']:7.2f} | {same:16s} |"
            )


if __name__ == "__main__":
    main()
