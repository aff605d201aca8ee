"""Every local-feature recipe in configs/ trains from the CLI on the synthetic set, and its loss falls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reidkit.cli import main
from reidkit.engine import CHECKPOINT_NAME, load_model

pytestmark = pytest.mark.slow

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RECIPES = ["pcb", "mgn", "aligned", "aligned_mutual", "jlml"]
TINY = [
    "data.dataset=synthetic",
    "model.backbone=resnet18",
    "model.pretrained=null",
    "data.height=64",
    "data.width=32",
    "data.p=4",
    "data.k=2",
    "data.workers=0",
    "schedule.warmup_epochs=0",
    "optim.name=adam",  # one optimiser for every model: the test is about the model and its loss terms
    "optim.lr=1e-3",
    "train.epochs=3",
    "train.log_every=1",
    "eval.batch_size=64",
]


@pytest.mark.parametrize("recipe", RECIPES)
def test_local_recipe_trains_and_loss_falls(recipe, synthetic_root, tmp_path):
    out = tmp_path / recipe
    overrides = [f"data.root={synthetic_root}", *TINY]
    if recipe == "pcb":  # six stripes need at least six rows in the feature map
        overrides += ["data.height=128", "data.width=64"]
    argv = ["train", "--config", str(CONFIGS / f"{recipe}.yaml"), "--out", str(out), "--quiet"]
    assert main(argv + sum((["--set", item] for item in overrides), [])) == 0
    epochs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    losses = [entry["loss"] for entry in epochs if entry["kind"] == "epoch"]
    assert len(losses) == 3
    assert losses[-1] < losses[0], losses
    metrics = json.loads((out / "metrics.json").read_text())["after"]
    assert 0.0 <= metrics["mAP"] <= 1.0
    model, info = load_model(out / CHECKPOINT_NAME)  # the checkpoint rebuilds its model
    assert info["model_spec"]["name"] == recipe.split("_")[0] or info["model_spec"]["name"] == "mutual"
    assert model.embedding_dim > 0
