"""IndexSettings: checks with clear errors, and its round trip through the SQLite settings table."""

from __future__ import annotations

import dataclasses
import json
import sqlite3

import numpy as np
import pytest

pytest.importorskip("faiss", reason="the index needs faiss-cpu: pip install 'reidkit[faiss]'")

from reidkit.index import GalleryIndexError, Index, IndexSettings  # noqa: E402
from reidkit.index.settings import auto_nprobe  # noqa: E402
from reidkit.index.store import DATABASE_NAME, GalleryStore, create_database  # noqa: E402


def _settings(**changes) -> IndexSettings:
    values = dict(dim=16, fingerprint="m", kind="ivfpq", pq_m=4, pq_bits=6, nlist=12, nprobe=3, refine=2)
    return IndexSettings.create(**{**values, **changes})


def test_round_trip_through_the_settings_table(tmp_path):
    settings = _settings(dim=np.int64(16), model_name="baseline", metric="l2", nprobe=np.int32(3))
    assert type(settings.dim) is int and type(settings.nprobe) is int  # NumPy integers stored as int
    create_database(tmp_path / "index", settings)
    store = GalleryStore(tmp_path / "index")
    assert store.read_settings() == settings
    store.begin_write()
    updated = store.update_settings(settings, trained_nlist=12, version=5)
    store.commit()
    assert (updated.trained_nlist, updated.version, updated.structure, updated.refine_factor) == (
        12,
        5,
        "ivfpq",
        2,
    )
    assert (settings.trained_nlist, settings.structure, settings.refine_factor) == (None, "flat", 1)
    assert store.read_settings() == updated
    rows = dict(store.connection.execute("SELECT key, value FROM settings").fetchall())
    assert json.loads(rows["format_version"]) == 1 and json.loads(rows["trained_nlist"]) == 12
    store.begin_write()
    untrained = store.update_settings(
        updated, trained_nlist=None, version=6
    )  # an empty index cannot be trained
    store.commit()
    store.close()
    with Index.open(tmp_path / "index") as index:
        assert index.settings == untrained and index.version == 6 and index.info()["pq_m"] == 4


def test_defaults_and_frozen():
    settings = IndexSettings.create(dim=64, fingerprint="m", kind="ivfpq")
    assert (settings.pq_m, settings.pq_bits, settings.nprobe, settings.refine, settings.version) == (
        8,
        8,
        None,  # automatic: chosen from the trained lists
        4,
        0,
    )
    assert IndexSettings.create(dim=64, fingerprint="m").pq_m is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.version = 3


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dim": 0}, "dim must be a positive integer, got 0"),
        ({"dim": "16"}, "dim must be a positive integer, got '16'"),
        ({"dim": True}, "dim must be a positive integer, got True"),
        ({"metric": "cosine"}, r"metric must be one of \('ip', 'l2'\), got 'cosine'"),
        ({"kind": "hnsw"}, "kind must be one of .*got 'hnsw'"),
        ({"fingerprint": ""}, "fingerprint must be a non-empty string"),
        ({"model_name": 3}, "model_name must be a string"),
        ({"pq_m": 3}, "pq_m=3 must divide dim=16"),
        ({"pq_bits": 0}, "pq_bits must be an integer from 1 to 16, got 0"),
        ({"pq_bits": 17}, "pq_bits must be an integer from 1 to 16, got 17"),
        ({"nprobe": 0}, "nprobe must be a positive integer, got 0"),
        ({"refine": 0}, "refine must be an integer >= 1, got 0"),
        ({"nlist": -1}, "nlist must be a positive integer, got -1"),
        ({"nlist": 2.5}, "nlist must be a positive integer, got 2.5"),
    ],
)
def test_bad_values_are_refused_with_the_field_named(changes, message):
    with pytest.raises(GalleryIndexError, match=message):
        _settings(**changes)


def test_bad_values_after_creation():
    settings = _settings()
    with pytest.raises(GalleryIndexError, match="version must be a non-negative integer, got -1"):
        dataclasses.replace(settings, version=-1)
    with pytest.raises(GalleryIndexError, match="trained_nlist must be a positive integer, got 0"):
        dataclasses.replace(settings, trained_nlist=0)


def _database_with(tmp_path, **rows) -> sqlite3.Connection:
    """An index whose settings table then gets ``rows`` (raw JSON text; None deletes the key)."""
    create_database(tmp_path / "index", _settings())
    connection = sqlite3.connect(tmp_path / "index" / DATABASE_NAME)
    for key, value in rows.items():
        if value is None:
            connection.execute("DELETE FROM settings WHERE key = ?", (key,))
        else:
            connection.execute("UPDATE settings SET value = ? WHERE key = ?", (value, key))
    connection.commit()
    connection.close()


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ({"format_version": "2"}, r"index has index format version 2; this reidkit reads version 1"),
        ({"nprobe": None}, r"gallery.sqlite: the settings table lacks \['nprobe'\]"),
        ({"dim": "-3"}, "gallery.sqlite: bad settings: dim must be a positive integer, got -3"),
        ({"metric": '"dot"'}, "gallery.sqlite: bad settings: metric must be one of"),
        ({"kind": "ivf"}, "gallery.sqlite: a settings value is not valid JSON"),
    ],
)
def test_a_bad_settings_table_is_reported_with_the_file(tmp_path, rows, message):
    _database_with(tmp_path, **rows)
    with pytest.raises(GalleryIndexError, match=message):
        Index.open(tmp_path / "index")


def test_an_index_without_refine_reads_as_no_refinement(tmp_path):
    _database_with(tmp_path, refine=None)  # written before the key existed
    with Index.open(tmp_path / "index") as index:
        assert index.settings.refine == 1 and index.info()["refine"] == 1


def test_differences_name_each_creation_setting_and_ignore_state():
    settings = _settings()
    assert settings.differences(_settings(model_name="another label")) == []
    trained = dataclasses.replace(settings, trained_nlist=12, version=9)
    assert trained.differences(settings) == [] and settings.differences(trained) == []
    assert settings.differences(_settings(metric="l2", fingerprint="other", nprobe=5)) == [
        "fingerprint: 'm' in the index, 'other' asked",
        "metric: 'ip' in the index, 'l2' asked",
        "nprobe: 3 in the index, 5 asked",
    ]


def test_automatic_nprobe_is_a_64th_of_the_trained_lists_at_least_16_at_most_all():
    assert [auto_nprobe(n) for n in (1, 10, 16, 17, 1024, 1025, 4000, 4096, 65536)] == [
        1,
        10,
        16,
        16,
        16,
        17,
        63,
        64,
        1024,
    ]
    untrained = IndexSettings.create(dim=64, fingerprint="m", kind="ivfpq")
    assert untrained.search_nprobe == 1  # no lists yet: the structure is flat and nprobe unused
    assert dataclasses.replace(untrained, trained_nlist=4000).search_nprobe == 63
    fixed = IndexSettings.create(dim=64, fingerprint="m", kind="ivfpq", nprobe=5)
    assert dataclasses.replace(fixed, trained_nlist=4000).search_nprobe == 5
