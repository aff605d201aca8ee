"""Re-linking inside a camera and cross-camera identities on hand-built tracklets (fps 10, unit features)."""

from __future__ import annotations

import numpy as np
import pytest

import reidkit.rerank
from reidkit.rerank import k_reciprocal
from reidkit.track import linking
from reidkit.track.linking import (
    LinkSettings,
    RelinkSettings,
    distance_summary,
    link_tracklets,
    relink_within_cameras,
)
from reidkit.track.records import Tracklet

DIM = 64
SIZE = (640, 480)  # (width, height)
MID = (300.0, 150.0, 60.0, 150.0)  # a box well inside the frame
LEFT_EDGE = (0.0, 150.0, 60.0, 150.0)  # a box touching the left edge


def _unit(vector) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def _identities(count: int, seed: int = 0) -> np.ndarray:
    """``[count, DIM]`` random unit features: about 1 apart in cosine distance."""
    return np.stack([_unit(v) for v in np.random.default_rng(seed).normal(size=(count, DIM))])


def _noisy(feature: np.ndarray, rng: np.random.Generator, noise: float = 0.01) -> np.ndarray:
    """The feature with a little noise (cosine distance about ``DIM * noise^2 / 2``)."""
    return _unit(feature + noise * rng.normal(size=feature.shape))


def _at_distance(base: np.ndarray, distance: float, seed: int = 1) -> np.ndarray:
    """A unit feature at exactly ``distance`` (``1 - cos``) from the unit feature ``base``."""
    other = np.random.default_rng(seed).normal(size=base.shape)
    other -= np.dot(other, base) * base
    other /= np.linalg.norm(other)
    cos = 1.0 - distance
    return _unit(cos * base + np.sqrt(1.0 - cos**2) * other)


def _tracklet(
    camera: str,
    local_id: int,
    first: int,
    last: int,
    feature: np.ndarray | None,
    *,
    first_box=MID,
    last_box=MID,
    camera_start: float = 0.0,
    person: int | None = None,
) -> Tracklet:
    """A tracklet over frames ``first..last`` (a few boxes), at ``camera_start + (frame - 1) / 10`` seconds."""
    frames = np.unique(np.linspace(first, last, min(5, last - first + 1)).round().astype(int))
    boxes = np.tile(np.asarray(MID), (len(frames), 1))
    boxes[0], boxes[-1] = first_box, last_box
    return Tracklet(
        camera=camera,
        local_id=local_id,
        frames=frames,
        boxes=boxes,
        scores=np.full(len(frames), 0.9),
        fps=10.0,
        camera_start=camera_start,
        feature=feature,
        quality=1.0,
        person=person,
    )


def _persons(tracklets: list[Tracklet]) -> dict[tuple[str, int], int]:
    return {t.key: t.person for t in tracklets}


def _same(tracklets: list[Tracklet], attribute: str) -> set[frozenset]:
    """The partition of tracklet keys by ``person`` or ``global_id``."""
    groups: dict[int, set] = {}
    for t in tracklets:
        groups.setdefault(getattr(t, attribute), set()).add(t.key)
    return {frozenset(g) for g in groups.values()}


def _relink(tracklets, reentries="link", frame_sizes=None, **settings) -> dict[tuple[str, int], int]:
    relink_within_cameras(tracklets, RelinkSettings(**settings), reentries=reentries, frame_sizes=frame_sizes)
    return _persons(tracklets)


# --- re-linking inside a camera ---------------------------------------------------------------------------


def test_fragments_with_short_gaps_become_one_person():
    rng = np.random.default_rng(0)
    person, other = _identities(2)
    tracklets = [
        _tracklet("c1", 1, 1, 30, _noisy(person, rng)),
        _tracklet("c1", 2, 41, 70, _noisy(person, rng)),  # 1 s gap
        _tracklet("c1", 3, 1, 80, _noisy(other, rng)),  # someone else, all along
        _tracklet("c1", 4, 91, 120, _noisy(person, rng)),  # 2 s gap after fragment 2
    ]
    persons = _relink(tracklets)
    assert persons[("c1", 1)] == persons[("c1", 2)] == persons[("c1", 4)] != persons[("c1", 3)]
    assert sorted(set(persons.values())) == [1, 2]


