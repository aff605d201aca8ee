"""``reidkit eval --pairwise``: query x gallery scored by the verification recipe's trained pair head."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reidkit import checkpoint as checkpoints
from reidkit.checkpoint import CHECKPOINT_NAME, Preprocess
from reidkit.cli import main
from reidkit.config import load_config
from reidkit.data.datasets import load_dataset
from reidkit.embed import TorchEmbedder
from reidkit.errors import ConfigError
from reidkit.evaluation import load_pair_head
from reidkit.losses.verification import pair_scores
from reidkit.metrics import evaluate

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = [
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
    "train.log_every=1",
    "train.device=cpu",
    "eval.batch_size=64",
]


def _train(config: str, root: Path, out: Path, *extra: str) -> Path:
    argv = ["train", "--config", str(CONFIGS / config), "--out", str(out), "--quiet"]
    overrides = [f"data.root={root}", "data.dataset=synthetic", *TINY, *extra]
    assert main([*argv, *sum((["--set", item] for item in overrides), [])]) == 0
    return out / CHECKPOINT_NAME


def test_pairwise_eval_scores_with_the_trained_pair_head(synthetic_root, tmp_path, capsys):
    checkpoint = _train(
        "ide_verif.yaml", synthetic_root, tmp_path / "verif", "train.epochs=1", "eval.pairwise=true"
    )
    capsys.readouterr()
    prefix = tmp_path / "scored"
    argv = ["eval", "--checkpoint", str(checkpoint), "--workers", "0", "--quiet", "--json"]
    argv += ["--report", str(tmp_path / "report"), "--pairwise", "--pair-batch-size", "100"]
    assert main([*argv, "--features", str(prefix)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert 0.0 < metrics["mAP"] <= 1.0 and 0.0 <= metrics["rank1"] <= 1.0

    query = np.load(f"{prefix}.query.npz")
    gallery = np.load(f"{prefix}.gallery.npz")
    distmat = gallery["distmat"]

    # the features are the head's own input: global_features[0] (pre-BNNeck, not normalised), flip-averaged
    embedder = TorchEmbedder.from_checkpoint(checkpoints.load(checkpoint), flip=True)
    split = load_dataset("synthetic", synthetic_root)
    preprocess = Preprocess(64, 32)
    images = torch.from_numpy(preprocess([Image.open(split.query[0].path).convert("RGB")]))
    with torch.no_grad():
        first = embedder.model(images).global_features[0]
        mirrored = embedder.model(torch.flip(images, dims=[3])).global_features[0]
    np.testing.assert_allclose(
        query["features"][0], ((first + mirrored) / 2)[0].numpy(), rtol=1e-4, atol=1e-5
    )
    assert abs(float(np.linalg.norm(query["features"][0])) - 1.0) > 1e-2  # not the normalised embedding

    # distance = 1 - pair_scores of the checkpoint's head, computed by hand on the saved features
    criterion = embedder.checkpoint.build_criterion(embedder.model)
    head = criterion.pair_head()
    state = embedder.checkpoint.criterion_state
    head_keys = [key for key in state if key.endswith("head.linear.weight")]
    assert len(head_keys) == 1 and torch.equal(head.linear.weight, state[head_keys[0]])
    expected = 1.0 - pair_scores(
        head, torch.from_numpy(query["features"]), torch.from_numpy(gallery["features"])
    )
    np.testing.assert_allclose(distmat, expected.numpy(), rtol=1e-6, atol=1e-6)
    # and per pair, against the head's logit formula sigmoid(w . (q - g)^2 + b), for a few pairs
    weight, bias = head.linear.weight[0].detach().double(), head.linear.bias[0].detach().double()
    for i, j in [(0, 0), (1, 5), (len(distmat) - 1, distmat.shape[1] - 1)]:
        difference = torch.from_numpy(query["features"][i] - gallery["features"][j]).double()
        probability = torch.sigmoid((weight * difference.pow(2)).sum() + bias)
        assert distmat[i, j] == pytest.approx(1.0 - float(probability), abs=1e-5)

    # the metrics printed are those of that distance matrix
    has_camids = split.has_camids
    recomputed = evaluate(
        distmat,
        np.array([s.pid for s in split.query]),
        np.array([s.pid for s in split.gallery]),
        np.array([s.camid for s in split.query]) if has_camids else None,
        np.array([s.camid for s in split.gallery]) if has_camids else None,
    )
    assert recomputed.as_dict()["mAP"] == pytest.approx(metrics["mAP"])

    # evaluation during training (eval.pairwise) used the live pair head: the same numbers
    during_training = json.loads((tmp_path / "verif" / "metrics.json").read_text())["after"]
    assert during_training["mAP"] == pytest.approx(metrics["mAP"], abs=1e-6)
    assert during_training["rank1"] == pytest.approx(metrics["rank1"], abs=1e-6)

    # the pair head comes back from the checkpoint with the term's 'on'
    head_again, on = load_pair_head(embedder)
    assert on == "global" and torch.equal(head_again.linear.weight, head.linear.weight)

    # pairwise scoring does not combine with re-ranking
    assert main([*argv, "--rerank", "exact"]) == 2
    assert "--pairwise" in capsys.readouterr().err


def test_pairwise_eval_without_a_pair_head_is_a_clear_error(synthetic_root, tmp_path, capsys):
    with pytest.raises(ConfigError, match="eval.pairwise needs a 'verification' loss term"):
        load_config(CONFIGS / "ide.yaml", ["eval.pairwise=true"])
    with pytest.raises(ConfigError, match="does not combine"):
        load_config(CONFIGS / "ide_verif.yaml", ["eval.pairwise=true", "eval.rerank=exact"])
    checkpoint = _train("ide.yaml", synthetic_root, tmp_path / "ide", "train.epochs=0")
    embedder = TorchEmbedder.from_checkpoint(checkpoints.load(checkpoint))
    with pytest.raises(ConfigError, match="no verification pair head"):
        load_pair_head(embedder)
    capsys.readouterr()
    argv = ["eval", "--checkpoint", str(checkpoint), "--workers", "0", "--quiet", "--pairwise"]
    assert main([*argv, "--report", str(tmp_path / "report")]) == 2
    assert "has no verification pair head" in capsys.readouterr().err
