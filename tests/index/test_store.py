"""The SQLite side of the index: the one helper for queries over id lists, items and filters."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

pytest.importorskip("faiss", reason="the index needs faiss-cpu: pip install 'reidkit[faiss]'")

from reidkit.index import (  # noqa: E402
    DATABASE_NAME,
    GalleryIndexError,
    GalleryItem,
    Index,
    IndexSettings,
    SettingsMismatchError,
)
from reidkit.index.store import (  # noqa: E402
    ID_CHUNK,
    GalleryStore,
    create_database,
    discard_unwritten,
    rows_for_keys,
)

DIM = 4


@pytest.fixture
def store(tmp_path):
    """A store of 2 * ID_CHUNK + 100 items with ids 1..N; every item's vector is [id, 0, 0, 0]."""
    create_database(tmp_path / "index", IndexSettings.create(dim=DIM, fingerprint="m"))
    store = GalleryStore(tmp_path / "index")
    count = 2 * ID_CHUNK + 100
    vectors = np.zeros((count, DIM), np.float32)
    vectors[:, 0] = np.arange(1, count + 1)
    store.begin_write()
    store.insert([GalleryItem(f"{n}.jpg", camera=str(n % 3)) for n in range(1, count + 1)], vectors)
    store.commit()
    yield store
    store.close()


def _statements(connection: sqlite3.Connection) -> list[str]:
    """A list that collects every SQL statement ``connection`` runs from now on."""
    statements: list[str] = []
    connection.set_trace_callback(statements.append)
    return statements


def test_more_ids_than_the_chunk_run_in_chunks_under_the_variable_limit(store):
    connection = store.connection
    # as strict as the oldest SQLite: a statement with more than ID_CHUNK variables fails
    connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, ID_CHUNK)
    wanted = list(range(1, 2 * ID_CHUNK + 101)) + [10**9]  # every id, and one that is absent
    with pytest.raises(sqlite3.OperationalError, match="too many SQL variables"):
        connection.execute(f"SELECT id FROM items WHERE id IN ({','.join('?' * len(wanted))})", wanted)
    statements = _statements(connection)
    rows = rows_for_keys(connection, "SELECT id, path FROM items WHERE id IN ({keys})", np.array(wanted))
    assert len(statements) == 3  # 1901 distinct ids in chunks of 900
    assert sorted(row[0] for row in rows) == wanted[:-1]
    assert all(path == f"{item_id}.jpg" for item_id, path in rows)


def test_empty_id_list_runs_no_statement(store):
    statements = _statements(store.connection)
    assert rows_for_keys(store.connection, "SELECT id FROM items WHERE id IN ({keys})", []) == []
    assert store.items([]) == {} and store.vectors(np.array([], np.int64)) == {}
    assert store.existing_ids([]).tolist() == []
    assert statements == []


def test_duplicate_ids_give_one_row_each_even_across_chunks(store):
    statements = _statements(store.connection)
    ids = [7, 3, 7, 3, 7, np.int64(3), 5]
    rows = rows_for_keys(store.connection, "SELECT id FROM items WHERE id IN ({keys})", ids, chunk=1)
    assert [row[0] for row in rows] == [7, 3, 5]  # first occurrences, in order
    assert len(statements) == 3
    assert store.existing_ids([5, 5, 2, 10**9]).tolist() == [2, 5]


def test_delete_and_vectors_over_many_ids(store):
    doomed = np.arange(1, ID_CHUNK + 500)
    store.begin_write()
    store.delete(np.concatenate([doomed, doomed]))
    store.commit()
    assert store.count() == 2 * ID_CHUNK + 100 - len(doomed)
    found = store.vectors(range(1, 2 * ID_CHUNK + 101))
    assert sorted(found) == list(range(ID_CHUNK + 500, 2 * ID_CHUNK + 101))
    assert all(vector[0] == item_id for item_id, vector in found.items())


