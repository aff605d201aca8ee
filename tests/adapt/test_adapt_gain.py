"""reidkit adapt pays off: on a tiny synthetic domain pair, the adapted model scores a higher target mAP than the
source checkpoint it started from (both scored by the same run, on the target's labelled test split)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reidkit.checkpoint import CHECKPOINT_NAME
from reidkit.cli import main
from reidkit.data.synth import generate

pytestmark = pytest.mark.slow

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _sets(items) -> list[str]:
    return sum((["--set", item] for item in items), [])


def test_adapt_improves_the_target_map_of_its_source_checkpoint(tiny_overrides, tmp_path):
    source_root, target_root = tmp_path / "street", tmp_path / "mall"
    generate(source_root, ids=24, cams=3, seed=0, difficulty="easy", domain="street")
    generate(target_root, ids=24, cams=3, seed=1, difficulty="easy", domain="mall")
    tiny = [
        *tiny_overrides,
        "model.pretrained=null",
        "data.workers=0",
        "train.device=cpu",
        "train.log_every=1000",
        "eval.flip=false",
    ]
    source = tmp_path / "source"
    train = ["train", "--out", str(source), "--quiet", "--config", str(CONFIGS / "bag_of_tricks.yaml")]
    assert main([*train, *_sets([*tiny, f"data.root={source_root}", "train.epochs=8"])]) == 0

    adapted = tmp_path / "adapted"
    adapt = ["adapt", "--checkpoint", str(source / CHECKPOINT_NAME), "--dataset", "synthetic"]
    adapt += ["--root", str(target_root), "--out", str(adapted), "--quiet"]
    settings = [*tiny, "train.epochs=14", "train.eval_before=true", "adapt.k2=3"]
    settings += ["adapt.k1=8", "adapt.eps=0.6", "adapt.min_samples=2", "data.p=6", "data.k=4"]
    assert main([*adapt, *_sets(settings)]) == 0
    metrics = json.loads((adapted / "metrics.json").read_text())
    before, after = metrics["before"]["mAP"], metrics["after"]["mAP"]
    # 14 adaptation epochs measured 18.0 -> 29.0 % on an AMD EPYC (AVX-512) machine; 8 epochs gave only
    # +2.4 points there (and +5.6 on an Intel Xeon): the margin must survive another CPU's rounding
    assert after > before + 0.03, (before, after)
