"""The training loop: loss falls, exact resume, typed checkpoints, Batch loading, parameter groups."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from reidkit import checkpoint
from reidkit.checkpoint import CHECKPOINT_NAME, Checkpoint, DataRef, ModelSpec, Preprocess
from reidkit.data.batch import Batch, ImageItem, collate_items
from reidkit.data.image_dataset import ImageDataset
from reidkit.data.records import Sample, Split
from reidkit.data.sampler import PKSampler
from reidkit.data.transforms import TrainTransform
from reidkit.engine import FitOptions, fit, train_loader
from reidkit.errors import CheckpointError, ConfigError
from reidkit.losses.criterion import build_criterion
from reidkit.models.output import ReidOutput
from reidkit.recipe import TrainingRun, build_optimizer, lr_factor, model_parameter_groups

TERMS = (
    {"name": "cross_entropy", "on": "logits", "params": {"epsilon": 0.1}},
    {"name": "trihard", "on": "global", "params": {"margin": 0.3}},
)


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


def _training_run(samples, *, epochs, spec=None) -> TrainingRun:
    torch.manual_seed(0)
    model = TinyReid(num_classes=4)
    criterion = build_criterion(TERMS, num_classes=4, feat_dim=32)
    optimizer = build_optimizer(model, criterion, name="adam", lr=1e-2, weight_decay=0.0)
    dataset = ImageDataset(samples, TrainTransform(16, 8, pad=2, random_erasing=0.5))
    sampler = PKSampler([s.pid for s in samples], p=2, k=2, seed=0)

    def lr_at(epoch: float) -> float:
        return lr_factor(epoch, total_epochs=epochs, warmup_epochs=1, milestones=[2])

    return TrainingRun(
        split=Split(train=tuple(samples), query=(), gallery=()),
        dataset=dataset,
        sampler=sampler,
        model=model,
        criterion=criterion,
        optimizer=optimizer,
        lr_at=lr_at,
        device=torch.device("cpu"),
        spec=spec or ModelSpec(name="tiny", num_classes=4, backbone="none"),
        preprocess=Preprocess(16, 8),
        data=DataRef(name="tiny", root="images"),
        loss_terms=TERMS,
        seed=0,
        config={"note": "tiny"},
    )


def _run(tmp_path, samples, out, *, epochs, max_steps=None, resume=None, spec=None):
    run = _training_run(samples, epochs=epochs, spec=spec)
    options = FitOptions(out_dir=out, epochs=epochs, log_every=1, max_steps=max_steps, resume=resume)
    return run.model, fit(run, options)


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


def test_fit_writes_a_typed_checkpoint_that_rebuilds_the_criterion(tmp_path):
    samples = _write_images(tmp_path)
    model, result = _run(tmp_path, samples, tmp_path / "a", epochs=1)
    saved = checkpoint.load(tmp_path / "a" / CHECKPOINT_NAME)
    assert saved.spec == ModelSpec(name="tiny", num_classes=4, backbone="none")
    assert saved.preprocess == Preprocess(16, 8) and saved.data == DataRef(name="tiny", root="images")
    assert saved.loss_terms == TERMS and saved.seed == 0 and saved.config == {"note": "tiny"}
    assert saved.training is not None and saved.training.global_step == result["state"]["global_step"] > 0
    assert (saved.training.epoch, saved.training.batch) == (1, 0)
    for key, value in model.state_dict().items():
        assert torch.equal(saved.weights[key], value), key
    criterion = saved.build_criterion(model)
    assert [term.label for term in criterion.terms] == ["cross_entropy@logits", "trihard@global"]


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    first = Checkpoint(spec=ModelSpec("x", 2), preprocess=Preprocess(4, 2), weights={"w": torch.ones(2)})
    checkpoint.save(path, first)
    assert torch.equal(checkpoint.load(path).weights["w"], torch.ones(2))

    # a crash while writing the next checkpoint leaves the previous one intact and no temp file behind
    import reidkit._io as io_module

    def exploding_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(io_module.os, "fsync", exploding_fsync)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, replace(first, weights={"w": torch.zeros(2)}))
    monkeypatch.undo()
    assert torch.equal(checkpoint.load(path).weights["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_bad_checkpoints_have_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint.load(tmp_path / "nope.pt")
    plain = tmp_path / "plain.pt"
    torch.save({"weights": 1}, plain)
    with pytest.raises(CheckpointError, match="not a reidkit checkpoint"):
        checkpoint.load(plain)
    future = tmp_path / "future.pt"
    torch.save({"format_version": 99, "model": {}, "model_spec": {}, "preprocess": {}}, future)
    with pytest.raises(CheckpointError, match="format version 99"):
        checkpoint.load(future)


def test_resume_refuses_another_model_and_an_eval_only_checkpoint(tmp_path):
    samples = _write_images(tmp_path)
    _run(tmp_path, samples, tmp_path / "a", epochs=1)
    saved = checkpoint.load(tmp_path / "a" / CHECKPOINT_NAME)
    other = tmp_path / "other.pt"
    checkpoint.save(other, replace(saved, spec=replace(saved.spec, backbone="resnet18")))
    with pytest.raises(
        CheckpointError, match=r"other.pt was trained with model 'tiny'.*backbone 'resnet18' vs"
    ):
        _run(tmp_path, samples, tmp_path / "c", epochs=1, resume=other)
    # the same refusal from the other side: this run builds another spec than the file holds
    with pytest.raises(CheckpointError, match=r"num_classes 4 vs 5"):
        _run(
            tmp_path,
            samples,
            tmp_path / "c",
            epochs=1,
            resume=tmp_path / "a" / CHECKPOINT_NAME,
            spec=ModelSpec(name="tiny", num_classes=5, backbone="none"),
        )
    eval_only = tmp_path / "eval_only.pt"
    checkpoint.save(eval_only, saved.without_training())
    with pytest.raises(CheckpointError, match=r"eval_only.pt holds no training state.*cannot resume"):
        _run(tmp_path, samples, tmp_path / "d", epochs=2, resume=eval_only)
    assert not (tmp_path / "d" / CHECKPOINT_NAME).exists()


def test_fit_options_are_checked():
    with pytest.raises(ConfigError, match="FitOptions.log_every: expected an integer >= 1, got 0"):
        FitOptions(out_dir="x", epochs=1, log_every=0)
    with pytest.raises(ConfigError, match="FitOptions.epochs"):
        FitOptions(out_dir="x", epochs=-1)
    with pytest.raises(ConfigError, match="FitOptions.max_steps"):
        FitOptions(out_dir="x", epochs=1, max_steps=-2)
    with pytest.raises(ConfigError, match="FitOptions.grad_clip"):
        FitOptions(out_dir="x", epochs=1, grad_clip=0.0)


@pytest.mark.parametrize("workers", [0, 1])
def test_loader_yields_batches_with_and_without_attributes(tmp_path, workers):
    samples = _write_images(tmp_path, ids=3, per_id=4)
    sampler = PKSampler([s.pid for s in samples], p=2, k=2, seed=0)
    plain = ImageDataset(samples, TrainTransform(16, 8))
    codes = [{"hat": s.pid % 2, "colour": s.pid} for s in samples]
    labelled = ImageDataset(samples, TrainTransform(16, 8), attribute_labels=codes)
    indices = sampler.batches(0)[0]
    for dataset in (plain, labelled):
        batch = next(iter(train_loader(dataset, sampler, workers=workers)))
        assert isinstance(batch, Batch) and len(batch) == 4
        assert batch.images.shape == (4, 3, 16, 8) and batch.images.dtype == torch.float32
        assert batch.pids.tolist() == [samples[i].pid for i in indices] and batch.pids.dtype == torch.int64
        assert batch.camids.tolist() == [samples[i].camid for i in indices]
        if dataset is plain:
            assert batch.attributes is None
        else:
            assert batch.attributes is not None and list(batch.attributes) == ["hat", "colour"]
            assert batch.attributes["colour"].tolist() == [samples[i].pid for i in indices]
            assert batch.attributes["hat"].dtype == torch.int64
    moved = batch.to("cpu")
    assert torch.equal(moved.images, batch.images) and moved.attributes.keys() == batch.attributes.keys()


def test_batch_rejects_bad_shapes_and_mixed_items():
    with pytest.raises(ValueError, match=r"expected images \[B, 3, H, W\] \(or clips \[B, T, 3, H, W\]\) and pids \[B\]"):
        Batch(torch.zeros(3, 3, 4, 2), torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="camids and attributes of shape"):
        Batch(
            torch.zeros(2, 3, 4, 2),
            torch.zeros(2, dtype=torch.long),
            torch.zeros(2, dtype=torch.long),
            {"hat": torch.zeros(3, dtype=torch.long)},
        )
    image = torch.zeros(3, 4, 2)
    with pytest.raises(ValueError, match="same attribute labels"):
        collate_items([ImageItem(image, 0, 0, {"hat": 1}), ImageItem(image, 1, 0)])
    with pytest.raises(ValueError, match="at least one item"):
        collate_items([])


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
