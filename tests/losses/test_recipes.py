"""Every loss recipe in configs/ trains end to end from the CLI on the synthetic set (tiny CPU run)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from reidkit import checkpoint
from reidkit.checkpoint import CHECKPOINT_NAME
from reidkit.cli import main
from reidkit.config import load_config

pytestmark = pytest.mark.slow

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RECIPES = [
    "ide",
    "ide_lsr",
    "ide_verif",
    "triplet",
    "trihard",
    "bag_of_tricks",
    "quadruplet",
    "msml",
    "adaptive_triplet",
]
TINY = [
    "data.dataset=synthetic",
    "model.backbone=resnet18",
    "model.pretrained=null",
    "model.last_stride=2",
    "data.height=32",
    "data.width=16",
    "data.p=4",
    "data.k=4",
    "data.workers=0",
    "schedule.warmup_epochs=0",
    "train.epochs=1",
    "train.log_every=1",
    "eval.batch_size=64",
]


def test_every_loss_recipe_is_listed():
    present = {path.stem for path in CONFIGS.glob("*.yaml")}
    assert set(RECIPES) <= present


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_trains_end_to_end(recipe, synthetic_root, tmp_path):
    config_path = CONFIGS / f"{recipe}.yaml"
    terms = load_config(config_path, []).loss.terms
    out = tmp_path / recipe
    overrides = [f"data.root={synthetic_root}", *TINY]
    argv = ["train", "--config", str(config_path), "--out", str(out), "--quiet"]
    assert main(argv + sum((["--set", item] for item in overrides), [])) == 0

    metrics = json.loads((out / "metrics.json").read_text())["after"]
    assert 0.0 <= metrics["mAP"] <= 1.0 and 0.0 <= metrics["rank1"] <= 1.0
    steps = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [entry for entry in steps if entry["kind"] == "step"]
    assert steps
    names = {term["name"] for term in terms}
    for entry in steps:
        logged = {key.split("@")[0] for key in entry if "@" in key}
        assert logged == names
        assert math.isfinite(entry["loss"])

    saved = checkpoint.load(out / CHECKPOINT_NAME)
    assert saved.metrics == metrics and saved.loss_terms == tuple(terms)
    criterion_state = saved.criterion_state
    if "center" in names:
        centres = [value for key, value in criterion_state.items() if key.endswith("centers")]
        assert len(centres) == 1 and torch.isfinite(centres[0]).all()
    if "verification" in names:
        assert any(key.endswith("head.linear.weight") for key in criterion_state)
