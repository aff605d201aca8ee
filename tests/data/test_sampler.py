from __future__ import annotations

from collections import Counter

import pytest

from reidkit.data.sampler import PKSampler, SeededBatches


def _pids():
    # identities with 1, 2, 3, 5, 9 and 4 images: some below K, some not a multiple of K
    sizes = {10: 1, 11: 2, 12: 3, 13: 5, 14: 9, 15: 4}
    return [pid for pid, n in sizes.items() for _ in range(n)]


@pytest.mark.parametrize(("p", "k"), [(2, 4), (3, 2), (6, 1)])
def test_every_batch_is_p_identities_by_k_images(p, k):
    pids = _pids()
    sampler = PKSampler(pids, p=p, k=k, seed=3)
    for epoch in range(3):
        batches = sampler.batches(epoch)
        assert batches
        for batch in batches:
            assert len(batch) == p * k
            counts = Counter(pids[i] for i in batch)
            assert len(counts) == p and set(counts.values()) == {k}


def test_epoch_is_complete_and_seeded():
    pids = _pids()
    sampler = PKSampler(pids, p=2, k=4, seed=7)
    used = {i for batch in sampler.batches(0) for i in batch}
    assert used == set(range(len(pids)))
    assert PKSampler(pids, p=2, k=4, seed=7).batches(0) == sampler.batches(0)
    assert sampler.batches(0) != sampler.batches(1)
    assert PKSampler(pids, p=2, k=4, seed=8).batches(0) != sampler.batches(0)


def test_resume_position_skips_batches_and_seeds_follow_position():
    pids = _pids()
    sampler = PKSampler(pids, p=2, k=2, seed=1)
    sampler.set_epoch(2)
    full = list(SeededBatches(sampler))
    sampler.set_epoch(2, start_batch=3)
    assert len(sampler) == len(full) - 3
    assert list(SeededBatches(sampler)) == full[3:]
    seeds = [seed for batch in full for _, seed in batch]
    assert len(set(seeds)) == len(seeds)


def test_too_few_identities_is_an_error():
    with pytest.raises(ValueError, match="at least P=7 identities"):
        PKSampler(_pids(), p=7, k=2)
    with pytest.raises(ValueError, match="P and K must be >= 1"):
        PKSampler(_pids(), p=0, k=2)


def test_make_split_relabels_train_and_keeps_the_mapping():
    from reidkit.data.records import Sample, make_split

    train = [Sample("a", 7, 0), Sample("b", 3, 1), Sample("c", 7, 1)]
    split = make_split(train, [Sample("q", 9, 0)], [Sample("g", 9, 1)], extra={"note": 1})
    assert [s.pid for s in split.train] == [1, 0, 1]
    assert split.extra == {"note": 1, "train_pid_mapping": {3: 0, 7: 1}}
    assert split.query[0].pid == 9 and split.num_train_pids == 2
