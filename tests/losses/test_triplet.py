"""Triplet-family losses against naive per-anchor Python loops, edge cases and pytorch-metric-learning."""

from __future__ import annotations

import math

import pytest
import torch

from reidkit.losses.triplet import (
    adaptive_triplet,
    identity_masks,
    improved_triplet,
    msml,
    trihard,
    triplet,
)

DTYPES = [torch.float32, torch.float64]
METRICS = ["euclidean", "sqeuclidean", "cosine"]


def _tolerance(dtype: torch.dtype) -> dict[str, float]:
    return {"rel": 1e-4, "abs": 1e-4} if dtype == torch.float32 else {"rel": 1e-9, "abs": 1e-9}


def naive_distance(x: torch.Tensor, y: torch.Tensor, metric: str) -> float:
    """Distance between two feature vectors, computed from their difference."""
    x, y = x.double(), y.double()
    if metric == "sqeuclidean":
        return float(((x - y) ** 2).sum())
    if metric == "euclidean":
        return math.sqrt(max(float(((x - y) ** 2).sum()), 1e-12))
    return 1.0 - float((x @ y) / (x.norm() * y.norm()))


def distance_table(features: torch.Tensor, metric: str) -> list[list[float]]:
    size = features.shape[0]
    return [[naive_distance(features[i], features[j], metric) for j in range(size)] for i in range(size)]


