"""Video datasets in an index: one entry per tracklet, idempotent re-runs, a crash keeps whole chunks; the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reidkit.cli import main
from reidkit.data.records import Tracklet
from reidkit.data.video_datasets import load_video_dataset
from reidkit.embed import embed_tracklets
from reidkit.errors import DatasetError, EmbeddingError
from reidkit.index import Index, index_tracklets
from video_data import AngleEmbedder, write_frame


def _tracklets(folder: Path, count: int = 5) -> list[Tracklet]:
    tracklets = []
    for number in range(count):
        paths = [
            write_frame(folder / f"t{number}" / f"f{frame}.png", 30 * number + 5 * frame, seed=frame)
            for frame in range(2 + number % 3)
        ]
        tracklets.append(Tracklet(tuple(paths), pid=number // 2 + 1, camid=number % 2))
    return tracklets


def _index(tmp_path: Path, embedder) -> Index:
    return Index.create(tmp_path / "index", dim=embedder.dim, fingerprint=embedder.fingerprint, model_name="t")


def test_one_entry_per_tracklet_with_its_feature_and_metadata(tmp_path):
    tracklets, embedder = _tracklets(tmp_path / "data"), AngleEmbedder()
    with _index(tmp_path, embedder) as index:
        done = index_tracklets(index, embedder, tracklets, chunk=2)
        assert (done.added, done.skipped, len(index)) == (5, 0, 5)
        expected = embed_tracklets(AngleEmbedder(), tracklets)
        np.testing.assert_allclose(index.vectors(done.ids), expected, atol=1e-6)
        item = index.get(int(done.ids[3]))
        assert item.path == str(Path(tracklets[3].paths[0]).resolve())
        assert (item.pid, item.camera) == (2, "1")
        assert item.extra == {
            "tracklet_frames": len(tracklets[3].paths),
            "tracklet_last": str(Path(tracklets[3].paths[-1]).resolve()),
        }
        again = index_tracklets(index, embedder, [*tracklets, tracklets[0]])
        assert (again.added, again.skipped, len(index)) == (0, 5, 5)
        assert again.ids.tolist() == [*done.ids.tolist(), done.ids[0]]


def test_a_crash_keeps_the_written_chunks_and_a_rerun_adds_the_rest(tmp_path):
    tracklets = _tracklets(tmp_path / "data", count=6)

    class Failing(AngleEmbedder):
        def embed_images(self, images):
            if self.images >= 5:  # the first chunk (two tracklets of 2 and 3 frames) goes through
                raise EmbeddingError("the runtime stopped")
            return super().embed_images(images)

    with _index(tmp_path, AngleEmbedder()) as index:
        with pytest.raises(EmbeddingError, match="stopped"):
            index_tracklets(index, Failing(), tracklets, chunk=2)
        assert len(index) == 2
        done = index_tracklets(index, AngleEmbedder(), tracklets, chunk=2)
        assert (done.added, done.skipped, len(index)) == (4, 2, 6)


def test_an_empty_tracklet_is_refused_before_anything_is_written(tmp_path):
    tracklets = [*_tracklets(tmp_path / "data", count=2), Tracklet((), 9, 0)]
    with _index(tmp_path, AngleEmbedder()) as index:
        with pytest.raises(DatasetError, match="tracklet 2 \\(pid 9, camera 0\\) has no frames"):
            index_tracklets(index, AngleEmbedder(), tracklets)
        assert len(index) == 0


def test_cli_index_build_on_a_video_dataset_then_search_by_photo(tracklet_root, untrained_checkpoint, tmp_path, capsys):
    out = tmp_path / "index"
    build = ["index", "build", "--out", str(out), "--checkpoint", str(untrained_checkpoint), "--quiet"]
    video = ["--dataset", "dukemtmc_videoreid", "--root", str(tracklet_root), "--split", "gallery"]
    assert main([*build, *video, "--frames", "evenly", "--seq-len", "3"]) == 0
    gallery = load_video_dataset("dukemtmc_videoreid", tracklet_root).gallery
    assert f"indexed {len(gallery)} tracklets" in capsys.readouterr().out
    assert main(["index", "add", str(out), "--checkpoint", str(untrained_checkpoint), "--quiet", *video]) == 0
    assert f"indexed 0 tracklets of dukemtmc_videoreid into {out} ({len(gallery)} already there" in (
        capsys.readouterr().out
    )
    with Index.open(out, readonly=True) as index:
        assert len(index) == len(gallery)
        pids = sorted(index.get(int(i)).pid for i in index.ids())
        assert pids == sorted(t.pid for t in gallery)
    query = load_video_dataset("dukemtmc_videoreid", tracklet_root).query[0].paths[0]
    search = ["search", "--index", str(out), "--checkpoint", str(untrained_checkpoint), "--query", query, "--json"]
    assert main(search) == 0
    hits = json.loads(capsys.readouterr().out)
    firsts = {str(Path(t.paths[0]).resolve()) for t in gallery}
    assert hits and {hit["path"] for hit in hits} <= firsts
    other = [*build[:3], str(tmp_path / "other"), *build[4:], "--images", str(tracklet_root), "--seq-len", "4"]
    assert main(other) != 0
    assert "--seq-len: options of video datasets, but --images holds images" in capsys.readouterr().err
