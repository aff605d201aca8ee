"""Video evaluation: the MARS protocol against a per-query reference loop, the image settings, split averaging."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from reidkit.checkpoint import Preprocess
from reidkit.data.records import Tracklet, VideoSplit
from reidkit.distance import pairwise_distance
from reidkit.embed import TorchEmbedder, embed_tracklets
from reidkit.errors import ConfigError, DatasetError
from reidkit.evaluation import GlobalDistance
from reidkit.metrics import Metrics
from reidkit.models.backbones import TrunkSpec
from reidkit.models.temporal import build_temporal_model
from reidkit.video_evaluation import (
    average_metrics,
    evaluate_video_split,
    evaluate_video_splits,
    first_frame,
    load_video_splits,
    video_ignore,
)
from video_data import ILIDS_SETS, AngleEmbedder, make_ilids, write_frame

MAX_RANK = 10


def _naive(distmat, query, gallery, *, has_camids: bool, max_rank: int = MAX_RANK):
    """Per query: drop junk, same pid + same camera (or the query's own tracklet without cameras), sort, score."""
    hits, aps, inps = np.zeros(max_rank), [], []
    for i, q in enumerate(query):
        kept = [
            j
            for j, g in enumerate(gallery)
            if g.pid != -1
            and not (has_camids and g.pid == q.pid and g.camid == q.camid)
            and not (not has_camids and g == q)
        ]
        kept.sort(key=lambda j: (distmat[i, j], j))
        ranks = [rank for rank, j in enumerate(kept, 1) if gallery[j].pid == q.pid]
        if not ranks:
            continue
        if ranks[0] <= max_rank:
            hits[ranks[0] - 1 :] += 1
        aps.append(np.mean([(k + 1) / rank for k, rank in enumerate(ranks)]))
        inps.append(len(ranks) / ranks[-1])
    return hits / len(aps), float(np.mean(aps)), float(np.mean(inps)), len(aps)


def _distances(query, gallery, metric: str) -> np.ndarray:
    return pairwise_distance(torch.from_numpy(query), torch.from_numpy(gallery), metric).numpy()


def _assert_metrics(metrics: Metrics, expected) -> None:
    cmc, mean_ap, mean_inp, count = expected
    np.testing.assert_allclose(metrics.cmc, cmc, atol=1e-12)
    assert metrics.mAP == pytest.approx(mean_ap, abs=1e-9)
    assert metrics.mINP == pytest.approx(mean_inp, abs=1e-9)
    assert metrics.num_queries == count


def _tracklet(folder, name: str, reds, pid: int, camid: int) -> Tracklet:
    paths = [write_frame(folder / f"{name}_{k}.png", red, seed=k) for k, red in enumerate(reds)]
    return Tracklet(tuple(paths), pid, camid)


def _random_split(folder, seed: int, *, has_camids: bool) -> VideoSplit:
    """A MARS-like split: gallery with junk (-1) and distractors (0), some queries also in the gallery."""
    rng = np.random.default_rng(seed)
    gallery = []
    for number in range(24):
        pid = int(rng.choice([-1, 0, 1, 2, 3, 4, 5], p=[0.1, 0.1, 0.16, 0.16, 0.16, 0.16, 0.16]))
        reds = rng.integers(0, 256, size=int(rng.integers(1, 4)))
        gallery.append(_tracklet(folder, f"g{seed}_{number}", reds, pid, int(rng.integers(0, 3))))
    shared = [t for t in gallery if t.pid > 0][:3]
    extra = [
        _tracklet(folder, f"q{seed}_{n}", rng.integers(0, 256, size=2), n % 5 + 1, int(rng.integers(0, 3)))
        for n in range(5)
    ]
    return VideoSplit((), (*shared, *extra), tuple(gallery), name="random", has_camids=has_camids)


@pytest.mark.parametrize("has_camids", [True, False])
@pytest.mark.parametrize("mode", ["v2v", "i2v", "v2i"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_protocol_equals_the_reference_loop_on_random_splits(tmp_path, seed, mode, has_camids):
    split = _random_split(tmp_path, seed, has_camids=has_camids)
    embedder = AngleEmbedder()
    result = evaluate_video_split(embedder, split, mode=mode, max_rank=MAX_RANK, seq_len=2)
    query = [first_frame(t) for t in split.query] if mode == "i2v" else list(split.query)
    gallery = [first_frame(t) for t in split.gallery] if mode == "v2i" else list(split.gallery)
    np.testing.assert_allclose(result.query_features, embed_tracklets(embedder, query, seq_len=2), atol=1e-6)
    np.testing.assert_allclose(
        result.gallery_features, embed_tracklets(embedder, gallery, seq_len=2), atol=1e-6
    )
    distances = _distances(result.query_features, result.gallery_features, "euclidean")
    np.testing.assert_allclose(result.distmat, distances, atol=1e-6)
    # the protocol is decided on the tracklets the items come from, whatever the mode
    _assert_metrics(result.metrics, _naive(result.distmat, split.query, split.gallery, has_camids=has_camids))


def _hand_split(folder, *, has_camids: bool = True) -> VideoSplit:
    query = _tracklet(folder, "q1", [0], pid=1, camid=0)
    lonely = _tracklet(folder, "q2", [100], pid=3, camid=0)
    gallery = (
        _tracklet(folder, "same_camera_match", [5], pid=1, camid=0),  # nearest, but same pid and camera
        _tracklet(folder, "junk", [10, 10], pid=-1, camid=1),  # next nearest: junk, never ranked
        _tracklet(folder, "distractor", [15], pid=0, camid=1),  # a negative like any other
        _tracklet(folder, "match", [20, 20, 20], pid=1, camid=1),
        _tracklet(folder, "other", [30], pid=2, camid=1),
        _tracklet(folder, "lonely_same_camera", [101], pid=3, camid=0),  # q2's only match: same camera
        query,  # MARS keeps the query tracklets in the gallery
    )
    return VideoSplit((), (query, lonely), gallery, name="hand", has_camids=has_camids)


def test_junk_same_camera_and_distractors_by_hand(tmp_path):
    result = evaluate_video_split(AngleEmbedder(), _hand_split(tmp_path), max_rank=5)
    # q1 ranks: distractor, match, other (junk, its own tracklet and the same-camera match are left out);
    # q2 has no cross-camera match and is skipped
    assert result.metrics.num_queries == 1
    np.testing.assert_allclose(result.metrics.cmc, [0, 1, 1, 1, 1])
    assert result.metrics.mAP == pytest.approx(0.5) and result.metrics.mINP == pytest.approx(0.5)


def test_without_camera_ids_only_the_own_tracklet_is_left_out(tmp_path):
    split = _hand_split(tmp_path, has_camids=False)
    result = evaluate_video_split(AngleEmbedder(), split, max_rank=5)
    # q1: same-camera match (rank 1), distractor, match (rank 3); q2: its neighbour in the same camera, rank 1
    assert result.metrics.num_queries == 2
    np.testing.assert_allclose(result.metrics.cmc, [1, 1, 1, 1, 1])
    assert result.metrics.mAP == pytest.approx(((1 + 2 / 3) / 2 + 1) / 2)
    assert result.metrics.mINP == pytest.approx((2 / 3 + 1) / 2)
    ignored = video_ignore(split.query, split.gallery, has_camids=False)
    assert [list(i) for i in ignored] == [[1, 6], [1]]
    assert [list(i) for i in video_ignore(split.query, split.gallery, has_camids=True)] == [[1], [1]]


def test_image_settings_use_first_frames(tmp_path):
    # q: frames at 0, 70, 70 degrees -> tracklet direction ~49 degrees; its first frame alone is at 0 degrees
    query = _tracklet(tmp_path, "q", [0, 200, 200], pid=1, camid=0)
    near_image = _tracklet(tmp_path, "near", [10], pid=2, camid=1)
    match = _tracklet(tmp_path, "match", [140, 0, 0], pid=1, camid=1)  # ~23 degrees; first frame 49 degrees
    split = VideoSplit((), (query,), (near_image, match), name="first frames")
    embedder = AngleEmbedder()
    video = evaluate_video_split(embedder, split, mode="v2v", max_rank=2)
    image_query = evaluate_video_split(embedder, split, mode="i2v", max_rank=2)
    image_gallery = evaluate_video_split(embedder, split, mode="v2i", max_rank=2)
    np.testing.assert_allclose(image_query.query_features, [[1.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(image_query.gallery_features, video.gallery_features)
    np.testing.assert_allclose(image_gallery.query_features, video.query_features)
    angle = np.radians(140 / 255 * 90)
    np.testing.assert_allclose(image_gallery.gallery_features[1], [np.cos(angle), np.sin(angle)], atol=1e-6)
    # v2v: the match (23 degrees) is nearer than the other (7) to the tracklet (49); i2v from 0 degrees: not;
    # v2i: the match's first frame (49 degrees) is the nearest image to the tracklet
    assert video.metrics.cmc[0] == 1 and image_query.metrics.cmc[0] == 0 and image_gallery.metrics.cmc[0] == 1


def test_each_distinct_tracklet_is_embedded_once(tmp_path):
    split = _random_split(tmp_path, 0, has_camids=True)
    embedder = AngleEmbedder()
    evaluate_video_split(embedder, split, frames="all")
    distinct = set(split.query) | set(split.gallery)
    assert len(distinct) < len(split.query) + len(split.gallery)
    assert embedder.images == sum(len(t.paths) for t in distinct)


def test_distance_and_errors(tmp_path):
    split = _hand_split(tmp_path)
    cosine = evaluate_video_split(
        AngleEmbedder(), split, distance=GlobalDistance(metric="cosine"), max_rank=5
    )
    expected = _distances(cosine.query_features, cosine.gallery_features, "cosine")
    np.testing.assert_allclose(cosine.distmat, expected, atol=1e-6)
    with pytest.raises(
        ConfigError, match=r"unknown video evaluation mode 'i2i'; choose from \['v2v', 'i2v', 'v2i'\]"
    ):
        evaluate_video_split(AngleEmbedder(), split, mode="i2i")
    with pytest.raises(ConfigError, match=r"frames='random'"):
        evaluate_video_split(AngleEmbedder(), split, frames="random")
    with pytest.raises(DatasetError, match=r"run has no query tracklets, .* extracted, not evaluated"):
        evaluate_video_split(AngleEmbedder(), VideoSplit((), (), split.gallery, name="run"))
    empty = VideoSplit((), split.query, (*split.gallery, Tracklet((), 4, 1)), name="hand")
    with pytest.raises(DatasetError, match=r"hand: gallery tracklet 7 \(pid 4, camera 1\) has no frames"):
        evaluate_video_split(AngleEmbedder(), empty, mode="i2v")


def test_average_metrics_by_hand():
    first = Metrics(cmc=np.array([0.5, 1.0]), mAP=0.4, mINP=0.2, num_queries=3)
    second = Metrics(cmc=np.array([1.0, 1.0]), mAP=0.8, mINP=0.6, num_queries=5)
    mean = average_metrics([first, second])
    np.testing.assert_allclose(mean.cmc, [0.75, 1.0])
    assert (mean.mAP, mean.mINP, mean.num_queries) == (pytest.approx(0.6), pytest.approx(0.4), 8)
    with pytest.raises(ValueError, match="at least one"):
        average_metrics([])
    with pytest.raises(ValueError, match="different lengths"):
        average_metrics([first, Metrics(np.array([1.0]), 1.0, 1.0, 1)])


def test_ilidsvid_splits_are_loaded_and_averaged(tmp_path):
    splits = load_video_splits("iLIDS-VID", make_ilids(tmp_path / "ilids"))
    assert [s.extra["split"] for s in splits] == [0, 1]
    # the first half of each ls_set row is the test set
    assert [[t.pid for t in s.query] for s in splits] == [list(row[:2]) for row in ILIDS_SETS]
    embedder = AngleEmbedder()
    mean, per_split = evaluate_video_splits(embedder, splits, max_rank=2, seq_len=2)
    alone = [evaluate_video_split(embedder, s, max_rank=2, seq_len=2).metrics for s in splits]
    for got, expected in zip(per_split, alone, strict=True):
        np.testing.assert_allclose(got.cmc, expected.cmc)
        assert (got.mAP, got.mINP, got.num_queries) == (expected.mAP, expected.mINP, expected.num_queries)
    assert mean.num_queries == 4 and mean.mAP == pytest.approx(np.mean([m.mAP for m in alone]))
    with pytest.raises(ConfigError, match=r"split=1 picks one split"):
        load_video_splits("ilidsvid", tmp_path / "ilids", split=1)
    with pytest.raises(ValueError, match="at least one split"):
        evaluate_video_splits(embedder, [])


def _make_prid(folder, splits=None):
    for camera in ("cam_a", "cam_b"):
        for person in range(1, 5):
            for frame in range(2):
                write_frame(
                    folder / "prid_2011" / "multi_shot" / camera / f"person_{person:04d}" / f"{frame}.png", 9
                )
    if splits is not None:
        (folder / "splits_prid2011.json").write_text(json.dumps(splits))
    return folder


def test_prid2011_splits_from_json_and_generated(tmp_path):
    generated = load_video_splits("prid2011", _make_prid(tmp_path / "a"), min_frames=2)
    assert len(generated) == 10 and [s.extra["split"] for s in generated] == list(range(10))
    assert all(s.extra["generated_splits"] for s in generated)
    people = [f"person_{n:04d}" for n in range(1, 5)]
    listed = [{"train": people[:2], "test": people[2:]}, {"train": people[2:], "test": people[:2]}]
    from_json = load_video_splits("prid2011", _make_prid(tmp_path / "b", listed))
    assert [[t.pid for t in s.query] for s in from_json] == [[3, 4], [1, 2]]


def test_a_temporal_model_embeds_first_frames_as_one_frame_clips(tmp_path):
    torch.manual_seed(0)
    trunk = TrunkSpec(backbone="resnet18", last_stride=2)
    model = build_temporal_model("baseline", temporal="rnn", num_classes=4, trunk=trunk, hidden=8).eval()
    embedder = TorchEmbedder(model, Preprocess(16, 8, flip=False))
    split = _hand_split(tmp_path)
    result = evaluate_video_split(embedder, split, mode="i2v", seq_len=3, max_rank=5)
    with torch.no_grad():
        for tracklet, row in zip(split.query, result.query_features, strict=True):
            frame = torch.from_numpy(embedder.preprocess.image(Image.open(tracklet.paths[0])))
            feature = model.embed(frame.expand(1, 3, *frame.shape)).numpy()[
                0
            ]  # the frame repeated seq_len times
            np.testing.assert_allclose(row, feature / np.linalg.norm(feature), atol=1e-5)
    gallery = embed_tracklets(embedder, split.gallery, seq_len=3)
    np.testing.assert_allclose(result.gallery_features, gallery, atol=1e-6)
    _assert_metrics(
        result.metrics, _naive(result.distmat, split.query, split.gallery, has_camids=True, max_rank=5)
    )