def test_a_gap_longer_than_max_gap_is_not_linked():
    feature = _identities(1)[0]
    within = [_tracklet("c1", 1, 1, 10, feature), _tracklet("c1", 2, 10 + 99, 130, feature)]  # 9.9 s
    beyond = [_tracklet("c1", 1, 1, 10, feature), _tracklet("c1", 2, 10 + 101, 130, feature)]  # 10.1 s
    assert len(set(_relink(within, max_gap_s=10.0).values())) == 1
    assert len(set(_relink(beyond, max_gap_s=10.0).values())) == 2
    assert len(set(_relink(beyond, max_gap_s=11.0).values())) == 1


def test_features_farther_than_the_threshold_are_not_linked():
    base = _identities(1)[0]
    for distance, linked in ((0.25, True), (0.35, False)):
        tracklets = [
            _tracklet("c1", 1, 1, 10, base),
            _tracklet("c1", 2, 20, 30, _at_distance(base, distance)),
        ]
        assert (len(set(_relink(tracklets, threshold=0.3).values())) == 1) is linked
        assert len(set(_relink(tracklets, threshold=0.4).values())) == 1


def test_overlapping_tracklets_never_share_a_person():
    feature = _identities(1)[0]
    for first_b in (5, 10):  # overlapping by several frames, or sharing just the last frame of A
        tracklets = [_tracklet("c1", 1, 1, 10, feature), _tracklet("c1", 2, first_b, 30, feature)]
        persons = _relink(tracklets, threshold=2.0)
        assert persons[("c1", 1)] != persons[("c1", 2)]


def test_three_fragments_form_one_chain():
    rng = np.random.default_rng(2)
    feature = _identities(1)[0]
    tracklets = [_tracklet("c1", i + 1, 1 + 20 * i, 10 + 20 * i, _noisy(feature, rng)) for i in range(3)]
    assert len(set(_relink(tracklets).values())) == 1


def test_each_tracklet_has_at_most_one_successor_and_one_predecessor():
    rng = np.random.default_rng(3)
    base = _identities(1)[0]
    # A ends; B and C (overlapping each other, so two people) both start later and both look like A
    successors = [
        _tracklet("c1", 1, 1, 10, base),
        _tracklet("c1", 2, 20, 40, _at_distance(base, 0.05, seed=4)),
        _tracklet("c1", 3, 20, 40, _at_distance(base, 0.15, seed=5)),
    ]
    persons = _relink(successors)
    assert persons[("c1", 1)] == persons[("c1", 2)] != persons[("c1", 3)]  # the closer one
    # A and B (overlapping) both end before C starts: C gets one predecessor, the closer one
    predecessors = [
        _tracklet("c1", 1, 1, 10, _at_distance(base, 0.15, seed=6)),
        _tracklet("c1", 2, 1, 10, _at_distance(base, 0.05, seed=7)),
        _tracklet("c1", 3, 20, 40, _noisy(base, rng, 0.0)),
    ]
    persons = _relink(predecessors)
    assert persons[("c1", 2)] == persons[("c1", 3)] != persons[("c1", 1)]


def test_the_assignment_links_each_person_to_its_own_continuation():
    a, b = _identities(2, seed=8)
    b = _at_distance(a, 0.2, seed=9)  # two people who look somewhat alike (below the threshold)
    rng = np.random.default_rng(10)
    tracklets = [
        _tracklet("c1", 1, 1, 10, _noisy(a, rng)),
        _tracklet("c1", 2, 1, 10, _noisy(b, rng)),
        _tracklet("c1", 3, 30, 40, _noisy(b, rng)),
        _tracklet("c1", 4, 30, 40, _noisy(a, rng)),
    ]
    assert _same(relink_within_cameras(tracklets, RelinkSettings()), "person") == {
        frozenset({("c1", 1), ("c1", 4)}),
        frozenset({("c1", 2), ("c1", 3)}),
    }


