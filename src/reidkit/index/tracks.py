"""Tracklets of a tracking run in the gallery index, and search answers as video segments per identity.

:func:`index_tracks` puts every tracklet of a run folder (:mod:`reidkit.track.runfiles`) that has a feature
into the index as one item: embedding = the tracklet feature, ``path`` = its thumbnail (absolute), ``camera``,
``timestamp`` = start time, ``frame`` = first frame, ``pid`` = None and ``extra`` =
``{"kind": "tracklet", "run", "local_id", "global_id", "person", "start_time", "end_time", "first_frame",
"last_frame", "fps", "clock", "video"}`` (``run`` and ``video`` absolute; ``clock``: the camera start is a real
clock, so times are Unix seconds). The run's embedder fingerprint must be the index's.

Re-adding a run is idempotent: the tracklets already indexed from that run folder are found by ``extra.run``
and matched by ``(camera, local_id)``. One whose metadata and feature are unchanged is skipped; one that
changed (the run was tracked again) is re-added and its old entry deleted in the same write; one that is no
longer in the run is deleted. Each chunk is one atomic write, so a killed add re-run finishes the job.

:func:`search_segments` answers a query per identity: the hits that are tracklets are grouped by
``(run, global_id)`` (a tracklet without a global id is an identity of its own); an identity's distance is its
best hit's, and its segments are all its tracklets passing the search filters (those not among the hits get
their exact distance to the query), ordered by time. Hits that are not tracklets are returned as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reidkit.distance import pairwise_distance_numpy
from reidkit.index.items import GalleryIndexError, GalleryItem, SearchHit

if TYPE_CHECKING:
    from reidkit.index import Index
    from reidkit.track.runfiles import RunFiles

TRACKLET_KIND = "tracklet"


@dataclass(frozen=True)
class IndexedTracks:
    """What :func:`index_tracks` did.

    Attributes:
        ids: ``[N]`` int64, the item id of each tracklet with a feature, in table order.
        added: tracklets added by this call (``replaced`` included).
        skipped: tracklets already indexed, unchanged.
        replaced: tracklets indexed before with other metadata or feature: re-added, old entry deleted.
        removed: entries of this run's tracklets that are no longer in the run: deleted.
        without_feature: tracklets left out because they have no feature.
    """

    ids: np.ndarray
    added: int
    skipped: int
    replaced: int
    removed: int
    without_feature: int


def tracklet_items(files: RunFiles) -> tuple[list[GalleryItem], np.ndarray]:
    """The gallery items and ``[N, D]`` float32 embeddings of a run's tracklets that have a feature."""
    items, vectors = [], []
    for tracklet in files.tracklets:
        if tracklet.feature is None:
            continue
        camera = files.info.camera(tracklet.camera)
        video = camera.video_path(files.directory)
        thumbnail = files.thumbnails.get(tracklet.key)
        path = (
            str(files.directory / thumbnail)
            if thumbnail is not None
            else f"{files.directory}/tracklets.sqlite#{tracklet.camera}:{tracklet.local_id}"
        )
        extra = {
            "kind": TRACKLET_KIND,
            "run": str(files.directory),
            "local_id": int(tracklet.local_id),
            "global_id": tracklet.global_id,
            "person": tracklet.person,
            "start_time": tracklet.start_time,
            "end_time": tracklet.end_time,
            "first_frame": tracklet.first_frame,
            "last_frame": tracklet.last_frame,
            "fps": float(camera.fps),
            "clock": camera.has_clock,
            "video": None if video is None else str(video),
        }
        items.append(
            GalleryItem(
                path=path,
                camera=tracklet.camera,
                timestamp=tracklet.start_time,
                frame=tracklet.first_frame,
                pid=None,
                extra=extra,
            )
        )
        vectors.append(np.asarray(tracklet.feature, dtype=np.float32))
    dim = files.info.dim or 0
    return items, (np.stack(vectors) if vectors else np.zeros((0, dim), dtype=np.float32))


def _stored_tracklets(index: Index, run: str) -> dict[tuple[str | None, int], list[int]]:
    """(camera, local_id) -> ids of the entries indexed from run folder ``run``."""
    ids = index.ids_with_extra(kind=TRACKLET_KIND, run=run)
    stored: dict[tuple[str | None, int], list[int]] = {}
    for item_id, item in sorted(index.items(ids).items()):
        stored.setdefault((item.camera, int(item.extra.get("local_id", -1))), []).append(item_id)
    return stored


