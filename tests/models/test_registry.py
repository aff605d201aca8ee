"""Every registered model: forward -> ReidOutput with consistent shapes, embed, no NaNs, backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reidkit.errors import ConfigError
from reidkit.models import MODELS, ReidOutput, TrunkSpec, build_model, build_model_on

NUM_CLASSES = 5


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_forward_embed_backward(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=NUM_CLASSES, backbone="resnet18")
    assert isinstance(model.embedding_dim, int) and model.embedding_dim > 0
    images = torch.randn(4, 3, 128, 64)
    pids = torch.tensor([0, 0, 3, 3])
    output = model(images)
    assert isinstance(output, ReidOutput)
    assert output.embedding.shape == (4, model.embedding_dim)
    assert output.logits, "every model has at least one ID classifier"
    for logits in output.logits:
        assert logits.shape == (4, NUM_CLASSES)
    assert all(feature.shape[1] == model.feature_dim for feature in output.global_features)
    for feature in output.global_features + output.part_features:
        assert feature.dim() == 2 and feature.shape[0] == 4
    if output.local_features is not None:
        assert output.local_features.dim() == 3 and output.local_features.shape[0] == 4
    tensors = [output.embedding, *output.logits, *output.global_features, *output.part_features]
    assert all(torch.isfinite(t).all() for t in tensors)

    loss = sum(F.cross_entropy(logits, pids) for logits in output.logits)
    loss = loss + sum(feature.pow(2).mean() for feature in output.global_features + output.part_features)
    if output.local_features is not None:
        loss = loss + output.local_features.pow(2).mean()
    loss = loss + sum(value.pow(2).mean() for value in output.extra.values())
    loss.backward()
    trunk_grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in trunk_grads)

    model.eval()
    with torch.no_grad():
        embedding = model.embed(images[:2])
        eval_output = model(images[:2])
    assert embedding.shape == (2, model.embedding_dim)
    torch.testing.assert_close(embedding, eval_output.embedding)


def test_unknown_model_and_params():
    with pytest.raises(ConfigError, match="baseline"):
        build_model("basline", num_classes=3)
    with pytest.raises(ConfigError, match="pooling_type"):
        build_model("baseline", num_classes=3, backbone="resnet18", pooling_type="avg")
    with pytest.raises(ConfigError, match="backbone"):
        build_model("baseline", num_classes=3, backbone="vgg16")
    with pytest.raises(ConfigError, match="'trunk'"):
        build_model("baseline", num_classes=3, backbone="resnet18", trunk=TrunkSpec("resnet18"))
    with pytest.raises(ConfigError, match="choose from"):
        build_model_on("basline", num_classes=3, trunk=TrunkSpec("resnet18"))
    with pytest.raises(ConfigError, match="pooling_type"):
        build_model_on("baseline", num_classes=3, trunk=TrunkSpec("resnet18"), pooling_type="avg")


@pytest.mark.parametrize("name", list(MODELS))
def test_build_model_passes_the_trunk_arguments(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=3, backbone="resnet18", last_stride=2)
    torch.manual_seed(0)
    same = build_model_on(name, num_classes=3, trunk=TrunkSpec("resnet18", None, 2))
    assert model.state_dict().keys() == same.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(value, same.state_dict()[key]), key
    model.eval()
    same.eval()
    images = torch.randn(2, 3, 192, 64)  # 6 rows at stride 32, enough for PCB's 6 stripes
    with torch.no_grad():
        torch.testing.assert_close(model.embed(images), same.embed(images))
    # last_stride reaches the trunk (MGN: its part branches): stride 1 has fewer down-sampling convs
    stride1 = build_model(name, num_classes=3, backbone="resnet18", last_stride=1)
    assert _strided_convs(stride1) < _strided_convs(model)


def _strided_convs(model: nn.Module) -> int:
    return sum(1 for module in model.modules() if isinstance(module, nn.Conv2d) and module.stride == (2, 2))
