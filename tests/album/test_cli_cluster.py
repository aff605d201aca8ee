"""``reidkit cluster`` from the command line, with a tiny untrained reidkit checkpoint as the embedder."""

from __future__ import annotations

import csv
import json

import pytest

from reidkit.cli import main

pytest.importorskip("sklearn", reason="album clustering needs scikit-learn")

@pytest.fixture(scope="module")
def checkpoint(untrained_checkpoint):
    """An untrained checkpoint (random weights: a legitimate, if weak, embedder)."""
    return untrained_checkpoint


def _cluster(checkpoint, images, out, *extra) -> int:
    return main(
        [
            "cluster",
            "--images",
            str(images),
            "--out",
            str(out),
            "--checkpoint",
            str(checkpoint),
            "--quiet",
            *extra,
        ]
    )


@pytest.mark.parametrize(
    "method",
    [
        ["--method", "hdbscan"],
        ["--method", "dbscan", "--eps", "0.05"],
        ["--method", "agglomerative", "--threshold", "0.1"],
        ["--method", "linked", "--threshold", "0.1"],
    ],
)
def test_cluster_a_synthetic_album(checkpoint, synthetic_album, tmp_path, capsys, method):
    out = tmp_path / "out"
    assert _cluster(checkpoint, synthetic_album, out, *method, "--labels-from-names", "market1501") == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "clusters.json").read_text())
    scores = summary["scores"]
    assert f"adjusted Rand index {scores['ari']:.4f}" in printed
    assert f"pairwise precision {scores['precision']:.4f}" in printed and str(out / "index.html") in printed
    assert summary["method"] == method[1] and summary["model"]["dim"] > 0
    assert scores["items_scored"] == summary["counts"]["images"] == len(list(synthetic_album.rglob("*.jpg")))
    with open(out / "clusters.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == summary["counts"]["images"] and set(rows[0]) == {"path", "cluster", "person"}
    assert sum(int(row["cluster"]) == -1 for row in rows) == summary["counts"]["unclustered"]
    assert len(list((out / "thumbs").iterdir())) == len(rows)


def test_bad_command_lines(checkpoint, synthetic_album, tmp_path, capsys):
    out = tmp_path / "out"
    cases = [
        ([], tmp_path / "missing", f"--images {tmp_path / 'missing'} is not a folder"),
        ([], tmp_path, "holds no images"),
        (["--eps", "0.2"], synthetic_album, "--method hdbscan does not take --eps (it takes: --metric, "),
        (["--method", "agglomerative", "--metric", "euclidean"], synthetic_album, "does not take --metric"),
        (["--method", "dbscan", "--eps", "3"], synthetic_album, "eps must be at most 2"),
        (["--min-cluster-size", "500"], synthetic_album, "min_cluster_size = 500 is more than the"),
    ]
    for extra, images, message in cases:
        assert _cluster(checkpoint, images, out, *extra) == 2
        assert message in capsys.readouterr().err
    assert not out.exists()
    (tmp_path / "taken").write_text("a file")
    assert _cluster(checkpoint, synthetic_album, tmp_path / "taken") == 2
    assert f"--out {tmp_path / 'taken'} exists and is not a folder" in capsys.readouterr().err
    assert (tmp_path / "taken").read_text() == "a file"
    for extra, message in (
        (["--min-cluster-size", "1"], "--min-cluster-size: expected an integer >= 2, got 1"),
        (["--threshold", "-1"], "--threshold: expected a finite number > 0, got -1"),
        (["--method", "kmeans"], "--method: invalid choice: 'kmeans'"),
    ):
        with pytest.raises(SystemExit) as exited:
            _cluster(checkpoint, synthetic_album, out, *extra)
        assert exited.value.code == 2
        assert message in capsys.readouterr().err
