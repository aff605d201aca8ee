from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from reidkit.data.image_dataset import ImageDataset
from reidkit.data.records import Sample
from reidkit.data.sampler import PKSampler
from reidkit.data.transforms import TrainTransform
from reidkit.engine import (
    CHECKPOINT_NAME,
    build_optimizer,
    fit,
    init_from_checkpoint,
    load_checkpoint,
    lr_factor,
    model_parameter_groups,
    save_checkpoint,
)
from reidkit.errors import CheckpointError, ConfigError
from reidkit.losses.criterion import build_criterion
from reidkit.models.output import ReidOutput


class TinyReid(nn.Module):
    """A small conv net with the ReidOutput contract, for fast loop tests."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten()
        )
        self.neck = nn.BatchNorm1d(32)
        self.classifier = nn.Linear(32, num_classes, bias=False)
        self.embedding_dim = 32

    def forward(self, images: torch.Tensor) -> ReidOutput:
        feature = self.trunk(images)
        neck = self.neck(feature)
        return ReidOutput(embedding=neck, global_features=[feature], logits=[self.classifier(neck)])

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward(images).embedding


def _write_images(root, ids: int = 4, per_id: int = 5) -> list[Sample]:
    """Identity = a colour pair; images vary by noise."""
    rng = np.random.default_rng(0)
    samples = []
    for pid in range(ids):
        top, bottom = rng.integers(0, 256, size=(2, 3))
        for index in range(per_id):
            array = np.zeros((16, 8, 3), dtype=np.float32)
            array[:8], array[8:] = top, bottom
            array += rng.normal(0, 20, size=array.shape)
            path = root / f"{pid}_{index}.png"
            Image.fromarray(np.clip(array, 0, 255).astype(np.uint8)).save(path)
            samples.append(Sample(str(path), pid, index % 2))
    return samples


def _run(tmp_path, samples, out, *, epochs, max_steps=None, resume=None):
    torch.manual_seed(0)
    model = TinyReid(num_classes=4)
    criterion = build_criterion(
        [
            {"name": "cross_entropy", "on": "logits", "params": {"epsilon": 0.1}},
            {"name": "trihard", "on": "global", "params": {"margin": 0.3}},
        ],
        num_classes=4,
        feat_dim=32,
    )
    optimizer = build_optimizer(model, criterion, name="adam", lr=1e-2, weight_decay=0.0)
    dataset = ImageDataset(samples, TrainTransform(16, 8, pad=2, random_erasing=0.5))
    sampler = PKSampler([s.pid for s in samples], p=2, k=2, seed=0)

    def lr_at(epoch: float) -> float:
        return lr_factor(epoch, total_epochs=epochs, warmup_epochs=1, milestones=[2])

    result = fit(
        model=model,
        criterion=criterion,
        optimizer=optimizer,
        dataset=dataset,
        sampler=sampler,
        out_dir=out,
        epochs=epochs,
        lr_at=lr_at,
        checkpoint_info={
            "model_spec": {"name": "tiny"},
            "preprocess": {"height": 16, "width": 8},
            "config": {},
        },
        log_every=1,
        max_steps=max_steps,
        resume=resume,
    )
    return model, result


def test_lr_factor_by_hand():
    kwargs = {"total_epochs": 10, "warmup_epochs": 2, "warmup_factor": 0.1}
    assert lr_factor(0, milestones=[5, 8], **kwargs) == pytest.approx(0.1)
    assert lr_factor(1, milestones=[5, 8], **kwargs) == pytest.approx(0.55)
    assert lr_factor(3, milestones=[5, 8], **kwargs) == pytest.approx(1.0)
    assert lr_factor(5, milestones=[5, 8], **kwargs) == pytest.approx(0.1)
    assert lr_factor(9, milestones=[5, 8], **kwargs) == pytest.approx(0.01)
    assert lr_factor(6, schedule="cosine", **kwargs) == pytest.approx(0.5)
    assert lr_factor(10, schedule="cosine", min_factor=0.1, **kwargs) == pytest.approx(0.1)
    assert lr_factor(7, schedule="constant", **kwargs) == 1.0
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor(1, schedule="step", total_epochs=3)


def test_loss_falls_and_resume_is_exact(tmp_path):
    samples = _write_images(tmp_path)
    straight, result = _run(tmp_path, samples, tmp_path / "a", epochs=4)
    log = (tmp_path / "a" / "log.jsonl").read_text().splitlines()
    epochs = [json.loads(line) for line in log if json.loads(line)["kind"] == "epoch"]
    assert len(epochs) == 4
    assert epochs[-1]["loss"] < epochs[0]["loss"]
    assert result["state"] == {"epoch": 4, "batch": 0, "global_step": epochs[-1]["step"]}

    # stop in the middle of epoch 2, then resume from the checkpoint written at the stop
    steps_per_epoch = epochs[0]["step"]
    _, stopped = _run(tmp_path, samples, tmp_path / "b", epochs=4, max_steps=steps_per_epoch + 2)
    assert stopped["state"] == {"epoch": 1, "batch": 2, "global_step": steps_per_epoch + 2}
    resumed, _ = _run(tmp_path, samples, tmp_path / "b", epochs=4, resume=tmp_path / "b" / CHECKPOINT_NAME)
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    # the resumed run's log holds every step exactly once, as the uninterrupted run's does
    entries = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    steps = [entry["step"] for entry in entries if entry["kind"] == "step"]
    assert steps == list(range(1, epochs[-1]["step"] + 1))


def test_checkpoint_round_trip_and_atomicity(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "model_spec": {"name": "x"}, "preprocess": {}})
    payload = load_checkpoint(path)
    assert torch.equal(payload["model"]["w"], torch.ones(2)) and payload["format_version"] == 1

    # a crash while writing the next checkpoint leaves the previous one intact and no temp file behind
    import reidkit._io as io_module

    def exploding_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(io_module.os, "fsync", exploding_fsync)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"model": {"w": torch.zeros(2)}, "model_spec": {"name": "x"}, "preprocess": {}})
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_bad_checkpoints_have_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pt cannot be read"):
        load_checkpoint(garbage)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": 1}, plain)
    with pytest.raises(CheckpointError, match="not a reidkit checkpoint"):
        load_checkpoint(plain)
    future = tmp_path / "future.pt"
    torch.save({"format_version": 99, "model": {}, "model_spec": {}, "preprocess": {}}, future)
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(future)


def test_resume_refuses_another_model(tmp_path):
    samples = _write_images(tmp_path)
    _run(tmp_path, samples, tmp_path / "a", epochs=1)
    payload = load_checkpoint(tmp_path / "a" / CHECKPOINT_NAME)
    payload["model_spec"] = {"name": "other"}
    other = tmp_path / "other.pt"
    torch.save(payload, other)
    with pytest.raises(CheckpointError, match="was trained with model"):
        _run(tmp_path, samples, tmp_path / "c", epochs=1, resume=other)


def _ids(params) -> set[int]:
    return {id(p) for p in params}


def test_parameter_groups_by_longest_prefix_and_freezing():
    model = TinyReid(num_classes=4)
    trunk, first_conv = _ids(model.trunk.parameters()), _ids(model.trunk[0].parameters())
    groups = model_parameter_groups(model, 0.1, {"trunk": 0.1})
    by_lr = {round(group["lr"], 12): _ids(group["params"]) for group in groups}
    assert by_lr == {0.01: trunk, 0.1: _ids(model.parameters()) - trunk}
    # the longest matching prefix decides; "" matches everything; 0 freezes
    groups = model_parameter_groups(model, 1.0, {"": 0.0, "trunk": 0.5, "trunk.0.bias": 2.0})
    by_lr = {group["lr"]: _ids(group["params"]) for group in groups}
    assert by_lr == {0.5: {id(model.trunk[0].weight)}, 2.0: {id(model.trunk[0].bias)}}
    assert trunk == first_conv  # (the TinyReid trunk's only parameters are its conv's)
    assert not model.classifier.weight.requires_grad and not model.neck.weight.requires_grad
    assert model.trunk[0].weight.requires_grad
    optimizer = build_optimizer(TinyReid(num_classes=4), None, name="sgd", lr=0.1, lr_factors={"trunk": 0.1})
    assert sorted(group["initial_lr"] for group in optimizer.param_groups) == pytest.approx([0.01, 0.1])


def test_parameter_groups_bad_input():
    with pytest.raises(ConfigError, match=r"'trunck' matches no parameter.*'classifier', 'neck', 'trunk'"):
        model_parameter_groups(TinyReid(num_classes=4), 0.1, {"trunck": 0.1})
    with pytest.raises(ConfigError, match=r"lr_factors\['trunk'\]: expected a number >= 0"):
        model_parameter_groups(TinyReid(num_classes=4), 0.1, {"trunk": -1})
    with pytest.raises(ConfigError, match="every parameter of the model is frozen"):
        model_parameter_groups(TinyReid(num_classes=4), 0.1, {"": 0})
    # a prefix matches whole name components only: "trunk.0.w" is not a prefix of "trunk.0.weight"
    with pytest.raises(ConfigError, match="'trunk.0.w' matches no parameter"):
        model_parameter_groups(TinyReid(num_classes=4), 0.1, {"trunk.0.w": 1})


def test_init_from_checkpoint_copies_matching_weights(tmp_path):
    torch.manual_seed(0)
    source = TinyReid(num_classes=4)
    info = {"model_spec": {"name": "tiny"}, "preprocess": {"height": 16, "width": 8}}
    save_checkpoint(tmp_path / "source.pt", {"model": source.state_dict(), **info})
    torch.manual_seed(1)
    target = TinyReid(num_classes=6)  # another number of identities: the classifier cannot be copied
    classifier_before = target.classifier.weight.clone()
    report = init_from_checkpoint(target, tmp_path / "source.pt")
    assert report["mismatched"] == ["classifier.weight"] and report["missing"] == []
    assert "trunk.0.weight" in report["loaded"] and "neck.running_mean" in report["loaded"]
    torch.testing.assert_close(target.trunk[0].weight, source.trunk[0].weight, rtol=0, atol=0)
    torch.testing.assert_close(target.neck.running_var, source.neck.running_var, rtol=0, atol=0)
    torch.testing.assert_close(target.classifier.weight, classifier_before, rtol=0, atol=0)

    other = nn.Sequential(nn.Linear(3, 3))
    with pytest.raises(CheckpointError, match="no weight of the checkpoint fits this model"):
        init_from_checkpoint(other, tmp_path / "source.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pt"):
        init_from_checkpoint(target, tmp_path / "garbage.pt")