def index_tracks(index: Index, run_dir: str | Path, *, batch_size: int = 1024) -> IndexedTracks:
    """Add (or update) the tracklets of a run folder in ``index``; see the module docstring.

    Args:
        index: an open, writable index built with the run's embedder.
        run_dir: a run folder written by ``reidkit track``.
        batch_size: tracklets committed per write.

    Returns:
        The item ids and the counts of added, skipped, replaced and removed tracklets.

    Raises:
        RunFileError: a missing or malformed run folder (the file and field are named).
        FingerprintMismatchError: the run's features come from another model than the index's.
        GalleryIndexError: the run was tracked without an embedder (no features), or the feature dim differs.
    """
    from reidkit.track.runfiles import read_run_files

    if batch_size < 1:
        raise GalleryIndexError(f"batch_size must be >= 1, got {batch_size}")
    files = read_run_files(run_dir)
    fingerprint = files.info.fingerprint
    if fingerprint is None:
        raise GalleryIndexError(
            f"run {files.directory} was tracked without an embedder: its tracklets have no features to "
            "index (track again with --checkpoint, --onnx or --openvino)"
        )
    if fingerprint != index.fingerprint:
        index.check_fingerprint(
            fingerprint, f"the tracklet features of run {files.directory} ({files.info.embedder['name']})"
        )
    items, vectors = tracklet_items(files)
    stored = _stored_tracklets(index, str(files.directory))
    current = {(item.camera, item.extra["local_id"]) for item in items}
    removed = [item_id for key, ids in stored.items() if key not in current for item_id in ids]
    old_items = index.items([item_id for ids in stored.values() for item_id in ids])
    ids = np.zeros(len(items), dtype=np.int64)
    previous = [stored.get((item.camera, item.extra["local_id"]), []) for item in items]
    same = {
        position: entries[0]
        for position, (item, entries) in enumerate(zip(items, previous, strict=True))
        if len(entries) == 1 and old_items[entries[0]] == item
    }
    old_vectors = index.vectors(list(same.values()))
    for (position, item_id), vector in zip(same.items(), old_vectors, strict=True):
        if vector.tobytes() == vectors[position].tobytes():
            ids[position] = item_id
    todo = [position for position in range(len(items)) if ids[position] == 0]
    stale = {position: previous[position] for position in todo if previous[position]}
    pending_removal = removed
    for start in range(0, len(todo), batch_size):
        part = todo[start : start + batch_size]
        new = index.add(
            vectors[part],
            [items[p] for p in part],
            fingerprint=fingerprint,
            save=False,
            replace=[*pending_removal, *(i for p in part for i in stale.get(p, []))],
        )
        pending_removal = []
        ids[part] = new
    if pending_removal:
        index.delete(pending_removal)
    index.save()
    return IndexedTracks(
        ids=ids,
        added=len(todo),
        skipped=len(items) - len(todo),
        replaced=len(stale),
        removed=len(removed),
        without_feature=len(files.tracklets) - len(items),
    )


# ---------------------------------------------------------------------------------------------- search
def is_tracklet(item: GalleryItem) -> bool:
    """True for an item added by :func:`index_tracks`."""
    return item.extra.get("kind") == TRACKLET_KIND and isinstance(item.extra.get("run"), str)


def iso_time(seconds: float) -> str:
    """Unix seconds as an ISO-8601 UTC date-time with milliseconds, e.g. ``2023-11-14T22:13:20.500Z``."""
    return (
        datetime.fromtimestamp(seconds, timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


@dataclass(frozen=True)
class Segment:
    """One tracklet of an answered identity: where and when the person is seen.

    Attributes:
        id: the gallery item id.
        camera: camera name.
        local_id: the tracker's id in that camera.
        start_time, end_time: seconds on the camera's clock (Unix seconds when ``clock``).
        first_frame, last_frame: 1-based frames.
        fps: the camera's frames per second.
        clock: the camera start is a real clock (times are Unix seconds).
        distance: distance of the tracklet feature to the query.
        thumbnail: the tracklet's best crop (the item's path).
        video: the camera's playable video (absolute path), or None.
        hit: True when the search ranked it among its hits (False: listed to complete its identity).
    """

    id: int
    camera: str | None
    local_id: int
    start_time: float
    end_time: float
    first_frame: int
    last_frame: int
    fps: float
    clock: bool
    distance: float
    thumbnail: str
    video: str | None
    hit: bool

    @property
    def video_start(self) -> float:
        """Seconds into the camera's video at the first frame."""
        return (self.first_frame - 1) / self.fps

    @property
    def video_end(self) -> float:
        """Seconds into the camera's video at the end of the last frame."""
        return self.last_frame / self.fps

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "camera": self.camera,
            "local_id": self.local_id,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "start_iso": iso_time(self.start_time) if self.clock else None,
            "end_iso": iso_time(self.end_time) if self.clock else None,
            "duration": round(self.end_time - self.start_time, 6),
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "video_start": self.video_start,
            "video_end": self.video_end,
            "distance": self.distance,
            "thumbnail": self.thumbnail,
            "video": self.video,
            "hit": self.hit,
        }


@dataclass(frozen=True)
class IdentityAnswer:
    """One person answering a query: the best distance and every segment where the person is seen.

    Attributes:
        run: the run folder the tracklets come from.
        global_id: the identity across cameras, or None for a tracklet without one.
        distance: the best (smallest) distance of its hits.
        segments: its segments by start time, then camera.
    """

    run: str
    global_id: int | None
    distance: float
    segments: tuple[Segment, ...]

    @property
    def cameras(self) -> list[str]:
        return sorted({str(segment.camera) for segment in self.segments})

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "global_id": self.global_id,
            "distance": self.distance,
            "cameras": self.cameras,
            "start_time": min(segment.start_time for segment in self.segments),
            "end_time": max(segment.end_time for segment in self.segments),
            "segments": [segment.to_dict() for segment in self.segments],
        }


