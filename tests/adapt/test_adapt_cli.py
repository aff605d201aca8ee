"""reidkit adapt from the CLI: exact resume, the clustering log, the three kinds of target, and bad input."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from reidkit import checkpoint
from reidkit.checkpoint import CHECKPOINT_NAME
from reidkit.cli import main
from reidkit.cli.adapt import ADAPT_DEFAULTS
from reidkit.config import load_config

pytestmark = pytest.mark.slow

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY = [
    "data.p=4",
    "data.k=2",
    "data.workers=0",
    "train.device=cpu",
    "train.epochs=2",
    "train.log_every=1",
    "adapt.k1=6",
    "adapt.k2=3",
    "adapt.min_samples=2",
    "adapt.eps=0.7",
    "adapt.batch_size=64",
    "eval.batch_size=64",
    "eval.flip=false",
]


def _tensors(state) -> list:
    """Every tensor of a nested state dict (the cluster memory sits in the criterion's extra state)."""
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for key in sorted(state) for t in _tensors(state[key])]
    return []


def _same(first, second) -> bool:
    a, b = _tensors(first), _tensors(second)
    return len(a) == len(b) and all(
        x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, b, strict=True)
    )


def _adapt(source, out, *target: str, more=(), args=()) -> int:
    items = [*TINY, *more]
    argv = ["adapt", "--checkpoint", str(source), *target, "--out", str(out), "--quiet", *args]
    return main([*argv, *sum((["--set", item] for item in items), [])])


