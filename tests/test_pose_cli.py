"""Pose-guided parts end to end: training from the CLI with a keypoint file, the visibility distance, export."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from pose_data import dataset_with_keypoints
from reidkit.checkpoint import CHECKPOINT_NAME
from reidkit.cli import main
from reidkit.models.pose_regions import visibility_distance


@pytest.fixture(scope="module")
def pose_root(synthetic_root, tmp_path_factory):
    return dataset_with_keypoints(synthetic_root, tmp_path_factory.mktemp("pose") / "data")


def _train(root, out, tiny_overrides, *extra):
    sets = [
        *tiny_overrides,
        f"data.root={root}",
        "data.dataset=synthetic",
        "model.pretrained=null",
        "data.workers=0",
        "train.epochs=2",
        "schedule.warmup_epochs=0",
        "eval.batch_size=32",
        *extra,
    ]
    argv = ["train", "--config", "configs/pose_parts.yaml", "--out", str(out), "--quiet"]
    return main([*argv, *sum((["--set", s] for s in sets), [])])


def test_visibility_distance_matches_a_naive_loop():
    generator = torch.Generator().manual_seed(0)
    q_parts, g_parts = torch.randn(2, 3, 4, generator=generator), torch.randn(3, 3, 4, generator=generator)
    q_visible = torch.tensor([[True, True, False], [False, False, False]])
    g_visible = torch.tensor([[True, False, True], [True, True, True], [False, True, False]])
    global_distance = torch.rand(2, 3, generator=generator)
    got = visibility_distance(global_distance, q_parts, q_visible, g_parts, g_visible)
    for i in range(2):
        for j in range(3):
            terms = [float(global_distance[i, j])]
            for r in range(3):
                if q_visible[i, r] and g_visible[j, r]:
                    cos = torch.dot(q_parts[i, r], g_parts[j, r]) / (
                        q_parts[i, r].norm() * g_parts[j, r].norm()
                    )
                    terms.append(1.0 - float(cos))
            assert float(got[i, j]) == pytest.approx(sum(terms) / len(terms), abs=1e-6)
    assert float(got[1, 0]) == pytest.approx(float(global_distance[1, 0]))  # no shared part: global only


def test_train_then_eval_with_the_visibility_distance(pose_root, tmp_path, tiny_overrides, capsys):
    out = tmp_path / "run"
    assert _train(pose_root, out, tiny_overrides) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    epochs = [entry for entry in log if entry["kind"] == "epoch"]
    assert len(epochs) == 2 and all(np.isfinite(entry["loss"]) for entry in epochs)

    for distance in ("global", "visibility"):
        capsys.readouterr()
        prefix = str(tmp_path / distance)
        options = {"--checkpoint": str(out / CHECKPOINT_NAME), "--distance": distance, "--workers": "0"}
        options.update({"--report": prefix, "--features": prefix})
        assert main(["eval", "--json", "--quiet", *sum(map(list, options.items()), [])]) == 0
        assert 0.0 <= json.loads(capsys.readouterr().out)["mAP"] <= 1.0

    # the saved features are the scored blocks, with the distances of the visibility average
    query = np.load(tmp_path / "visibility.query.npz")
    gallery = np.load(tmp_path / "visibility.gallery.npz")
    assert "distmat" in gallery.files
    assert gallery["distmat"].shape == (len(query["features"]), len(gallery["features"]))


def test_visibility_scorer_matches_the_formula(pose_root, tmp_path, tiny_overrides):
    from reidkit import checkpoint
    from reidkit.data.keypoints import read_keypoints
    from reidkit.embed import TorchEmbedder
    from reidkit.evaluation import part_features, visibility_scorer

    out = tmp_path / "run"
    assert _train(pose_root, out, tiny_overrides, "train.epochs=0") == 0
    embedder = TorchEmbedder.from_checkpoint(checkpoint.load(out / CHECKPOINT_NAME), flip=True)
    keypoints = read_keypoints(pose_root / "keypoints.json")
    paths = sorted(str(p) for p in (pose_root / "query").glob("*.jpg"))[:6]
    scores = visibility_scorer(keypoints)(embedder, paths[:3], paths)
    global_feature, parts, visible = part_features(embedder, paths, keypoints)
    listed = [keypoints.get(path) is not None for path in paths]
    assert visible.any(axis=1).tolist() == listed and not all(
        listed
    )  # an image without an entry shows no part
    for i in range(3):
        for j in range(6):
            a, b = global_feature[i], global_feature[j]
            terms = [1.0 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b))]
            for r in range(parts.shape[1]):
                if visible[i, r] and visible[j, r]:
                    a, b = parts[i, r], parts[j, r]
                    terms.append(1.0 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
            assert scores.distmat[i, j] == pytest.approx(np.mean(terms), abs=1e-5)


def test_clear_errors_without_keypoints_and_on_export(
    synthetic_root, pose_root, tmp_path, tiny_overrides, capsys
):
    # a set without a keypoint file (the generator's own one left out)
    bare = tmp_path / "bare"
    shutil.copytree(synthetic_root, bare, ignore=shutil.ignore_patterns("keypoints.json"))
    capsys.readouterr()
    assert _train(bare, tmp_path / "none", tiny_overrides) == 2
    assert "keypoints.json" in capsys.readouterr().err
    out = tmp_path / "run"
    assert _train(pose_root, out, tiny_overrides, "train.epochs=0") == 0
    capsys.readouterr()
    code = main(["export", "--checkpoint", str(out / CHECKPOINT_NAME), "--out", str(tmp_path / "m.onnx")])
    assert code == 2
    assert "keypoints" in capsys.readouterr().err
    argv = ["eval", "--checkpoint", str(out / CHECKPOINT_NAME), "--distance", "visibility", "--quiet"]
    assert main([*argv, "--workers", "0", "--keypoints", str(tmp_path / "absent.json")]) == 2
    assert "absent.json" in capsys.readouterr().err


def test_keypoint_settings_are_checked(tracklet_root, tmp_path, tiny_overrides, capsys):
    capsys.readouterr()
    assert _train(tracklet_root, tmp_path / "video", tiny_overrides, "data.dataset=dukemtmc_videoreid") == 2
    assert "video dataset" in capsys.readouterr().err
    assert _train(tracklet_root, tmp_path / "blank", tiny_overrides, "data.keypoints=' '") == 2
    assert "data.keypoints" in capsys.readouterr().err
