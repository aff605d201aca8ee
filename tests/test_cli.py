"""The command line end to end on generated data, and its bad-input paths (exit status 2, clear message)."""

from __future__ import annotations

import json

import pytest
import torch

from reidkit import checkpoint
from reidkit.checkpoint import CHECKPOINT_NAME
from reidkit.cli import main

TINY = [
    "model.backbone=resnet18",
    "model.last_stride=2",
    "data.height=64",
    "data.width=32",
    "data.p=4",
    "data.k=4",
    "data.workers=0",
    "optim.lr=3e-3",
    "schedule.warmup_epochs=0",
    "train.log_every=1",
    "eval.batch_size=64",
]


def _train(root, out, *extra, argv=()):
    return main(
        [
            "train",
            "--out",
            str(out),
            "--quiet",
            *argv,
            "--set",
            f"data.root={root}",
            *sum((["--set", s] for s in TINY + list(extra)), []),
        ]
    )


def test_train_then_eval_improves_over_untrained(synthetic_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(synthetic_root, out, "train.epochs=8", "train.eval_before=true") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["after"]["mAP"] > metrics["before"]["mAP"] + 0.05
    epochs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    losses = [e["loss"] for e in epochs if e["kind"] == "epoch"]
    assert losses[-1] < losses[0]

    capsys.readouterr()
    report = tmp_path / "report"
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(out / CHECKPOINT_NAME),
                "--report",
                str(report),
                "--json",
                "--quiet",
                "--workers",
                "0",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed["mAP"] == pytest.approx(metrics["after"]["mAP"], abs=1e-6)
    assert {p.name for p in report.iterdir()} >= {"metrics.json", "cmc.png", "ranked.png"}

    features = tmp_path / "gallery.npz"
    assert (
        main(
            [
                "extract",
                "--checkpoint",
                str(out / CHECKPOINT_NAME),
                "--out",
                str(features),
                "--quiet",
                "--workers",
                "0",
            ]
        )
        == 0
    )
    import numpy as np

    with np.load(features) as data:
        assert data["features"].shape[0] == len(data["paths"]) == len(data["pids"])
        np.testing.assert_allclose(np.linalg.norm(data["features"], axis=1), 1.0, atol=1e-5)


def test_checkpoint_rebuilds_the_seeded_model_and_one_step_changes_it(synthetic_root, tmp_path):
    from reidkit.models import build_model

    untrained, stepped = tmp_path / "untrained", tmp_path / "stepped"
    assert _train(synthetic_root, untrained, "train.epochs=0") == 0
    assert _train(synthetic_root, stepped, "train.epochs=1", argv=["--max-steps", "1"]) == 0
    saved = checkpoint.load(untrained / CHECKPOINT_NAME)
    model = saved.build_model()
    # built independently: the CLI seeds the model initialisation with train.seed (0); 12 training ids
    torch.manual_seed(0)
    fresh = build_model("baseline", num_classes=12, backbone="resnet18", last_stride=2).state_dict()
    assert model.state_dict().keys() == fresh.keys()
    for key, value in model.state_dict().items():
        assert torch.equal(value, fresh[key]), key
    assert saved.preprocess.input_size == (64, 32) and saved.config["model"]["backbone"] == "resnet18"
    assert saved.data is not None and saved.data.root == str(synthetic_root)
    with torch.no_grad():
        assert model.embed(torch.zeros(2, 3, 64, 32)).shape == (2, model.embedding_dim)

    one_step = checkpoint.load(stepped / CHECKPOINT_NAME)
    assert one_step.spec == saved.spec and one_step.training is not None
    assert one_step.training.global_step == 1
    changed = {key for key, value in one_step.weights.items() if not torch.equal(value, fresh[key])}
    assert {"trunk.conv1.weight", "bnneck.weight", "classifier.weight"} <= changed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["train", "--out", "{tmp}/r", "--set", "model.bakbone=resnet18"],
            "unknown config key model.bakbone",
        ),
        (["train", "--out", "{tmp}/r", "--config", "{tmp}/missing.yaml"], "missing.yaml does not exist"),
        (["train", "--out", "{tmp}/r", "--set", "data.root={tmp}/nowhere"], "nowhere"),
        (["eval", "--checkpoint", "{tmp}/none.pt"], "none.pt does not exist"),
        (["datasets", "summary", "--name", "market1501", "--root", "{tmp}/nowhere"], "nowhere"),
        (["datasets", "summary", "--name", "nosuchset", "--root", "{tmp}"], "nosuchset"),
    ],
)
def test_bad_input_exits_2_with_message(tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_resume_with_another_models_checkpoint_is_refused(synthetic_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(synthetic_root, out, "train.epochs=0") == 0
    capsys.readouterr()
    code = main(
        [
            "train",
            "--out",
            str(tmp_path / "x"),
            "--quiet",
            "--resume",
            str(out / CHECKPOINT_NAME),
            "--set",
            f"data.root={synthetic_root}",
            *sum((["--set", s] for s in TINY + ["model.backbone=resnet34"]), []),
        ]
    )
    assert code == 2
    assert "was trained with model" in capsys.readouterr().err


def test_eval_with_aligned_local_distances(synthetic_root, tmp_path, capsys):
    out = tmp_path / "aligned"
    assert _train(synthetic_root, out, "train.epochs=0", "model.name=aligned") == 0
    results = {}
    for distance in ("global", "local", "combined"):
        capsys.readouterr()
        argv = [
            "eval",
            "--checkpoint",
            str(out / CHECKPOINT_NAME),
            "--distance",
            distance,
            "--json",
            "--quiet",
        ]
        assert main([*argv, "--workers", "0", "--report", str(tmp_path / distance)]) == 0
        results[distance] = json.loads(capsys.readouterr().out)
    assert 0.0 <= results["local"]["mAP"] <= 1.0
    assert results["local"]["mAP"] != results["global"]["mAP"]  # a different distance ranks differently
    # a baseline has no local features: a clear error, not a traceback
    base = tmp_path / "base"
    assert _train(synthetic_root, base, "train.epochs=0") == 0
    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(base / CHECKPOINT_NAME),
                "--distance",
                "local",
                "--quiet",
                "--workers",
                "0",
            ]
        )
        == 2
    )
    assert "has no local features" in capsys.readouterr().err


def test_synth_command_writes_a_dataset_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "syn"
    argv = ["synth", str(out), "--ids", "6", "--cams", "2", "--workers", "1", "--quiet"]
    assert main([*argv, "--json", "--sheet", str(tmp_path / "sheet.png")]) == 0
    summary = json.loads(capsys.readouterr().out.split("\ncontact sheet")[0])
    assert summary["train"]["ids"] + summary["query"]["ids"] == 6
    assert (tmp_path / "sheet.png").stat().st_size > 0
    before = sorted(p.name for p in (out / "query").iterdir())
    assert main(argv) == 2  # exists: refused, untouched
    assert "overwrite" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "query").iterdir()) == before
    assert main(["datasets", "summary", "--name", "synthetic", "--root", str(out), "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["query"]["images"] == len(before)


def test_corrupt_image_is_named(synthetic_root, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synthetic_root, data)
    victim = sorted((data / "bounding_box_test").glob("*.jpg"))[3]
    victim.write_bytes(victim.read_bytes()[:100])  # a truncated JPEG
    out = tmp_path / "run"
    assert _train(data, out, "train.epochs=0", "train.eval_before=false") == 2
    assert victim.name in capsys.readouterr().err
    assert not (out / CHECKPOINT_NAME).exists()  # nothing half-written
