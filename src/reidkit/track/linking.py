"""Tracklets -> camera-level persons -> global identities.

**Re-linking inside a camera** (:func:`relink_within_cameras`): a tracker loses a person behind an occluder or
in a crowd and starts a new id. Tracklet ``A`` is linked to a later tracklet ``B`` of the same camera when ``B``
starts after ``A`` ends, within ``max_gap_s`` seconds, and their features are closer than ``threshold``; each
tracklet gets at most one successor and one predecessor, chosen by a minimum-cost assignment
(``scipy.optimize.linear_sum_assignment``) that minimises the summed distance of the links plus ``threshold / 2``
for each tracklet end left open (so one close link beats two mediocre ones). Chains of links are the persons, so the
tracklets of one person never overlap in time. With ``reentries="split"`` a link is refused when ``A`` ends at
the frame edge and ``B`` starts at the frame edge: the person left the view and came back, which the
MOTChallenge convention counts as a new identity.

**Cross-camera identities** (:func:`link_across_cameras`): the persons of all cameras are clustered by
:func:`reidkit.track.agglomerative.constrained_agglomerative` on the cosine distance of their features (the
quality-weighted mean of their tracklets' features), with cannot-links: two persons with tracklets that overlap
in time in the same camera never merge (one person is not twice in one view); with ``reentries="split"`` two
persons of the same camera never merge; for a camera pair with a transit window ``(min_s, max_s)``, two persons
seen in those cameras merge only when the time from the end of the earlier visit to the start of the later one
lies in the window (a visit = the span of a person's tracklets in that camera). Optional k-reciprocal
re-ranking of the person distances uses :func:`reidkit.rerank.k_reciprocal` with every person both probe and
gallery (each appears twice, so ``k1`` and ``k2`` count those copies).

**Choosing the thresholds.** Both are cosine distances ``1 - cos`` of L2-normalised features, in [0, 2]; the
right value depends on the model. Run ``reidkit track`` on a labelled sequence (``reidkit synth-video`` makes
one), then sweep the threshold with ``benchmarks/track.py --sweep`` and take the IDF1 peak; without labels,
:func:`distance_summary` prints the distances of tracklet pairs that must be different people (overlapping in
one camera) next to those of the nearest other tracklet: a threshold below the low end of the first group keeps
merges safe. With the OMZ ReID model 0287, 0.3 (inside a camera) and 0.35 (across cameras) are the defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from reidkit.distance import pairwise_distance_numpy
from reidkit.embed.aggregate import quality_weighted_mean
from reidkit.track.agglomerative import LINKAGES, constrained_agglomerative
from reidkit.track.records import Tracklet

__all__ = [
    "LinkSettings",
    "RelinkSettings",
    "distance_summary",
    "link_across_cameras",
    "link_tracklets",
    "relink_within_cameras",
]

REENTRIES = ("link", "split")
_EDGE = 8.0  # pixels: a box this close to the frame edge is entering or leaving


@dataclass(frozen=True)
class RelinkSettings:
    """Re-linking inside a camera (module docstring)."""

    enabled: bool = True
    threshold: float = 0.3
    max_gap_s: float = 10.0

    def __post_init__(self) -> None:
        if not (self.threshold >= 0 and self.max_gap_s >= 0):
            raise ValueError(f"relink threshold and max_gap_s must be >= 0, got {self.threshold}, {self.max_gap_s}")


@dataclass(frozen=True)
class LinkSettings:
    """Cross-camera identities (module docstring)."""

    enabled: bool = True
    threshold: float = 0.35
    linkage: str = "average"
    rerank: bool = False
    k1: int = 6
    k2: int = 2
    lambda_value: float = 0.3
    transit: Mapping[tuple[str, str], tuple[float, float]] = field(default_factory=dict)
    reentries: str = "link"

    def __post_init__(self) -> None:
        if self.linkage not in LINKAGES:
            raise ValueError(f"linkage must be one of {', '.join(LINKAGES)}, got {self.linkage!r}")
        if self.reentries not in REENTRIES:
            raise ValueError(f"reentries must be one of {', '.join(REENTRIES)}, got {self.reentries!r}")
        if not self.threshold >= 0:
            raise ValueError(f"link threshold must be >= 0, got {self.threshold}")
        for pair, (low, high) in self.transit.items():
            if not 0 <= low <= high:
                raise ValueError(f"transit window {pair}: need 0 <= min_s <= max_s, got ({low}, {high})")


def _at_edge(box: np.ndarray, size: tuple[int, int] | None) -> bool:
    if size is None:
        return False
    x, y, w, h = box
    return x <= _EDGE or y <= _EDGE or x + w >= size[0] - _EDGE or y + h >= size[1] - _EDGE


def _chain_links(items: list[Tracklet], settings: RelinkSettings, split: bool, size) -> list[int]:
    """Person label per item of one camera (0..P-1) from the assignment of successors."""
    from scipy.optimize import linear_sum_assignment

    n = len(items)
    cost = np.full((n, n), np.inf)
    for i, a in enumerate(items):
        if a.feature is None:
            continue
        for j, b in enumerate(items):
            if b.feature is None or b.first_frame <= a.last_frame:
                continue
            gap = b.start_time - a.end_time
            if gap > settings.max_gap_s:
                continue
            if split and _at_edge(a.boxes[-1], size) and _at_edge(b.boxes[0], size):
                continue
            distance = 1.0 - float(np.dot(a.feature, b.feature))
            if distance < settings.threshold:
                cost[i, j] = distance
    successor = [-1] * n
    allowed = np.isfinite(cost)
    if allowed.any():
        # rows: predecessors + "no successor" slots; columns: successors + "no predecessor" slots. Leaving a
        # tracklet without successor (or predecessor) costs threshold / 2, so a link pays off exactly when its
        # distance is below the threshold, and the assignment minimises the summed distance, not the link count.
        big = 1e6
        half = settings.threshold / 2
        square = np.full((2 * n, 2 * n), big)
        square[:n, :n] = np.where(allowed, cost, big)
        square[np.arange(n), n + np.arange(n)] = half
        square[n + np.arange(n), np.arange(n)] = half
        square[n:, n:] = 0.0
        rows, cols = linear_sum_assignment(square)
        for i, j in zip(rows, cols, strict=True):
            if i < n and j < n and allowed[i, j]:
                successor[i] = int(j)
    has_predecessor = set(successor) - {-1}
    labels = [-1] * n
    person = 0
    for start in range(n):
        if start in has_predecessor:
            continue
        i = start
        while i != -1:
            labels[i] = person
            i = successor[i]
        person += 1
    return labels


def relink_within_cameras(
    tracklets: list[Tracklet],
    settings: RelinkSettings,
    *,
    reentries: str = "link",
    frame_sizes: Mapping[str, tuple[int, int]] | None = None,
) -> list[Tracklet]:
    """Set ``t.person`` (unique over all cameras) for every tracklet; returns ``tracklets``."""
    next_person = 1
    for camera in sorted({t.camera for t in tracklets}):
        items = sorted((t for t in tracklets if t.camera == camera), key=lambda t: (t.first_frame, t.local_id))
        if settings.enabled:
            size = (frame_sizes or {}).get(camera)
            labels = _chain_links(items, settings, reentries == "split", size)
        else:
            labels = list(range(len(items)))
        for t, label in zip(items, labels, strict=True):
            t.person = next_person + label
        next_person += max(labels, default=-1) + 1
    return tracklets


def _persons(tracklets: list[Tracklet]) -> dict[int, list[Tracklet]]:
    persons: dict[int, list[Tracklet]] = {}
    for t in tracklets:
        persons.setdefault(int(t.person), []).append(t)
    return persons


def _person_feature(members: list[Tracklet]) -> np.ndarray | None:
    having = [t for t in members if t.feature is not None]
    if not having:
        return None
    weights = np.array([max(t.quality, 1e-6) for t in having])
    return quality_weighted_mean(np.stack([t.feature for t in having]), weights)


def _visit(members: list[Tracklet], camera: str) -> tuple[float, float] | None:
    spans = [(t.start_time, t.end_time) for t in members if t.camera == camera]
    if not spans:
        return None
    return min(s for s, _ in spans), max(e for _, e in spans)


def _cannot_link(groups: list[list[Tracklet]], settings: LinkSettings) -> np.ndarray:
    n = len(groups)
    cannot = np.zeros((n, n), dtype=bool)
    cameras = [{t.camera for t in g} for g in groups]
    for i in range(n):
        for j in range(i + 1, n):
            shared = cameras[i] & cameras[j]
            if shared and settings.reentries == "split":
                cannot[i, j] = True
            elif any(a.overlaps(b) for a in groups[i] for b in groups[j] if a.camera in shared):
                cannot[i, j] = True
            else:
                cannot[i, j] = not _transit_allows(groups[i], groups[j], cameras[i], cameras[j], settings.transit)
    return cannot | cannot.T


def _transit_allows(p, q, cams_p, cams_q, transit) -> bool:
    for (a, b), (low, high) in transit.items():
        for x, y, cx, cy in ((p, q, a, b), (p, q, b, a)):
            if cx in cams_p and cy in cams_q and cx != cy:
                first, second = _visit(x, cx), _visit(y, cy)
                earlier, later = (first, second) if first[0] <= second[0] else (second, first)
                gap = later[0] - earlier[1]
                if not low <= gap <= high:
                    return False
    return True


def _distances(features: list[np.ndarray | None], settings: LinkSettings) -> np.ndarray:
    n = len(features)
    have = np.array([f is not None for f in features])
    dim = next((len(f) for f in features if f is not None), 1)
    matrix = np.stack([f if f is not None else np.zeros(dim, np.float32) for f in features]).astype(np.float64)
    distance = pairwise_distance_numpy(matrix, metric="cosine")  # a missing feature (zeros) is at 1
    if settings.rerank and have.sum() > 2:
        from reidkit.rerank import k_reciprocal

        idx = np.flatnonzero(have)
        sub = np.clip(distance[np.ix_(idx, idx)], 0.0, None)
        k1 = min(settings.k1, 2 * len(idx) - 2)
        k2 = max(1, min(settings.k2, 2 * len(idx) - 1))
        distance[np.ix_(idx, idx)] = k_reciprocal(sub, sub, sub, k1=k1, k2=k2, lambda_value=settings.lambda_value)
    distance[~have, :] = np.inf
    distance[:, ~have] = np.inf
    np.fill_diagonal(distance, 0.0)
    return distance if n else np.zeros((0, 0))


def link_across_cameras(tracklets: list[Tracklet], settings: LinkSettings) -> list[Tracklet]:
    """Set ``t.global_id`` (1..K, by first appearance time, then camera) from the persons; returns ``tracklets``."""
    persons = _persons(tracklets)
    # ties in first appearance (two persons entering one camera in the same frame) by person id, so the
    # result does not depend on the order of ``tracklets``
    keys = sorted(persons, key=lambda p: (min((t.start_time, t.camera) for t in persons[p]), p))
    groups = [persons[p] for p in keys]
    if settings.enabled and groups:
        features = [_person_feature(g) for g in groups]
        labels = constrained_agglomerative(
            _distances(features, settings),
            settings.threshold,
            cannot_link=_cannot_link(groups, settings),
            linkage=settings.linkage,
        )
    else:
        labels = np.arange(len(groups))
    first_seen: dict[int, tuple[float, str]] = {}
    for g, label in zip(groups, labels, strict=True):
        when = min((t.start_time, t.camera) for t in g)
        first_seen[int(label)] = min(first_seen.get(int(label), when), when)
    order = {label: rank + 1 for rank, label in enumerate(sorted(first_seen, key=lambda k: (first_seen[k], k)))}
    for g, label in zip(groups, labels, strict=True):
        for t in g:
            t.global_id = order[int(label)]
    return tracklets


def link_tracklets(
    tracklets: list[Tracklet],
    relink: RelinkSettings,
    link: LinkSettings,
    *,
    frame_sizes: Mapping[str, tuple[int, int]] | None = None,
) -> list[Tracklet]:
    """Re-link inside cameras, then link across cameras (``global_id = person`` order when link is off)."""
    relink_within_cameras(tracklets, relink, reentries=link.reentries, frame_sizes=frame_sizes)
    return link_across_cameras(tracklets, link)


def distance_summary(tracklets: list[Tracklet]) -> dict[str, list[float]]:
    """Distances to help choose a threshold without labels.

    Returns:
        ``{"must_differ": [...], "nearest_other_camera": [...]}``: cosine distances of tracklet pairs that
        overlap in time in one camera (certainly two people), and of each tracklet to its nearest tracklet in
        another camera (mostly the same person when people do cross cameras), each as the 5th, 25th, 50th,
        75th and 95th percentiles.
    """
    items = [t for t in tracklets if t.feature is not None]
    if len(items) < 2:
        return {"must_differ": [], "nearest_other_camera": []}
    features = np.stack([t.feature for t in items]).astype(np.float64)
    distance = pairwise_distance_numpy(features, metric="cosine")
    differ, nearest = [], []
    for i, a in enumerate(items):
        others = [j for j, b in enumerate(items) if b.camera != a.camera]
        if others:
            nearest.append(float(distance[i, others].min()))
        differ.extend(float(distance[i, j]) for j in range(i + 1, len(items)) if a.overlaps(items[j]))
    q = [5, 25, 50, 75, 95]
    return {
        "must_differ": np.percentile(differ, q).tolist() if differ else [],
        "nearest_other_camera": np.percentile(nearest, q).tolist() if nearest else [],
    }
