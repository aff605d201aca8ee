"""The Milvus backend (on Milvus Lite) against the FAISS flat backend, and its filter expressions by hand."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("faiss", reason="the FAISS backend needs faiss-cpu: pip install 'reidkit[faiss]'")
pytest.importorskip("pymilvus", reason="the Milvus backend needs pymilvus: pip install 'reidkit[milvus]'")
pytest.importorskip("milvus_lite", reason="the tests run on Milvus Lite: pip install 'reidkit[milvus]'")

from reidkit.index import (  # noqa: E402
    FileSource,
    FingerprintMismatchError,
    GalleryIndexError,
    Index,
    MilvusIndex,
    SettingsMismatchError,
    create_or_resume_index,
    open_index,
)
from reidkit.index.milvus import connect  # noqa: E402
from reidkit.index.milvus_filters import extra_expression, filter_expression, literal  # noqa: E402

FP = "model-v1"

#: every filter of Index.search, alone and combined, including the empty lists
FILTERS = [
    {},
    {"camera": ["1", "2"]},
    {"camera": 0},
    {"camera": []},
    {"exclude_camera": "1"},
    {"exclude_camera": ["0", "2"]},
    {"exclude_camera": []},
    {"since": 100, "until": 300},
    {"since": "1970-01-01T00:05:00Z"},
    {"pid": [3, 4]},
    {"pid": 7},
    {"frames": (10, 50)},
    {"frames": (None, 20)},
    {"camera": ["0", "2"], "since": 50, "pid": [1, 2, 3, 4, 5, 6], "frames": (0, 400)},
]


def _data(n: int = 400, dim: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    items = [
        {
            "path": f'/gallery/cam "{i % 3}"\\{i}.jpg',  # quotes and backslashes survive the filter literals
            "camera": None if i % 7 == 0 else str(i % 3),
            "timestamp": None if i % 11 == 0 else float(i),
            "frame": None if i % 13 == 0 else i,
            "pid": None if i % 17 == 0 else i % 20,
            "extra": {"kind": "tracklet" if i % 2 else "image", "run": f"r{i % 4}"},
        }
        for i in range(n)
    ]
    queries = rng.standard_normal((6, dim)).astype(np.float32)
    return vectors, items, queries / np.linalg.norm(queries, axis=1, keepdims=True)


@pytest.fixture(params=["ip", "l2"])
def both(request, tmp_path):
    """The same gallery in a FAISS flat index and a Milvus collection; positions map ids between them."""
    vectors, items, queries = _data()
    faiss_index = Index.create(tmp_path / "faiss", dim=16, fingerprint=FP, metric=request.param)
    milvus_index = MilvusIndex.create(
        str(tmp_path / "g.db"), "gallery", dim=16, fingerprint=FP, metric=request.param
    )
    f_ids = faiss_index.add(vectors, items, fingerprint=FP)
    m_ids = milvus_index.add(vectors, items, fingerprint=FP)
    yield faiss_index, milvus_index, f_ids, m_ids, vectors, queries
    faiss_index.close()
    milvus_index.close()


def test_search_returns_the_faiss_flat_top_k_under_every_filter(both):
    faiss_index, milvus_index, f_ids, m_ids, _, queries = both
    f_pos = {int(i): n for n, i in enumerate(f_ids)}
    m_pos = {int(i): n for n, i in enumerate(m_ids)}
    for filters in FILTERS:
        expected = faiss_index.search(queries, fingerprint=FP, top_k=12, **filters)
        found = milvus_index.search(queries, fingerprint=FP, top_k=12, **filters)
        for want, got in zip(expected, found, strict=True):
            assert [m_pos[h.id] for h in got] == [f_pos[h.id] for h in want], filters
            np.testing.assert_allclose([h.distance for h in got], [h.distance for h in want], atol=1e-5)
            assert [h.item for h in got] == [h.item for h in want]
        matching = milvus_index.matching_ids(**filters)
        reference = faiss_index.matching_ids(**filters)
        if reference is None:
            assert matching is None
        else:
            assert sorted(m_pos[i] for i in matching) == sorted(f_pos[i] for i in reference), filters
    # a filtered gallery smaller than top_k gives all of it
    assert len(milvus_index.search(queries[:1], fingerprint=FP, top_k=50, pid=7)[0]) == len(
        faiss_index.search(queries[:1], fingerprint=FP, top_k=50, pid=7)[0]
    )


def test_lookups_deletes_and_replacing_adds(both):
    faiss_index, milvus_index, f_ids, m_ids, vectors, _ = both
    assert len(milvus_index) == len(faiss_index) == 400
    assert len(set(m_ids.tolist())) == 400
    np.testing.assert_array_equal(milvus_index.vectors(m_ids[[5, 3, 9]]), vectors[[5, 3, 9]])
    assert milvus_index.items(m_ids[:20]) == {
        int(m): faiss_index.get(int(f)) for m, f in zip(m_ids[:20], f_ids[:20], strict=True)
    }
    assert milvus_index.get(int(m_ids.max()) + 1000) is None
    with pytest.raises(GalleryIndexError, match="ids not in"):
        milvus_index.vectors([int(m_ids.max()) + 1000])
    for values in ({"kind": "tracklet"}, {"kind": "image", "run": "r2"}):
        expected = [int(i) for i in np.searchsorted(f_ids, faiss_index.ids_with_extra(**values))]
        assert milvus_index.ids_with_extra(**values).tolist() == m_ids[expected].tolist()
    info = milvus_index.info()
    assert (info["backend"], info["count"], info["dim"], info["fingerprint"]) == ("milvus", 400, 16, FP)
    assert info["cameras"] == faiss_index.info()["cameras"] == [None, "0", "1", "2"]
    # delete counts what existed
    assert milvus_index.delete([int(m_ids[0]), int(m_ids[1]), int(m_ids.max()) + 5]) == 2
    assert len(milvus_index) == 398 and milvus_index.get(int(m_ids[0])) is None
    assert milvus_index.ids().tolist() == sorted(m_ids[2:].tolist())
    # an add that replaces: new ids, the replaced ones gone, the sources stored for index_images
    source = FileSource(size=10, mtime_ns=5, sha256="ab" * 32)
    new = milvus_index.add(
        vectors[:2],
        [{"path": "/new/a.jpg"}, {"path": "/new/b.jpg"}],
        fingerprint=FP,
        sources=[source, None],
        replace=m_ids[2:4],
    )
    assert len(milvus_index) == 398 and min(new) > max(m_ids) and milvus_index.get(int(m_ids[2])) is None
    assert milvus_index.stored_files(["/new/a.jpg", "/new/b.jpg", "/nothing"]) == {
        "/new/a.jpg": [(int(new[0]), source)],
        "/new/b.jpg": [(int(new[1]), None)],
    }


def test_bad_arguments_get_clear_errors(both, tmp_path):
    _, milvus_index, _, _, vectors, queries = both
    with pytest.raises(FingerprintMismatchError, match="other-model"):
        milvus_index.search(queries, fingerprint="other-model")
    with pytest.raises(FingerprintMismatchError):
        milvus_index.add(vectors[:1], [{"path": "x"}], fingerprint="other-model")
    with pytest.raises(GalleryIndexError, match=r"shape \[N, 16\]"):
        milvus_index.search(queries[:, :8], fingerprint=FP)
    with pytest.raises(GalleryIndexError, match="top_k"):
        milvus_index.search(queries, fingerprint=FP, top_k=0)
    with pytest.raises(GalleryIndexError, match="2 embeddings but 1"):
        milvus_index.add(vectors[:2], [{"path": "x"}], fingerprint=FP)
    with pytest.raises(GalleryIndexError, match="pid filter must be integers"):
        milvus_index.search(queries, fingerprint=FP, pid=["a"])
    with pytest.raises(GalleryIndexError, match="since"):
        milvus_index.search(queries, fingerprint=FP, since="yesterday")
    uri = milvus_index.uri
    with pytest.raises(GalleryIndexError, match="has no collection 'missing'"):
        MilvusIndex.open(uri, "missing")
    with pytest.raises(GalleryIndexError, match="letters, digits or underscores"):
        MilvusIndex.open(uri, "bad-name")
    with pytest.raises(GalleryIndexError, match="already has a collection 'gallery'"):
        MilvusIndex.create(uri, "gallery", dim=16, fingerprint=FP)
    with pytest.raises(GalleryIndexError, match="kinds 'flat' and 'ivf'"):
        MilvusIndex.create(uri, "pq", dim=16, fingerprint=FP, kind="ivfpq")
    with MilvusIndex.open(uri, "gallery", readonly=True) as reader:
        with pytest.raises(GalleryIndexError, match="read-only"):
            reader.delete([1])
    milvus_index.close()
    with pytest.raises(GalleryIndexError, match="is closed"):
        len(milvus_index)
    with pytest.raises(GalleryIndexError, match="needs --uri"):
        open_index("gallery", backend="milvus")
    with pytest.raises(GalleryIndexError, match="is for --backend milvus"):
        open_index(tmp_path, uri=uri)
    with pytest.raises(GalleryIndexError, match="cannot connect to Milvus at http://127.0.0.1:9"):
        connect("http://127.0.0.1:9", timeout=1.0)


def test_create_or_resume(tmp_path):
    uri = str(tmp_path / "g.db")
    vectors, items, _ = _data(20)
    index, resumed = create_or_resume_index("g", backend="milvus", uri=uri, dim=16, fingerprint=FP)
    assert not resumed
    index.close()
    # empty, other settings: nothing written blocks nothing, it is created afresh
    index, resumed = create_or_resume_index(
        "g", backend="milvus", uri=uri, dim=16, fingerprint=FP, metric="l2"
    )
    assert not resumed and index.settings.metric == "l2"
    index.add(vectors, items, fingerprint=FP)
    index.close()
    index, resumed = create_or_resume_index(
        "g", backend="milvus", uri=uri, dim=16, fingerprint=FP, metric="l2"
    )
    assert resumed and len(index) == 20
    index.close()
    with pytest.raises(SettingsMismatchError) as raised:
        create_or_resume_index("g", backend="milvus", uri=uri, dim=16, fingerprint="other", metric="l2")
    assert raised.value.differences == ["fingerprint: 'model-v1' in the index, 'other' asked"]


def test_ivf_collection_searches_with_its_nprobe(tmp_path):
    vectors, items, queries = _data(600)
    queries = np.concatenate([queries, _data(600, seed=1)[2], _data(600, seed=2)[2]])
    exact = np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :5]
    found = {}
    for nprobe in (None, 1):
        name = f"ivf_{nprobe}"
        with MilvusIndex.create(
            str(tmp_path / "g.db"), name, dim=16, fingerprint=FP, kind="ivf", nlist=8, nprobe=nprobe
        ) as index:
            assert index.settings.trained_nlist == 8 and index.info()["search_nprobe"] == (nprobe or 8)
            ids = index.add(vectors, items, fingerprint=FP)
            index.rebuild()
            hits = index.search(queries, fingerprint=FP, top_k=5)
            found[nprobe] = np.mean(
                [
                    [h.id for h in row] == row_ids
                    for row, row_ids in zip(hits, ids[exact].tolist(), strict=True)
                ]
            )
    # all 8 lists visited (automatic nprobe): the exact top-5; one list: some neighbours are missed
    assert found[None] == 1.0 and found[1] < 1.0


def test_filter_expressions_by_hand():
    assert literal('a"b\\c\n\t') == '"a\\"b\\\\c\\n\\t"'
    assert literal(3) == "3" and literal(2.5) == "2.5"
    with pytest.raises(GalleryIndexError, match="control characters"):
        literal("bad\x00name", "path")
    with pytest.raises(GalleryIndexError, match="finite"):
        literal(float("nan"))
    assert filter_expression() is None
    assert filter_expression(camera=[1, "b"], pid=[]) == '(camera in ["1", "b"]) and (id < 0)'
    assert filter_expression(exclude_camera="2") == '(camera is null or not (camera in ["2"]))'
    assert filter_expression(exclude_camera=[]) == "(id >= 0)"
    assert filter_expression(since=10, until="1970-01-01T00:01:00Z", frames=(None, 4)) == (
        "(timestamp >= 10.0) and (timestamp <= 60.0) and (frame <= 4)"
    )
    assert extra_expression({"kind": "tracklet", "n": 2}) == 'extra["kind"] == "tracklet" and extra["n"] == 2'
    with pytest.raises(GalleryIndexError, match="frames bounds must be integers"):
        filter_expression(frames=(1.5, None))