def test_adapt_on_a_dataset_resumes_exactly_and_logs_each_clustering(
    untrained_checkpoint, synthetic_root, tmp_path
):
    target = ("--dataset", "synthetic", "--root", str(synthetic_root))
    assert _adapt(untrained_checkpoint, tmp_path / "straight", *target) == 0
    clusters = [
        json.loads(line) for line in (tmp_path / "straight" / "clusters.jsonl").read_text().splitlines()
    ]
    assert [entry["epoch"] for entry in clusters] == [1, 2]
    train_images = len(list((synthetic_root / "bounding_box_train").glob("*.jpg")))
    for entry in clusters:
        assert entry["images"] == train_images and entry["clusters"] >= 4
        assert 0 <= entry["purity"] <= 1 and 0 <= entry["nmi"] <= 1  # the true ids are known here
    log = [json.loads(line) for line in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    steps = [entry for entry in log if entry["kind"] == "step"]
    assert len(steps) >= 4 and all("cluster_contrast@embedding" in entry for entry in steps)
    metrics = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert metrics["after"]["num_queries"] > 0  # evaluated on the target's query / gallery with its labels

    resumed_dir = tmp_path / "resumed"
    assert (
        _adapt(untrained_checkpoint, resumed_dir, *target, args=("--max-steps", str(len(steps) // 2 + 1)))
        == 0
    )
    assert _adapt(untrained_checkpoint, resumed_dir, *target, args=("--resume",)) == 0
    straight = checkpoint.load(tmp_path / "straight" / CHECKPOINT_NAME)
    resumed = checkpoint.load(resumed_dir / CHECKPOINT_NAME)
    for name, value in straight.weights.items():
        assert torch.equal(value, resumed.weights[name]), name
    assert _tensors(straight.criterion_state) and _same(straight.criterion_state, resumed.criterion_state)
    resumed_log = [json.loads(line) for line in (resumed_dir / "log.jsonl").read_text().splitlines()]
    assert [e["loss"] for e in resumed_log if e["kind"] == "step"] == [e["loss"] for e in steps]
    # a normal reidkit checkpoint: evaluated on the target by default
    assert straight.spec == checkpoint.load(untrained_checkpoint).spec
    assert straight.data.name == "synthetic" and straight.data.root == str(synthetic_root)


def test_adapt_on_an_image_folder(untrained_checkpoint, synthetic_root, tmp_path):
    folder = tmp_path / "site"
    for camera in ("c1", "c2"):
        (folder / camera).mkdir(parents=True)
    for index, path in enumerate(sorted((synthetic_root / "bounding_box_train").glob("*.jpg"))):
        shutil.copy(path, folder / ("c1" if index % 2 else "c2") / path.name)
    assert (
        _adapt(untrained_checkpoint, tmp_path / "run", "--images", str(folder), more=["train.epochs=1"]) == 0
    )
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics == {"before": {}, "after": {}}  # no labels, no evaluation
    entry = json.loads((tmp_path / "run" / "clusters.jsonl").read_text().splitlines()[0])
    assert "purity" not in entry and entry["clusters"] >= 2


def _find(state, name: str):
    """The tensor called ``name`` anywhere in a nested state dict."""
    for key, value in state.items():
        if key.endswith(name) and isinstance(value, torch.Tensor):
            return value
        if isinstance(value, dict) and (found := _find(value, name)) is not None:
            return found
    return None


def test_a_flat_image_folder_is_one_camera_of_the_camera_aware_memory(
    untrained_checkpoint, synthetic_root, tmp_path
):
    folder = tmp_path / "flat"
    folder.mkdir()
    for path in sorted((synthetic_root / "bounding_box_train").glob("*.jpg")):
        shutil.copy(path, folder / path.name)
    assert (
        _adapt(untrained_checkpoint, tmp_path / "run", "--images", str(folder), more=["train.epochs=1"]) == 0
    )
    entry = json.loads((tmp_path / "run" / "clusters.jsonl").read_text().splitlines()[-1])
    state = checkpoint.load(tmp_path / "run" / CHECKPOINT_NAME).criterion_state
    cameras, labels = _find(state, "proxy_cameras"), _find(state, "proxy_labels")
    assert cameras is not None and cameras.tolist() == [0] * entry["clusters"]  # one proxy per cluster
    assert labels.tolist() == list(range(entry["clusters"]))


def test_the_defaults_are_those_of_configs_adapt_yaml():
    defaults, recipe = load_config(None, list(ADAPT_DEFAULTS)), load_config(CONFIGS / "adapt.yaml", [])
    for section in ("loss", "adapt", "optim", "schedule"):
        assert getattr(defaults, section) == getattr(recipe, section), section
    assert (defaults.data.p, defaults.data.k, defaults.train.epochs) == (
        recipe.data.p,
        recipe.data.k,
        recipe.train.epochs,
    )


def test_bad_input_gives_clear_errors(untrained_checkpoint, synthetic_root, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _adapt(untrained_checkpoint, tmp_path / "a", "--images", str(empty)) == 2
    assert "holds no images" in capsys.readouterr().err
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(next((synthetic_root / "bounding_box_train").glob("*.jpg")), one / "x.jpg")
    assert _adapt(untrained_checkpoint, tmp_path / "b", "--images", str(one)) == 2
    assert "at least two target images" in capsys.readouterr().err
    assert _adapt(untrained_checkpoint, tmp_path / "c", "--images", str(one), "--dataset", "synthetic") == 2
    assert "exactly one of --images" in capsys.readouterr().err
    not_a_checkpoint = tmp_path / "model.pt"
    not_a_checkpoint.write_bytes(b"not a checkpoint")
    assert _adapt(not_a_checkpoint, tmp_path / "d", "--images", str(one)) == 2
    assert str(not_a_checkpoint) in capsys.readouterr().err
    target = ("--dataset", "synthetic", "--root", str(synthetic_root))
    source = checkpoint.load(untrained_checkpoint)
    video = tmp_path / "video.pt"  # a clip model: adapt trains image models
    checkpoint.save(
        video, replace(source, spec=replace(source.spec, params={**source.spec.params, "temporal": "avg"}))
    )
    assert _adapt(video, tmp_path / "v", *target) == 2
    assert f"{video} is a video model" in capsys.readouterr().err
    other = tmp_path / "other.pt"  # a checkpoint whose weights belong to another model than its spec names
    checkpoint.save(other, replace(source, spec=replace(source.spec, backbone="resnet34")))
    assert _adapt(other, tmp_path / "o", *target) == 2
    assert f"{other} does not hold weights for this model" in capsys.readouterr().err
    assert not (tmp_path / "o" / CHECKPOINT_NAME).exists()
    assert (
        _adapt(untrained_checkpoint, tmp_path / "e", *target, more=["loss.terms=[{name: cross_entropy}]"])
        == 2
    )
    assert "need a fixed set of identities" in capsys.readouterr().err
    assert _adapt(untrained_checkpoint, tmp_path / "f", *target, more=["adapt.eps=1.5"]) == 2
    assert "adapt.eps" in capsys.readouterr().err


def test_adapt_on_a_tracking_run_keeps_tracklets_whole_and_cannot_links_apart(untrained_checkpoint, tmp_path):
    from run_data import write_tracking_run

    from reidkit.adapt.run_crops import extract_run_crops

    run = write_tracking_run(tmp_path)
    more = ["train.epochs=1", "data.p=2", "adapt.per_tracklet=6", "adapt.min_samples=2", "adapt.eps=0.9"]
    assert _adapt(untrained_checkpoint, tmp_path / "adapted", "--tracks", str(run), more=more) == 0
    crops = extract_run_crops(run, tmp_path / "adapted" / "crops", per_tracklet=6, aspect=0.5)
    labels = np.load(tmp_path / "adapted" / "pseudo_labels" / "epoch_0000.npy")
    assert len(labels) == len(crops.samples)
    for group in np.unique(crops.groups):  # one tracklet, one label
        assert len(set(labels[crops.groups == group].tolist())) == 1
    label_of = {int(g): int(labels[crops.groups == g][0]) for g in np.unique(crops.groups)}
    for a, b in crops.cannot_link:  # two people in one frame are never one cluster
        assert label_of[a] == -1 or label_of[a] != label_of[b]
