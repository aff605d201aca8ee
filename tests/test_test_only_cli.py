"""A test-only dataset (query/ and bounding_box_test/, no train folder) through the command line.

A tiny model is trained for 0 epochs on a small synthetic set; a copy of that set without its train folder is
then evaluated and its features extracted (exit status 0, the right numbers of queries / gallery images /
features), while training on it is refused with exit status 2 and a message naming the empty train split.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from reidkit.checkpoint import CHECKPOINT_NAME
from reidkit.cli import main

TINY = [
    "model.backbone=resnet18",
    "model.last_stride=2",
    "data.height=64",
    "data.width=32",
    "data.p=2",
    "data.k=2",
    "data.workers=0",
    "schedule.warmup_epochs=0",
    "train.epochs=0",
    "train.eval_before=false",
    "eval.batch_size=64",
]


def train_argv(out: Path, dataset: str, root: Path) -> list[str]:
    overrides = [*TINY, f"data.dataset={dataset}", f"data.root={root}"]
    return ["train", "--out", str(out), "--quiet", *sum((["--set", s] for s in overrides), [])]


def pids(folder: Path) -> list[int]:
    """Person ids of the images in a Market-layout folder, read from the file names."""
    return [int(re.match(r"(-?\d+)_c", p.name).group(1)) for p in sorted(folder.glob("*.jpg"))]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint of a 0-epoch training on a small synthetic set, test-only copy of that set)."""
    base = tmp_path_factory.mktemp("test_only")
    data = base / "synthetic"
    synth = ["synth", str(data), "--ids", "8", "--cams", "2", "--distractors", "2", "--difficulty", "easy"]
    assert main([*synth, "--workers", "1", "--quiet"]) == 0
    assert main(train_argv(base / "run", "synthetic", data)) == 0
    site = base / "site"  # what a new site has: query/ and bounding_box_test/ only
    for folder in ("query", "bounding_box_test"):
        shutil.copytree(data / folder, site / folder)
    return base / "run" / CHECKPOINT_NAME, site


def test_eval_and_extract_on_a_test_only_dataset(trained, tmp_path, capsys) -> None:
    checkpoint, site = trained
    queries = sum(pid > 0 for pid in pids(site / "query"))
    gallery = sum(pid >= 0 for pid in pids(site / "bounding_box_test"))
    assert queries > 0 and gallery > queries and 0 in pids(site / "bounding_box_test")  # distractors kept
    capsys.readouterr()

    dataset = ["--checkpoint", str(checkpoint), "--dataset", "market1501", "--root", str(site)]
    report = tmp_path / "report"
    argv = ["eval", *dataset, "--report", str(report), "--workers", "0", "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"market1501: {queries} queries, {gallery} gallery" in printed
    metrics = json.loads((report / "metrics.json").read_text())
    assert 0.0 < metrics["mAP"] <= 1.0 and 0.0 <= metrics["rank1"] <= 1.0

    for split, count, folder in (("query", queries, "query"), ("gallery", gallery, "bounding_box_test")):
        out = tmp_path / f"{split}.npz"
        argv = ["extract", *dataset, "--split", split, "--out", str(out), "--workers", "0", "--quiet"]
        assert main(argv) == 0
        with np.load(out) as features:
            assert features["features"].shape[0] == count == len(features["pids"])
            dimension = features["features"].shape[1]
            assert all(Path(p).parent == site / folder for p in features["paths"])
        assert f"wrote {count} x {dimension} features to {out}" in capsys.readouterr().out

    assert main(["datasets", "summary", "--name", "market1501", "--root", str(site), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["train"]["images"] == 0
    assert (summary["query"]["images"], summary["gallery"]["images"]) == (queries, gallery)


@pytest.mark.parametrize("train_folder", ["absent", "empty"])
def test_train_refuses_a_test_only_dataset(trained, tmp_path, capsys, train_folder: str) -> None:
    _, site = trained
    root = tmp_path / "site"
    shutil.copytree(site, root)
    if train_folder == "empty":
        (root / "bounding_box_train").mkdir()
    capsys.readouterr()
    assert main(train_argv(tmp_path / "run", "market1501", root)) == 2
    error = capsys.readouterr().err
    assert f"error: dataset 'market1501' at {root} has an empty train split" in error
    assert not (tmp_path / "run" / CHECKPOINT_NAME).exists()
