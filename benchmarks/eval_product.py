"""evaluate_features against its unavoidable work, the query x gallery matrix product, at Market-1501 and MSMT17 sizes.

For each size and feature kind ("clustered" and "random", generated as in ``benchmarks/eval_speed.py``), one
subprocess generates the features and then alternates, ``--repeats`` times each:

* the product alone: ``torch.mm`` of blocks of queries with the gallery (float32, the block rows
  :func:`reidkit.metrics.evaluate_features` uses by default, into one reused buffer), the floor of any exact
  evaluation from features;
* :func:`reidkit.metrics.evaluate_features` (Euclidean distance, cross-camera rule).

The table reports the best time of each, their ratio, and the subprocess's peak RSS (``ru_maxrss``, read before
the optional check; the "data" column is the RSS right after generating the features). With ``--check`` (the
default at Market size, where the dense matrix fits), the metrics are compared with the reference loop of
``benchmarks/_reference.py`` on the full distance matrix (stable sort): "identical" means CMC, mAP and mINP
equal to the last bit.

Usage::

    python benchmarks/eval_product.py                      # both sizes, both kinds (about 15 min on 2 cores)
    python benchmarks/eval_product.py --sizes market --repeats 5
    python benchmarks/eval_product.py --scale 0.1          # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
from _reference import machine_line, reference_evaluate
from eval_speed import SIZES, _rss_gb, case_arguments, generated_case, report, run_json


def worker(size: str, kind: str, scale: float, seed: int, repeats: int, check: bool) -> dict:
    """Time the product and evaluate_features alternately in this process; return the best times."""
    import torch

    from reidkit.distance import pairwise_distance
    from reidkit.metrics import DEFAULT_BLOCK_ELEMENTS, evaluate_features

    query, gallery, labels, data_gb = generated_case(size, kind, scale, seed)
    block = max(1, DEFAULT_BLOCK_ELEMENTS // gallery.shape[0])
    buffer = torch.empty((min(block, query.shape[0]), gallery.shape[0]))

    def product() -> None:
        for start in range(0, query.shape[0], block):
            rows = query[start : start + block]
            torch.mm(rows, gallery.t(), out=buffer[: rows.shape[0]])

    product_times, evaluate_times, metrics = [], [], None
    for _ in range(repeats):
        start = time.perf_counter()
        product()
        product_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        metrics = evaluate_features(query, gallery, *labels)
        evaluate_times.append(time.perf_counter() - start)
    result = {
        "threads": torch.get_num_threads(),
        "queries": int(query.shape[0]),
        "gallery": int(gallery.shape[0]),
        "product": min(product_times),
        "evaluate": min(evaluate_times),
        "product_all": product_times,
        "evaluate_all": evaluate_times,
        "data_gb": data_gb,
        "peak_gb": _rss_gb(),
        "rank1": float(metrics.cmc[0]),
        "mAP": float(metrics.mAP),
        "mINP": float(metrics.mINP),
    }
    if check:
        del buffer
        distmat = pairwise_distance(query, gallery).numpy()
        cmc, mean_ap, mean_inp = reference_evaluate(distmat, *labels)
        result["identical"] = bool(
            np.array_equal(cmc, metrics.cmc) and mean_ap == metrics.mAP and mean_inp == metrics.mINP
        )
    return result


def main() -> None:
    parser = case_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--repeats", type=int, default=3, help="timings of each, the best is reported")
    parser.add_argument(
        "--check",
        choices=["auto", "yes", "no"],
        default="auto",
        help="compare with the dense reference loop (auto: when the dense matrix is under 1 GB)",
    )
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        size, kind = args.worker
        print(json.dumps(worker(size, kind, args.scale, args.seed, args.repeats, args.check == "yes")))
        return

    print(machine_line(), flush=True)
    print(
        f"load average {os.getloadavg()[0]:.1f}, scale {args.scale}, float32, d=2048, best of {args.repeats}",
        flush=True,
    )
    rows = []
    for size in args.sizes.split(","):
        num_query, num_gallery = (max(10, int(n * args.scale)) for n in SIZES[size][:2])
        check = args.check == "yes" or (args.check == "auto" and num_query * num_gallery * 4 < 2**30)
        for kind in args.kinds.split(","):
            command = [sys.executable, __file__, "--worker", size, kind, "--scale", str(args.scale)]
            command += ["--seed", str(args.seed), "--repeats", str(args.repeats)]
            command += ["--check", "yes" if check else "no"]
            result = run_json(command)
            print(f"  {size:7s} {kind:9s} {result}", flush=True)
            rows.append((size, kind, result))
    report(rows, print_table, args.json)


def print_table(rows) -> None:
    threads = next((result["threads"] for _, _, result in rows if "threads" in result), None)
    print(machine_line(threads))
    header = (
        f"| {'size':7s} | {'features':9s} | {'queries x gallery':17s} | {'product s':>9s} | "
        f"{'evaluate_features s':>19s} | {'ratio':>5s} | {'peak GB':>7s} | {'data GB':>7s} | "
        f"{'mAP':>6s} | {'same as reference':17s} |"
    )
    print(header)
    print("|" + "|".join("-" * len(cell) for cell in header.split("|")[1:-1]) + "|")
    for size, kind, result in rows:
        if "error" in result:
            print(f"| {size:7s} | {kind:9s} | error: {result['error']} |")
            continue
        shape = f"{result['queries']} x {result['gallery']}"
        same = {True: "identical", False: "DIFFERENT"}.get(result.get("identical"), "not checked")
        print(
            f"| {size:7s} | {kind:9s} | {shape:17s} | {result['product']:9.2f} | {result['evaluate']:19.2f} | "
            f"{result['evaluate'] / result['product']:5.2f} | {result['peak_gb']:7.2f} | "
            f"{result['data_gb']:7.2f} | {100 * result['mAP']:6.2f} | {same:17s} |"
        )


if __name__ == "__main__":
    main()