def test_split_reentries_refuses_edge_to_edge_links_only():
    feature = _identities(1)[0]
    sizes = {"c1": SIZE}
    cases = [  # (last box of A, first box of B, linked with reentries="split")
        (LEFT_EDGE, LEFT_EDGE, False),  # left the view and came back
        (MID, MID, True),  # occluded in mid-frame
        (LEFT_EDGE, MID, True),
        (MID, (300.0, 330.0, 60.0, 150.0), True),  # B starts at the bottom edge, A did not end at an edge
        ((580.0, 150.0, 60.0, 150.0), (300.0, 330.0, 60.0, 150.0), False),  # right edge, then bottom edge
    ]
    for last_box, first_box, linked in cases:
        for reentries, frame_sizes, expected in (
            ("split", sizes, linked),
            ("link", sizes, True),
            ("split", None, True),  # no frame size: no edge to judge by
        ):
            tracklets = [
                _tracklet("c1", 1, 1, 10, feature, last_box=last_box),
                _tracklet("c1", 2, 20, 30, feature, first_box=first_box),
            ]
            persons = _relink(tracklets, reentries=reentries, frame_sizes=frame_sizes)
            assert (persons[("c1", 1)] == persons[("c1", 2)]) is expected, (last_box, first_box, reentries)


def test_tracklets_without_a_feature_keep_their_own_person():
    feature = _identities(1)[0]
    tracklets = [
        _tracklet("c1", 1, 1, 10, feature),
        _tracklet("c1", 2, 12, 18, None),
        _tracklet("c1", 3, 20, 30, feature),
        _tracklet("c1", 4, 40, 50, None),
    ]
    persons = _relink(tracklets, threshold=2.0)
    assert persons[("c1", 1)] == persons[("c1", 3)]
    assert len({persons[("c1", 1)], persons[("c1", 2)], persons[("c1", 4)]}) == 3


def test_disabled_relinking_gives_every_tracklet_its_own_person():
    feature = _identities(1)[0]
    tracklets = [_tracklet(c, i, 1 + 20 * i, 10 + 20 * i, feature) for c in ("c2", "c1") for i in range(3)]
    persons = _relink(tracklets, enabled=False)
    assert sorted(persons.values()) == [1, 2, 3, 4, 5, 6]


def test_persons_are_unique_across_cameras():
    feature = _identities(1)[0]
    tracklets = [
        _tracklet(c, i, 1 + 20 * i, 10 + 20 * i, feature) for c in ("c3", "c1", "c2") for i in range(2)
    ]
    persons = _relink(tracklets)
    assert sorted(persons.values()) == [1, 1, 2, 2, 3, 3]  # one person per camera, numbered 1..P
    assert len({persons[(c, 0)] for c in ("c1", "c2", "c3")}) == 3


def test_relink_settings_are_checked():
    with pytest.raises(ValueError, match="must be >= 0"):
        RelinkSettings(threshold=-0.1)
    with pytest.raises(ValueError, match="must be >= 0"):
        RelinkSettings(max_gap_s=-1.0)


# --- cross-camera identities ------------------------------------------------------------------------------


def _three_people_in_three_cameras(seed: int = 0) -> tuple[list[Tracklet], dict[tuple[str, int], int]]:
    """Identities seen in c1, c2 and c3 (overlapping each other in time within a camera), and the true global
    ids: 1..3 in the order of first appearance."""
    rng = np.random.default_rng(seed)
    features = _identities(3, seed=seed)
    # identity -> (start frame in c1, c2, c3), each seen for 4 s; identity 2 is seen first (c2, frame 1), then
    # 0 (c1, frame 11), then 1 (c1, frame 21)
    starts = {0: (11, 21, 121), 1: (21, 31, 131), 2: (31, 1, 101)}
    expected_order = {2: 1, 0: 2, 1: 3}
    tracklets, truth = [], {}
    for identity, frames in starts.items():
        for camera, first in zip(("c1", "c2", "c3"), frames, strict=True):
            local = len([t for t in tracklets if t.camera == camera]) + 1
            tracklets.append(_tracklet(camera, local, first, first + 40, _noisy(features[identity], rng)))
            truth[(camera, local)] = expected_order[identity]
    return tracklets, truth


def _global(tracklets, relink=None, **link) -> dict[tuple[str, int], int]:
    link_tracklets(tracklets, relink or RelinkSettings(enabled=False), LinkSettings(**link))
    return {t.key: t.global_id for t in tracklets}


def test_three_people_in_three_cameras_are_recovered():
    for seed in range(3):
        tracklets, truth = _three_people_in_three_cameras(seed)
        assert _global(tracklets) == truth
        tracklets, truth = _three_people_in_three_cameras(seed)
        assert _global(tracklets, relink=RelinkSettings(), reentries="split") == truth


