"""Config -> objects: the TrainingRun record, model.init from a checkpoint, errors that name the config key."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from reidkit import checkpoint
from reidkit.checkpoint import Checkpoint, DataRef, ModelSpec, Preprocess
from reidkit.config import load_config, to_dict
from reidkit.errors import CheckpointError, ConfigError
from reidkit.recipe import TrainingRun, build_training, fit_options

TINY = [
    "model.backbone=resnet18",
    "model.last_stride=2",
    "data.height=64",
    "data.width=32",
    "data.p=4",
    "data.k=4",
    "data.workers=0",
    "train.device=cpu",
    "train.epochs=3",
]


def _config(root, *extra):
    return load_config(None, [f"data.root={root}", *TINY, *extra])


def test_training_run_is_a_record_with_named_fields_only(synthetic_root):
    config = _config(synthetic_root)
    run = build_training(config)
    assert isinstance(run, TrainingRun)
    assert [field.name for field in dataclasses.fields(run)] == [
        "split",
        "dataset",
        "sampler",
        "model",
        "criterion",
        "optimizer",
        "lr_at",
        "device",
        "spec",
        "preprocess",
        "data",
        "loss_terms",
        "seed",
        "config",
    ]
    with pytest.raises(TypeError):
        iter(run)  # no unpacking into a tuple
    with pytest.raises(TypeError):
        run[0]  # noqa: B018 - no positional access
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.model = None  # type: ignore[misc]
    assert run.spec == ModelSpec(name="baseline", num_classes=12, backbone="resnet18", last_stride=2)
    assert run.preprocess == Preprocess(64, 32)
    assert run.data == DataRef(name="synthetic", root=str(synthetic_root))
    assert run.loss_terms == tuple(config.loss.terms) and run.seed == 0
    assert run.config == to_dict(config) and run.device == torch.device("cpu")
    assert run.split.num_train_pids == 12 and len(run.dataset) == len(run.split.train)
    assert run.lr_at(0.0) == pytest.approx(config.schedule.warmup_factor)  # warm-up starts low
    options = fit_options(config, run, out_dir="out", max_steps=5)
    assert (options.epochs, options.max_steps, options.workers) == (3, 5, 0)
    assert options.evaluate is not None and options.resume is None


def test_errors_from_the_library_get_the_config_key(synthetic_root):
    with pytest.raises(ConfigError, match=r"^loss\.terms\[0\]: unknown loss name 'trihrd'"):
        build_training(_config(synthetic_root, "loss.terms=[{name: trihrd}]"))
    with pytest.raises(ConfigError, match=r"^optim\.lr_factors: 'trunck' matches no parameter"):
        build_training(_config(synthetic_root, "optim.lr_factors={trunck: 0.1}"))
    with pytest.raises(ConfigError, match=r"^data: preprocess mean/std"):
        build_training(_config(synthetic_root, "data.std=[0.2, 0.0, 0.2]"))


def test_model_init_copies_the_matching_weights_of_a_checkpoint(synthetic_root, tmp_path):
    torch.manual_seed(5)
    source = build_training(_config(synthetic_root, "train.seed=5")).model
    path = tmp_path / "source.pt"
    saved = Checkpoint(
        spec=ModelSpec(name="baseline", num_classes=12, backbone="resnet18", last_stride=2),
        preprocess=Preprocess(64, 32),
        weights=source.state_dict(),
    )
    checkpoint.save(path, saved)
    plain = build_training(_config(synthetic_root)).model
    run = build_training(_config(synthetic_root, f"model.init={path}"))
    for key, value in run.model.state_dict().items():
        assert torch.equal(value, source.state_dict()[key]), key
    assert not torch.equal(plain.trunk.conv1.weight, source.trunk.conv1.weight)  # the seeds differ

    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"^model\.init: checkpoint .*garbage.pt"):
        build_training(_config(synthetic_root, f"model.init={tmp_path / 'garbage.pt'}"))


def test_matching_weights_skip_other_shapes_and_refuse_an_unrelated_model(tmp_path):
    torch.manual_seed(0)
    source = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 4))
    checkpoint.save(
        tmp_path / "source.pt",
        Checkpoint(spec=ModelSpec("x", 4), preprocess=Preprocess(4, 2), weights=source.state_dict()),
    )
    target = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 6))  # another classifier size
    classifier_before = target[2].weight.clone()
    report = checkpoint.load_matching_weights(target, checkpoint.load(tmp_path / "source.pt"))
    assert report["mismatched"] == ["2.weight", "2.bias"] and report["missing"] == []
    assert "0.weight" in report["loaded"] and "1.running_mean" in report["loaded"]
    torch.testing.assert_close(target[0].weight, source[0].weight, rtol=0, atol=0)
    torch.testing.assert_close(target[2].weight, classifier_before, rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="no weight of the checkpoint fits this model"):
        checkpoint.load_matching_weights(nn.Linear(7, 7), checkpoint.load(tmp_path / "source.pt"))