@dataclass(frozen=True)
class SegmentSearch:
    """A search answer: identities (from tracklet hits) and the hits that are not tracklets."""

    identities: list[IdentityAnswer]
    hits: list[SearchHit]


def segment_of(item_id: int, item: GalleryItem, distance: float, *, hit: bool) -> Segment:
    """The :class:`Segment` of an item added by :func:`index_tracks`."""
    extra = item.extra
    return Segment(
        id=int(item_id),
        camera=item.camera,
        local_id=int(extra["local_id"]),
        start_time=float(extra["start_time"]),
        end_time=float(extra["end_time"]),
        first_frame=int(extra["first_frame"]),
        last_frame=int(extra["last_frame"]),
        fps=float(extra["fps"]),
        clock=bool(extra.get("clock", False)),
        distance=float(distance),
        thumbnail=item.path,
        video=extra.get("video"),
        hit=hit,
    )


def identity_key(item: GalleryItem) -> tuple[str, int | None, str | None, int | None]:
    """``(run, global_id, camera, local_id)``; camera and local id only when there is no global id."""
    extra = item.extra
    if extra.get("global_id") is not None:
        return (extra["run"], int(extra["global_id"]), None, None)
    return (extra["run"], None, item.camera, int(extra["local_id"]))


def group_segments(hits: Sequence[SearchHit]) -> SegmentSearch:
    """Group ranked hits per identity (no completion): identities by best distance, other hits as they are."""
    groups: dict[tuple, list[SearchHit]] = {}
    others = []
    for hit in hits:
        if is_tracklet(hit.item):
            groups.setdefault(identity_key(hit.item), []).append(hit)
        else:
            others.append(hit)
    answers = [
        _answer(key, [segment_of(h.id, h.item, h.distance, hit=True) for h in members])
        for key, members in groups.items()
    ]
    answers.sort(key=lambda answer: answer.distance)
    return SegmentSearch(answers, others)


def _answer(key: tuple, segments: list[Segment], best: float | None = None) -> IdentityAnswer:
    ordered = sorted(segments, key=lambda s: (s.start_time, str(s.camera), s.local_id))
    distance = min(s.distance for s in segments if s.hit) if best is None else best
    return IdentityAnswer(run=key[0], global_id=key[1], distance=distance, segments=tuple(ordered))


def _distances(index: Index, query: np.ndarray, ids: list[int]) -> np.ndarray:
    vectors = index.vectors(ids).astype(np.float64)
    query = np.asarray(query, dtype=np.float64).reshape(1, -1)
    metric = "cosine" if index.settings.metric == "ip" else "euclidean"
    return pairwise_distance_numpy(vectors, query, metric)[:, 0]


def complete_identities(
    index: Index, query: np.ndarray, found: SegmentSearch, **filters: Any
) -> SegmentSearch:
    """Add to each identity with a global id the segments of its other tracklets that pass ``filters``."""
    allowed = index.matching_ids(**filters)
    allowed_set = None if allowed is None else set(allowed.tolist())
    answers = []
    for answer in found.identities:
        if answer.global_id is None:
            answers.append(answer)
            continue
        known = {segment.id for segment in answer.segments}
        ids = index.ids_with_extra(kind=TRACKLET_KIND, run=answer.run, global_id=answer.global_id)
        extra_ids = [
            int(i) for i in ids if int(i) not in known and (allowed_set is None or int(i) in allowed_set)
        ]
        if not extra_ids:
            answers.append(answer)
            continue
        items = index.items(extra_ids)
        distances = _distances(index, query, extra_ids)
        added = [
            segment_of(i, items[i], d, hit=False)
            for i, d in zip(extra_ids, distances, strict=True)
            if i in items
        ]
        key = (answer.run, answer.global_id)
        answers.append(_answer(key, [*answer.segments, *added], best=answer.distance))
    return SegmentSearch(answers, found.hits)


def search_segments(
    index: Index,
    query: np.ndarray,
    *,
    fingerprint: str,
    top_k: int = 20,
    complete: bool = True,
    hits: Sequence[SearchHit] | None = None,
    **filters: Any,
) -> SegmentSearch:
    """Search ``index`` with one query and answer per identity; see the module docstring.

    Args:
        index: an open index.
        query: ``[D]`` or ``[1, D]`` float32 query embedding.
        fingerprint: the query embedder's fingerprint.
        top_k: hits retrieved; the identities among them are answered.
        complete: list every segment of an answered identity (passing ``filters``), not only its hits.
        hits: ranked hits already retrieved for this query (e.g. re-ranked); searched when None.
        **filters: the metadata filters of :meth:`reidkit.index.Index.search`.

    Returns:
        Identities by best distance, and the hits that are not tracklets.
    """
    query = np.asarray(query, dtype=np.float32).reshape(1, -1)
    if hits is None:
        hits = index.search(query, fingerprint=fingerprint, top_k=top_k, **filters)[0]
    found = group_segments(hits)
    if complete and found.identities:
        found = complete_identities(index, query[0], found, **filters)
    return found
