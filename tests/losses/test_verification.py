"""Verification loss: pair mining, BCE against a naive per-pair loop, pairwise scoring."""

from __future__ import annotations

import math

import pytest
import torch

from reidkit.losses.verification import PairHead, mine_pairs, pair_scores, verification

DTYPES = [torch.float32, torch.float64]


def batch(dtype, ids=4, per_id=3, dim=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(ids * per_id, dim, generator=generator, dtype=dtype)
    pids = torch.arange(ids).repeat_interleave(per_id)
    return features, pids[torch.randperm(ids * per_id, generator=generator)]


def head_for(dim, dtype, seed=1):
    head = PairHead(dim).to(dtype)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        head.linear.weight.copy_(torch.randn(1, dim, generator=generator, dtype=dtype))
        head.linear.bias.copy_(torch.randn(1, generator=generator, dtype=dtype))
    return head


def naive_pair_logit(head, first, second):
    weight, bias = head.linear.weight[0].detach().double().tolist(), float(head.linear.bias.detach()[0])
    difference = [
        (a - b) ** 2 for a, b in zip(first.double().tolist(), second.double().tolist(), strict=True)
    ]
    return sum(w * x for w, x in zip(weight, difference, strict=True)) + bias


def naive_bce(logit, same):
    probability = 1.0 / (1.0 + math.exp(-logit))
    return -math.log(probability) if same else -math.log(1.0 - probability)


def naive_pairs(features, pids):
    labels = pids.tolist()
    size = len(labels)
    positives = [(i, j) for i in range(size) for j in range(i + 1, size) if labels[i] == labels[j]]
    negatives = [(i, j) for i in range(size) for j in range(i + 1, size) if labels[i] != labels[j]]
    distance = {pair: float((features[pair[0]] - features[pair[1]]).double().norm()) for pair in negatives}
    hardest = sorted(negatives, key=lambda pair: distance[pair])[: len(positives)]
    return positives, hardest


@pytest.mark.parametrize("dtype", DTYPES)
def test_hard_mining_takes_all_positives_and_as_many_closest_negatives(dtype):
    features, pids = batch(dtype)
    first, second, same = mine_pairs(features, pids)
    positives, hardest = naive_pairs(features, pids)
    pairs = list(zip(first.tolist(), second.tolist(), strict=True))
    assert pairs[: len(positives)] == positives
    assert set(pairs[len(positives) :]) == set(hardest)
    assert same.tolist() == [True] * len(positives) + [False] * len(hardest)


def test_random_mining_is_seeded_and_balanced():
    features, pids = batch(torch.float32)
    draws = [
        mine_pairs(features, pids, negative_mining="random", generator=torch.Generator().manual_seed(seed))
        for seed in (3, 3, 4)
    ]
    assert all(torch.equal(a, b) for a, b in zip(draws[0], draws[1], strict=True))
    assert not torch.equal(draws[0][1], draws[2][1]) or not torch.equal(draws[0][0], draws[2][0])
    first, second, same = draws[0]
    assert int(same.sum()) == int((~same).sum()) == 12
    assert (pids[first] == pids[second]).tolist() == same.tolist()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("negative_mining", ["hard", "random"])
def test_verification_matches_naive(dtype, negative_mining):
    features, pids = batch(dtype, seed=2)
    head = head_for(features.shape[1], dtype)
    value = verification(
        features, pids, head, negative_mining=negative_mining, generator=torch.Generator().manual_seed(0)
    )
    if negative_mining == "hard":
        positives, negatives = naive_pairs(features, pids)
    else:
        first, second, same = mine_pairs(
            features, pids, negative_mining="random", generator=torch.Generator().manual_seed(0)
        )
        pairs = list(zip(first.tolist(), second.tolist(), strict=True))
        positives, negatives = pairs[: int(same.sum())], pairs[int(same.sum()) :]
    losses = [naive_bce(naive_pair_logit(head, features[i], features[j]), True) for i, j in positives]
    losses += [naive_bce(naive_pair_logit(head, features[i], features[j]), False) for i, j in negatives]
    tolerance = {"rel": 1e-5} if dtype == torch.float32 else {"rel": 1e-10}
    assert value.item() == pytest.approx(sum(losses) / len(losses), **tolerance)


def test_verification_without_positive_pairs_is_a_connected_zero():
    features = torch.randn(4, 3, requires_grad=True)
    head = PairHead(3)
    value = verification(features, torch.arange(4), head)
    assert value.item() == 0.0
    value.backward()
    assert torch.equal(features.grad, torch.zeros_like(features))
    assert torch.equal(head.linear.weight.grad, torch.zeros_like(head.linear.weight))


def test_verification_gradients_finite_with_identical_features_and_head_learns():
    features, pids = batch(torch.float32, seed=3)
    features = features.clone()
    features[pids == pids[0]] = features[0].clone()
    features.requires_grad_(True)
    head = PairHead(5)
    verification(features, pids, head).backward()
    assert torch.isfinite(features.grad).all() and torch.isfinite(head.linear.weight.grad).all()
    # a few optimiser steps on the head alone lower the loss on fixed features.
    fixed, pids = batch(torch.float32, seed=4)
    head = head_for(5, torch.float32)
    optimizer = torch.optim.SGD(head.parameters(), lr=0.1)
    start = verification(fixed, pids, head).item()
    for _ in range(50):
        optimizer.zero_grad()
        verification(fixed, pids, head).backward()
        optimizer.step()
    assert verification(fixed, pids, head).item() < start


@pytest.mark.parametrize("batch_size", [1, 7, 4096])
def test_pair_scores_match_one_head_call_per_pair(batch_size):
    generator = torch.Generator().manual_seed(5)
    queries = torch.randn(3, 4, generator=generator, dtype=torch.float64)
    gallery = torch.randn(5, 4, generator=generator, dtype=torch.float64)
    head = head_for(4, torch.float64)
    scores = pair_scores(head, queries, gallery, batch_size=batch_size)
    assert scores.shape == (3, 5)
    for i in range(3):
        for j in range(5):
            expected = 1.0 / (1.0 + math.exp(-naive_pair_logit(head, queries[i], gallery[j])))
            assert scores[i, j].item() == pytest.approx(expected, rel=1e-10)


def test_pair_scores_and_mining_errors():
    head = PairHead(4)
    with pytest.raises(ValueError, match="expected \\[M, D\\] query and \\[N, D\\] gallery"):
        pair_scores(head, torch.randn(2, 4), torch.randn(3, 5))
    with pytest.raises(ValueError, match="batch_size"):
        pair_scores(head, torch.randn(2, 4), torch.randn(3, 4), batch_size=0)
    with pytest.raises(ValueError, match="negative_mining"):
        mine_pairs(torch.randn(4, 4), torch.tensor([0, 0, 1, 1]), negative_mining="semi")
