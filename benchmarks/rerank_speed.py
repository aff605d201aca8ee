"""k-reciprocal re-ranking at Market-1501 size: fast and exact modes against the neighbour product, in one run.

Features are the clustered ones of ``benchmarks/eval_speed.py`` (identity centres + camera bias + noise,
L2-normalised, d=2048). Each method runs in its own subprocess (its peak RSS is its own) and is repeated; the table
keeps the best time:

* ``product-float32`` / ``product-bfloat16``: the unavoidable work of the neighbour search, the ``N x N`` feature
  product over the upper triangle (``[512, N - start]`` strips, ``N = Q + G``), in float32 and in bfloat16;
* ``exact``: the three distance matrices + :func:`reidkit.rerank.k_reciprocal`;
* ``fast``: :func:`reidkit.rerank.k_reciprocal_fast` with the certified bfloat16 search (``search="bfloat16"``);
  the fallback column is the fraction of rows recomputed in float32;
* ``fast-float32``: the same with the float32 search (``search="float32"``);
* ``lists``: both searches on the same items: rows whose ``max(k1 + 1, k2)`` nearest differ (not timed).

Ratios are against the float32 product and the exact mode of the same run (the machine may be shared, so absolute
times are noisy). ``max abs diff to exact`` is the largest difference of the re-ranked distances.

Usage::

    python benchmarks/rerank_speed.py                   # Market size, 3 repeats (several minutes on 2 cores)
    python benchmarks/rerank_speed.py --scale 0.1       # a quick run on 10% of it
    python benchmarks/rerank_speed.py --methods product-float32,product-bfloat16,fast
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
from _reference import machine_line
from eval_speed import make_features

METHODS = ("product-float32", "product-bfloat16", "exact", "fast", "fast-float32", "lists")


def _product(features, dtype) -> None:
    items = features.to(dtype)
    for start in range(0, items.shape[0], 512):
        items[start : start + 512] @ items[start:].t()


def _lists(query, gallery, k1: int, k2: int) -> dict:
    import torch

    from reidkit.distance import SquaredRowDistance
    from reidkit.rerank._candidates import _certified_search
    from reidkit.rerank.fast import _exhaustive_search

    space = SquaredRowDistance(torch.cat([query, gallery]))
    width, count = max(k1 + 1, k2), query.shape[0] + gallery.shape[0]
    out = np.empty((query.shape[0], gallery.shape[0]), dtype=np.float32)
    exact = _exhaustive_search(space, 2 * (k1 + 1), 512, query.shape[0], out)[0][:, :width]
    certified = _certified_search(space, 2 * width + 8, 512, query.shape[0], out, width)[0][:, :width]
    differ = (exact != certified).any(dim=1)
    return {"rows": count, "rows_differ": int(differ.sum())}


def worker(method: str, scale: float, seed: int, repeats: int, k1: int, k2: int) -> dict:
    """Run one method ``repeats`` times in this process; return the best time and what it measured."""
    import torch

    from reidkit.distance import pairwise_distance
    from reidkit.rerank import k_reciprocal, k_reciprocal_fast

    qf, gf = make_features("market", "clustered", scale, seed)[:2]
    query, gallery = torch.from_numpy(qf), torch.from_numpy(gf)
    result: dict = {"threads": torch.get_num_threads(), "times": []}
    if method == "lists":
        return {**result, **_lists(query, gallery, k1, k2)}
    for _ in range(repeats):
        statistics: dict = {}
        start = time.perf_counter()
        if method.startswith("product"):
            _product(torch.cat([query, gallery]), torch.float32 if method.endswith("32") else torch.bfloat16)
        elif method == "exact":
            matrices = [pairwise_distance(a, b).numpy() for a, b in ((query, gallery), (query, query))]
            matrices.append(pairwise_distance(gallery, gallery).numpy())
            reranked = k_reciprocal(*matrices, k1=k1, k2=k2)
            del matrices
        else:
            search = "float32" if method == "fast-float32" else "bfloat16"
            reranked = k_reciprocal_fast(query, gallery, k1=k1, k2=k2, search=search, statistics=statistics)
        result["times"].append(time.perf_counter() - start)
        if "fallback_rows" in statistics:
            result["fallback"] = statistics["fallback_rows"] / statistics["rows"]
            result["rescored_per_row"] = statistics["rescored_pairs"] / statistics["rows"]
    if not method.startswith("product"):
        np.save(os.environ["RERANK_SPEED_OUT"] + f".{method}.npy", reranked)
    result["seconds"] = min(result["times"])
    result["peak_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return result


def run_in_subprocess(method: str, args, output: str) -> dict:
    command = [
        sys.executable,
        __file__,
        "--worker",
        method,
        "--scale",
        str(args.scale),
        "--seed",
        str(args.seed),
    ]
    slow = method in ("exact", "fast-float32")
    command += ["--repeats", str(args.reference_repeats if slow else args.repeats)]
    command += ["--k1", str(args.k1), "--k2", str(args.k2)]
    environment = {**os.environ, "RERANK_SPEED_OUT": output}
    completed = subprocess.run(command, capture_output=True, text=True, check=False, env=environment)
    if completed.returncode != 0:
        return {"error": (completed.stderr.strip().splitlines() or [f"exit code {completed.returncode}"])[-1]}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def print_table(results: dict, output: str) -> None:
    product = results.get("product-float32", {}).get("seconds")
    low_product = results.get("product-bfloat16", {}).get("seconds")
    exact = results.get("exact", {}).get("seconds")
    header = (
        f"| {'method':16s} | {'best s':>7s} | {'runs s':18s} | {'vs fp32 product':>15s} | "
        f"{'vs bf16 product':>15s} | {'vs exact':>8s} | "
        f"{'peak GB':>7s} | {'fallback':>8s} | {'max abs diff to exact':>21s} |"
    )
    print(header)
    print("|" + "|".join("-" * len(cell) for cell in header.split("|")[1:-1]) + "|")
    reference = np.load(output + ".exact.npy") if os.path.exists(output + ".exact.npy") else None
    for method, result in results.items():
        if "seconds" not in result:
            print(f"| {method:16s} | {result} |")
            continue
        seconds = result["seconds"]
        runs = " ".join(f"{value:.2f}" for value in result["times"])
        to_product = f"{seconds / product:.2f}x" if product else "n/a"
        to_low = f"{seconds / low_product:.2f}x" if low_product else "n/a"
        to_exact = f"1/{exact / seconds:.1f}" if exact and method != "exact" else ""
        fallback = f"{100 * result['fallback']:.2f}%" if "fallback" in result else ""
        difference = ""
        if reference is not None and os.path.exists(output + f".{method}.npy") and method != "exact":
            difference = f"{np.abs(np.load(output + f'.{method}.npy') - reference).max():.2e}"
        print(
            f"| {method:16s} | {seconds:7.2f} | {runs:18s} | {to_product:>15s} | {to_low:>15s} | {to_exact:>8s} | "
            f"{result['peak_gb']:7.2f} | {fallback:>8s} | {difference:>21s} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of Market size (0.1 = quick run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="runs per method; the best is kept")
    parser.add_argument(
        "--reference-repeats", type=int, default=2, help="runs of the slow references (exact, fast-float32)"
    )
    parser.add_argument("--k1", type=int, default=20)
    parser.add_argument("--k2", type=int, default=6)
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {METHODS}")
    parser.add_argument(
        "--output", default="/tmp/rerank_speed", help="prefix of the re-ranked matrices saved"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.scale, args.seed, args.repeats, args.k1, args.k2)))
        return
    qf, gf = make_features("market", "clustered", args.scale, args.seed)[:2]
    print(
        f"machine: {machine_line()}; load average {os.getloadavg()[0]:.1f}; Q={len(qf)}, G={len(gf)}, "
        f"d={qf.shape[1]}, k1={args.k1}, k2={args.k2}, scale {args.scale}",
        flush=True,
    )
    results = {}
    for method in args.methods.split(","):
        if method not in METHODS:
            raise SystemExit(f"--methods: unknown method {method!r}; choose from {METHODS}")
        results[method] = run_in_subprocess(method, args, args.output)
        print(f"  {method:16s} {results[method]}", flush=True)
    print()
    print_table({method: result for method, result in results.items() if method != "lists"}, args.output)
    if "lists" in results:
        print(f"\nneighbour lists, bfloat16 vs float32 search: {results['lists']}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
