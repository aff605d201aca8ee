"""Every video recipe in configs/ trains from the CLI on synthetic tracklets: the loss falls and the mAP rises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reidkit import checkpoint
from reidkit.checkpoint import CHECKPOINT_NAME
from reidkit.cli import main
from reidkit.models.temporal import TemporalModel

pytestmark = pytest.mark.slow

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
HEADS = ["frame", "avg", "max", "attention", "rnn", "quality"]
TINY = [
    "data.dataset=dukemtmc_videoreid",
    "model.backbone=resnet18",
    "model.pretrained=null",
    "model.last_stride=2",
    "model.temporal_hidden=32",
    "data.height=64",
    "data.width=32",
    "data.p=4",
    "data.workers=0",
    "data.random_erasing=0",  # 64x32 frames and 8 short epochs: the recipes' erasing and crop would hide the trend
    "data.pad=0",
    "schedule.warmup_epochs=0",
    "optim.lr=1e-3",
    "train.epochs=8",
    "train.log_every=1",
    "train.eval_before=true",
    "eval.batch_size=64",
]


@pytest.fixture(scope="module")
def training_tracklets(tmp_path_factory):
    """24 identities (12 train) in 3 cameras, 6-10 frames per tracklet, some occluded."""
    from reidkit.data.synth_tracklets import generate_tracklets

    root = tmp_path_factory.mktemp("video_recipes") / "data"
    generate_tracklets(root, ids=24, cams=3, seed=1, difficulty="easy", frames=(6, 10), workers=1)
    return root


def test_every_video_recipe_is_listed():
    assert {path.stem for path in CONFIGS.glob("video_*.yaml")} == {f"video_{head}" for head in HEADS}


@pytest.mark.parametrize("head", HEADS)
def test_video_recipe_trains_loss_falls_and_map_rises(head, training_tracklets, tmp_path):
    out = tmp_path / head
    # the frame recipe's K frames per identity match the clip recipes' K x seq_len frames per batch
    batch = ["data.k=8"] if head == "frame" else ["data.k=2", "data.seq_len=4"]
    overrides = [f"data.root={training_tracklets}", *TINY, *batch]
    argv = ["train", "--config", str(CONFIGS / f"video_{head}.yaml"), "--out", str(out), "--quiet"]
    assert main(argv + sum((["--set", item] for item in overrides), [])) == 0
    epochs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    losses = [entry["loss"] for entry in epochs if entry["kind"] == "epoch"]
    assert len(losses) == 8
    assert losses[-1] < losses[0], losses
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["after"]["mAP"] > metrics["before"]["mAP"] + 0.03, metrics
    assert metrics["after"]["num_queries"] > 0
    saved = checkpoint.load(out / CHECKPOINT_NAME)
    model = saved.build_model()
    assert saved.data.seq_len == 4
    if head == "frame":
        assert not isinstance(model, TemporalModel) and "temporal" not in saved.spec.params
    else:
        assert isinstance(model, TemporalModel) and model.head_name == head
        assert saved.spec.params["temporal"] == head and saved.spec.params["temporal_hidden"] == 32
