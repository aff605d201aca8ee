"""Cutting a track where its appearance changes, on hand-made features and boxes."""

from __future__ import annotations

import numpy as np
import pytest

from reidkit.track.switches import SwitchSettings, split_points

E = np.eye(4, dtype=np.float32)


def _track(frames: int = 60, jumps: tuple[int, ...] = (31,)):
    """Frames 1..N, a 30 x 60 box walking 2 px a frame that jumps 20 px sideways on each frame of ``jumps``."""
    index = np.arange(1, frames + 1)
    x = 20.0 + 2.0 * (index - 1) + 20.0 * sum((index >= j).astype(np.float64) for j in jumps)
    boxes = np.column_stack([x, np.full(frames, 50.0), np.full(frames, 30.0), np.full(frames, 60.0)])
    return index, boxes


def _split(crop_frames, vectors, settings: SwitchSettings | None = None, frames=60, jumps=(31,)):
    index, boxes = _track(frames, jumps)
    crop_frames = np.asarray(crop_frames)
    features = np.stack([E[v] for v in vectors])
    weights = np.full(len(crop_frames), 0.5)
    return split_points(index, boxes, crop_frames, features, weights, settings or SwitchSettings())


# crops every 5 frames, none between 27 and 35: the jump on frame 31 lies strictly between two crops
CROPS = [1, 6, 11, 16, 21, 26, 36, 41, 46, 51, 56, 60]


def test_two_people_are_cut_once_where_the_box_jumps():
    assert _split(CROPS, [0] * 6 + [1] * 6) == [31]


def test_the_cut_follows_the_jump_not_the_crops():
    assert _split(CROPS, [0] * 6 + [1] * 6, jumps=(34,)) == [34]
    assert _split(CROPS, [0] * 6 + [1] * 6, jumps=(28,)) == [28]


def test_without_a_jump_the_cut_is_mid_gap():
    # straight paths crossing: no box jumps, the swap happens between the crops, where the people overlap
    crops = [1, 6, 11, 16, 21, 41, 46, 51, 56, 60]
    assert _split(crops, [0] * 5 + [1] * 5, jumps=()) == [31]
    # a clear jump still wins over the middle
    assert _split(crops, [0] * 5 + [1] * 5, jumps=(23,)) == [23]


def test_same_person_is_not_cut():
    assert _split(CROPS, [0] * 12) == []
    # a small change of appearance (cosine distance 1 - 0.9 = 0.1 < 0.45) is not a switch
    index, boxes = _track()
    near = np.array([0.9, np.sqrt(1 - 0.81), 0, 0], np.float32)
    features = np.stack([E[0]] * 6 + [near] * 6)
    assert split_points(index, boxes, np.array(CROPS), features, np.ones(12), SwitchSettings()) == []


def test_three_people_give_two_cuts():
    crops = [1, 5, 9, 13, 25, 29, 33, 37, 49, 53, 57, 60]  # no crop in 14..24 nor 38..48
    assert _split(crops, [0] * 4 + [1] * 4 + [2] * 4, jumps=(20, 44)) == [20, 44]


def test_too_few_crops_or_disabled_or_high_threshold_gives_no_cut():
    assert _split([1, 6, 11, 36, 41], [0, 0, 0, 1, 1]) == []  # 5 < 2 * min_crops
    assert _split([1, 6, 11, 36, 41, 46], [0, 0, 0, 1, 1, 1]) == [31]  # 6 crops are enough
    assert _split([1, 6, 36, 41], [0, 0, 1, 1], SwitchSettings(min_crops=2)) == [31]
    assert _split(CROPS, [0] * 6 + [1] * 6, SwitchSettings(enabled=False)) == []
    assert _split(CROPS, [0] * 6 + [1] * 6, SwitchSettings(threshold=1.0)) == []  # distance 1 is not above 1


def test_weights_decide_the_side_means():
    # one stray crop of person 1 among person 0's: with a tiny weight it does not make a cut
    index, boxes = _track()
    vectors = [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    features = np.stack([E[v] for v in vectors])
    weights = np.full(12, 0.5)
    weights[3] = 1e-3
    assert split_points(index, boxes, np.array(CROPS), features, weights, SwitchSettings(min_crops=1)) == []
    weights[3] = 5.0  # dominant: the left side looks like person 1
    assert split_points(index, boxes, np.array(CROPS), features, weights, SwitchSettings(min_crops=1)) != []


def test_settings_are_checked():
    with pytest.raises(ValueError, match="threshold"):
        SwitchSettings(threshold=float("nan"))
    with pytest.raises(ValueError, match="min_crops"):
        SwitchSettings(min_crops=0)
