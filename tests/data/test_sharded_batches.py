"""Distributed P x K shares (``SeededBatches(sampler, rank=, world_size=)``): disjoint, complete, whole
identities, deterministic, resumable at any batch with any number of processes that divides P."""

from __future__ import annotations

from collections import Counter

import pytest

from reidkit.data.sampler import PKSampler, SeededBatches, UnlabelledMixSampler


def _pids() -> list[int]:
    sizes = {20 + n: 1 + (3 * n) % 7 for n in range(10)}  # 10 identities with 1..7 images
    return [pid for pid, count in sizes.items() for _ in range(count)]


def _epoch(sampler, *, rank=0, world=1, epoch=0, start=0) -> list[list[tuple[int, int]]]:
    sampler.set_epoch(epoch, start_batch=start)
    return list(SeededBatches(sampler, rank=rank, world_size=world))


@pytest.mark.parametrize("world", [1, 2, 4])
def test_the_ranks_shares_are_disjoint_and_together_the_single_process_batch(world):
    pids = _pids()
    sampler = PKSampler(pids, p=4, k=3, seed=5)
    for epoch in range(3):
        whole = _epoch(sampler, epoch=epoch)
        shares = [_epoch(sampler, rank=rank, world=world, epoch=epoch) for rank in range(world)]
        assert all(len(share) == len(whole) for share in shares)  # every rank takes the same number of steps
        for number, batch in enumerate(whole):
            parts = [share[number] for share in shares]
            assert sum(parts, []) == batch  # same indices and seeds, in rank order: nothing lost or repeated
            for part in parts:  # each share is whole identities: P / world of them, K images each
                counts = Counter(pids[index] for index, _ in part)
                assert len(counts) == 4 // world and set(counts.values()) == {3}


def test_shares_are_deterministic_and_resume_at_any_batch_with_any_world_size():
    sampler = PKSampler(_pids(), p=4, k=2, seed=1)
    full = {
        world: [_epoch(sampler, rank=r, world=world, epoch=2) for r in range(world)] for world in (1, 2, 4)
    }
    again = PKSampler(_pids(), p=4, k=2, seed=1)
    assert [_epoch(again, rank=1, world=2, epoch=2)] == [full[2][1]]
    for world in (1, 2, 4):  # a run stopped after 3 batches resumes with another number of processes
        for rank in range(world):
            resumed = _epoch(sampler, rank=rank, world=world, epoch=2, start=3)
            assert resumed == full[world][rank][3:]
    assert sum((share[3] for share in full[4]), []) == full[1][0][3] == sum((s[3] for s in full[2]), [])


def test_unlabelled_extras_are_shared_too():
    pids = _pids()
    unlabelled = list(range(len(pids), len(pids) + 5))
    sampler = UnlabelledMixSampler(PKSampler(pids, p=2, k=2, seed=0), unlabelled, per_batch=2)
    whole = _epoch(sampler)
    shares = [_epoch(sampler, rank=rank, world=2) for rank in range(2)]
    for number, batch in enumerate(whole):
        first, second = shares[0][number], shares[1][number]
        assert first == batch[0:2] + batch[4:5] and second == batch[2:4] + batch[5:6]


@pytest.mark.parametrize(
    ("p", "per_batch", "rank", "world", "message"),
    [
        (4, 0, 0, 3, "3 processes must divide data.p=4 identities per batch"),
        (4, 3, 0, 2, "and the 3 unlabelled images per batch"),
        (4, 0, 2, 2, "rank must be in \\[0, world_size\\), got rank 2 of world_size 2"),
        (4, 0, 0, 0, "got rank 0 of world_size 0"),
    ],
)
def test_a_share_that_does_not_fit_is_refused(p, per_batch, rank, world, message):
    pids = _pids()
    sampler = PKSampler(pids, p=p, k=2)
    if per_batch:
        sampler = UnlabelledMixSampler(sampler, [len(pids)], per_batch=per_batch)
    with pytest.raises(ValueError, match=message):
        SeededBatches(sampler, rank=rank, world_size=world)
