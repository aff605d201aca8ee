from __future__ import annotations

import pytest
import torch

from reidkit.errors import ConfigError
from reidkit.losses.aligned import aligned_triplet, local_distance
from reidkit.models.aligned import AlignedReID
from reidkit.models.backbones import TrunkSpec


def test_outputs_and_local_branch():
    torch.manual_seed(0)
    model = AlignedReID(num_classes=6, trunk=TrunkSpec("resnet18")).eval()
    images = torch.randn(3, 3, 128, 64)
    with torch.no_grad():
        feature_map = model.trunk(images)
        output = model(images)
        local = model.embed_local(images)
        embedding = model.embed(images)
    assert feature_map.shape == (3, 512, 8, 4)
    assert output.local_features.shape == (3, 8, 128) and local.shape == (3, 8, 128)
    rows = feature_map.amax(dim=3, keepdim=True)
    expected = model.local_reduction(rows)[:, :, :, 0].transpose(1, 2)
    torch.testing.assert_close(output.local_features, expected)
    torch.testing.assert_close(local, output.local_features)
    assert output.global_features[0].shape == (3, 512) and output.logits[0].shape == (3, 6)
    torch.testing.assert_close(output.global_features[0], feature_map.mean(dim=(2, 3)))
    assert embedding.shape == (3, model.embedding_dim) and model.embedding_dim == 512
    torch.testing.assert_close(embedding, output.embedding)
    # the combined distance of the README: global + local
    distance = local_distance(local, local)
    assert distance.shape == (3, 3) and torch.isfinite(distance).all()


def test_state_dict_keys_are_the_global_branch_and_local_reduction():
    model = AlignedReID(num_classes=3, trunk=TrunkSpec("resnet18"), local_dim=16, pooling="gem")
    heads = {key for key in model.state_dict() if not key.startswith("trunk.")}
    assert heads == {
        "pool.p",
        "bnneck.weight",
        "bnneck.bias",
        "bnneck.running_mean",
        "bnneck.running_var",
        "bnneck.num_batches_tracked",
        "classifier.weight",
        *(f"local_reduction.0.{name}" for name in ("weight",)),
        *(
            f"local_reduction.1.{name}"
            for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
        ),
    }
    assert model.local_reduction[0].weight.shape == (16, 512, 1, 1) and model.local_dim == 16


def test_paper_sizes_at_256x128():
    model = AlignedReID(num_classes=4, local_dim=128).eval()
    with torch.no_grad():
        output = model(torch.randn(1, 3, 256, 128))
    assert output.local_features.shape == (1, 16, 128) and output.embedding.shape == (1, 2048)


def test_aligned_triplet_trains_local_branch():
    torch.manual_seed(1)
    model = AlignedReID(num_classes=3, trunk=TrunkSpec("resnet18"), local_dim=16)
    output = model(torch.randn(6, 3, 64, 32))
    loss = aligned_triplet(output, torch.tensor([0, 0, 1, 1, 2, 2]), margin=5.0, local_margin=5.0)
    loss.backward()
    assert model.local_reduction[0].weight.grad.abs().sum() > 0
    assert model.trunk.layer4[1].conv2.weight.grad.abs().sum() > 0


def test_bad_options():
    with pytest.raises(ConfigError, match="local_dim"):
        AlignedReID(num_classes=3, trunk=TrunkSpec("resnet18"), local_dim=0)
    with pytest.raises(ConfigError, match="embed_feature"):
        AlignedReID(num_classes=3, trunk=TrunkSpec("resnet18"), embed_feature="local")
