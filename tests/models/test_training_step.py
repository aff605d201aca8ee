"""Every registered model with its recipe's loss terms: a few optimiser steps on one batch lower the loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reidkit.losses.aligned import aligned_triplet
from reidkit.losses.mutual import metric_mutual, mutual_kl
from reidkit.losses.triplet import trihard
from reidkit.models import MODELS, build_model
from reidkit.models.jlml import group_sparsity


def _loss(name, output, pids):
    loss = torch.stack([F.cross_entropy(logits, pids) for logits in output.logits]).mean()
    if name in ("baseline", "mgn"):
        loss = loss + torch.stack([trihard(f, pids, margin=0.3) for f in output.global_features]).mean()
    if name in ("aligned", "mutual"):
        loss = loss + aligned_triplet(output, pids)
    if name == "mutual":
        loss = loss + mutual_kl(output.extra["mutual.logits"], pids)
        loss = loss + metric_mutual(output.extra["mutual.global"], pids)
    if name == "jlml":
        loss = loss + 1e-4 * (
            group_sparsity(output.global_features[0], pids) + group_sparsity(output.part_features[0], pids)
        )
    return loss


@pytest.mark.parametrize("name", list(MODELS))
def test_loss_falls(name):
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    model = build_model(name, num_classes=4, backbone="resnet18")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = torch.randn(8, 3, 96, 32, generator=generator)
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    losses = []
    for _ in range(5):
        loss = _loss(name, model(images), pids)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert all(torch.isfinite(torch.tensor(losses)))
    # triplet mining makes single steps noisy: the best of the last three must be well below the start
    assert min(losses[-3:]) < 0.8 * losses[0], losses