def test_same_camera_tracklets_that_overlap_in_time_never_merge():
    feature = _identities(1)[0]
    tracklets = [
        _tracklet("c1", 1, 1, 20, feature),
        _tracklet("c1", 2, 10, 30, feature),
        _tracklet("c2", 1, 100, 120, feature),
    ]
    ids = _global(tracklets, threshold=2.0)
    assert ids[("c1", 1)] != ids[("c1", 2)]
    assert ids[("c2", 1)] in (ids[("c1", 1)], ids[("c1", 2)])  # it joins one of them, not both
    assert sorted(set(ids.values())) == [1, 2]


def test_split_reentries_keep_the_persons_of_one_camera_apart():
    feature = _identities(1)[0]

    def tracklets():  # two visits to c1 too far apart for re-linking, and one visit to c2
        return [
            _tracklet("c1", 1, 1, 20, feature),
            _tracklet("c1", 2, 500, 520, feature),
            _tracklet("c2", 1, 250, 270, feature),
        ]

    split = _global(tracklets(), relink=RelinkSettings(max_gap_s=5.0), reentries="split")
    assert split[("c1", 1)] != split[("c1", 2)]
    assert split[("c2", 1)] in (split[("c1", 1)], split[("c1", 2)])
    assert (
        len(set(_global(tracklets(), relink=RelinkSettings(max_gap_s=5.0), reentries="link").values())) == 1
    )


def _transit_ids(c1_frames, c2_frames, transit, c1_more=()) -> dict[tuple[str, int], int]:
    feature = _identities(1)[0]
    tracklets = [_tracklet("c1", 1, *c1_frames, feature), _tracklet("c2", 1, *c2_frames, feature)]
    tracklets += [_tracklet("c1", 2 + i, *frames, feature) for i, frames in enumerate(c1_more)]
    return _global(tracklets, relink=RelinkSettings(max_gap_s=60.0), transit=transit)


@pytest.mark.parametrize(
    ("c2_start", "merged"),
    [
        (121, False),  # 2 s after the c1 visit ends (frame 101 = 10 s): below min_s
        (151, True),  # 5 s: min_s itself
        (201, True),  # 10 s: inside
        (301, True),  # 20 s: max_s itself
        (311, False),  # 21 s: beyond max_s
        (51, False),  # the visits overlap in time (negative gap)
    ],
)
def test_transit_windows(c2_start, merged):
    window = (5.0, 20.0)
    for transit in ({("c1", "c2"): window}, {("c2", "c1"): window}):  # a window is for the pair, either order
        ids = _transit_ids((1, 101), (c2_start, c2_start + 30), transit)
        assert (ids[("c1", 1)] == ids[("c2", 1)]) is merged
    # without a window for that pair of cameras any gap is allowed
    ids = _transit_ids((1, 101), (c2_start, c2_start + 30), {("c1", "c3"): window})
    assert ids[("c1", 1)] == ids[("c2", 1)]


def test_transit_windows_in_either_direction_of_travel():
    window = {("c1", "c2"): (5.0, 20.0)}
    # seen first in c2 (ends at 10 s), then in c1
    ids = _transit_ids((201, 230), (1, 101), window)
    assert ids[("c1", 1)] == ids[("c2", 1)]
    ids = _transit_ids((121, 130), (1, 101), window)
    assert ids[("c1", 1)] != ids[("c2", 1)]


def test_transit_gap_is_measured_from_the_end_of_the_whole_visit():
    # person in c1: two re-linked tracklets, 0-2 s and 8-10 s; c2 starts at 13 s: 3 s after the visit, 11 s
    # after its first tracklet
    ids = _transit_ids((1, 21), (131, 160), {("c1", "c2"): (5.0, 20.0)}, c1_more=[(81, 101)])
    assert ids[("c1", 1)] == ids[("c1", 2)] != ids[("c2", 1)]
    ids = _transit_ids((1, 21), (131, 160), {("c1", "c2"): (2.0, 20.0)}, c1_more=[(81, 101)])
    assert len(set(ids.values())) == 1


