"""What every benchmark shares: the reference evaluation loop and the machine line of each table.

Benchmarks run as ``python benchmarks/<name>.py`` from the repository root; Python puts the script's own folder on
``sys.path``, so ``from _reference import ...`` works without path edits.
"""

from __future__ import annotations

import os
import platform

import numpy as np


def reference_evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50, sort_kind="stable"):
    """The common vectorised numpy evaluation: full argsort, then per query the kept list (cross-camera rule).

    ``sort_kind="stable"`` follows the reference definition (ties by gallery index); the toolkits' default
    quicksort breaks float32 ties arbitrarily, which moves mAP in the 7th digit.

    Returns:
        ``(cmc [max_rank], mAP, mINP)`` over the queries with at least one valid match.
    """
    indices = np.argsort(distmat, axis=1, kind=sort_kind)
    matches = g_pids[indices] == q_pids[:, None]
    cmc_rows, average_precisions, inverse_penalties = [], [], []
    for query in range(len(q_pids)):
        order = indices[query]
        keep = ~((g_pids[order] == q_pids[query]) & (g_camids[order] == q_camids[query]))
        raw = matches[query][keep]
        if not raw.any():
            continue
        cumulative = raw.cumsum()
        cmc = (cumulative[:max_rank] >= 1).astype(np.float64)
        cmc_rows.append(np.pad(cmc, (0, max_rank - len(cmc)), constant_values=1.0))
        positions = np.nonzero(raw)[0]
        average_precisions.append(float(np.mean(cumulative[positions] / (positions + 1.0))))
        inverse_penalties.append(len(positions) / (positions[-1] + 1.0))
    return np.mean(cmc_rows, axis=0), float(np.mean(average_precisions)), float(np.mean(inverse_penalties))


def machine_line(threads: int | None = None) -> str:
    """``CPU model (vector extensions), cores, threads``: absolute times mean nothing without it."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as stream:
            for line in stream:
                if line.startswith("model name") and model in ("", platform.machine(), platform.processor()):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    wanted = [("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_bf16", "AVX512-BF16"), ("amx_tile", "AMX")]
    extensions = [name for flag, name in wanted if flag in flags] or ["none of AVX2/AVX-512/AMX"]
    text = f"{model} ({', '.join(extensions)}), {os.cpu_count()} cores"
    return text + (f", {threads} threads" if threads else "")
