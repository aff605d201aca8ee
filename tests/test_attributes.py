"""Attribute multi-task heads from a CSV: reading the table, labels that follow the relabelled train ids, a
CLI training run whose attribute loss falls, and a checkpoint whose embedding ignores the heads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from reidkit import checkpoint
from reidkit.checkpoint import CHECKPOINT_NAME
from reidkit.cli import main
from reidkit.data.datasets import load_dataset
from reidkit.data.image_dataset import (
    attribute_value_counts,
    original_train_pids,
    read_attribute_csv,
    train_attribute_labels,
)
from reidkit.data.synth import read_attributes
from reidkit.errors import DatasetError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_csv_reads_like_the_synthetic_reader(synthetic_root):
    names, table = read_attribute_csv(synthetic_root / "attributes.csv")
    assert table == read_attributes(synthetic_root)
    assert names[0] == "build" and len(names) == len(next(iter(table.values())))
    counts = attribute_value_counts(names, table)
    for name in names:
        assert counts[name] == max(2, max(row[name] for row in table.values()) + 1)


def test_labels_follow_the_relabelled_train_ids(synthetic_root):
    split = load_dataset("synthetic", synthetic_root)
    names, table = read_attribute_csv(synthetic_root / "attributes.csv")
    originals = original_train_pids(split)
    assert sorted(originals) == list(range(split.num_train_pids))
    labels = train_attribute_labels(split, names, table, source="attributes.csv")
    assert len(labels) == len(split.train)
    for sample, row in zip(split.train, labels, strict=True):
        original = int(Path(sample.path).name.split("_")[0])  # Market-style name: the original id first
        assert originals[sample.pid] == original
        assert row == table[original]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty attribute file"),
        ("id,colour\n1,2\n", "line 1: expected a header 'pid"),
        ("pid,colour\n1,2\n2,x\n", "line 3: column 'colour' must be an integer code"),
        ("pid,colour\n1,2\n2,-3\n", "line 3: column 'colour'"),
        ("pid,colour\n1,2,3\n", "line 2: expected 2 values"),
        ("pid,colour\n1,2\n1,3\n", "line 3: pid 1 appears twice"),
        ("pid,colour,colour\n1,2,3\n", "distinct"),
        ("pid,colour\n", "no attribute rows"),
    ],
)
def test_bad_csv_names_file_and_line(tmp_path, text, message):
    path = _write(tmp_path / "attrs.csv", text)
    with pytest.raises(DatasetError, match=message) as info:
        read_attribute_csv(path)
    assert str(path) in str(info.value)


def test_csv_missing_train_ids_is_an_error(synthetic_root, tmp_path):
    split = load_dataset("synthetic", synthetic_root)
    names, table = read_attribute_csv(synthetic_root / "attributes.csv")
    dropped = original_train_pids(split)[0]
    partial = {pid: row for pid, row in table.items() if pid != dropped}
    with pytest.raises(
        DatasetError, match=rf"partial.csv: no attribute row for 1 training identities \(pids {dropped}\)"
    ):
        train_attribute_labels(split, names, partial, source="partial.csv")
    with pytest.raises(DatasetError, match="does not exist"):
        read_attribute_csv(tmp_path / "missing.csv")


def test_attribute_heads_train_from_the_cli_and_are_dropped_at_test_time(synthetic_root, tmp_path, capsys):
    out = tmp_path / "run"
    overrides = [
        f"data.root={synthetic_root}",
        f"data.attributes={synthetic_root / 'attributes.csv'}",
        "model.backbone=resnet18",
        "model.pretrained=null",
        "model.last_stride=2",
        "data.height=64",
        "data.width=32",
        "data.p=4",
        "data.k=4",
        "data.workers=0",
        "data.random_erasing=0",
        "optim.lr=1e-3",
        "schedule.warmup_epochs=0",
        "train.epochs=2",
        "train.log_every=1",
        "train.device=cpu",
        "eval.batch_size=64",
        # the recipe's loss with the attribute term at full weight, so that two tiny epochs show it fall
        "loss.terms=[{name: cross_entropy}, {name: attributes, weight: 1.0, on: attributes}]",
    ]
    argv = ["train", "--config", str(CONFIGS / "ide_attributes.yaml"), "--out", str(out), "--quiet"]
    assert main([*argv, *sum((["--set", item] for item in overrides), [])]) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [entry["attributes@attributes"] for entry in log if entry["kind"] == "step"]
    epochs = [entry for entry in log if entry["kind"] == "epoch"]
    assert len(epochs) == 2 and all("attributes@attributes" in entry for entry in epochs)
    assert epochs[-1]["attributes@attributes"] < epochs[0]["attributes@attributes"]
    assert steps[-1] < steps[0]

    names, table = read_attribute_csv(synthetic_root / "attributes.csv")
    saved = checkpoint.load(out / CHECKPOINT_NAME)
    assert saved.spec.params["attributes"] == attribute_value_counts(names, table)
    model = saved.build_model()
    assert set(model.attribute_heads) == set(names)
    images = torch.randn(3, 3, 64, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model.embed(images)
        output = model(images)
        assert output.extra[f"attributes.{names[0]}"].shape == (
            3,
            saved.spec.params["attributes"][names[0]],
        )
        for head in model.attribute_heads.values():
            for parameter in head.parameters():
                parameter.add_(torch.randn_like(parameter))
        after = model.embed(images)
    assert torch.equal(before, after)  # the heads play no part in the retrieval feature

    # a CSV lacking a training identity stops the run with a message naming the file
    names_line, *rows = (synthetic_root / "attributes.csv").read_text().splitlines()
    train_ids = {
        int(Path(p).name.split("_")[0]) for p in (synthetic_root / "bounding_box_train").glob("*.jpg")
    }
    kept = [row for row in rows if int(row.split(",")[0]) != min(train_ids)]
    partial = _write(tmp_path / "partial.csv", "\n".join([names_line, *kept]) + "\n")
    bad = [
        "train",
        "--config",
        str(CONFIGS / "ide_attributes.yaml"),
        "--out",
        str(tmp_path / "bad"),
        "--quiet",
    ]
    bad += ["--set", f"data.root={synthetic_root}", "--set", f"data.attributes={partial}"]
    assert main(bad) == 2
    error = capsys.readouterr().err
    assert f"{partial}: no attribute row for 1 training identities (pids {min(train_ids)})" in error