def test_reranking_goes_through_k_reciprocal(monkeypatch):
    tracklets, truth = _three_people_in_three_cameras(1)
    calls = []

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return k_reciprocal(*args, **kwargs)

    monkeypatch.setattr(reidkit.rerank, "k_reciprocal", spy)
    features = [t.feature for t in tracklets] + [None]
    settings = LinkSettings(rerank=True)
    distances = linking._distances(features, settings)
    assert len(calls) == 1
    matrix = np.stack(features[:-1]).astype(np.float64)
    plain = np.clip(1.0 - matrix @ matrix.T, 0.0, None)
    direct = k_reciprocal(plain, plain, plain, k1=6, k2=2, lambda_value=0.3)
    off = ~np.eye(9, dtype=bool)  # unit features in float32: 1 - a.b and the normalised cosine agree to ~1e-8
    assert distances[:-1, :-1][off] == pytest.approx(direct[off], rel=1e-5, abs=1e-8)
    assert np.isinf(distances[-1, :-1]).all() and np.isinf(distances[:-1, -1]).all()
    assert not np.allclose(direct, plain)  # re-ranking does change the distances
    # the neighbourhoods are capped by the number of persons (each is there twice: probe and gallery)
    linking._distances(features[:3], settings)
    assert calls[-1][1] == {"k1": 4, "k2": 2, "lambda_value": 0.3}


def test_reranked_distances_drive_the_clustering(monkeypatch):
    tracklets, truth = _three_people_in_three_cameras(2)
    assert _global(tracklets, rerank=True, threshold=0.5) == truth  # well separated: still recovered
    # the distances from k_reciprocal are the ones clustered: all small -> everyone merges
    monkeypatch.setattr(reidkit.rerank, "k_reciprocal", lambda q_g, q_q, g_g, **_: np.full(q_g.shape, 0.01))
    tracklets, _ = _three_people_in_three_cameras(2)
    for t in tracklets:  # nobody overlaps anyone in their camera now
        shift = 200 * (t.local_id - 1)
        t.frames = t.frames + shift
    assert len(set(_global(tracklets, rerank=True, threshold=0.5).values())) == 1
    tracklets, _ = _three_people_in_three_cameras(2)
    assert _global(tracklets, rerank=False, threshold=0.5) == truth  # without rerank it is not called


def test_disabled_linking_gives_each_person_its_own_global_id():
    tracklets, _ = _three_people_in_three_cameras(0)
    feature = tracklets[0].feature
    tracklets.append(_tracklet("c1", 9, 60, 80, feature))  # re-linked with c1:1 (which ends at frame 51)
    link_tracklets(tracklets, RelinkSettings(), LinkSettings(enabled=False))
    assert _same(tracklets, "global_id") == _same(tracklets, "person")
    assert sorted(set(t.global_id for t in tracklets)) == list(range(1, 10))
    first_seen = {}  # global ids by first appearance of the person
    for t in tracklets:
        first_seen[t.global_id] = min(first_seen.get(t.global_id, np.inf), t.start_time)
    assert [first_seen[g] for g in sorted(first_seen)] == sorted(first_seen.values())


def test_the_result_does_not_depend_on_the_input_order():
    rng = np.random.default_rng(5)
    tracklets, _ = _three_people_in_three_cameras(3)
    features = _identities(2, seed=11)
    # two people entering c1 in the same frame, and a third who looks alike: ties in time and in order
    tracklets += [
        _tracklet("c1", 10, 300, 320, _noisy(features[0], rng)),
        _tracklet("c1", 11, 300, 310, _noisy(features[0], rng)),
        _tracklet("c2", 10, 400, 420, _noisy(features[0], rng)),
        _tracklet("c3", 10, 400, 420, _noisy(features[1], rng)),
    ]
    link_tracklets(tracklets, RelinkSettings(), LinkSettings())
    expected = {t.key: (t.person, t.global_id) for t in tracklets}
    for seed in range(5):
        shuffled = [tracklets[i] for i in np.random.default_rng(seed).permutation(len(tracklets))]
        for t in shuffled:
            t.person = t.global_id = None
        link_tracklets(shuffled, RelinkSettings(), LinkSettings())
        assert {t.key: (t.person, t.global_id) for t in shuffled} == expected


def test_persons_without_features_never_merge():
    feature = _identities(1)[0]
    for rerank in (False, True):
        tracklets = [
            _tracklet("c1", 1, 1, 10, None),
            _tracklet("c2", 1, 30, 40, None),
            _tracklet("c3", 1, 60, 70, None),
            _tracklet("c1", 2, 100, 110, feature),
            _tracklet("c2", 2, 130, 140, feature),
            _tracklet("c3", 2, 160, 170, feature),
        ]
        ids = _global(tracklets, threshold=2.0, rerank=rerank)
        assert [ids[(c, 1)] for c in ("c1", "c2", "c3")] == [1, 2, 3]
        assert {ids[(c, 2)] for c in ("c1", "c2", "c3")} == {4}


