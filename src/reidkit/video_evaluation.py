"""Evaluate an embedder on a video ReID split: embed tracklets, rank the gallery, score under the MARS protocol.

Modes (:data:`VIDEO_MODES`):

* ``"v2v"``: each query tracklet against the gallery tracklets (video-to-video, the usual video ReID setting);
* ``"i2v"``: the first frame of each query tracklet, as a query image, against the gallery tracklets;
* ``"v2i"``: each query tracklet against the first frame of each gallery tracklet, as gallery images.

The image-based settings are the protocol of Gu et al.: the image side of a pair is the first frame of its
tracklet, the video side the whole tracklet. An image is embedded as a one-frame tracklet (by a temporal model,
a clip of that frame repeated ``seq_len`` times; by an image model, the frame itself).

Protocol (Zheng et al., MARS), in every mode, on the *tracklets* the query and gallery items come from: a gallery
item of the query's identity and camera is no match (the cross-camera rule of :func:`reidkit.metrics.evaluate`,
so the query's own tracklet, which MARS keeps in its gallery, never counts); junk gallery tracklets (pid -1) are
left out of every ranking (the ``ignore`` argument); distractors (pid 0) stay as ordinary negatives. A query
with no true match left is skipped (``num_queries`` counts the others). Without camera ids
(``split.has_camids`` False) only the gallery items of the query's own tracklet are excluded, besides junk.

Each distinct tracklet is embedded once (:func:`reidkit.embed.embed_tracklets`), so a query tracklet that is also
in the gallery costs nothing more. :func:`evaluate_video_splits` averages the benchmarks with several published
train / test splits (iLIDS-VID, PRID2011) over them with :func:`reidkit.metrics.average_metrics` (re-exported
here: mean CMC curve, mAP and mINP, each split counting the same; ``num_queries`` summed);
:func:`load_video_splits` loads every split.

Reference: Zheng et al., "MARS: A Video Benchmark for Large-Scale Person Re-identification", ECCV 2016; Gu et
al., "Temporal Knowledge Propagation for Image-to-Video Person Re-identification", ICCV 2019 (image-to-video and
video-to-image settings).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reidkit.data.records import Tracklet, VideoSplit
from reidkit.data.video_datasets import load_video_dataset
from reidkit.embed import Embedder, embed_tracklets
from reidkit.embed.tracklets import check_tracklet_arguments
from reidkit.errors import ConfigError, DatasetError
from reidkit.evaluation import EvalResult, GlobalDistance
from reidkit.metrics import Metrics, average_metrics, evaluate

#: the query / gallery settings of :func:`evaluate_video_split`.
VIDEO_MODES = ("v2v", "i2v", "v2i")

#: the pid of junk tracklets (MARS), left out of every ranking.
JUNK_PID = -1

__all__ = [
    "JUNK_PID",
    "VIDEO_MODES",
    "average_metrics",
    "evaluate_video_split",
    "evaluate_video_splits",
    "first_frame",
    "load_video_splits",
    "video_ignore",
    "video_sides",
]


def first_frame(tracklet: Tracklet) -> Tracklet:
    """The one-frame tracklet of ``tracklet``'s first frame (the image of the i2v / v2i settings)."""
    return Tracklet(tracklet.paths[:1], tracklet.pid, tracklet.camid)


def _check_mode(mode: str) -> None:
    if mode not in VIDEO_MODES:
        raise ConfigError(f"unknown video evaluation mode {mode!r}; choose from {list(VIDEO_MODES)}")


def _check_frames_present(tracklets: Sequence[Tracklet], part: str, split: VideoSplit) -> None:
    for position, tracklet in enumerate(tracklets):
        if not tracklet.paths:
            raise DatasetError(
                f"{split.name or 'video split'}: {part} tracklet {position} (pid {tracklet.pid}, camera "
                f"{tracklet.camid}) has no frames"
            )


def video_sides(split: VideoSplit, mode: str) -> tuple[list[Tracklet], list[Tracklet]]:
    """The query and gallery items that ``mode`` embeds: whole tracklets, or first frames on the image side.

    Raises:
        ConfigError: an unknown mode.
        DatasetError: no query or no gallery tracklets, or a tracklet without frames.
    """
    _check_mode(mode)
    name = split.name or "video split"
    if not split.query:
        raise DatasetError(
            f"{name} has no query tracklets, so there is nothing to evaluate (a gallery-only source such as a "
            "tracking run can be extracted, not evaluated)"
        )
    if not split.gallery:
        raise DatasetError(f"{name} has no gallery tracklets, so there is nothing to evaluate")
    _check_frames_present(split.query, "query", split)
    _check_frames_present(split.gallery, "gallery", split)
    query = [first_frame(t) for t in split.query] if mode == "i2v" else list(split.query)
    gallery = [first_frame(t) for t in split.gallery] if mode == "v2i" else list(split.gallery)
    return query, gallery


def video_ignore(
    query: Sequence[Tracklet], gallery: Sequence[Tracklet], *, has_camids: bool
) -> list[np.ndarray]:
    """Per query, the gallery indices the protocol leaves out (the ``ignore`` argument of ``evaluate``).

    Junk gallery tracklets (pid :data:`JUNK_PID`) for every query; without camera ids also the gallery copies of
    the query's own tracklet (with camera ids the cross-camera rule of ``evaluate`` already excludes them).

    Args:
        query: ``[Q]`` the query tracklets (whole, whatever the mode).
        gallery: ``[G]`` the gallery tracklets.
        has_camids: whether the cross-camera rule applies.

    Returns:
        ``Q`` sorted int64 arrays of gallery indices.
    """
    junk = np.array([i for i, t in enumerate(gallery) if t.pid == JUNK_PID], dtype=np.int64)
    if has_camids:
        return [junk] * len(query)
    copies: dict[Tracklet, list[int]] = {}
    for index, tracklet in enumerate(gallery):
        copies.setdefault(tracklet, []).append(index)
    return [np.union1d(junk, np.asarray(copies.get(t, []), dtype=np.int64)).astype(np.int64) for t in query]


