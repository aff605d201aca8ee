"""The textbook evaluation loop the metrics tests compare with, and random cases full of ties."""

from __future__ import annotations

import numpy as np
import pytest

from reidkit.metrics import Metrics


def reference_metrics(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, ignore=None):
    """Per-query loop over the textbook definition: stable sort, drop ignored items, read off the matches."""
    cmc_rows, average_precisions, inverse_penalties = [], [], []
    for query in range(len(q_pids)):
        order = np.argsort(distmat[query], kind="stable")
        removed = np.zeros(len(g_pids), dtype=bool)
        if q_camids is not None:
            removed |= (g_pids == q_pids[query]) & (g_camids == q_camids[query])
        if ignore is not None:
            removed[ignore[query]] = True
        kept = order[~removed[order]]
        is_match = g_pids[kept] == q_pids[query]
        if not is_match.any():
            continue
        match_ranks = [rank + 1 for rank, hit in enumerate(is_match) if hit]
        cmc_rows.append([1.0 if match_ranks[0] <= k else 0.0 for k in range(1, max_rank + 1)])
        precisions = [(number + 1) / rank for number, rank in enumerate(match_ranks)]
        average_precisions.append(sum(precisions) / len(precisions))
        inverse_penalties.append(len(match_ranks) / match_ranks[-1])
    if not cmc_rows:
        return None, None, None, 0
    return np.mean(cmc_rows, axis=0), np.mean(average_precisions), np.mean(inverse_penalties), len(cmc_rows)


def assert_same(result: Metrics, reference) -> None:
    cmc, mean_ap, mean_inp, count = reference
    np.testing.assert_allclose(result.cmc, cmc, rtol=0, atol=1e-12)
    assert result.mAP == pytest.approx(mean_ap, abs=1e-12)
    assert result.mINP == pytest.approx(mean_inp, abs=1e-12)
    assert result.num_queries == count


def random_case(rng, num_query, num_gallery, num_ids=6, num_cams=3, levels=5):
    q_pids = rng.integers(1, num_ids + 1, num_query)
    g_pids = rng.integers(0, num_ids + 1, num_gallery)  # pid 0: distractors
    q_camids = rng.integers(0, num_cams, num_query)
    g_camids = rng.integers(0, num_cams, num_gallery)
    distmat = rng.integers(0, levels, (num_query, num_gallery)).astype(np.float64)  # many ties
    return distmat, q_pids, g_pids, q_camids, g_camids
