from __future__ import annotations

import pytest
import torch

from reidkit.errors import ConfigError
from reidkit.models.backbones import TrunkSpec
from reidkit.models.jlml import JLML, group_sparsity


def test_shapes_and_branch_losses():
    torch.manual_seed(0)
    model = JLML(num_classes=5, trunk=TrunkSpec("resnet18"))
    output = model(torch.randn(4, 3, 128, 64))
    assert model.embedding_dim == 1024 and output.embedding.shape == (4, 1024)
    assert output.global_features[0].shape == (4, 512) and output.part_features[0].shape == (4, 512)
    assert len(output.logits) == 2 and all(logits.shape == (4, 5) for logits in output.logits)
    torch.testing.assert_close(
        output.embedding, torch.cat([output.global_features[0], output.part_features[0]], 1)
    )
    # each branch's classifier sees only its own branch: the local loss leaves the global branch untouched
    output.logits[1].sum().backward()
    assert model.global_branch[1][0].conv1.weight.grad is None
    assert model.local_branch[1][0].conv1.weight.grad.abs().sum() > 0
    assert model.shared[5][0].conv1.weight.grad.abs().sum() > 0


def test_local_branch_processes_each_stripe_on_its_own():
    torch.manual_seed(1)
    model = JLML(num_classes=3, trunk=TrunkSpec("resnet18"), stripes=2).eval()
    images = torch.randn(2, 3, 128, 64)
    with torch.no_grad():
        shared = model.shared(images)  # [2, 128, 16, 8]
        stripe_features = [
            model.local_branch(shared[:, :, 8 * s : 8 * s + 8]).mean(dim=(2, 3)) for s in range(2)
        ]
        expected = model.local_embedding(torch.cat(stripe_features, dim=1))
        output = model(images)
        embedding = model.embed(images)
    torch.testing.assert_close(output.part_features[0], expected)
    torch.testing.assert_close(embedding, output.embedding)


def test_bad_height_and_options():
    model = JLML(num_classes=3, trunk=TrunkSpec("resnet18"), stripes=3)
    with pytest.raises(ValueError, match="multiple of 24"):
        model(torch.randn(2, 3, 64, 32))
    with pytest.raises(ConfigError, match="unknown backbone"):
        JLML(num_classes=3, trunk=TrunkSpec("vgg16"))


def test_mobilenet_v2_trunk():
    """MobileNetV2 split like ResNet: shared stem + features[2:7] (1/8 resolution), branches features[7:19]."""
    torch.manual_seed(2)
    model = JLML(num_classes=4, trunk=TrunkSpec("mobilenet_v2"), stripes=4).eval()
    images = torch.randn(2, 3, 128, 64)
    with torch.no_grad():
        shared = model.shared(images)
        output = model(images)
        stripe_features = [
            model.local_branch(shared[:, :, 4 * s : 4 * s + 4]).mean(dim=(2, 3)) for s in range(4)
        ]
        expected = model.local_embedding(torch.cat(stripe_features, dim=1))
    assert shared.shape == (2, 32, 16, 8)
    assert output.embedding.shape == (2, 1024) and all(logits.shape == (2, 4) for logits in output.logits)
    torch.testing.assert_close(output.part_features[0], expected)
    # last stride 1 in both branches: features[14]'s depthwise conv
    assert model.global_branch[1][0].conv[1][0].stride == (1, 1)
    assert model.local_branch[1][0].conv[1][0].stride == (1, 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_group_sparsity_matches_loop(dtype):
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(5, 12, generator=generator, dtype=dtype)
    pids = torch.zeros(5, dtype=torch.long)
    for groups, size in ((0, 1), (4, 3), (1, 12)):
        expected = (
            sum(
                float(torch.sqrt((features[:, g * size : (g + 1) * size] ** 2).sum()))
                for g in range(12 // size)
            )
            / 5
        )
        assert float(group_sparsity(features, pids, groups=groups)) == pytest.approx(expected, rel=1e-6)
    # hand case: one non-zero group
    one_group = torch.zeros(2, 4, dtype=dtype)
    one_group[:, :2] = torch.tensor([[3.0, 0.0], [0.0, 4.0]], dtype=dtype)
    assert float(group_sparsity(one_group, pids[:2], groups=2)) == pytest.approx(2.5)
    with pytest.raises(ValueError, match="groups"):
        group_sparsity(features, pids, groups=5)