def batch(dtype: torch.dtype, ids: int = 4, per_id: int = 3, dim: int = 6, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(ids * per_id, dim, generator=generator, dtype=dtype)
    pids = torch.arange(ids).repeat_interleave(per_id)
    order = torch.randperm(ids * per_id, generator=generator)
    return features[order], pids[order]


def hinge(value: float) -> float:
    return max(value, 0.0)


def softplus(value: float) -> float:
    return math.log1p(math.exp(value))


def naive_triplet_all(features, pids, margin, metric, improved=False, positive_margin=0.0, weight=1.0):
    dist = distance_table(features, metric)
    labels = pids.tolist()
    losses = []
    for a in range(len(labels)):
        for p in range(len(labels)):
            if p == a or labels[p] != labels[a]:
                continue
            for n in range(len(labels)):
                if labels[n] == labels[a]:
                    continue
                value = hinge(dist[a][p] - dist[a][n] + margin)
                if improved:
                    value += weight * hinge(dist[a][p] - positive_margin)
                losses.append(value)
    return sum(losses) / len(losses) if losses else 0.0


def naive_trihard(features, pids, margin, metric, soft=False):
    dist = distance_table(features, metric)
    labels = pids.tolist()
    losses = []
    for a in range(len(labels)):
        positives = [dist[a][p] for p in range(len(labels)) if p != a and labels[p] == labels[a]]
        negatives = [dist[a][n] for n in range(len(labels)) if labels[n] != labels[a]]
        if not positives or not negatives:
            continue
        gap = max(positives) - min(negatives)
        losses.append(softplus(gap) if soft else hinge(gap + margin))
    return sum(losses) / len(losses) if losses else 0.0


def naive_adaptive(features, pids, margin, metric, soft=False):
    dist = distance_table(features, metric)
    labels = pids.tolist()
    losses = []
    for a in range(len(labels)):
        positives = [dist[a][p] for p in range(len(labels)) if p != a and labels[p] == labels[a]]
        negatives = [dist[a][n] for n in range(len(labels)) if labels[n] != labels[a]]
        if not positives or not negatives:
            continue
        positive_norm = sum(math.exp(d) for d in positives)
        negative_norm = sum(math.exp(-d) for d in negatives)
        d_ap = sum(math.exp(d) / positive_norm * d for d in positives)
        d_an = sum(math.exp(-d) / negative_norm * d for d in negatives)
        losses.append(softplus(d_ap - d_an) if soft else hinge(d_ap - d_an + margin))
    return sum(losses) / len(losses) if losses else 0.0


def naive_msml(features, pids, margin, metric):
    dist = distance_table(features, metric)
    labels = pids.tolist()
    positives, negatives = [], []
    for i in range(len(labels)):
        for j in range(len(labels)):
            if i != j and labels[i] == labels[j]:
                positives.append(dist[i][j])
            elif labels[i] != labels[j]:
                negatives.append(dist[i][j])
    if not positives or not negatives:
        return 0.0
    return hinge(max(positives) - min(negatives) + margin)


def test_identity_masks():
    positive, negative = identity_masks(torch.tensor([3, 1, 3]))
    assert positive.tolist() == [[False, False, True], [False, False, False], [True, False, False]]
    assert negative.tolist() == [[False, True, False], [True, False, True], [False, True, False]]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("margin", [0.0, 0.3, 2.0])
def test_triplet_all_matches_naive(dtype, metric, margin):
    features, pids = batch(dtype)
    value = triplet(features, pids, margin=margin, metric=metric, mode="all")
    assert value.dtype == dtype
    assert value.item() == pytest.approx(
        naive_triplet_all(features, pids, margin, metric), **_tolerance(dtype)
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", METRICS)
def test_improved_triplet_matches_naive(dtype, metric):
    features, pids = batch(dtype, seed=1)
    value = improved_triplet(features, pids, margin=0.5, metric=metric)
    expected = naive_triplet_all(features, pids, 0.5, metric, improved=True)
    assert value.item() == pytest.approx(expected, **_tolerance(dtype))
    value = improved_triplet(
        features, pids, margin=0.5, positive_margin=0.7, positive_weight=0.25, metric=metric
    )
    expected = naive_triplet_all(features, pids, 0.5, metric, improved=True, positive_margin=0.7, weight=0.25)
    assert value.item() == pytest.approx(expected, **_tolerance(dtype))


def test_improved_triplet_adds_the_positive_distance_to_the_triplet_hinge():
    features, pids = batch(torch.float64, seed=2)
    plain = triplet(features, pids, margin=0.3)
    improved = improved_triplet(features, pids, margin=0.3)
    dist = distance_table(features, "euclidean")
    labels = pids.tolist()
    # every anchor has the same number of triplets here, so the mean of d_ap over triplets is the mean over
    # positive pairs.
    positives = [
        dist[a][p]
        for a in range(len(labels))
        for p in range(len(labels))
        if a != p and labels[a] == labels[p]
    ]
    assert improved.item() == pytest.approx(plain.item() + sum(positives) / len(positives), rel=1e-10)


def test_triplet_random_is_reproducible_and_unbiased():
    features, pids = batch(torch.float64, ids=3, per_id=3, seed=3)
    first = triplet(features, pids, mode="random", generator=torch.Generator().manual_seed(5))
    second = triplet(features, pids, mode="random", generator=torch.Generator().manual_seed(5))
    assert first.item() == second.item()
    generator = torch.Generator().manual_seed(0)
    draws = [
        triplet(features, pids, margin=1.0, mode="random", generator=generator).item() for _ in range(3000)
    ]
    assert len(set(draws)) > 10
    # every anchor has the same number of (positive, negative) choices, so the expectation of one uniform
    # triplet per anchor is the mean over all triplets.
    expected = naive_triplet_all(features, pids, 1.0, "euclidean")
    spread = torch.tensor(draws).std().item() / math.sqrt(len(draws))
    assert abs(sum(draws) / len(draws) - expected) < 5 * spread


@pytest.mark.parametrize("dtype", DTYPES)
def test_triplet_random_with_a_single_choice_per_anchor_matches_naive(dtype):
    # anchors 0 and 1 have one positive (each other) and one negative (2); anchor 2 has no positive.
    features = torch.tensor([[0.0, 1.0], [1.0, 1.0], [0.5, 0.0]], dtype=dtype)
    pids = torch.tensor([7, 7, 4])
    value = triplet(features, pids, margin=0.2, mode="random", generator=torch.Generator().manual_seed(0))
    d01, d02, d12 = 1.0, math.sqrt(1.25), math.sqrt(1.25)
    expected = (hinge(d01 - d02 + 0.2) + hinge(d01 - d12 + 0.2)) / 2
    assert value.item() == pytest.approx(expected, **_tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("margin", [0.0, 0.3])
@pytest.mark.parametrize("soft", [False, True])
def test_trihard_matches_naive(dtype, metric, margin, soft):
    features, pids = batch(dtype, seed=4)
    value = trihard(features, pids, margin=margin, metric=metric, soft=soft)
    expected = naive_trihard(features, pids, margin, metric, soft=soft)
    assert value.item() == pytest.approx(expected, **_tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_trihard_uneven_batch_excludes_anchors_without_positive(dtype):
    features, _ = batch(dtype, ids=3, per_id=3, seed=5)
    pids = torch.tensor([0, 0, 0, 1, 1, 2, 3, 4, 5])  # ids 2..5 have a single image
    value = trihard(features, pids, margin=0.3)
    assert value.item() == pytest.approx(naive_trihard(features, pids, 0.3, "euclidean"), **_tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("soft", [False, True])
def test_adaptive_triplet_matches_naive(dtype, metric, soft):
    features, pids = batch(dtype, seed=6)
    value = adaptive_triplet(features, pids, margin=0.3, metric=metric, soft=soft)
    expected = naive_adaptive(features, pids, 0.3, metric, soft=soft)
    assert value.item() == pytest.approx(expected, **_tolerance(dtype))


def test_adaptive_triplet_lies_between_mean_and_hardest():
    features, pids = batch(torch.float64, seed=7)
    # with margin large enough that no hinge clips, the loss is the mean of D_p - D_n + margin; softmax
    # weighting puts D_p between the mean and the max positive distance.
    adaptive = adaptive_triplet(features, pids, margin=50.0).item()
    hard = trihard(features, pids, margin=50.0).item()
    assert adaptive < hard


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("margin", [0.0, 0.3, 5.0])
def test_msml_matches_naive(dtype, metric, margin):
    features, pids = batch(dtype, seed=8)
    value = msml(features, pids, margin=margin, metric=metric)
    assert value.item() == pytest.approx(naive_msml(features, pids, margin, metric), **_tolerance(dtype))


LOSSES = {
    "triplet": lambda f, p, m, d="euclidean": triplet(f, p, margin=m, metric=d),
    "triplet_random": lambda f, p, m, d="euclidean": triplet(
        f, p, margin=m, metric=d, mode="random", generator=torch.Generator()
    ),
    "improved_triplet": lambda f, p, m, d="euclidean": improved_triplet(f, p, margin=m, metric=d),
    "trihard": lambda f, p, m, d="euclidean": trihard(f, p, margin=m, metric=d),
    "trihard_soft": lambda f, p, m, d="euclidean": trihard(f, p, soft=True, metric=d),
    "adaptive_triplet": lambda f, p, m, d="euclidean": adaptive_triplet(f, p, margin=m, metric=d),
    "adaptive_triplet_soft": lambda f, p, m, d="euclidean": adaptive_triplet(f, p, soft=True, metric=d),
    "msml": lambda f, p, m, d="euclidean": msml(f, p, margin=m, metric=d),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("dtype", DTYPES)
def test_one_image_per_identity_gives_connected_zero(name, dtype):
    features = torch.randn(5, 4, dtype=dtype, requires_grad=True)
    pids = torch.arange(5)
    value = LOSSES[name](features, pids, 0.3)
    assert value.item() == 0.0
    value.backward()
    assert torch.equal(features.grad, torch.zeros_like(features))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_single_identity_gives_connected_zero(name):
    features = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    value = LOSSES[name](features, torch.zeros(4, dtype=torch.long), 0.3)
    assert value.item() == 0.0
    value.backward()
    assert torch.isfinite(features.grad).all()


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("dtype", DTYPES)
def test_all_equal_features_give_the_margin(name, dtype):
    # exactly representable values: every distance is exactly 0 (up to the sqrt floor), so the hinge is the
    # margin, the soft variants log 2 and the improved triplet adds ~0.
    features = torch.full((6, 4), 0.5, dtype=dtype, requires_grad=True)
    pids = torch.tensor([0, 0, 1, 1, 2, 2])
    value = LOSSES[name](features, pids, 0.3)
    expected = math.log(2.0) if name.endswith("soft") else 0.3
    assert value.item() == pytest.approx(expected, abs=1e-5)
    value.backward()
    assert torch.isfinite(features.grad).all()


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("metric", METRICS)
def test_gradients_finite_at_zero_distance(name, metric):
    features, pids = batch(torch.float32, seed=9)
    features = features.clone()
    features[1] = features[0].clone()  # two identical features (same or different identity)
    features[pids == pids[0]] = features[0].clone()  # a whole identity collapsed to one point
    features.requires_grad_(True)
    value = LOSSES[name](features, pids, 0.3, metric)
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(features.grad).all()


def test_bad_inputs_raise_clear_errors():
    features, pids = batch(torch.float32)
    with pytest.raises(ValueError, match="features: expected"):
        trihard(features[0], pids)
    with pytest.raises(ValueError, match="pids: expected"):
        trihard(features, pids[:-1])
    with pytest.raises(ValueError, match="metric: unknown distance 'manhattan'"):
        triplet(features, pids, metric="manhattan")
    with pytest.raises(ValueError, match="mode: unknown triplet mode 'some'"):
        triplet(features, pids, mode="some")


def _pml():
    losses = pytest.importorskip("pytorch_metric_learning.losses")
    miners = pytest.importorskip("pytorch_metric_learning.miners")
    distances = pytest.importorskip("pytorch_metric_learning.distances")
    reducers = pytest.importorskip("pytorch_metric_learning.reducers")
    return losses, miners, distances, reducers


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("margin", [0.0, 0.3])
def test_trihard_matches_pytorch_metric_learning_batch_hard(dtype, margin):
    """TriHard = PML's TripletMarginLoss on BatchHardMiner triplets, with raw (unnormalised) Euclidean
    distances and a plain mean over the mined anchors (PML's default reducer averages non-zero terms only).
    Soft margin = PML's ``smooth_loss=True`` with margin 0."""
    losses, miners, distances, reducers = _pml()
    features, pids = batch(dtype, ids=5, per_id=4, dim=8, seed=10)
    pids[-3:] = torch.tensor([9, 10, 11])  # some anchors without a positive
    distance = distances.LpDistance(normalize_embeddings=False, p=2, power=1)
    miner = miners.BatchHardMiner(distance=distance)
    reference = losses.TripletMarginLoss(margin=margin, distance=distance, reducer=reducers.MeanReducer())
    expected = reference(features, pids, miner(features, pids))
    assert trihard(features, pids, margin=margin).item() == pytest.approx(
        expected.item(), **_tolerance(dtype)
    )
    smooth = losses.TripletMarginLoss(
        margin=0.0, smooth_loss=True, distance=distance, reducer=reducers.MeanReducer()
    )
    expected = smooth(features, pids, miner(features, pids))
    assert trihard(features, pids, soft=True).item() == pytest.approx(expected.item(), **_tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_triplet_all_matches_pytorch_metric_learning(dtype):
    """``triplet(mode="all")`` = PML's TripletMarginLoss over all triplets with a plain mean."""
    losses, _, distances, reducers = _pml()
    features, pids = batch(dtype, ids=4, per_id=3, dim=8, seed=11)
    distance = distances.LpDistance(normalize_embeddings=False, p=2, power=1)
    reference = losses.TripletMarginLoss(margin=0.4, distance=distance, reducer=reducers.MeanReducer())
    expected = reference(features, pids)
    assert triplet(features, pids, margin=0.4).item() == pytest.approx(expected.item(), **_tolerance(dtype))


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_precision_features_are_computed_in_float32(name, half):
    features, pids = batch(torch.float32, seed=12)
    leaf = features.to(half).requires_grad_(True)
    value = LOSSES[name](leaf, pids, 0.3)
    assert value.dtype == torch.float32
    if name != "triplet_random":
        expected = LOSSES[name](leaf.detach().float(), pids, 0.3)
        assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    value.backward()
    assert leaf.grad.dtype == half and torch.isfinite(leaf.grad.float()).all()
