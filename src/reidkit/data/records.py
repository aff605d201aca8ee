"""Record types shared by every dataset parser, loader, evaluator and index; splits and their summaries.

A record is a frozen dataclass, never a positional tuple, so adding a field later breaks nobody.
Train identities are relabelled to 0..N-1 in exactly one place: :func:`relabel`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

import numpy as np

from reidkit.errors import DatasetError

#: camid value used when a dataset is loaded in the explicit "no camera ids" mode.
NO_CAMERA = -1


@dataclass(frozen=True)
class Sample:
    """One pedestrian crop.

    Attributes:
        path: image file path.
        pid: identity label (original id in query/gallery; 0..N-1 in a relabelled train set;
            0 marks a distractor in Market-style galleries).
        camid: 0-based camera index, or :data:`NO_CAMERA` when the dataset has no camera ids.
    """

    path: str
    pid: int
    camid: int


@dataclass(frozen=True)
class Tracklet:
    """A video track of one identity from one camera (video ReID)."""

    paths: tuple[str, ...]
    pid: int
    camid: int


_Record = TypeVar("_Record", Sample, Tracklet)


@dataclass(frozen=True)
class _Partition(Generic[_Record]):
    """The train / query / gallery records and notes that :class:`Split` and :class:`VideoSplit` share."""

    train: tuple[_Record, ...]
    query: tuple[_Record, ...]
    gallery: tuple[_Record, ...]
    name: str = ""
    has_camids: bool = True
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def num_train_pids(self) -> int:
        return len({record.pid for record in self.train})

    @property
    def num_train_cams(self) -> int:
        return len({record.camid for record in self.train})


@dataclass(frozen=True)
class Split(_Partition[Sample]):
    """A dataset split into train / query / gallery.

    ``train`` is already relabelled (pids 0..num_train_pids-1); ``query`` and ``gallery`` keep the
    original ids so that the same person has the same id in both. ``train`` may be empty (a test-only
    benchmark: ``num_train_pids`` and ``num_train_cams`` are 0); such a split can be evaluated, not trained on.
    ``has_camids`` is False for data loaded in "no camera ids" mode: evaluation then excludes only the
    identical image instead of applying the cross-camera rule.
    """


def _relabel(records: Sequence[_Record]) -> tuple[tuple[_Record, ...], dict[int, int]]:
    mapping = {pid: label for label, pid in enumerate(sorted({r.pid for r in records}))}
    return tuple(replace(r, pid=mapping[r.pid]) for r in records), mapping


def relabel(samples: Sequence[Sample]) -> tuple[tuple[Sample, ...], dict[int, int]]:
    """Map the identities of ``samples`` to 0..N-1 in order of sorted original id.

    Returns:
        (relabelled samples in the input order, {original pid: new label}).
    """
    return _relabel(samples)


def make_split(
    train: Sequence[Sample],
    query: Sequence[Sample],
    gallery: Sequence[Sample],
    *,
    name: str = "",
    has_camids: bool = True,
    extra: dict | None = None,
) -> Split:
    """Build a :class:`Split`, relabelling the train identities (the one place this happens).

    ``extra["train_pid_mapping"]`` keeps ``{original pid: train label}`` (e.g. to look up per-identity
    attribute labels; ``{}`` for an empty train split); other ``extra`` entries are the loader's own notes.
    """
    train_relabelled, mapping = relabel(train)
    notes = {**(extra or {}), "train_pid_mapping": mapping}
    return Split(
        train_relabelled, tuple(query), tuple(gallery), name=name, has_camids=has_camids, extra=notes
    )


@dataclass(frozen=True)
class VideoSplit(_Partition[Tracklet]):
    """A video dataset split into train / query / gallery tracklets.

    The video counterpart of :class:`Split`: ``train`` is relabelled (pids 0..num_train_pids-1, by
    :func:`relabel_tracklets`); ``query`` and ``gallery`` keep the original ids. ``train`` may be empty (a
    test-only set); ``query`` is empty only for a gallery-only source (a tracking run). In a MARS gallery, pid -1
    marks junk tracklets that the evaluation protocol excludes and pid 0 distractors.
    """


def relabel_tracklets(tracklets: Sequence[Tracklet]) -> tuple[tuple[Tracklet, ...], dict[int, int]]:
    """Map the identities of ``tracklets`` to 0..N-1 in order of sorted original id (as :func:`relabel`).

    Returns:
        (relabelled tracklets in the input order, {original pid: new label}).
    """
    return _relabel(tracklets)


def split_by_identity(
    samples: Sequence[Sample], *, train_fraction: float, seed: int, cameras: bool
) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """Split samples into train / query / gallery by identity, deterministically for a given seed.

    A shuffled ``train_fraction`` of the identities (at least one, and at least one left for test) forms the
    train set. For each test identity seen in two or more cameras, one image per camera (chosen at random) is a
    query; identities seen in a single camera could never have a cross-camera match, so all their images stay in
    the gallery. Without cameras, every test identity with two or more images gets one query.

    Returns:
        (train, query, gallery) samples.
    """
    if not 0.0 < train_fraction < 1.0:
        raise DatasetError(f"train_fraction must lie strictly between 0 and 1, got {train_fraction}")
    rng = np.random.default_rng(seed)
    identities = sorted({s.pid for s in samples})
    if len(identities) < 2:
        raise DatasetError(
            f"found {len(identities)} identity(ies); at least 2 are needed to split into train and test"
        )
    num_train = min(max(1, round(len(identities) * train_fraction)), len(identities) - 1)
    order = rng.permutation(len(identities))
    train_ids = {identities[i] for i in order[:num_train]}
    train = [s for s in samples if s.pid in train_ids]
    groups: dict[int, dict[int, list[Sample]]] = defaultdict(lambda: defaultdict(list))
    for sample in sorted((s for s in samples if s.pid not in train_ids), key=lambda s: s.path):
        groups[sample.pid][sample.camid].append(sample)
    query: list[Sample] = []
    chosen: set[Sample] = set()
    for pid in sorted(groups):
        by_camera = groups[pid]
        if cameras and len(by_camera) >= 2:
            picks = [images[rng.integers(len(images))] for _, images in sorted(by_camera.items())]
        elif not cameras and sum(len(images) for images in by_camera.values()) >= 2:
            images = [s for _, group in sorted(by_camera.items()) for s in group]
            picks = [images[rng.integers(len(images))]]
        else:
            picks = []
        query.extend(picks)
        chosen.update(picks)
    gallery = [s for pid in sorted(groups) for _, group in sorted(groups[pid].items()) for s in group]
    gallery = [s for s in gallery if s not in chosen]
    return train, query, gallery


def summarize(samples: Sequence[Sample]) -> dict[str, int]:
    """Counts for one split: identities, images, cameras."""
    return {
        "ids": len({s.pid for s in samples}),
        "images": len(samples),
        "cameras": len({s.camid for s in samples}),
    }


def summarize_split(split: Split) -> dict:
    """Counts per split: ``{"name", "has_camids", "train": {"ids", "images", "cameras"}, "query": ..., "gallery": ...}``.

    Without camera ids (``has_camids`` False) the camera counts are 0.
    """
    summary: dict = {"name": split.name, "has_camids": split.has_camids}
    for part in ("train", "query", "gallery"):
        counts = summarize(getattr(split, part))
        if not split.has_camids:
            counts["cameras"] = 0
        summary[part] = counts
    return summary


def format_summary(summary: dict) -> str:
    """The table printed by ``reidkit datasets summary``: one row per split with ids, images and cameras."""
    header = ("split", "ids", "images", "cameras")
    rows = [
        (
            part,
            str(summary[part]["ids"]),
            str(summary[part]["images"]),
            str(summary[part]["cameras"]) if summary.get("has_camids", True) else "-",
        )
        for part in ("train", "query", "gallery")
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    title = f"dataset: {summary.get('name') or '(unnamed)'}"
    if not summary.get("has_camids", True):
        title += " (no camera ids)"
    if summary["train"]["images"] == 0:
        title += " (test only: empty train split)"
    return "\n".join([title, line(header), line(["-" * w for w in widths]), *map(line, rows)])
