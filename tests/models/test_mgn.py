from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reidkit.data.batch import Batch
from reidkit.errors import ConfigError
from reidkit.losses.criterion import build_criterion
from reidkit.losses.triplet import trihard
from reidkit.models import build_model
from reidkit.models.backbones import TrunkSpec, build_backbone
from reidkit.models.mgn import MGN


@pytest.fixture(scope="module")
def resnet50_mgn():
    torch.manual_seed(0)
    return build_model("mgn", num_classes=7, backbone="resnet50").eval()


def test_branch_maps_and_outputs_at_384x128(resnet50_mgn):
    model = resnet50_mgn
    images = torch.randn(2, 3, 384, 128)
    with torch.no_grad():
        maps = model.branch_maps(images)
        output = model(images)
        embedding = model.embed(images)
    assert [tuple(m.shape) for m in maps] == [(2, 2048, 12, 4), (2, 2048, 24, 8), (2, 2048, 24, 8)]
    assert len(output.logits) == 8 and all(logits.shape == (2, 7) for logits in output.logits)
    assert [tuple(f.shape) for f in output.global_features] == [(2, 2048)] * 3
    assert [tuple(f.shape) for f in output.part_features] == [(2, 256)] * 5
    assert model.embedding_dim == 2048 and embedding.shape == (2, 2048)
    torch.testing.assert_close(embedding, output.embedding)
    # z is the max-pooled branch map; stripes are max-pooled thirds of the part-3 map
    torch.testing.assert_close(output.global_features[0], maps[0].amax(dim=(2, 3)))
    third = maps[2][:, :, 8:16].amax(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(output.part_features[3], model.reductions[6](third).flatten(1))


def test_parameter_sharing_and_strides(resnet50_mgn):
    model = resnet50_mgn
    trunk, _ = build_backbone("resnet50")
    shared_names = {name for name, _ in model.shared.named_parameters()}
    # shared part = stem + layer1 + layer2 + layer3[0], exactly once
    expected_shared = sum(p.numel() for name, p in trunk.named_parameters() if not name.startswith("layer4"))
    expected_shared -= sum(p.numel() for p in trunk.layer3[1:].parameters())
    assert sum(p.numel() for p in model.shared.parameters()) == expected_shared
    assert any(name.startswith("6.") for name in shared_names)  # layer3[0] is the last shared module
    branch_size = sum(p.numel() for p in trunk.layer3[1:].parameters()) + sum(
        p.numel() for p in trunk.layer4.parameters()
    )
    branches = [model.global_branch, *model.part_branches]
    assert [sum(p.numel() for p in branch.parameters()) for branch in branches] == [branch_size] * 3
    pointers = [{p.data_ptr() for p in branch.parameters()} for branch in branches]
    assert (
        not (pointers[0] & pointers[1])
        and not (pointers[0] & pointers[2])
        and not (pointers[1] & pointers[2])
    )
    assert not ({p.data_ptr() for p in model.shared.parameters()} & pointers[0])
    # strides: global keeps the down-sampling, part branches use stride 1 in layer4 (conv and shortcut)
    assert model.global_branch[1][0].conv2.stride == (2, 2)
    assert model.global_branch[1][0].downsample[0].stride == (2, 2)
    for branch in model.part_branches:
        assert branch[1][0].conv2.stride == (1, 1)
        assert branch[1][0].downsample[0].stride == (1, 1)
    # every branch starts from the same weights (copies of one pretrained trunk)
    torch.testing.assert_close(
        model.global_branch[1][2].conv3.weight, model.part_branches[1][1][2].conv3.weight
    )


def test_gradients_reach_shared_trunk_from_every_branch():
    torch.manual_seed(1)
    model = MGN(num_classes=3, trunk=TrunkSpec("resnet18"))
    images = torch.randn(2, 3, 96, 32)
    for index in range(3):
        model.zero_grad()
        model.branch_maps(images)[index].mean().backward()
        assert model.shared[6].conv1.weight.grad.abs().sum() > 0


def test_default_losses_put_triplet_on_global_features_only():
    torch.manual_seed(2)
    model = MGN(num_classes=4, trunk=TrunkSpec("resnet18"))
    images = torch.randn(8, 3, 96, 32)
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    output = model(images)
    criterion = build_criterion(
        [
            {"name": "cross_entropy", "on": "logits"},
            {"name": "trihard", "on": "global", "params": {"margin": 0.3}},
        ],
        num_classes=4,
        feat_dim=model.embedding_dim,
    )
    total, logs = criterion(output, Batch(images, pids, torch.zeros_like(pids)))
    expected_ce = torch.stack([F.cross_entropy(logits, pids) for logits in output.logits]).mean()
    expected_triplet = torch.stack([trihard(f, pids, margin=0.3) for f in output.global_features]).mean()
    torch.testing.assert_close(total, expected_ce + expected_triplet)
    assert len(output.global_features) == 3 and all(f.shape[1] == 512 for f in output.global_features)
    assert all(f.shape[1] == 256 for f in output.part_features)


def test_options():
    model = MGN(num_classes=3, trunk=TrunkSpec("resnet18"), classified="global", triplet_features="reduced")
    output = model(torch.randn(2, 3, 96, 32))
    assert len(output.logits) == 3
    assert [f.shape[1] for f in output.global_features] == [256] * 3
    torch.testing.assert_close(output.embedding[:, :256], output.global_features[0])
    model = MGN(num_classes=3, trunk=TrunkSpec("resnet18"), classified="parts", part_counts=[2, 3, 4])
    output = model(torch.randn(2, 3, 128, 32))
    assert len(output.logits) == 9 and model.embedding_dim == 13 * 256
    with pytest.raises(ConfigError, match="unknown backbone"):
        MGN(num_classes=3, trunk=TrunkSpec("vgg16"))
    with pytest.raises(ConfigError, match="classified"):
        MGN(num_classes=3, trunk=TrunkSpec("resnet18"), classified="both")
    with pytest.raises(ConfigError, match="triplet_features"):
        MGN(num_classes=3, trunk=TrunkSpec("resnet18"), triplet_features="parts")


def test_mobilenet_v2_trunk_split_strides_and_shared_weights(tmp_path):
    """MobileNetV2: shared through features[7] (layer3[0]); branches copy features[8:19] from the same weights."""
    torch.manual_seed(3)
    trunk, _ = build_backbone("mobilenet_v2")
    for parameter in trunk.parameters():  # distinctive weights, loaded from a local file like ImageNet ones
        parameter.data.normal_()
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(trunk.state_dict(), path)
    model = MGN(num_classes=5, trunk=TrunkSpec("mobilenet_v2", pretrained=str(path))).eval()
    images = torch.randn(2, 3, 384, 128)
    with torch.no_grad():
        maps = model.branch_maps(images)
        output = model(images)
    assert [tuple(m.shape) for m in maps] == [(2, 1280, 12, 4), (2, 1280, 24, 8), (2, 1280, 24, 8)]
    assert [tuple(f.shape) for f in output.global_features] == [(2, 1280)] * 3
    assert output.embedding.shape == (2, 2048) and len(output.logits) == 8
    assert torch.isfinite(output.embedding).all()
    shared = {name: p for name, p in model.shared.named_parameters()}
    expected_shared = sum(p.numel() for p in trunk.features[:8].parameters())
    assert sum(p.numel() for p in shared.values()) == expected_shared
    rest = sum(p.numel() for p in trunk.features[8:].parameters())
    branches = [model.global_branch, *model.part_branches]
    assert [sum(p.numel() for p in branch.parameters()) for branch in branches] == [rest] * 3
    # layer4[0] = features[14]: the global branch keeps its stride 2, the part branches use stride 1
    assert model.global_branch[1][0].conv[1][0].stride == (2, 2)
    assert all(branch[1][0].conv[1][0].stride == (1, 1) for branch in model.part_branches)
    # the file's weights reach the shared part and every branch copy
    torch.testing.assert_close(model.shared[3][0].conv[0][0].weight, trunk.features[4].conv[0][0].weight)
    for branch in branches:
        torch.testing.assert_close(branch[1][-1][0].weight, trunk.features[18][0].weight)
        assert branch[1][-1][0].weight.data_ptr() != trunk.features[18][0].weight.data_ptr()
