"""Tracklets of a run folder in the index (idempotent adds, model check) and answers as segments per identity."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("faiss", reason="the index needs faiss-cpu: pip install 'reidkit[faiss]'")
pytest.importorskip("cv2", reason="the test run's video needs opencv")

from reidkit.index import (  # noqa: E402
    FingerprintMismatchError,
    GalleryIndexError,
    Index,
    MilvusIndex,
    index_tracks,
    search_segments,
)
from reidkit.track.runfiles import CameraInfo, RunFileError, RunInfo, read_run, write_run  # noqa: E402
from segments_data import FPS, START, ColourEmbedder, person, write_tracked_run  # noqa: E402


@pytest.fixture
def run(tmp_path):
    return write_tracked_run(tmp_path / "run", ColourEmbedder()).resolve()


def _index(path, embedder=None, backend="faiss", **settings):
    """A new index at ``path``: a folder, or a collection named like it in a Milvus Lite file beside it."""
    embedder = embedder or ColourEmbedder()
    settings.update(dim=embedder.dim, fingerprint=embedder.fingerprint, model_name=embedder.name)
    if backend == "milvus":
        return MilvusIndex.create(str(path.parent / "milvus.db"), path.name, **settings)
    return Index.create(path, **settings)


def test_tracklets_become_items_with_their_features(run, tmp_path, backend):
    _, tracklets = read_run(run)
    with _index(tmp_path / "index", backend=backend) as index:
        done = index_tracks(index, run)
        assert (done.added, done.skipped, done.without_feature, len(index)) == (6, 0, 1, 6)
        by_key = {
            (item.camera, item.extra["local_id"]): (i, item) for i, item in index.items(index.ids()).items()
        }
        assert ("cam2", 6) not in by_key  # no feature: not indexed
        for tracklet in tracklets:
            if tracklet.feature is None:
                continue
            item_id, item = by_key[tracklet.key]
            assert index.vectors([item_id])[0].tobytes() == tracklet.feature.tobytes()
            assert item.path == str(run / "thumbs" / f"{tracklet.camera}_{tracklet.local_id}.jpg")
            assert (item.camera, item.timestamp, item.frame, item.pid) == (
                tracklet.camera,
                tracklet.start_time,
                tracklet.first_frame,
                None,
            )
            assert item.extra == {
                "kind": "tracklet",
                "run": str(run),
                "local_id": tracklet.local_id,
                "global_id": tracklet.global_id,
                "person": tracklet.person,
                "start_time": tracklet.start_time,
                "end_time": tracklet.end_time,
                "first_frame": tracklet.first_frame,
                "last_frame": tracklet.last_frame,
                "fps": FPS,
                "clock": True,
                "video": str(run / "cam1.webm") if tracklet.camera == "cam1" else None,
            }
        assert [int(i) for i in done.ids] == [by_key[t.key][0] for t in tracklets if t.feature is not None]


def test_re_adding_a_run_is_idempotent_and_follows_a_re_run(run, tmp_path, backend):
    with _index(tmp_path / "index", backend=backend) as index:
        first = index_tracks(index, run)
        again = index_tracks(index, run)
        assert (again.added, again.skipped, again.replaced, again.removed) == (0, 6, 0, 0)
        np.testing.assert_array_equal(again.ids, first.ids)
        assert len(index) == 6
        # the run is tracked again: one tracklet is gone, one has a new feature and a new global id
        info, tracklets = read_run(run, load_thumbnails=True)
        tracklets = [t for t in tracklets if t.key != ("cam2", 7)]
        changed = next(t for t in tracklets if t.key == ("cam1", 4))
        changed.feature = ColourEmbedder().embed_images([person((0, 0, 0), (255, 255, 255))])[0]
        changed.global_id = 9
        write_run(run, info, tracklets)
        update = index_tracks(index, run, batch_size=1)
        assert (update.added, update.skipped, update.replaced, update.removed) == (1, 4, 1, 1)
        assert len(index) == 5
        items = index.items(index.ids())
        assert sorted((i.camera, i.extra["local_id"]) for i in items.values()) == [
            ("cam1", 1),
            ("cam1", 2),
            ("cam1", 4),
            ("cam2", 3),
            ("cam2", 5),
        ]
        new_id = next(i for i, item in items.items() if item.extra["local_id"] == 4)
        assert items[new_id].extra["global_id"] == 9
        assert index.vectors([new_id])[0].tobytes() == changed.feature.tobytes()


def test_features_of_another_model_or_none_are_refused(run, tmp_path):
    class Other(ColourEmbedder):
        fingerprint = "another-model"

    with _index(tmp_path / "other", Other()) as index:
        with pytest.raises(FingerprintMismatchError, match=f"tracklet features of run {run}.*another-model"):
            index_tracks(index, run)
        assert len(index) == 0
    info, tracklets = read_run(run)
    for tracklet in tracklets:
        tracklet.feature = None
    write_run(run, RunInfo(info.cameras, {"name": None, "fingerprint": None, "dim": None}), tracklets)
    with _index(tmp_path / "index") as index:
        with pytest.raises(GalleryIndexError, match="tracked without an embedder"):
            index_tracks(index, run)
        with pytest.raises(RunFileError, match="run.json is missing"):
            index_tracks(index, tmp_path / "nowhere")


def test_search_answers_per_identity_with_every_segment(run, tmp_path, backend):
    embedder = ColourEmbedder()
    query = embedder.embed_images([person((200, 30, 30), (30, 30, 200))])
    with _index(tmp_path / "index", backend=backend) as index:
        index_tracks(index, run)
        plain = embedder.embed_images([person((200, 30, 30), (30, 30, 190))])  # a plain image, not a tracklet
        (image_id,) = index.add(
            plain, [{"path": str(tmp_path / "photo.jpg"), "camera": "cam9"}], fingerprint=embedder.fingerprint
        )
        found = search_segments(index, query, fingerprint=embedder.fingerprint, top_k=3)
        # the three best hits: the photo, then person 1 on cam1 (shade 0) and on cam2 (shade 25)
        assert [hit.id for hit in found.hits] == [image_id]
        (answer,) = found.identities
        assert (answer.run, answer.global_id, answer.cameras) == (str(run), 1, ["cam1", "cam2"])
        segments = answer.segments
        assert [(s.camera, s.local_id, s.hit) for s in segments] == [
            ("cam1", 1, True),
            ("cam2", 3, True),
            ("cam1", 4, False),  # not among the hits: listed to complete the identity
        ]
        assert answer.distance == segments[0].distance == pytest.approx(0.0, abs=1e-6)
        assert segments[0].distance < segments[1].distance < segments[2].distance
        exact = 1.0 - float(index.vectors([segments[2].id])[0] @ query[0])
        assert segments[2].distance == pytest.approx(exact, abs=1e-6)
        first = segments[0].to_dict()
        # frames 21..50 at 10 fps from START: 2.0 s .. 4.9 s, the video from 2.0 s to the end of frame 50
        assert (first["start_time"], first["end_time"]) == (START + 2.0, START + 4.9)
        assert (first["start_iso"], first["end_iso"]) == (
            "2023-11-14T22:13:22.000Z",
            "2023-11-14T22:13:24.900Z",
        )
        assert (first["video_start"], first["video_end"], first["duration"]) == (2.0, 5.0, 2.9)
        assert first["video"] == str(run / "cam1.webm") and segments[1].video is None
        assert first["thumbnail"] == str(run / "thumbs" / "cam1_1.jpg")
        assert answer.to_dict()["start_time"] == START + 2.0 and answer.to_dict()["end_time"] == START + 9.9

        # everything: person 1, then the loner (no global id: an identity of its own), then person 2
        found = search_segments(index, query, fingerprint=embedder.fingerprint, top_k=20)
        assert [(a.global_id, len(a.segments)) for a in found.identities] == [(1, 3), (None, 1), (2, 2)]
        assert [a.distance for a in found.identities] == sorted(a.distance for a in found.identities)
        # filters hold for the completed segments too
        found = search_segments(index, query, fingerprint=embedder.fingerprint, top_k=2, camera=["cam1"])
        assert [(s.camera, s.local_id) for s in found.identities[0].segments] == [("cam1", 1), ("cam1", 4)]
        found = search_segments(
            index, query, fingerprint=embedder.fingerprint, top_k=1, camera=["cam1"], complete=False
        )
        assert [(s.camera, s.local_id) for s in found.identities[0].segments] == [("cam1", 1)]


def test_a_camera_without_a_clock_has_no_iso_times(tmp_path):
    embedder = ColourEmbedder()
    camera = CameraInfo("door", "/v/door.avi", 5.0, 0.0, (8, 8), 20, None)
    info = RunInfo(
        [camera], {"name": embedder.name, "fingerprint": embedder.fingerprint, "dim": embedder.dim}
    )
    from reidkit.track.records import Tracklet

    crop = person((10, 200, 10), (200, 10, 10))
    feature = embedder.embed_images([crop])[0]
    write_run(
        tmp_path / "run",
        info,
        [Tracklet("door", 1, [6, 7, 8], np.ones((3, 4)), [1, 1, 1], 5.0, 0.0, feature=feature)],
    )
    with _index(tmp_path / "index") as index:
        index_tracks(index, tmp_path / "run")
        (answer,) = search_segments(index, feature, fingerprint=embedder.fingerprint).identities
        segment = answer.segments[0].to_dict()
        assert (segment["start_time"], segment["end_time"], segment["start_iso"], segment["end_iso"]) == (
            1.0,
            1.4,
            None,
            None,
        )
        assert segment["thumbnail"].endswith("tracklets.sqlite#door:1") and segment["video"] is None