def test_index_reads_and_deletes_more_ids_than_the_chunk(tmp_path):
    rng = np.random.default_rng(0)
    gallery = rng.standard_normal((2 * ID_CHUNK + 10, DIM)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    with Index.create(tmp_path / "index", dim=DIM, fingerprint="m") as index:
        ids = index.add(gallery, [{"path": str(n)} for n in range(len(gallery))], fingerprint="m")
        order = np.concatenate([ids[::-1], ids[:5]])  # reversed, with duplicates
        np.testing.assert_array_equal(index.vectors(order), np.concatenate([gallery[::-1], gallery[:5]]))
        assert index.delete(np.concatenate([ids[: ID_CHUNK + 1], ids[:3], [10**9]])) == ID_CHUNK + 1
        assert len(index) == ID_CHUNK + 9 and index.ids().tolist() == ids[ID_CHUNK + 1 :].tolist()
        hits = index.search(gallery[-1], fingerprint="m", top_k=len(gallery))[0]
        assert len(hits) == ID_CHUNK + 9 and hits[0].id == int(ids[-1])


def test_filters(store):
    assert store.filter_ids() is None
    assert store.filter_ids(camera=[]).tolist() == []
    assert len(store.filter_ids(exclude_camera=[])) == store.count()
    cameras = store.filter_ids(camera=[0, "1"])
    assert len(cameras) == store.count() - len(store.filter_ids(camera=2))
    assert set(cameras.tolist()).isdisjoint(store.filter_ids(exclude_camera=["0", 1]).tolist())
    with pytest.raises(GalleryIndexError, match="pid filter must be integers"):
        store.filter_ids(pid=["3"])
    with pytest.raises(GalleryIndexError, match="until must be seconds or an ISO-8601"):
        store.filter_ids(until="tomorrow")


def test_open_refuses_a_folder_without_a_database(tmp_path):
    with pytest.raises(GalleryIndexError, match="not a reidkit index"):
        GalleryStore(tmp_path)


def _one_item(index: Index) -> None:
    index.add(np.eye(1, DIM, dtype=np.float32), [{"path": "a.jpg"}], fingerprint="m")


def test_create_or_resume_reopens_an_index_with_the_same_settings(tmp_path):
    directory = tmp_path / "index"
    index, resumed = Index.create_or_resume(directory, dim=DIM, fingerprint="m", model_name="x")
    assert not resumed
    with index:
        _one_item(index)
    index, resumed = Index.create_or_resume(directory, dim=DIM, fingerprint="m", model_name="renamed")
    with index:
        assert resumed and len(index) == 1
    with pytest.raises(SettingsMismatchError) as caught:
        Index.create_or_resume(directory, dim=DIM, fingerprint="other", metric="l2")
    assert caught.value.differences == [
        "fingerprint: 'm' in the index, 'other' asked",
        "metric: 'ip' in the index, 'l2' asked",
    ]
    assert f"{directory} already holds an index with other settings" in str(caught.value)
    with Index.open(directory) as index:
        assert len(index) == 1  # refused: left as it was


def test_an_index_never_written_to_blocks_no_build(tmp_path):
    directory = tmp_path / "index"
    Index.create(directory, dim=DIM, fingerprint="m").close()
    index, resumed = Index.create_or_resume(directory, dim=2 * DIM, fingerprint="other", metric="l2")
    with index:
        assert not resumed and (index.dim, index.fingerprint, index.settings.metric) == (8, "other", "l2")
    assert sorted(p.name for p in directory.iterdir()) == [DATABASE_NAME, "vectors-0.faiss"]


def test_discard_unwritten_removes_only_an_untouched_index(tmp_path):
    written, untouched, foreign = tmp_path / "written", tmp_path / "untouched", tmp_path / "foreign"
    with Index.create(written, dim=DIM, fingerprint="m") as index:
        _one_item(index)
        index.delete(index.ids())  # empty again, but written to: kept
    for directory in (untouched, foreign):
        Index.create(directory, dim=DIM, fingerprint="m").close()
    (foreign / "notes.txt").write_text("mine")
    assert not discard_unwritten(written) and (written / DATABASE_NAME).is_file()
    assert not discard_unwritten(foreign) and (foreign / "notes.txt").is_file()
    assert discard_unwritten(untouched) and not untouched.exists()
