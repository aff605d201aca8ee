from __future__ import annotations

import io
import pickle
from pathlib import Path

import pytest
import torch

from reidkit import checkpoint as checkpoints
from reidkit.checkpoint import Checkpoint, DataRef, ModelSpec, Preprocess, TrainingState
from reidkit.errors import CheckpointError
from reidkit.losses.criterion import build_criterion
from reidkit.models import build_model

SPEC = ModelSpec(name="baseline", num_classes=3, backbone="resnet18", last_stride=1)
TERMS = (
    {"name": "cross_entropy", "weight": 1.0, "on": "logits", "params": {"epsilon": 0.1}},
    {"name": "center", "weight": 0.0005, "on": "global", "params": {}},
)


def make(tmp_path: Path, **changes) -> tuple[Path, Checkpoint, torch.nn.Module]:
    torch.manual_seed(0)
    model = build_model("baseline", num_classes=3, backbone="resnet18")
    criterion = build_criterion(list(TERMS), num_classes=3, feat_dim=model.feature_dim, seed=7)
    with torch.no_grad():
        for value in criterion.parameters():
            value.normal_()  # trained-looking centres, not the initial ones
    criterion_state = criterion.state_dict()
    checkpoint = Checkpoint(
        spec=SPEC,
        preprocess=Preprocess(64, 32),
        weights=model.state_dict(),
        loss_terms=TERMS,
        seed=7,
        criterion_state=criterion_state,
        data=DataRef("synthetic", "/data/synth", {"difficulty": "hard"}),
        metrics={"mAP": 0.5},
        **changes,
    )
    path = tmp_path / "checkpoint.pt"
    checkpoints.save(path, checkpoint)
    return path, checkpoint, model


def test_round_trip_rebuilds_the_model(tmp_path):
    path, saved, model = make(tmp_path)
    loaded = checkpoints.load(path)
    assert (loaded.spec, loaded.preprocess, loaded.seed, loaded.data) == (
        saved.spec,
        saved.preprocess,
        7,
        saved.data,
    )
    assert loaded.loss_terms == TERMS and loaded.metrics == {"mAP": 0.5} and loaded.training is None
    rebuilt = loaded.build_model()
    assert not rebuilt.training
    for key, value in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value), key
    images = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.embed(images), model.eval().embed(images), rtol=0, atol=0)


def test_criterion_is_rebuilt_with_its_state(tmp_path):
    path, saved, model = make(tmp_path)
    loaded = checkpoints.load(path)
    criterion = loaded.build_criterion(loaded.build_model())
    state = criterion.state_dict()
    key = "state.1_center.centers"
    assert torch.equal(state[key], saved.criterion_state[key]) and state[key].abs().sum() > 0


def test_training_state_round_trip(tmp_path):
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.ones(3))])
    training = TrainingState(
        optimizer=optimizer.state_dict(), epoch=2, batch=5, global_step=17, rng={"torch": torch.get_rng_state()}
    )
    path, _, _ = make(tmp_path, training=training)
    loaded = checkpoints.load(path).training
    assert (loaded.epoch, loaded.batch, loaded.global_step) == (2, 5, 17)
    assert torch.equal(loaded.rng["torch"], training.rng["torch"])
    assert checkpoints.load(path).without_training().training is None


class _RunsCode:
    """An object whose unpickling calls a function: what a malicious checkpoint holds."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    payload = {"format_version": 2, "spec": _RunsCode(marker)}
    path = tmp_path / "evil.pt"
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(CheckpointError, match=r"evil\.pt was refused: .*could run code"):
        checkpoints.load(path)
    assert not marker.exists()
    # a plain pickle (not a torch file) with the same object is refused as well
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps({"format_version": 2, "spec": _RunsCode(marker)}))
    with pytest.raises(CheckpointError):
        checkpoints.load(raw)
    assert not marker.exists()


def test_malicious_payload_runs_code_when_loaded_unsafely(tmp_path):
    """Control for the test above: unrestricted loading of that file would have created the marker."""
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save({"spec": _RunsCode(marker)}, buffer)
    torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)
    assert marker.exists()


def test_format_1_files_are_converted(tmp_path):
    torch.manual_seed(0)
    model = build_model("baseline", num_classes=3, backbone="resnet18")
    config = {
        "data": {"dataset": "market1501", "root": "/m", "options": {}},
        "loss": {"terms": list(TERMS)},
        "train": {"seed": 3},
    }
    old = {
        "format_version": 1,
        "reidkit_version": "0.1.0",
        "model": model.state_dict(),
        "model_spec": SPEC.to_dict(),
        "preprocess": {"height": 64, "width": 32, "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]},
        "config": config,
        "criterion": {},
        "optimizer": {"state": {}, "param_groups": []},
        "state": {"epoch": 1, "batch": 0, "global_step": 9},
        "rng": {"torch": torch.get_rng_state()},
        "metrics": {"mAP": 0.25},
        "before": {},
        "scaler": None,
    }
    path = tmp_path / "old.pt"
    torch.save(old, path)
    loaded = checkpoints.load(path)
    assert loaded.spec == SPEC and loaded.preprocess == Preprocess(64, 32, mean=(0.5,) * 3, std=(0.2,) * 3)
    assert loaded.data == DataRef("market1501", "/m", {}) and loaded.seed == 3 and loaded.loss_terms == TERMS
    assert loaded.training.global_step == 9 and loaded.metrics == {"mAP": 0.25}
    assert torch.equal(loaded.weights["bnneck.weight"], model.state_dict()["bnneck.weight"])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"format_version": 99}, "format version 99"),
        ({"surprise": 1}, r"unknown \['surprise'\]"),
        ({"spec": {"name": "baseline", "num_classes": 3, "colour": "red"}}, r"unknown fields \['colour'\]"),
        ({"preprocess": {"height": 0, "width": 32}}, "positive integer"),
    ],
)
def test_malformed_checkpoints_are_named(tmp_path, change, message):
    path, _, _ = make(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload.update(change)
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=message):
        checkpoints.load(path)


def test_missing_key_and_missing_or_corrupt_file(tmp_path):
    path, _, _ = make(tmp_path)
    payload = torch.load(path, weights_only=True)
    del payload["weights"]
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"missing \['weights'\]"):
        checkpoints.load(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoints.load(tmp_path / "nope.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"bad\.pt cannot be read \(corrupt or not a torch file\)"):
        checkpoints.load(tmp_path / "bad.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not a reidkit checkpoint"):
        checkpoints.load(tmp_path / "list.pt")


def test_weights_of_another_model_are_refused(tmp_path):
    path, _, _ = make(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["spec"]["num_classes"] = 5
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="does not hold weights for this model"):
        checkpoints.load(path).build_model()


def test_matching_weights_initialise_another_model(tmp_path):
    path, _, source = make(tmp_path)
    torch.manual_seed(1)
    target = build_model("baseline", num_classes=5, backbone="resnet18")
    report = checkpoints.load_matching_weights(target, checkpoints.load(path))
    assert "classifier.weight" in report["mismatched"] and not report["missing"]
    assert torch.equal(target.state_dict()["bnneck.weight"], source.state_dict()["bnneck.weight"])
    with pytest.raises(CheckpointError, match="no weight of the checkpoint fits"):
        checkpoints.load_matching_weights(torch.nn.Linear(2, 2), checkpoints.load(path))
