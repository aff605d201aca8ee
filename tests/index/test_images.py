"""Embedding image files into an index: chunks, and idempotent re-adds (skipped, changed, repeated paths)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss", reason="the index needs faiss-cpu: pip install 'reidkit[faiss]'")

from PIL import Image  # noqa: E402

from reidkit.errors import DatasetError  # noqa: E402
from reidkit.index import (  # noqa: E402
    DATABASE_NAME,
    FingerprintMismatchError,
    GalleryIndexError,
    Index,
    MilvusIndex,
    index_images,
)


class _MeanColour:
    """A 4-d embedder: the mean colour of the image and a constant, L2-normalised; counts what it embeds."""

    name, fingerprint, dim, input_size = "mean-colour", "mean-colour-v1", 4, (4, 2)

    def __init__(self) -> None:
        self.embedded = 0

    def embed_images(self, images):
        self.embedded += len(images)
        rows = [
            np.append(np.asarray(i.convert("RGB"), np.float32).mean(axis=(0, 1)) / 255.0, 0.1) for i in images
        ]
        rows = np.asarray(rows, np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _images(folder: Path, count: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        paths.append(str(folder / f"{n:02d}.png"))
        Image.new("RGB", (6, 12), (10 + 5 * n, 200 - 4 * n, 100)).save(paths[-1])
    return paths


def _counts(done) -> tuple[int, int, int, int]:
    return done.added, done.skipped, done.replaced, done.repeated


def _new_index(tmp_path: Path, backend: str = "faiss"):
    if backend == "milvus":
        return MilvusIndex.create(
            str(tmp_path / "milvus.db"), "index", dim=4, fingerprint=_MeanColour.fingerprint
        )
    return Index.create(tmp_path / "index", dim=4, fingerprint=_MeanColour.fingerprint)


def test_index_images_in_chunks(tmp_path):
    colours = [(250, 10, 10), (10, 250, 10), (10, 10, 250), (200, 200, 0), (0, 200, 200)]
    paths = []
    for position, colour in enumerate(colours):
        paths.append(str(tmp_path / f"{position}.png"))
        Image.new("RGB", (6, 12), colour).save(paths[-1])
    embedder = _MeanColour()
    with _new_index(tmp_path) as index:
        items = [{"path": p, "camera": str(n % 2)} for n, p in enumerate(paths)]
        done = index_images(index, embedder, paths, items, batch_size=2)
        assert done.ids.tolist() == [1, 2, 3, 4, 5] and index.version == 3  # three chunks, three commits
        assert _counts(done) == (5, 0, 0, 0)
        assert sorted(p.name for p in (tmp_path / "index").glob("vectors-*.faiss")) == ["vectors-3.faiss"]
        with pytest.raises(DatasetError, match="missing.png"):
            index_images(index, embedder, [str(tmp_path / "missing.png")])
        with pytest.raises(FingerprintMismatchError):
            index_images(index, type("Other", (_MeanColour,), {"fingerprint": "x"})(), paths)
    with Index.open(tmp_path / "index") as index:
        hits = index.search(
            embedder.embed_images([Image.new("RGB", (3, 3), colours[3])]),
            fingerprint=embedder.fingerprint,
            top_k=1,
        )
        assert hits[0][0].item.path == str(Path(paths[3]).resolve()) and hits[0][0].distance < 1e-6
        assert hits[0][0].item.camera == "1"


def test_re_adding_the_same_images_embeds_nothing(tmp_path, backend):
    paths = _images(tmp_path / "images", 10)
    with _new_index(tmp_path, backend) as index:
        first = index_images(index, _MeanColour(), paths, batch_size=3)
        version = index.version
        embedder = _MeanColour()
        again = index_images(index, embedder, paths, batch_size=3)
        assert _counts(again) == (0, 10, 0, 0) and embedder.embedded == 0  # decided before embedding
        assert again.ids.tolist() == first.ids.tolist() and index.version == version and len(index) == 10
        # a superset: only the new images are embedded
        more = _images(tmp_path / "more", 3)
        embedder = _MeanColour()
        grown = index_images(index, embedder, paths + more, batch_size=3)
        assert _counts(grown) == (3, 10, 0, 0) and embedder.embedded == 3 and len(index) == 13
        assert grown.ids[:10].tolist() == first.ids.tolist()


def test_same_file_given_twice_or_by_another_path_is_stored_once(tmp_path, monkeypatch):
    paths = _images(tmp_path / "images", 3)
    monkeypatch.chdir(tmp_path)
    relative = os.path.join("images", ".", "00.png")  # the same file as paths[0]
    with _new_index(tmp_path) as index:
        done = index_images(index, _MeanColour(), [paths[0], paths[1], relative, paths[0], paths[2]])
        assert _counts(done) == (3, 0, 0, 2) and len(index) == 3
        assert done.ids[0] == done.ids[2] == done.ids[3]
        assert index.get(int(done.ids[2])).path == str(Path(paths[0]).resolve())


def test_changed_file_is_re_embedded_and_replaces_its_entry(tmp_path, backend):
    paths = _images(tmp_path / "images", 4)
    embedder = _MeanColour()
    with _new_index(tmp_path, backend) as index:
        first = index_images(index, embedder, paths)
        # same content, newer modification time: the hash decides it is unchanged
        os.utime(paths[1], ns=(10**18, 10**18))
        # new content (and a new time: a same-size rewrite within the clock's resolution would keep it)
        Image.new("RGB", (6, 12), (250, 0, 250)).save(paths[2])
        os.utime(paths[2], ns=(2 * 10**18, 2 * 10**18))
        done = index_images(index, embedder, paths)
        assert _counts(done) == (1, 3, 1, 0) and len(index) == 4
        assert done.ids[2] != first.ids[2] and index.get(int(first.ids[2])) is None
        assert [int(i) for i in done.ids[[0, 1, 3]]] == [int(i) for i in first.ids[[0, 1, 3]]]
        query = embedder.embed_images([Image.new("RGB", (2, 2), (250, 0, 250))])
        hit = index.search(query, fingerprint=embedder.fingerprint, top_k=1)[0][0]
        assert hit.id == done.ids[2] and hit.distance < 1e-6
        assert _counts(index_images(index, embedder, paths)) == (0, 4, 0, 0)


def test_items_without_a_file_record_are_kept(tmp_path):
    """An index written before file records existed: its items count as unchanged, looked up as given too."""
    paths = _images(tmp_path / "images", 3)
    embedder = _MeanColour()
    with _new_index(tmp_path) as index:
        index.add(
            embedder.embed_images([Image.open(paths[0])]),
            [{"path": paths[0]}],
            fingerprint=embedder.fingerprint,
        )
        assert _counts(index_images(index, embedder, paths)) == (2, 1, 0, 0)
    connection = sqlite3.connect(tmp_path / "index" / DATABASE_NAME)
    connection.executescript(
        "DROP TABLE sources; DROP INDEX items_path; UPDATE items SET path = 'old/' || id;"
    )
    connection.close()
    with Index.open(tmp_path / "index", readonly=True) as index:
        with pytest.raises(GalleryIndexError, match="read-only"):
            index_images(index, embedder, paths)
    with Index.open(tmp_path / "index") as index:  # a writable open restores the table and the path index
        done = index_images(index, embedder, ["old/1", *paths])
        assert _counts(done) == (3, 1, 0, 0) and done.ids[0] == 1 and len(index) == 6
    connection = sqlite3.connect(tmp_path / "index" / DATABASE_NAME)
    names = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    connection.close()
    assert {"sources", "items_path"} <= names


def test_add_replace_deletes_in_the_same_write(tmp_path):
    embedder = _MeanColour()
    vectors = embedder.embed_images([Image.new("RGB", (2, 2), (n * 40, 10, 10)) for n in range(3)])
    with _new_index(tmp_path) as index:
        ids = index.add(vectors[:2], [{"path": "a"}, {"path": "b"}], fingerprint=embedder.fingerprint)
        version = index.version
        new = index.add(
            vectors[2:], [{"path": "a"}], fingerprint=embedder.fingerprint, replace=[int(ids[0]), 99]
        )
        assert index.version == version + 1 and index.ids().tolist() == [int(ids[1]), int(new[0])]
        assert index.stored_files(["a", "b", "c"]) == {"a": [(int(new[0]), None)], "b": [(int(ids[1]), None)]}
        hits = index.search(vectors[0], fingerprint=embedder.fingerprint, top_k=5)[0]
        assert int(ids[0]) not in {hit.id for hit in hits} and len(hits) == 2
        with pytest.raises(GalleryIndexError, match="1 metadata items but 2 sources"):
            index.add(vectors[:1], [{"path": "c"}], fingerprint=embedder.fingerprint, sources=[None, None])
