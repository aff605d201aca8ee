"""Record types shared by every dataset parser, loader, evaluator and index.

A record is a frozen dataclass, never a positional tuple, so adding a field later breaks nobody.
Train identities are relabelled to 0..N-1 in exactly one place: :func:`relabel`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

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


@dataclass(frozen=True)
class Split:
    """A dataset split into train / query / gallery.

    ``train`` is already relabelled (pids 0..num_train_pids-1); ``query`` and ``gallery`` keep the
    original ids so that the same person has the same id in both.
    ``has_camids`` is False for data loaded in "no camera ids" mode: evaluation then excludes only the
    identical image instead of applying the cross-camera rule.
    """

    train: tuple[Sample, ...]
    query: tuple[Sample, ...]
    gallery: tuple[Sample, ...]
    name: str = ""
    has_camids: bool = True
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def num_train_pids(self) -> int:
        return len({s.pid for s in self.train})

    @property
    def num_train_cams(self) -> int:
        return len({s.camid for s in self.train})


def relabel(samples: Sequence[Sample]) -> tuple[tuple[Sample, ...], dict[int, int]]:
    """Map the identities of ``samples`` to 0..N-1 in order of sorted original id.

    Returns:
        (relabelled samples in the input order, {original pid: new label}).
    """
    mapping = {pid: label for label, pid in enumerate(sorted({s.pid for s in samples}))}
    return tuple(replace(s, pid=mapping[s.pid]) for s in samples), mapping


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
    attribute labels); other ``extra`` entries are the loader's own notes.
    """
    train_relabelled, mapping = relabel(train)
    notes = {**(extra or {}), "train_pid_mapping": mapping}
    return Split(train_relabelled, tuple(query), tuple(gallery), name=name, has_camids=has_camids, extra=notes)


def summarize(samples: Sequence[Sample]) -> dict[str, int]:
    """Counts for one split: identities, images, cameras."""
    return {
        "ids": len({s.pid for s in samples}),
        "images": len(samples),
        "cameras": len({s.camid for s in samples}),
    }
