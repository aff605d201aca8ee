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
    assert (info["kind"], info["nprobe"], info["refine"]) == ("flat", None, 4)
    tuned = [
        "--kind",
        "ivfpq",
        "--nlist",
        "8",
        "--nprobe",
        "3",
        "--refine",
        "2",
        "--out",
        str(tmp_path / "pq"),
    ]
    build = ["index", "build", "--checkpoint", str(checkpoints[0]), "--images", str(gallery), "--quiet"]
    assert main([*build, *tuned]) == 0
    capsys.readouterr()
    assert main(["index", "info", str(tmp_path / "pq"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["kind"], info["nprobe"], info["search_nprobe"], info["refine"]) == ("ivfpq", 3, 3, 2)

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
    # an --out that cannot be written is an error naming it (a file stands where the folder should be)
    blocked = tmp_path / "blocked"
    blocked.write_text("a file")
    capsys.readouterr()
    argv = ["search", "--index", str(index), "--checkpoint", str(checkpoints[0]), "--query", str(query)]
    assert main([*argv, "--out", str(blocked / "results")]) == 2
    assert f"--out {blocked / 'results'}: cannot write the results there" in capsys.readouterr().err

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


def _build(checkpoint, images, out, *extra) -> int:
    return main(
        [
            "index",
            "build",
            "--checkpoint",
            str(checkpoint),
            "--images",
            str(images),
            "--out",
            str(out),
            "--quiet",
            *extra,
        ]
    )


def _folder_with_a_broken_image(synthetic_root, folder, broken: str) -> list:
    """Eight gallery images ``00.jpg`` .. ``07.jpg`` and a file ``broken`` that is not an image."""
    folder.mkdir()
    sources = sorted((synthetic_root / "bounding_box_test").glob("*.jpg"))[:8]
    for n, source in enumerate(sources):
        (folder / f"{n:02d}.jpg").write_bytes(source.read_bytes())
    (folder / broken).write_bytes(b"not a jpeg")
    return sources


def test_failed_build_resumes_and_re_add_skips(synthetic_root, checkpoints, tmp_path, capsys):
    images, index = tmp_path / "images", tmp_path / "gallery.index"
    _folder_with_a_broken_image(synthetic_root, images, "04b.jpg")  # sorted: the 6th of 9
    assert _build(checkpoints[0], images, index, "--batch-size", "2") == 2
    assert "04b.jpg" in capsys.readouterr().err
    assert main(["index", "info", str(index), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 4  # the two chunks before the broken one

    (images / "04b.jpg").unlink()
    assert _build(checkpoints[0], images, index, "--batch-size", "2") == 0
    out = capsys.readouterr().out
    assert f"resuming the build in {index}: it holds 4 images from an earlier build" in out
    assert f"indexed 4 images into {index} (4 already there, skipped; 8 in all)" in out

    add = [
        "index",
        "add",
        str(index),
        "--checkpoint",
        str(checkpoints[0]),
        "--images",
        str(images),
        "--quiet",
    ]
    assert main(add) == 0
    assert f"indexed 0 images into {index} (8 already there, skipped; 8 in all)" in capsys.readouterr().out

    # other settings, or another model: refused, saying what differs and what to do
    assert _build(checkpoints[0], images, index, "--metric", "l2") == 2
    error = capsys.readouterr().err
    assert "metric: 'ip' in the index, 'l2' asked" in error and "fingerprint" not in error
    assert f"run `reidkit index add {index}`" in error and f"remove {index}" in error
    assert _build(checkpoints[1], images, index) == 2
    assert "fingerprint: " in capsys.readouterr().err
    assert main(["index", "info", str(index), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 8


def test_build_failing_before_its_first_commit_leaves_nothing(synthetic_root, checkpoints, tmp_path, capsys):
    images, index = tmp_path / "images", tmp_path / "gallery.index"
    _folder_with_a_broken_image(synthetic_root, images, "00a.jpg")  # sorted: the 2nd of 9, in the first chunk
    assert _build(checkpoints[0], images, index) == 2
    assert "00a.jpg" in capsys.readouterr().err
    assert not index.exists()
    (images / "00a.jpg").unlink()
    assert _build(checkpoints[0], images, index, "--metric", "l2") == 0  # any settings: nothing blocks it
    assert f"indexed 8 images into {index} (0 already there, skipped; 8 in all)" in capsys.readouterr().out


def test_index_tracks_and_search_segments(checkpoints, tmp_path, capsys):
    pytest.importorskip("cv2", reason="the test run's video needs opencv")
    from reidkit.embed import load_embedder
    from segments_data import START, query_photo, write_tracked_run

    run = write_tracked_run(tmp_path / "run", load_embedder(checkpoint=checkpoints[0])).resolve()
    index = tmp_path / "tracks.index"
    # build from the run alone: the index takes the run's model, no embedder flags needed
    assert main(["index", "build", "--tracks", str(run), "--out", str(index), "--quiet"]) == 0
    assert (
        f"indexed 6 tracklets of {run} into {index} (0 already there, skipped; 6 in all)"
        in capsys.readouterr().out
    )
    assert main(["index", "add", str(index), "--tracks", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"indexed 0 tracklets of {run} into {index} (6 already there, skipped; 6 in all)" in out
    assert "1 tracklets have no feature" in out

    query = query_photo(tmp_path / "query.png")
    argv = ["search", "--index", str(index), "--checkpoint", str(checkpoints[0]), "--query", str(query)]
    assert main([*argv, "--top-k", "1", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert len(answer["results"]) == 1 and answer["results"][0]["extra"]["kind"] == "tracklet"
    (person,) = answer["identities"]
    assert (person["run"], person["global_id"], person["cameras"]) == (str(run), 1, ["cam1", "cam2"])
    segments = person["segments"]
    # person 1: cam1 frames 21-50, cam2 61-80, cam1 91-100, at 10 fps from START; the first is the hit
    assert [(s["camera"], s["first_frame"], s["last_frame"], s["hit"]) for s in segments] == [
        ("cam1", 21, 50, True),
        ("cam2", 61, 80, False),
        ("cam1", 91, 100, False),
    ]
    times = [t - START for s in segments for t in (s["start_time"], s["end_time"])]
    assert times == pytest.approx([2.0, 4.9, 6.0, 7.9, 9.0, 9.9])
    assert segments[0]["start_iso"] == "2023-11-14T22:13:22.000Z"
    assert person["distance"] == segments[0]["distance"] == pytest.approx(0.0, abs=1e-5)
    assert segments[0]["video"] == str(run / "cam1.webm") and segments[1]["video"] is None

    out_dir = tmp_path / "results"
    assert main([*argv, "--top-k", "1", "--out", str(out_dir)]) == 0
    table = capsys.readouterr().out
    assert f"#1  global id 1 in {run}" in table and "3 segments on cam1, cam2" in table
    line = next(row for row in table.splitlines() if "22:13:22.000Z" in row)
    assert line.split()[:3] == ["cam1", f"{START + 2:.2f}", f"{START + 4.9:.2f}"]
    page = (out_dir / "results.html").read_text()
    assert "cam1.webm#t=2.000,5.000" in page and "global id 1" in page

    # a run tracked with another model is refused, and nothing is added
    other = write_tracked_run(tmp_path / "other", load_embedder(checkpoint=checkpoints[1]), video=False)
    assert main(["index", "add", str(index), "--tracks", str(other)]) == 2
    assert "embed with the same model" in capsys.readouterr().err
    assert main(["index", "add", str(index), "--tracks", str(tmp_path / "nothing")]) == 2
    assert "run.json is missing" in capsys.readouterr().err
    assert main(["index", "info", str(index), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 6
