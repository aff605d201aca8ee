"""The search workflow from the command line: index build / add / info, search, export."""

from __future__ import annotations

import json

import pytest

from reidkit.checkpoint import CHECKPOINT_NAME
from reidkit.cli import main

pytest.importorskip("faiss", reason="install reidkit[faiss] for the gallery index")

TINY = [
    "model.backbone=resnet18",
    "model.last_stride=2",
    "data.height=64",
    "data.width=32",
    "data.p=4",
    "data.k=2",
]


@pytest.fixture(scope="module")
def checkpoints(synthetic_root, tmp_path_factory):
    """Two untrained checkpoints with different weights (seeds)."""
    out = tmp_path_factory.mktemp("runs")
    paths = []
    for seed in (0, 1):
        sets = [
            *TINY,
            f"data.root={synthetic_root}",
            "train.epochs=0",
            "data.workers=0",
            f"train.seed={seed}",
        ]
        assert (
            main(["train", "--out", str(out / f"s{seed}"), "--quiet", *sum((["--set", s] for s in sets), [])])
            == 0
        )
        paths.append(out / f"s{seed}" / CHECKPOINT_NAME)
    return paths


def test_build_search_add_and_refuse_other_model(synthetic_root, checkpoints, tmp_path, capsys):
    index = tmp_path / "gallery.index"
    gallery = synthetic_root / "bounding_box_test"
    query = sorted((synthetic_root / "query").glob("*.jpg"))[0]
    assert (
        main(
            [
                "index",
                "build",
                "--checkpoint",
                str(checkpoints[0]),
                "--images",
                str(gallery),
                "--out",
                str(index),
                "--quiet",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["index", "info", str(index), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    gallery_count = len(list(gallery.glob("*.jpg")))
    assert info["count"] == gallery_count

    assert (
        main(
            [
                "search",
                "--index",
                str(index),
                "--checkpoint",
                str(checkpoints[0]),
                "--query",
                str(query),
                "--top-k",
                "5",
                "--json",
            ]
        )
        == 0
    )
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 5
    distances = [hit["distance"] for hit in hits]
    assert distances == sorted(distances)

    out = tmp_path / "results"
    assert (
        main(
            [
                "search",
                "--index",
                str(index),
                "--checkpoint",
                str(checkpoints[0]),
                "--query",
                str(query),
                "--rerank",
                "--top-k",
                "5",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert (out / "results.png").stat().st_size > 0 and "query" in (out / "results.html").read_text()

    # adding the query folder grows the index
    assert (
        main(
            [
                "index",
                "add",
                str(index),
                "--checkpoint",
                str(checkpoints[0]),
                "--images",
                str(synthetic_root / "query"),
                "--quiet",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["index", "info", str(index), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == gallery_count + len(
        list((synthetic_root / "query").glob("*.jpg"))
    )

    # a query embedded by another model is refused with a clear error
    code = main(["search", "--index", str(index), "--checkpoint", str(checkpoints[1]), "--query", str(query)])
    assert code == 2
    assert "embed with the same model" in capsys.readouterr().err


def test_export_onnx_searches_the_same_index(synthetic_root, checkpoints, tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="install reidkit[onnx]")
    model = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(checkpoints[0]), "--out", str(model)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["max_abs_diff_random"] <= 1e-4
    index = tmp_path / "gallery.index"
    assert (
        main(
            [
                "index",
                "build",
                "--checkpoint",
                str(checkpoints[0]),
                "--dataset",
                "synthetic",
                "--root",
                str(synthetic_root),
                "--out",
                str(index),
                "--quiet",
            ]
        )
        == 0
    )
    query = sorted((synthetic_root / "query").glob("*.jpg"))[0]
    capsys.readouterr()
    assert (
        main(
            [
                "search",
                "--index",
                str(index),
                "--checkpoint",
                str(checkpoints[0]),
                "--query",
                str(query),
                "--json",
            ]
        )
        == 0
    )
    torch_hits = json.loads(capsys.readouterr().out)
    assert main(["search", "--index", str(index), "--onnx", str(model), "--query", str(query), "--json"]) == 0
    onnx_hits = json.loads(capsys.readouterr().out)
    assert [h["id"] for h in onnx_hits[:5]] == [h["id"] for h in torch_hits[:5]]
    assert torch_hits[0]["pid"] is not None  # dataset metadata travels into the index


def test_bad_inputs(tmp_path, checkpoints, capsys):
    assert main(["index", "info", str(tmp_path / "none.index")]) == 2
    assert (
        main(
            [
                "index",
                "build",
                "--checkpoint",
                str(checkpoints[0]),
                "--images",
                str(tmp_path / "nowhere"),
                "--out",
                str(tmp_path / "i"),
            ]
        )
        == 2
    )
    assert "nowhere is not a folder" in capsys.readouterr().err
    assert main(["index", "build", "--images", str(tmp_path), "--out", str(tmp_path / "i")]) == 2
    assert "exactly one of" in capsys.readouterr().err
