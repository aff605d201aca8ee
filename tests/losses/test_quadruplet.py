"""Quadruplet loss against a naive per-anchor loop and edge cases."""

from __future__ import annotations

import math

import pytest
import torch

from reidkit.losses.quadruplet import quadruplet

DTYPES = [torch.float32, torch.float64]
METRICS = ["euclidean", "sqeuclidean", "cosine"]


def _tolerance(dtype: torch.dtype) -> dict[str, float]:
    return {"rel": 1e-4, "abs": 1e-4} if dtype == torch.float32 else {"rel": 1e-9, "abs": 1e-9}


def naive_distance(x: torch.Tensor, y: torch.Tensor, metric: str) -> float:
    x, y = x.double(), y.double()
    if metric == "sqeuclidean":
        return float(((x - y) ** 2).sum())
    if metric == "euclidean":
        return math.sqrt(max(float(((x - y) ** 2).sum()), 1e-12))
    return 1.0 - float((x @ y) / (x.norm() * y.norm()))


def naive_quadruplet(features, pids, margin, second_margin, metric):
    labels = pids.tolist()
    size = len(labels)
    d = [[naive_distance(features[i], features[j], metric) for j in range(size)] for i in range(size)]
    losses = []
    for a in range(size):
        positives = [d[a][p] for p in range(size) if p != a and labels[p] == labels[a]]
        negatives = [d[a][n] for n in range(size) if labels[n] != labels[a]]
        strangers = [
            d[i][j]
            for i in range(size)
            for j in range(size)
            if labels[i] != labels[a] and labels[j] != labels[a] and labels[i] != labels[j]
        ]
        if not positives or not strangers:
            continue
        d_ap = max(positives)
        losses.append(
            max(d_ap - min(negatives) + margin, 0.0) + max(d_ap - min(strangers) + second_margin, 0.0)
        )
    return sum(losses) / len(losses) if losses else 0.0


def batch(dtype, ids=4, per_id=3, dim=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(ids * per_id, dim, generator=generator, dtype=dtype)
    pids = torch.arange(ids).repeat_interleave(per_id)
    return features, pids[torch.randperm(ids * per_id, generator=generator)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(("margin", "second_margin"), [(0.0, 0.0), (0.3, 0.15), (3.0, 2.0)])
def test_quadruplet_matches_naive(dtype, metric, margin, second_margin):
    features, pids = batch(dtype)
    value = quadruplet(features, pids, margin=margin, second_margin=second_margin, metric=metric)
    expected = naive_quadruplet(features, pids, margin, second_margin, metric)
    assert value.item() == pytest.approx(expected, **_tolerance(dtype))


def test_quadruplet_hand_computed():
    # ids: a=0 at x=0 and x=2 (d_ap = 2); id 1 at x=3; id 2 at x=10.
    features = torch.tensor([[0.0], [2.0], [3.0], [10.0]], dtype=torch.float64)
    pids = torch.tensor([0, 0, 1, 2])
    # anchor 0: d_ap 2, nearest negative 3, strangers (ids 1, 2) 7 -> (2-3+1)_+ + (2-7+1)_+ = 0
    # anchor 1: d_ap 2, nearest negative 1 -> (2-1+1) + (2-7+1)_+ = 2
    # anchors 2, 3 have no positive.
    assert quadruplet(features, pids, margin=1.0, second_margin=1.0).item() == pytest.approx(1.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_quadruplet_edge_cases(dtype):
    features, _ = batch(dtype)
    # no positives, and only two identities (no pair of strangers): connected zeros
    for pids in (torch.arange(12), torch.tensor([0] * 6 + [1] * 6)):
        leaf = features.clone().requires_grad_(True)
        value = quadruplet(leaf, pids)
        assert value.item() == 0.0
        value.backward()
        assert torch.equal(leaf.grad, torch.zeros_like(leaf))
    # all-equal features: margin + second margin
    equal = torch.full((6, 2), 0.25, dtype=dtype, requires_grad=True)
    value = quadruplet(equal, torch.tensor([0, 0, 1, 1, 2, 2]), margin=0.3, second_margin=0.1)
    assert value.item() == pytest.approx(0.4, abs=1e-5)
    value.backward()
    assert torch.isfinite(equal.grad).all()


@pytest.mark.parametrize("metric", METRICS)
def test_quadruplet_gradients_finite_at_zero_distance(metric):
    features, pids = batch(torch.float32, seed=1)
    features = features.clone()
    features[pids == pids[0]] = features[0].clone()
    features.requires_grad_(True)
    quadruplet(features, pids, metric=metric).backward()
    assert torch.isfinite(features.grad).all()
