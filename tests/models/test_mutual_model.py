from __future__ import annotations

import pytest
import torch

from reidkit.errors import ConfigError
from reidkit.losses.aligned import aligned_triplet
from reidkit.losses.mutual import metric_mutual, mutual_kl
from reidkit.models import build_model


def test_mutual_aligned_outputs_and_losses():
    torch.manual_seed(0)
    model = build_model("mutual", num_classes=3, backbone="resnet18", member_params={"local_dim": 16})
    assert len(model.members) == 2 and model.embedding_dim == 512
    images = torch.randn(4, 3, 64, 32)
    pids = torch.tensor([0, 0, 1, 1])
    output = model(images)
    assert len(output.logits) == 2 and len(output.global_features) == 2
    assert output.extra["mutual.logits"].shape == (2, 4, 3)
    assert output.extra["mutual.global"].shape == (2, 4, 512)
    assert output.extra["mutual.local"].shape == (2, 4, 4, 16)
    torch.testing.assert_close(output.extra["mutual.logits"][1], output.logits[1])
    loss = (
        aligned_triplet(output, pids)
        + mutual_kl(output.extra["mutual.logits"], pids)
        + metric_mutual(output.extra["mutual.global"], pids)
    )
    loss.backward()
    for member in model.members:
        assert member.local_reduction[0].weight.grad.abs().sum() > 0
        assert member.classifier.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.embed(images), model.members[0].embed(images))


def test_mean_embedding_and_other_members():
    torch.manual_seed(1)
    model = build_model(
        "mutual", num_classes=3, backbone="resnet18", member="baseline", members=3, embed_member=-1
    )
    model.eval()
    images = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        expected = sum(member.embed(images) for member in model.members) / 3
        torch.testing.assert_close(model.embed(images), expected)
        output = model(images)
    assert "mutual.local" not in output.extra and output.extra["mutual.logits"].shape == (3, 2, 3)


def test_bad_options():
    with pytest.raises(ConfigError, match="members"):
        build_model("mutual", num_classes=3, backbone="resnet18", members=1)
    with pytest.raises(ConfigError, match="member"):
        build_model("mutual", num_classes=3, backbone="resnet18", member="mutual")
    with pytest.raises(ConfigError, match="embed_member"):
        build_model("mutual", num_classes=3, backbone="resnet18", embed_member=2)