def test_a_persons_feature_is_the_quality_weighted_mean_of_its_tracklets():
    a, b = _identities(2, seed=12)
    members = [_tracklet("c1", 1, 1, 10, a), _tracklet("c1", 2, 20, 30, b), _tracklet("c1", 3, 40, 50, None)]
    members[0].quality, members[1].quality = 3.0, 1.0
    assert linking._person_feature(members) == pytest.approx(_unit(3 * a + b), abs=1e-6)
    assert linking._person_feature(members[2:]) is None


def test_link_settings_are_checked():
    for bad, message in (
        ({"linkage": "ward"}, "linkage must be one of"),
        ({"reentries": "merge"}, "reentries must be one of link, split"),
        ({"threshold": -1.0}, "link threshold must be >= 0"),
        ({"transit": {("c1", "c2"): (10.0, 5.0)}}, r"transit window \('c1', 'c2'\)"),
    ):
        with pytest.raises(ValueError, match=message):
            LinkSettings(**bad)


# --- distance summary --------------------------------------------------------------------------------------


def test_distance_summary_by_hand():
    e1, e2 = np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)
    u60 = np.array([0.5, np.sqrt(3) / 2], np.float32)
    tracklets = [
        _tracklet("c1", 1, 1, 10, e1),
        _tracklet("c1", 2, 5, 15, u60),  # overlaps c1:1 -> a must-differ pair at distance 0.5
        _tracklet("c1", 3, 20, 30, e1),
        _tracklet("c1", 4, 1, 30, None),  # overlaps everyone but has no feature: left out
        _tracklet("c2", 1, 1, 10, e2),
    ]
    summary = distance_summary(tracklets)
    assert summary["must_differ"] == pytest.approx([0.5] * 5, abs=1e-6)
    # nearest other-camera tracklet: c1:1 -> 1, c1:2 -> a, c1:3 -> 1, c2:1 -> a (percentiles of a, a, 1, 1)
    a = 1 - np.sqrt(3) / 2
    assert summary["nearest_other_camera"] == pytest.approx([a, a, (a + 1) / 2, 1, 1], abs=1e-6)
    assert distance_summary(tracklets[:1] + tracklets[3:4]) == {"must_differ": [], "nearest_other_camera": []}
    assert distance_summary(tracklets[:3])["nearest_other_camera"] == []


def test_relink_prefers_one_close_link_to_two_mediocre_ones():
    from reidkit.track.linking import _chain_links

    def at(degrees):  # unit vectors on a circle: cosine distance = 1 - cos(angle between them)
        return np.array([np.cos(np.radians(degrees)), np.sin(np.radians(degrees)), 0.0], dtype=np.float32)

    def tracklet(local_id, first, feature):
        return Tracklet("c1", local_id, [first, first + 1], [[100, 100, 20, 50]] * 2, [0.9, 0.9], 10.0, feature=feature)

    theta = np.degrees(np.arccos(0.75))  # distance 0.25
    a1, b2 = tracklet(1, 1, at(np.degrees(np.arccos(0.99)))), tracklet(4, 20, at(0.0))  # A1-B2: 0.01
    b1 = tracklet(3, 20, at(np.degrees(np.arccos(0.99)) + theta))  # A1-B1: 0.25
    a2 = tracklet(2, 1, at(-theta))  # A2-B2: 0.25, A2-B1: about 1.0 (not allowed)
    distance = {k: 1 - float(x.feature @ y.feature) for k, (x, y) in {"a1b1": (a1, b1), "a2b2": (a2, b2), "a2b1": (a2, b1)}.items()}
    assert distance["a1b1"] < 0.3 and distance["a2b2"] < 0.3 and distance["a2b1"] > 0.3
    # two links (A1-B1, A2-B2: 0.5 in all) would beat one only if each open end cost nothing
    labels = _chain_links([a1, a2, b1, b2], RelinkSettings(threshold=0.3, max_gap_s=10), False, None)
    assert labels[0] == labels[3] and len(set(labels)) == 3