def _embed_distinct(embedder: Embedder, items: Sequence[Tracklet], **keywords: Any) -> np.ndarray:
    """Embed each distinct tracklet of ``items`` once; rows in the order of ``items``."""
    positions: dict[Tracklet, int] = {}
    order = [positions.setdefault(item, len(positions)) for item in items]
    return embed_tracklets(embedder, list(positions), **keywords)[np.asarray(order, dtype=np.int64)]


def evaluate_video_split(
    embedder: Embedder,
    split: VideoSplit,
    *,
    mode: str = "v2v",
    seq_len: int = 8,
    frames: str = "all",
    distance: GlobalDistance | None = None,
    max_rank: int = 50,
    batch_size: int = 64,
    workers: int = 0,
    progress: bool = False,
) -> EvalResult:
    """Score the query tracklets of ``split`` against its gallery (see the module docstring for the protocol).

    Args:
        embedder: any embedder; a temporal checkpoint embeds clips, any other embedder frames.
        split: the video split (its ``has_camids`` picks the cross-camera or the same-tracklet rule).
        mode: ``"v2v"``, ``"i2v"`` or ``"v2i"``.
        seq_len: frames per clip (see :func:`reidkit.embed.embed_tracklets`).
        frames: ``"all"`` or ``"evenly"``.
        distance: the query x gallery distance (default euclidean, no re-ranking).
        max_rank: length of the CMC curve.
        batch_size: about this many frames per embedding step.
        workers: loader processes decoding frames.
        progress: show a progress bar.

    Returns:
        :class:`reidkit.evaluation.EvalResult`: metrics, ``[Q, D]`` / ``[G, D]`` features of the items scored
        (tracklets or first frames), ``[Q, G]`` distances.

    Raises:
        ConfigError: an unknown mode, bad embedding arguments.
        DatasetError: an empty query or gallery, a tracklet without frames.
        ValueError: no query has a valid true match.
    """
    check_tracklet_arguments(seq_len, frames, batch_size)
    query, gallery = video_sides(split, mode)
    features = _embed_distinct(
        embedder,
        [*query, *gallery],
        seq_len=seq_len,
        frames=frames,
        batch_size=batch_size,
        workers=workers,
        progress=progress,
    )
    query_features, gallery_features = features[: len(query)], features[len(query) :]
    distmat = (distance or GlobalDistance())(query_features, gallery_features)
    q_pids = np.array([t.pid for t in split.query], dtype=np.int64)
    g_pids = np.array([t.pid for t in split.gallery], dtype=np.int64)
    if split.has_camids:
        q_camids = np.array([t.camid for t in split.query], dtype=np.int64)
        g_camids = np.array([t.camid for t in split.gallery], dtype=np.int64)
    else:
        q_camids = g_camids = None
    ignore = video_ignore(split.query, split.gallery, has_camids=split.has_camids)
    metrics = evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=max_rank, ignore=ignore)
    return EvalResult(metrics, query_features, gallery_features, distmat)


def evaluate_video_splits(
    embedder: Embedder, splits: Sequence[VideoSplit], **options: Any
) -> tuple[Metrics, list[Metrics]]:
    """:func:`evaluate_video_split` on each split and their :func:`average_metrics`.

    Args:
        embedder: as for :func:`evaluate_video_split`.
        splits: the splits (e.g. :func:`load_video_splits`).
        **options: the keywords of :func:`evaluate_video_split` (``mode``, ``seq_len``, ``frames``, ``distance``,
            ``max_rank``, ``batch_size``, ``workers``, ``progress``), the same for every split.

    Returns:
        ``(mean, per_split)``.

    Raises:
        ValueError: no splits (and whatever :func:`evaluate_video_split` raises).
    """
    if not splits:
        raise ValueError("evaluate_video_splits needs at least one split, got none")
    per_split = [evaluate_video_split(embedder, split, **options).metrics for split in splits]
    return average_metrics(per_split), per_split


def load_video_splits(name: str, root: str | Path, **options: Any) -> list[VideoSplit]:
    """Every split of a video dataset: ``split=0..num_splits-1`` for those whose loader notes
    ``extra["num_splits"]`` (iLIDS-VID, PRID2011), else its one split.

    Args:
        name: a video dataset name (see :func:`reidkit.data.video_datasets.load_video_dataset`).
        root: its root.
        **options: the loader's other options (not ``split``).

    Raises:
        ConfigError: a ``split`` option (this loads every split).
        DatasetError: whatever the loader raises.
    """
    if "split" in options:
        raise ConfigError(
            f"the option split={options['split']!r} picks one split, but every split is loaded here: drop it "
            "(or evaluate that one split on its own)"
        )
    first = load_video_dataset(name, root, **options)
    count = first.extra.get("num_splits")
    if count is None:
        return [first]
    return [
        first if first.extra.get("split") == k else load_video_dataset(name, root, split=k, **options)
        for k in range(int(count))
    ]
