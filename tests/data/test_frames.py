from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from reidkit.data.frames import FRAME_MODES, check_clip_indices, clip_rng, sample_frames, tracklet_clips
from reidkit.data.records import Tracklet
from reidkit.data.sampler import PKSampler

SIZES = [1, 2, 3, 4, 5, 7, 8, 16, 33]


@pytest.mark.parametrize("mode", FRAME_MODES)
@pytest.mark.parametrize("num_frames", SIZES)
@pytest.mark.parametrize("seq_len", [1, 4, 8])
def test_clips_have_seq_len_sorted_in_range_indices(mode, num_frames, seq_len):
    clips = sample_frames(num_frames, seq_len, mode, rng=np.random.default_rng(0))
    expected_clips = math.ceil(num_frames / seq_len) if mode == "all" else 1
    assert len(clips) == expected_clips
    for clip in clips:
        assert len(clip) == seq_len
        assert all(isinstance(i, int) and 0 <= i < num_frames for i in clip)
        assert clip == sorted(clip)


def test_evenly_known_values():
    assert sample_frames(10, 4, "evenly") == [[0, 2, 5, 7]]
    assert sample_frames(8, 4, "evenly") == [[0, 2, 4, 6]]
    assert sample_frames(4, 4, "evenly") == [[0, 1, 2, 3]]
    # shorter than seq_len: every frame repeated in order, equally often
    assert sample_frames(3, 6, "evenly") == [[0, 0, 1, 1, 2, 2]]
    assert sample_frames(1, 3, "evenly") == [[0, 0, 0]]
    assert sample_frames(3, 4, "evenly") == [[0, 0, 1, 2]]


@pytest.mark.parametrize("num_frames", SIZES)
def test_evenly_spreads_over_the_whole_tracklet(num_frames):
    seq_len = 4
    (clip,) = sample_frames(num_frames, seq_len, "evenly")
    counts = Counter(clip)
    if num_frames >= seq_len:
        assert len(counts) == seq_len  # distinct frames
        assert clip[-1] >= num_frames - math.ceil(num_frames / seq_len)  # reaches the last segment
    else:
        assert set(counts) == set(range(num_frames))  # every frame of a short tracklet
        assert max(counts.values()) - min(counts.values()) <= 1


def test_all_known_values_and_padding():
    assert sample_frames(10, 4, "all") == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 8, 9, 9]]
    assert sample_frames(8, 4, "all") == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert sample_frames(9, 4, "all") == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 8, 8, 8]]
    assert sample_frames(2, 5, "all") == [[0, 0, 0, 1, 1]]


@pytest.mark.parametrize("num_frames", SIZES)
@pytest.mark.parametrize("seq_len", [1, 3, 4, 8])
def test_all_covers_every_frame_once_in_consecutive_chunks(num_frames, seq_len):
    clips = sample_frames(num_frames, seq_len, "all")
    distinct = [sorted(set(clip)) for clip in clips]
    flat = [i for chunk in distinct for i in chunk]
    assert flat == list(range(num_frames))  # every frame, each in exactly one chunk, in order
    for chunk in distinct[:-1]:
        assert len(chunk) == seq_len  # only the last chunk is padded
    last = Counter(clips[-1])
    assert max(last.values()) - min(last.values()) <= 1  # padding spread over the last chunk's frames


