from __future__ import annotations

import itertools
import math

import pytest
import torch

from reidkit.losses.aligned import (
    aligned_triplet,
    local_distance,
    local_pair_distance,
    normalized_part_distance,
    shortest_path,
)
from reidkit.models.output import ReidOutput


def _brute_force_shortest_path(matrix: torch.Tensor) -> float:
    """Minimum over every monotone (right/down) path of the summed cell costs."""
    height, width = matrix.shape
    best = math.inf
    for downs in itertools.combinations(range(height + width - 2), height - 1):
        row = column = 0
        total = float(matrix[0, 0])
        for move in range(height + width - 2):
            if move in downs:
                row += 1
            else:
                column += 1
            total += float(matrix[row, column])
        best = min(best, total)
    return best


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1, 1), (1, 4), (3, 1), (4, 4), (5, 3), (6, 6)])
def test_shortest_path_equals_brute_force(shape, dtype):
    generator = torch.Generator().manual_seed(sum(shape))
    matrices = torch.rand(5, *shape, generator=generator, dtype=dtype)
    result = shortest_path(matrices)
    expected = torch.tensor([_brute_force_shortest_path(m) for m in matrices], dtype=dtype)
    torch.testing.assert_close(result, expected)


def test_shortest_path_hand_case():
    matrix = torch.tensor([[1.0, 9.0, 9.0], [1.0, 1.0, 9.0], [9.0, 1.0, 1.0]])
    assert float(shortest_path(matrix)) == pytest.approx(5.0)


def test_part_distance_formula():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 3, generator=generator, dtype=torch.float64)
    y = torch.randn(3, 5, 3, generator=generator, dtype=torch.float64)
    result = normalized_part_distance(x, y)
    assert result.shape == (2, 3, 4, 5)
    for m, n, i, j in itertools.product(range(2), range(3), range(4), range(5)):
        norm = torch.linalg.vector_norm(x[m, i] - y[n, j])
        expected = (torch.exp(norm) - 1) / (torch.exp(norm) + 1)
        assert float(result[m, n, i, j]) == pytest.approx(float(expected), abs=1e-9)
    # large distances do not overflow
    far = normalized_part_distance(torch.full((1, 1, 2), 1e3), torch.zeros(1, 1, 2))
    assert torch.isfinite(far).all() and float(far) == pytest.approx(1.0)


def test_local_distance_batched_equals_per_pair_and_symmetric():
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(5, 6, 8, generator=generator, dtype=torch.float64)
    y = torch.randn(4, 6, 8, generator=generator, dtype=torch.float64)
    batched = local_distance(x, y, chunk_size=2)
    assert batched.shape == (5, 4)
    for m, n in itertools.product(range(5), range(4)):
        matrix = normalized_part_distance(x[m : m + 1], y[n : n + 1])[0, 0]
        assert float(batched[m, n]) == pytest.approx(_brute_force_shortest_path(matrix), abs=1e-9)
        pair = local_pair_distance(x[m : m + 1], y[n : n + 1])
        assert float(pair) == pytest.approx(float(batched[m, n]), abs=1e-12)
    torch.testing.assert_close(local_distance(y, x), batched.t())
    self_distance = local_distance(x, x)
    torch.testing.assert_close(self_distance, self_distance.t())


def test_alignment_follows_shifted_parts():
    """A copy shifted down by one row: the shortest path runs through the matching (zero-cost) cells."""
    generator = torch.Generator().manual_seed(5)
    rows = 0.3 * torch.randn(1, 7, 16, generator=generator)
    shifted = torch.cat([0.3 * torch.randn(1, 1, 16, generator=generator), rows[:, :-1]], dim=1)
    matrix = normalized_part_distance(rows, shifted)[0, 0]
    # cells (i, i + 1) match; the path right-first along them pays only the 7 cells (i, i) and (6, 6)...
    through_matches = float(sum(matrix[i, i] for i in range(7)) + sum(matrix[i, i + 1] for i in range(6)))
    # ...while the down-first staircase pays 13 mismatched cells
    down_first = float(sum(matrix[i, i] for i in range(7)) + sum(matrix[i + 1, i] for i in range(6)))
    aligned = float(local_distance(rows, shifted))
    assert aligned == pytest.approx(through_matches, abs=1e-5)
    assert aligned < 0.75 * down_first
    unrelated = 0.3 * torch.randn(1, 7, 16, generator=generator)
    assert aligned < 0.75 * float(local_distance(rows, unrelated))


