"""Center loss against a naive per-sample loop."""

from __future__ import annotations

import math

import pytest
import torch

from reidkit.losses.center import center_loss, init_centers

DTYPES = [torch.float32, torch.float64]


def naive_center(features, pids, centers, metric):
    losses = []
    for feature, pid in zip(features.double(), pids.tolist(), strict=True):
        center = centers[pid].double()
        squared = float(((feature - center) ** 2).sum())
        if metric == "sqeuclidean":
            losses.append(squared)
        elif metric == "euclidean":
            losses.append(math.sqrt(max(squared, 1e-12)))
        else:
            losses.append(1.0 - float(feature @ center / (feature.norm() * center.norm())))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean", "cosine"])
def test_center_loss_matches_naive(dtype, metric):
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(9, 4, generator=generator, dtype=dtype)
    centers = torch.randn(5, 4, generator=generator, dtype=dtype)
    pids = torch.tensor([0, 0, 1, 4, 4, 4, 2, 3, 1])
    value = center_loss(features, pids, centers, metric=metric)
    tolerance = {"rel": 1e-5} if dtype == torch.float32 else {"rel": 1e-12}
    assert value.item() == pytest.approx(naive_center(features, pids, centers, metric), **tolerance)


def test_center_loss_hand_computed_and_gradients():
    features = torch.tensor([[1.0, 2.0], [0.0, 0.0]], requires_grad=True)
    centers = torch.nn.Parameter(torch.tensor([[1.0, 0.0], [3.0, 4.0]]))
    value = center_loss(features, torch.tensor([0, 1]), centers)
    assert value.item() == pytest.approx((4.0 + 25.0) / 2)
    value.backward()
    # d/df ||f - c||^2 / B = 2 (f - c) / B; centres get the opposite.
    torch.testing.assert_close(features.grad, torch.tensor([[0.0, 2.0], [-3.0, -4.0]]))
    torch.testing.assert_close(centers.grad, torch.tensor([[0.0, -2.0], [3.0, 4.0]]))


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean", "cosine"])
def test_center_loss_gradient_finite_when_a_feature_sits_on_its_centre(metric):
    centers = torch.nn.Parameter(torch.randn(3, 4))
    features = centers.detach()[[0, 1, 1]].clone().requires_grad_(True)
    value = center_loss(features, torch.tensor([0, 1, 1]), centers, metric=metric)
    assert value.item() == pytest.approx(0.0, abs=1e-5)
    value.backward()
    assert torch.isfinite(features.grad).all() and torch.isfinite(centers.grad).all()


def test_center_loss_mixed_dtypes_and_errors():
    centers = init_centers(4, 3)
    assert centers.shape == (4, 3) and centers.requires_grad
    features = torch.randn(2, 3, dtype=torch.float64)
    assert center_loss(features, torch.tensor([0, 3]), centers).dtype == torch.float64
    with pytest.raises(ValueError, match=r"pids: values must be in \[0, 4\), got \[4\]"):
        center_loss(features, torch.tensor([0, 4]), centers)
    with pytest.raises(ValueError, match="centers: expected"):
        center_loss(torch.randn(2, 5), torch.tensor([0, 1]), centers)
    with pytest.raises(ValueError, match="metric: unknown distance"):
        center_loss(features, torch.tensor([0, 1]), centers, metric="l1")
