"""The album workflow as a library call: folder -> embeddings -> clusters -> clusters.csv / .json / index.html."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reidkit.album import album_images, cluster_album, score_clustering
from reidkit.errors import ConfigError, DatasetError

pytest.importorskip("sklearn", reason="album clustering needs scikit-learn")


def _rows(out: Path) -> list[dict]:
    with open(out / "clusters.csv", newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def _sections(page: str) -> list[tuple[int, int]]:
    """(cluster, size) of each row of the contact sheet, in page order."""
    found = re.findall(r'data-cluster="(-?\d+)" data-size="(\d+)"', page)
    return [(int(c), int(s)) for c, s in found]


def test_colour_album_is_grouped_by_person(colour_embedder, colour_album, tmp_path):
    out = tmp_path / "out"
    result = cluster_album(
        colour_album,
        colour_embedder,
        out,
        method="agglomerative",
        parameters={"threshold": 0.05},
        labels_from_names="market1501",
    )
    rows = _rows(out)
    assert [row["path"] for row in rows] == result.paths == album_images(colour_album)
    by_person: dict[str, set[str]] = {}
    for row in rows:
        by_person.setdefault(row["person"], set()).add(row["cluster"])
    assert by_person == {
        "1": {"0"},
        "2": {"1"},
        "3": {"2"},
        "9": {"-1"},
    }  # largest first, the lone photo last
    summary = json.loads((out / "clusters.json").read_text())
    assert summary["counts"] == {
        "images": 10,
        "clusters": 3,
        "clustered": 9,
        "unclustered": 1,
        "sizes": [4, 3, 2],
    }
    assert summary["parameters"] == {"threshold": 0.05, "linkage": "average"}
    assert summary["model"] == {"name": "colour-layout", "fingerprint": "colour-layout-v1", "dim": 96}
    scores = summary["scores"]
    assert (scores["precision"], scores["recall"], scores["f1"], scores["ari"]) == (1.0, 1.0, 1.0, 1.0)
    page = (out / "index.html").read_text()
    assert _sections(page) == [(0, 4), (1, 3), (2, 2), (-1, 1)]
    assert "Unclustered" in page and "class=other" not in page
    thumbs = sorted((out / "thumbs").iterdir())
    assert len(thumbs) == 10
    with Image.open(thumbs[0]) as thumb:
        assert thumb.size == (64, 128)  # 128 high, the 1:2 shape kept
    for link in re.findall(r'<a href="([^"]+)"', page):  # relative links to the originals
        assert not link.startswith(("/", "file:")) and (out / link).resolve().is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_synthetic_album_end_to_end(colour_embedder, synthetic_album, tmp_path):
    out = tmp_path / "out"
    result = cluster_album(synthetic_album, colour_embedder, out, labels_from_names="market1501")
    rows = _rows(out)
    labels = np.array([int(row["cluster"]) for row in rows])
    persons = np.array([int(row["person"]) for row in rows])
    assert len(rows) == len(list(synthetic_album.rglob("*.jpg"))) == len(result.paths)
    assert sorted(set(persons)) == [1, 2, 3, 4, 5, 6]
    summary = json.loads((out / "clusters.json").read_text())
    assert summary["method"] == "hdbscan" and summary["images_root"] == str(synthetic_album)
    assert summary["scores"] == score_clustering(persons, labels)
    sizes = summary["counts"]["sizes"]
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) == (labels >= 0).sum()
    sections = _sections((out / "index.html").read_text())
    assert [c for c, _ in sections if c >= 0] == list(range(len(sizes)))
    assert (sections[-1][0] == -1) == (labels == -1).any()


def test_rerun_replaces_outputs_and_skips_its_own_thumbnails(colour_embedder, colour_album):
    out = colour_album / "clusters"  # inside the album: its thumbnails must not become photos
    for threshold in (0.05, 0.05):
        cluster_album(
            colour_album, colour_embedder, out, method="agglomerative", parameters={"threshold": threshold}
        )
        assert len(_rows(out)) == 10 and len(list((out / "thumbs").iterdir())) == 10
    assert "person" not in _rows(out)[0]  # no names scheme: no person column


def test_bad_input_is_named_and_nothing_is_written(colour_embedder, colour_album, tmp_path):
    embedder, out = colour_embedder, tmp_path / "out"
    with pytest.raises(DatasetError, match=f"images folder {tmp_path / 'missing'} is not a folder"):
        cluster_album(tmp_path / "missing", embedder, out)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no photos")
    with pytest.raises(DatasetError, match="holds no images"):
        cluster_album(tmp_path / "empty", embedder, out)
    with pytest.raises(ConfigError, match="min_cluster_size must be an integer >= 2, got 1"):
        cluster_album(colour_album, embedder, out, parameters={"min_cluster_size": 1})
    with pytest.raises(ConfigError, match="'dbscan' does not take threshold"):
        cluster_album(colour_album, embedder, out, method="dbscan", parameters={"threshold": 0.3})
    with pytest.raises(ConfigError, match="thumb_height must be at least 16"):
        cluster_album(colour_album, embedder, out, thumb_height=4)
    (colour_album / "day2" / "holiday.jpg").write_bytes(
        (colour_album / "day2" / "0003_c1s1_000000_00.jpg").read_bytes()
    )
    with pytest.raises(DatasetError, match="holiday.jpg"):
        cluster_album(colour_album, embedder, out, labels_from_names="market1501")
    assert not out.exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="output folder .*file exists and is not a folder"):
        cluster_album(colour_album, embedder, tmp_path / "file")


def test_an_unreadable_photo_leaves_the_previous_result(colour_embedder, colour_album, tmp_path):
    out = tmp_path / "out"
    cluster_album(colour_album, colour_embedder, out, method="agglomerative", parameters={"threshold": 0.05})
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    (colour_album / "day1" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="broken.jpg"):
        cluster_album(colour_album, colour_embedder, out)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in out.iterdir()) == ["clusters.csv", "clusters.json", "index.html", "thumbs"]
