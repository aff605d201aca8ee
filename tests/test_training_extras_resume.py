"""A run with both training extras (unlabelled images and attribute labels) resumes exactly from the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from reidkit import checkpoint
from reidkit.checkpoint import CHECKPOINT_NAME
from reidkit.cli import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _train(root: Path, extra: Path, out: Path, *more: str) -> int:
    overrides = [
        f"data.root={root}",
        "data.dataset=synthetic",
        f"data.unlabelled.root={extra}",
        "data.unlabelled.per_batch=3",
        f"data.attributes={root / 'attributes.csv'}",
        "loss.terms=[{name: lsro}, {name: attributes, weight: 0.5, on: attributes}]",
        "model.backbone=resnet18",
        "model.pretrained=null",
        "model.last_stride=2",
        "data.height=64",
        "data.width=32",
        "data.p=4",
        "data.k=2",
        "data.workers=0",
        "optim.lr=1e-3",
        "schedule.warmup_epochs=0",
        "train.epochs=1",
        "train.log_every=1",
        "train.device=cpu",
        "eval.batch_size=64",
        "eval.flip=false",
    ]
    argv = ["train", "--config", str(CONFIGS / "lsro.yaml"), "--out", str(out), "--quiet", *more]
    return main([*argv, *sum((["--set", item] for item in overrides), [])])


def test_lsro_with_attributes_resumes_exactly(synthetic_root, tmp_path):
    extra = tmp_path / "extra"
    extra.mkdir()
    for path in sorted((synthetic_root / "bounding_box_test").glob("*.jpg"))[:5]:
        shutil.copy(path, extra / path.name)
    assert _train(synthetic_root, extra, tmp_path / "straight") == 0
    log = [json.loads(line) for line in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    steps = [entry for entry in log if entry["kind"] == "step"]
    assert len(steps) > 4
    assert all({"lsro@logits", "attributes@attributes"} <= set(entry) for entry in steps)

    assert _train(synthetic_root, extra, tmp_path / "resumed", "--max-steps", "3") == 0
    assert checkpoint.load(tmp_path / "resumed" / CHECKPOINT_NAME).training.global_step == 3
    assert _train(synthetic_root, extra, tmp_path / "resumed", "--resume") == 0
    straight = checkpoint.load(tmp_path / "straight" / CHECKPOINT_NAME).weights
    resumed = checkpoint.load(tmp_path / "resumed" / CHECKPOINT_NAME).weights
    for name, value in straight.items():
        assert torch.equal(value, resumed[name]), name
    resumed_log = [json.loads(line) for line in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    assert [e["loss"] for e in resumed_log if e["kind"] == "step"] == [e["loss"] for e in steps]