def _reference_aligned_triplet(global_features, local_features, pids, margin, local_margin):
    size = len(pids)
    global_terms, local_terms = [], []
    for a in range(size):
        positives = [p for p in range(size) if p != a and pids[p] == pids[a]]
        negatives = [n for n in range(size) if pids[n] != pids[a]]
        if not positives or not negatives:
            continue
        distance = [
            float(torch.linalg.vector_norm(global_features[a] - global_features[j]).detach())
            for j in range(size)
        ]
        p = max(positives, key=lambda j: distance[j])
        n = min(negatives, key=lambda j: distance[j])
        global_terms.append(max(distance[p] - distance[n] + margin, 0.0))
        local_p = float(local_distance(local_features[a : a + 1], local_features[p : p + 1]).detach())
        local_n = float(local_distance(local_features[a : a + 1], local_features[n : n + 1]).detach())
        local_terms.append(max(local_p - local_n + local_margin, 0.0))
    return sum(global_terms) / len(global_terms), sum(local_terms) / len(local_terms)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_aligned_triplet_matches_reference_loop(dtype):
    generator = torch.Generator().manual_seed(11)
    pids = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    global_features = torch.randn(8, 6, generator=generator, dtype=dtype, requires_grad=True)
    local_features = torch.randn(8, 4, 3, generator=generator, dtype=dtype, requires_grad=True)
    output = ReidOutput(
        embedding=global_features, global_features=[global_features], local_features=local_features
    )
    loss = aligned_triplet(output, pids, margin=0.3, local_margin=2.0, global_weight=0.5, local_weight=2.0)
    global_term, local_term = _reference_aligned_triplet(global_features, local_features, pids, 0.3, 2.0)
    assert float(loss.detach()) == pytest.approx(0.5 * global_term + 2.0 * local_term, rel=1e-5)
    loss.backward()
    assert local_features.grad is not None and local_features.grad.abs().sum() > 0
    assert torch.isfinite(global_features.grad).all()


def test_aligned_triplet_without_valid_anchor_and_errors():
    features = torch.randn(3, 4, requires_grad=True)
    local_features = torch.randn(3, 2, 5, requires_grad=True)
    output = ReidOutput(embedding=features, global_features=[features], local_features=local_features)
    loss = aligned_triplet(output, torch.tensor([0, 1, 2]))
    assert float(loss.detach()) == 0.0
    loss.backward()
    with pytest.raises(ValueError, match="no per-row local features"):
        aligned_triplet(ReidOutput(embedding=features, global_features=[features]), torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match=r"\[B, H, C\]"):
        local_distance(torch.randn(2, 5), torch.randn(2, 5))


def test_aligned_triplet_mutual_members_average():
    generator = torch.Generator().manual_seed(2)
    pids = torch.tensor([0, 0, 1, 1])
    globals_ = torch.randn(2, 4, 6, generator=generator)
    locals_ = torch.randn(2, 4, 3, 5, generator=generator)
    output = ReidOutput(embedding=globals_[0], extra={"mutual.global": globals_, "mutual.local": locals_})
    members = [
        aligned_triplet(ReidOutput(embedding=g, global_features=[g], local_features=l), pids)
        for g, l in zip(globals_, locals_, strict=True)
    ]
    torch.testing.assert_close(aligned_triplet(output, pids), (members[0] + members[1]) / 2)


def test_aligned_distance_modes():
    from reidkit.distance import euclidean
    from reidkit.losses.aligned import aligned_distance

    generator = torch.Generator().manual_seed(9)
    q_global, g_global = torch.randn(3, 6, generator=generator), torch.randn(5, 6, generator=generator)
    q_local, g_local = torch.randn(3, 4, 2, generator=generator), torch.randn(5, 4, 2, generator=generator)
    global_only = aligned_distance(q_global, g_global)
    torch.testing.assert_close(global_only, euclidean(q_global, g_global))
    local = aligned_distance(q_global, g_global, q_local, g_local, mode="local")
    torch.testing.assert_close(local, local_distance(q_local, g_local))
    combined = aligned_distance(q_global, g_global, q_local, g_local, mode="combined", local_weight=0.5)
    torch.testing.assert_close(combined, global_only + 0.5 * local)
    with pytest.raises(ValueError, match="needs the local features"):
        aligned_distance(q_global, g_global, mode="combined")
    with pytest.raises(ValueError, match="mode"):
        aligned_distance(q_global, g_global, mode="both")
