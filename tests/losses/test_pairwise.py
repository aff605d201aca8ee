"""Contrastive loss against a naive per-pair loop, edge cases and pytorch-metric-learning."""

from __future__ import annotations

import math

import pytest
import torch

from reidkit.losses.pairwise import contrastive

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


def naive_contrastive(features, pids, margin, metric):
    labels = pids.tolist()
    losses = []
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            d = naive_distance(features[i], features[j], metric)
            losses.append(d**2 if labels[i] == labels[j] else max(margin - d, 0.0) ** 2)
    return sum(losses) / len(losses) if losses else 0.0


def batch(dtype, ids=4, per_id=3, dim=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(ids * per_id, dim, generator=generator, dtype=dtype)
    pids = torch.arange(ids).repeat_interleave(per_id)
    return features, pids[torch.randperm(ids * per_id, generator=generator)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("margin", [0.0, 1.0, 4.0])
def test_contrastive_matches_naive(dtype, metric, margin):
    features, pids = batch(dtype)
    value = contrastive(features, pids, margin=margin, metric=metric)
    assert value.dtype == dtype
    assert value.item() == pytest.approx(
        naive_contrastive(features, pids, margin, metric), **_tolerance(dtype)
    )


def test_contrastive_hand_computed():
    # points 0 and 1 (same id) 3 apart; point 2 (other id) 1 from point 0 and sqrt(10) from point 1.
    features = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    pids = torch.tensor([1, 1, 2])
    expected = (9.0 + (2.0 - 1.0) ** 2 + 0.0) / 3
    assert contrastive(features, pids, margin=2.0).item() == pytest.approx(expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_contrastive_edge_cases(dtype):
    # one image per identity: only negative pairs (still a loss); all-equal features: every negative pair
    # costs margin^2, positive pairs nothing; one image: connected zero.
    features, _ = batch(dtype, ids=2, per_id=3)
    pids = torch.arange(6)
    assert contrastive(features, pids).item() == pytest.approx(
        naive_contrastive(features, pids, 1.0, "euclidean"), **_tolerance(dtype)
    )
    equal = torch.full((4, 3), 0.5, dtype=dtype, requires_grad=True)
    value = contrastive(equal, torch.tensor([0, 0, 1, 1]), margin=2.0)
    assert value.item() == pytest.approx(4.0 * 4 / 6, rel=1e-5)
    value.backward()
    assert torch.isfinite(equal.grad).all()
    single = torch.randn(1, 3, dtype=dtype, requires_grad=True)
    value = contrastive(single, torch.tensor([0]))
    assert value.item() == 0.0
    value.backward()
    assert torch.equal(single.grad, torch.zeros_like(single))


@pytest.mark.parametrize("metric", METRICS)
def test_contrastive_gradients_finite_at_zero_distance(metric):
    features, pids = batch(torch.float32, seed=1)
    features = features.clone()
    features[pids == pids[0]] = features[0].clone()
    other = (pids != pids[0]).nonzero()[0, 0]
    features[other] = features[0].clone()  # a negative pair at distance 0 as well
    features.requires_grad_(True)
    contrastive(features, pids, metric=metric).backward()
    assert torch.isfinite(features.grad).all()


def test_contrastive_rejects_bad_metric():
    features, pids = batch(torch.float32)
    with pytest.raises(ValueError, match="metric: unknown distance 'l1'"):
        contrastive(features, pids, metric="l1")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("margin", [0.5, 3.0])
def test_contrastive_matches_pytorch_metric_learning(dtype, margin):
    """PML's ContrastiveLoss(pos_margin=0, neg_margin=alpha) with raw Euclidean distances gives the per-pair
    hinge terms ``d`` (positive) and ``max(alpha - d, 0)`` (negative) over ordered pairs; PML then averages
    each group over its non-zero terms and adds them. Ours squares each term and averages over all pairs, so we
    take PML's per-pair terms (DoNothingReducer), square them and average: that value must equal ours.
    (Ordered pairs count every unordered pair twice, which leaves the mean unchanged.)"""
    losses = pytest.importorskip("pytorch_metric_learning.losses")
    distances = pytest.importorskip("pytorch_metric_learning.distances")
    reducers = pytest.importorskip("pytorch_metric_learning.reducers")
    features, pids = batch(dtype, ids=4, per_id=4, dim=6, seed=2)
    reference = losses.ContrastiveLoss(
        pos_margin=0.0,
        neg_margin=margin,
        distance=distances.LpDistance(normalize_embeddings=False, p=2, power=1),
        reducer=reducers.DoNothingReducer(),
    )
    terms = reference(features, pids)
    positive, negative = terms["pos_loss"]["losses"], terms["neg_loss"]["losses"]
    assert positive.numel() == 16 * 3 and negative.numel() == 16 * 12
    expected = (positive.pow(2).sum() + negative.pow(2).sum()) / (positive.numel() + negative.numel())
    value = contrastive(features, pids, margin=margin)
    assert value.item() == pytest.approx(expected.item(), **_tolerance(dtype))