@pytest.mark.parametrize("num_frames", [4, 7, 16, 33])
def test_random_picks_one_frame_per_segment_and_is_deterministic(num_frames):
    seq_len = 4
    clips = [
        sample_frames(num_frames, seq_len, "random", rng=np.random.default_rng(seed))[0] for seed in range(30)
    ]
    for clip in clips:
        for i, index in enumerate(clip):
            assert (
                (i * num_frames) // seq_len
                <= index
                < max((i + 1) * num_frames // seq_len, 1 + (i * num_frames) // seq_len)
            )
    assert clips[3] == sample_frames(num_frames, seq_len, "random", rng=np.random.default_rng(3))[0]
    assert clips[3] == sample_frames(num_frames, seq_len, "random", rng=3)[0]  # an integer seed
    if num_frames > seq_len:
        assert len({tuple(clip) for clip in clips}) > 1  # actually random
        used = {i for clip in clips for i in clip}
        assert used == set(range(num_frames))  # over many draws every frame can be picked


def test_random_on_short_tracklet_is_the_evenly_clip():
    for num_frames in (1, 2, 3):
        got = sample_frames(num_frames, 5, "random", rng=np.random.default_rng(1))
        assert got == sample_frames(num_frames, 5, "evenly")


def test_random_generator_state_advances_and_clip_rng_is_a_function_of_its_arguments():
    rng = np.random.default_rng(0)
    first = sample_frames(40, 4, "random", rng=rng)
    second = sample_frames(40, 4, "random", rng=rng)
    assert first != second
    a = sample_frames(40, 4, "random", rng=clip_rng(7, 2, 11))
    assert a == sample_frames(40, 4, "random", rng=clip_rng(7, 2, 11))
    others = [
        sample_frames(40, 4, "random", rng=clip_rng(*args)) for args in [(8, 2, 11), (7, 3, 11), (7, 2, 12)]
    ]
    assert any(other != a for other in others)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((0, 4, "evenly"), {}, "num_frames"),
        ((5, 0, "evenly"), {}, "seq_len"),
        ((5, 2.0, "evenly"), {}, "seq_len"),
        ((True, 2, "evenly"), {}, "num_frames"),
        ((5, 4, "middle"), {}, "unknown frame sampling mode 'middle'"),
        ((5, 4, "random"), {}, "needs rng"),
    ],
)
def test_bad_arguments_raise_with_the_field_name(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        sample_frames(*args, **kwargs)


def test_tracklet_clips_maps_indices_to_paths():
    tracklet = Tracklet(paths=tuple(f"f{i:03d}.jpg" for i in range(10)), pid=3, camid=1)
    assert tracklet_clips(tracklet, 4, "evenly") == [("f000.jpg", "f002.jpg", "f005.jpg", "f007.jpg")]
    clips = tracklet_clips(tracklet, 4, "all")
    assert clips[-1] == ("f008.jpg", "f008.jpg", "f009.jpg", "f009.jpg")
    assert tracklet_clips(tracklet, 4, "random", rng=5) == tracklet_clips(tracklet, 4, "random", rng=5)
    with pytest.raises(ValueError, match="pid 4, camera 0 has no frames"):
        tracklet_clips(Tracklet(paths=(), pid=4, camid=0), 4, "evenly")


def test_check_clip_indices():
    check_clip_indices([[0, 1], [2, 2]], 3)
    with pytest.raises(ValueError, match="at least one clip"):
        check_clip_indices([], 3)
    with pytest.raises(ValueError, match="same number"):
        check_clip_indices([[0, 1], [2]], 3)
    with pytest.raises(ValueError, match="out of range for 3 frames"):
        check_clip_indices([[0, 3]], 3)


def _tracklets() -> list[Tracklet]:
    # identities with 1, 2, 3 and 5 tracklets of various lengths
    counts = {10: 1, 11: 2, 12: 3, 13: 5, 14: 2}
    return [
        Tracklet(paths=tuple(f"{pid}/{n}/{i}.jpg" for i in range(3 + n)), pid=pid, camid=n % 2)
        for pid, count in counts.items()
        for n in range(count)
    ]


def test_pk_sampler_works_on_tracklets_unchanged():
    tracklets = _tracklets()
    pids = [t.pid for t in tracklets]
    sampler = PKSampler(pids, p=3, k=2, seed=4)
    for epoch in range(3):
        batches = sampler.batches(epoch)
        for batch in batches:
            per_identity = Counter(tracklets[i].pid for i in batch)
            assert len(per_identity) == 3 and set(per_identity.values()) == {2}
        assert {i for batch in batches for i in batch} == set(range(len(tracklets)))  # complete epoch
    assert PKSampler(pids, p=3, k=2, seed=4).batches(1) == sampler.batches(1)
    assert sampler.batches(0) != sampler.batches(1)
    # resume: skipping the first batches replays exactly the rest of the epoch
    resumed = PKSampler(pids, p=3, k=2, seed=4)
    resumed.set_epoch(2, start_batch=1)
    assert list(resumed) == sampler.batches(2)[1:]
