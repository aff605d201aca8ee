from __future__ import annotations

import pytest
import torch

from reidkit.errors import ConfigError
from reidkit.models.backbones import TrunkSpec
from reidkit.models.baseline import BaselineModel, GeneralizedMeanPooling


def _model(**kwargs):
    torch.manual_seed(0)
    return BaselineModel(num_classes=7, trunk=TrunkSpec("resnet18"), **kwargs)


def test_shapes_and_bnneck_structure():
    model = _model()
    images = torch.randn(3, 3, 128, 64)
    output = model(images)
    assert model.embedding_dim == 512
    assert output.global_features[0].shape == (3, 512)
    assert output.logits[0].shape == (3, 7)
    # last stride 1 by default: 128x64 -> 8x4 map
    assert model.trunk(images).shape == (3, 512, 8, 4)
    assert model.classifier.bias is None
    assert not model.bnneck.bias.requires_grad and torch.all(model.bnneck.bias == 0)
    # the embedding is the BN'd pooled feature; in training mode that is batch normalisation
    feature = output.global_features[0]
    expected = (feature - feature.mean(0)) / torch.sqrt(feature.var(0, unbiased=False) + model.bnneck.eps)
    torch.testing.assert_close(output.embedding, expected * model.bnneck.weight, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(output.logits[0], output.embedding @ model.classifier.weight.t())


def test_pooled_feature_is_average_of_map():
    model = _model().eval()
    images = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        expected = model.trunk(images).mean(dim=(2, 3))
        output = model(images)
    torch.testing.assert_close(output.global_features[0], expected)


@pytest.mark.parametrize("pooling", ["max", "gem"])
def test_other_poolings(pooling):
    model = _model(pooling=pooling).eval()
    images = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        feature_map = model.trunk(images)
        pooled = model(images).global_features[0]
    if pooling == "max":
        expected = feature_map.amax(dim=(2, 3))
    else:
        expected = feature_map.clamp_min(1e-6).pow(3).mean(dim=(2, 3)).pow(1 / 3)
    torch.testing.assert_close(pooled, expected, rtol=1e-4, atol=1e-5)


def test_gem_limits():
    x = torch.rand(2, 4, 3, 5) + 0.1
    torch.testing.assert_close(GeneralizedMeanPooling(p=1.0)(x).flatten(1), x.mean(dim=(2, 3)))
    assert torch.allclose(GeneralizedMeanPooling(p=60.0)(x).flatten(1), x.amax(dim=(2, 3)), rtol=0.05)
    assert GeneralizedMeanPooling().p.requires_grad


def test_embed_before_bn_and_plain_ide():
    images = torch.randn(2, 3, 64, 32)
    model = _model(embed_feature="before_bn").eval()
    with torch.no_grad():
        output = model(images)
    torch.testing.assert_close(model.embed(images), output.global_features[0])
    ide = _model(bnneck=False)
    output = ide(images)
    torch.testing.assert_close(output.embedding, output.global_features[0])


def test_attribute_heads():
    model = _model(attributes={"gender": 2, "top_colour": 9})
    output = model(torch.randn(2, 3, 64, 32))
    assert output.extra["attributes.gender"].shape == (2, 2)
    assert output.extra["attributes.top_colour"].shape == (2, 9)
    assert model.embed(torch.randn(2, 3, 64, 32)).shape == (2, 512)
    with pytest.raises(ConfigError, match="attributes.hat"):
        _model(attributes={"hat": 1})


def test_bad_options():
    with pytest.raises(ConfigError, match="pooling"):
        _model(pooling="median")
    with pytest.raises(ConfigError, match="embed_feature"):
        _model(embed_feature="logits")
    with pytest.raises(ConfigError, match="num_classes"):
        BaselineModel(num_classes=0, trunk=TrunkSpec("resnet18"))
