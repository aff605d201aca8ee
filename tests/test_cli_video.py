"""``reidkit eval`` / ``extract`` on video datasets (an image checkpoint: the frame path), against the library."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from reidkit.cli import main
from reidkit.cli._common import video_settings
from reidkit.data.video_datasets import load_video_dataset
from reidkit.embed import embed_tracklets, load_embedder
from reidkit.video_evaluation import evaluate_video_split, first_frame, load_video_splits
from segments_data import ColourEmbedder, write_tracked_run
from video_data import make_ilids, write_frame


@pytest.fixture(scope="module")
def tracklet_root(tmp_path_factory):
    """Synthetic DukeMTMC-VideoReID-layout tracklets: 8 identities in 3 cameras, 9-12 frames each."""
    root = tmp_path_factory.mktemp("video") / "tracklets"
    argv = ["synth", str(root), "--tracklets", "--ids", "8", "--cams", "3", "--frames", "9-12"]
    assert main([*argv, "--tracklets-per-camera", "1", "--workers", "1", "--quiet"]) == 0
    return root


@pytest.fixture(scope="module")
def embedder(untrained_checkpoint):
    return load_embedder(checkpoint=untrained_checkpoint, flip=True, batch_size=128)


def _eval(checkpoint, dataset, root, report, *extra):
    argv = ["eval", "--checkpoint", str(checkpoint), "--dataset", dataset, "--root", str(root)]
    return main([*argv, "--report", str(report), "--workers", "0", "--quiet", *extra])


@pytest.mark.parametrize("mode", ["v2v", "i2v"])
def test_eval_on_tracklets_equals_the_library(
    untrained_checkpoint, embedder, tracklet_root, tmp_path, capsys, mode
):
    report = tmp_path / "report"
    assert (
        _eval(
            untrained_checkpoint, "dukemtmc_videoreid", tracklet_root, report, "--video-mode", mode, "--json"
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert json.loads((report / "metrics.json").read_text()) == printed
    assert {p.name for p in report.iterdir()} == {"metrics.json", "cmc.png"}  # no ranked grid for video
    split = load_video_dataset("dukemtmc_videoreid", tracklet_root)
    expected = evaluate_video_split(
        embedder, split, mode=mode, seq_len=8, frames="all", batch_size=128
    ).metrics
    assert printed == pytest.approx(expected.as_dict(), abs=1e-6)
    assert printed["num_queries"] == len(split.query)


def test_eval_features_use_the_default_seq_len(
    untrained_checkpoint, embedder, tracklet_root, tmp_path, capsys
):
    prefix = tmp_path / "features"
    argv = ["--frames", "evenly", "--video-mode", "v2i", "--features", str(prefix)]
    assert _eval(untrained_checkpoint, "dukevideo", tracklet_root, tmp_path / "report", *argv) == 0
    assert "v2i, seq_len 8, frames evenly" in capsys.readouterr().out
    split = load_video_dataset("dukemtmc_videoreid", tracklet_root)
    with (
        np.load(tmp_path / "features.query.npz") as query,
        np.load(tmp_path / "features.gallery.npz") as gallery,
    ):
        evenly = embed_tracklets(embedder, split.query, seq_len=8, frames="evenly")
        np.testing.assert_allclose(query["features"], evenly, atol=1e-5)
        assert not np.allclose(query["features"], embed_tracklets(embedder, split.query), atol=1e-5)
        assert query["frames"].tolist() == [len(t.paths) for t in split.query]
        images = embed_tracklets(embedder, [first_frame(t) for t in split.gallery])
        np.testing.assert_allclose(gallery["features"], images, atol=1e-5)
        assert gallery["frames"].tolist() == [1] * len(split.gallery)
        assert gallery["paths"].tolist() == [t.paths[0] for t in split.gallery]
        assert gallery["distmat"].shape == (len(split.query), len(split.gallery))


def test_extract_writes_one_row_per_tracklet(untrained_checkpoint, embedder, tracklet_root, tmp_path, capsys):
    out = tmp_path / "query.npz"
    argv = ["extract", "--checkpoint", str(untrained_checkpoint), "--dataset", "dukemtmc_videoreid"]
    argv += ["--root", str(tracklet_root), "--split", "query", "--seq-len", "3", "--frames", "evenly"]
    assert main([*argv, "--out", str(out), "--workers", "0", "--quiet"]) == 0
    split = load_video_dataset("dukemtmc_videoreid", tracklet_root)
    assert f"wrote {len(split.query)} x {embedder.dim} features (one per tracklet)" in capsys.readouterr().out
    with np.load(out) as saved:
        expected = embed_tracklets(embedder, split.query, seq_len=3, frames="evenly")
        np.testing.assert_allclose(saved["features"], expected, atol=1e-5)
        assert saved["paths"].tolist() == [t.paths[0] for t in split.query]
        assert saved["pids"].tolist() == [t.pid for t in split.query]
        assert saved["camids"].tolist() == [t.camid for t in split.query]
        assert saved["frames"].tolist() == [len(t.paths) for t in split.query]


def test_eval_all_splits_on_ilidsvid(untrained_checkpoint, embedder, tmp_path, capsys):
    root = make_ilids(tmp_path / "ilids", frames=2)
    report = tmp_path / "report"
    assert _eval(untrained_checkpoint, "ilidsvid", root, report, "--all-splits", "--seq-len", "2") == 0
    printed = capsys.readouterr().out
    assert "ilidsvid: mean of 2 splits (v2v, seq_len 2, frames all)" in printed
    assert all(label in printed for label in ("split 0", "split 1", "mean", "std"))
    metrics = json.loads((report / "metrics.json").read_text())
    expected = [
        evaluate_video_split(embedder, split, seq_len=2, batch_size=128).metrics.as_dict()
        for split in load_video_splits("ilidsvid", root)
    ]
    assert len(metrics["splits"]) == 2
    for got, want in zip(metrics["splits"], expected, strict=True):
        assert got == pytest.approx(want, abs=1e-6)
    for key in ("rank1", "mAP", "mINP"):
        assert metrics[key] == pytest.approx(np.mean([m[key] for m in expected]), abs=1e-6)
    assert metrics["num_queries"] == 4


def test_custom_tracklets_and_tracking_runs(untrained_checkpoint, tmp_path, capsys):
    root = tmp_path / "custom"
    for part, identity, folder, red in (
        ("query", "1", "c1_a", 10),
        ("query", "2", "c1_b", 200),
        ("gallery", "1", "c2_a", 12),
        ("gallery", "2", "c2_b", 190),
        ("gallery", "3", "c2_c", 90),
    ):
        for frame in range(3):
            write_frame(root / part / identity / folder / f"{frame}.png", red, seed=frame)
    assert _eval(untrained_checkpoint, "custom_tracklets", root, tmp_path / "report", "--json") == 0
    assert json.loads(capsys.readouterr().out)["num_queries"] == 2

    run = write_tracked_run(tmp_path / "run", ColourEmbedder(), video=False)
    assert _eval(untrained_checkpoint, "tracked_run", run, tmp_path / "r2") == 2
    assert "has no query tracklets" in capsys.readouterr().err
    out = tmp_path / "run.npz"
    argv = [
        "extract",
        "--checkpoint",
        str(untrained_checkpoint),
        "--dataset",
        "tracked_run",
        "--root",
        str(run),
    ]
    assert main([*argv, "--out", str(out), "--workers", "0", "--quiet"]) == 0
    with np.load(out) as saved:
        gallery = load_video_dataset("tracked_run", run).gallery
        assert len(saved["features"]) == len(gallery) and saved["frames"].tolist() == [1] * len(gallery)


def test_bad_video_flags(untrained_checkpoint, synthetic_root, tracklet_root, tmp_path, capsys):
    checkpoint, report = untrained_checkpoint, tmp_path / "report"
    for flags in (["--seq-len", "0"], ["--frames", "random"], ["--video-mode", "i2i"]):
        with pytest.raises(SystemExit):
            _eval(checkpoint, "dukemtmc_videoreid", tracklet_root, report, *flags)
    capsys.readouterr()
    cases = [
        ("synthetic", synthetic_root, ["--video-mode", "i2v"], "--video-mode: options of video datasets"),
        ("synthetic", synthetic_root, ["--seq-len", "4", "--all-splits"], "--seq-len, --all-splits: options"),
        ("dukemtmc_videoreid", tracklet_root, ["--all-splits"], "'dukemtmc_videoreid' has a single split"),
        ("dukemtmc_videoreid", tracklet_root, ["--pairwise"], "drop --pairwise and --distance"),
        ("dukemtmc_videoreid", tracklet_root, ["--distance", "local"], "drop --pairwise and --distance"),
        (
            "ilidsvid",
            make_ilids(tmp_path / "ilids", frames=1),
            ["--all-splits", "--features", "f"],
            "--features",
        ),
        ("ilidsvid", tmp_path / "ilids", ["--all-splits", "--option", "split=1"], "split=1 picks one split"),
    ]
    for dataset, root, flags, message in cases:
        assert _eval(checkpoint, dataset, root, report, *flags) == 2
        assert message in capsys.readouterr().err
    argv = ["extract", "--checkpoint", str(checkpoint), "--images", str(synthetic_root / "query")]
    assert main([*argv, "--out", str(tmp_path / "x.npz"), "--frames", "evenly"]) == 2
    assert "--frames: options of video datasets, but --images holds images" in capsys.readouterr().err


def test_seq_len_defaults_to_the_checkpoint_then_8():
    args = SimpleNamespace(seq_len=None, frames=None)
    assert video_settings(args, SimpleNamespace(data=SimpleNamespace(seq_len=5))) == (5, "all")
    assert video_settings(args, SimpleNamespace(data=SimpleNamespace())) == (8, "all")
    assert video_settings(args, SimpleNamespace(data=None)) == (8, "all")
    assert video_settings(SimpleNamespace(seq_len=3, frames="evenly"), None) == (3, "evenly")
