from __future__ import annotations

import pytest
import torch

from reidkit.errors import ConfigError
from reidkit.models.backbones import TrunkSpec
from reidkit.models.pcb import PCB, RefinedPartPooling


def test_pcb_shapes_at_384x128():
    torch.manual_seed(0)
    model = PCB(num_classes=11).eval()
    images = torch.randn(2, 3, 384, 128)
    with torch.no_grad():
        assert model.trunk(images).shape == (2, 2048, 24, 8)
        output = model(images)
        embedding = model.embed(images)
    assert len(output.part_features) == 6 and len(output.logits) == 6
    assert all(part.shape == (2, 256) for part in output.part_features)
    assert all(logits.shape == (2, 11) for logits in output.logits)
    assert model.embedding_dim == 1536 and embedding.shape == (2, 1536)
    torch.testing.assert_close(embedding, torch.cat(output.part_features, dim=1))


def test_stripes_are_average_pooled_rows_and_classified_separately():
    torch.manual_seed(1)
    model = PCB(num_classes=5, trunk=TrunkSpec("resnet18"), parts=4).eval()
    images = torch.randn(2, 3, 128, 64)  # 8 x 4 map: 2 rows per stripe
    with torch.no_grad():
        feature_map = model.trunk(images)
        output = model(images)
    assert feature_map.shape[2:] == (8, 4)
    for index in range(4):
        stripe = feature_map[:, :, 2 * index : 2 * index + 2].mean(dim=(2, 3), keepdim=True)
        expected = model.reductions[index](stripe).flatten(1)
        torch.testing.assert_close(output.part_features[index], expected)
        torch.testing.assert_close(
            output.logits[index], output.part_features[index] @ model.classifiers[index].weight.t()
        )
    # every stripe has its own reduction and classifier
    assert len({id(reduction) for reduction in model.reductions}) == 4
    assert output.part_features[0].min() >= 0  # ReLU after the reduction


def test_pooled_embedding_option():
    model = PCB(num_classes=3, trunk=TrunkSpec("resnet18"), embed_feature="pooled").eval()
    images = torch.randn(1, 3, 128, 64)
    with torch.no_grad():
        feature_map = model.trunk(images)
        embedding = model.embed(images)
    assert model.embedding_dim == 6 * 512 and embedding.shape == (1, 3072)
    first_stripe = torch.nn.functional.adaptive_avg_pool2d(feature_map, (6, 1))[:, :, 0, 0]
    torch.testing.assert_close(embedding[:, :512], first_stripe)


def test_refined_part_pooling_matches_weighted_mean_loop():
    torch.manual_seed(2)
    rpp = RefinedPartPooling(channels=5, parts=3)
    torch.nn.init.normal_(rpp.part_classifier.weight, std=1.0)
    feature_map = torch.randn(2, 5, 4, 3, dtype=torch.float32)
    pooled = rpp(feature_map)
    assignment = rpp.assignment(feature_map)
    assert pooled.shape == (2, 5, 3)
    torch.testing.assert_close(assignment.sum(dim=1), torch.ones(2, 4, 3))
    for b in range(2):
        for part in range(3):
            weights = assignment[b, part]
            expected = (feature_map[b] * weights).sum(dim=(1, 2)) / weights.sum()
            torch.testing.assert_close(pooled[b, :, part], expected)


def test_rpp_model_trains_part_classifier():
    model = PCB(num_classes=4, trunk=TrunkSpec("resnet18"), refined_pooling=True)
    output = model(torch.randn(2, 3, 128, 64))
    assert output.extra["pcb.assignment"].shape == (2, 6, 8, 4)
    sum(logits.sum() for logits in output.logits).backward()
    assert model.rpp.part_classifier.weight.grad.abs().sum() > 0


def test_bad_options():
    with pytest.raises(ConfigError, match="parts"):
        PCB(num_classes=3, trunk=TrunkSpec("resnet18"), parts=0)
    with pytest.raises(ConfigError, match="embed_feature"):
        PCB(num_classes=3, trunk=TrunkSpec("resnet18"), embed_feature="global")
    model = PCB(num_classes=3, trunk=TrunkSpec("resnet18", last_stride=2), parts=6)
    with pytest.raises(ValueError, match="fewer than parts"):
        model(torch.randn(2, 3, 64, 32))
