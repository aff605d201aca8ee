from __future__ import annotations

import math

import pytest
import torch

from reidkit.losses.mutual import metric_mutual, mutual_kl


def _kl_loop(target_logits, logits, temperature):
    total = 0.0
    for row_target, row in zip(target_logits.tolist(), logits.tolist(), strict=True):
        target_exp = [math.exp(v / temperature) for v in row_target]
        exp = [math.exp(v / temperature) for v in row]
        p = [v / sum(target_exp) for v in target_exp]
        q = [v / sum(exp) for v in exp]
        total += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    return total / len(logits)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("members", [2, 3])
def test_mutual_kl_matches_loop(members, dtype):
    generator = torch.Generator().manual_seed(members)
    logits = torch.randn(members, 4, 6, generator=generator, dtype=dtype)
    for temperature in (1.0, 3.0):
        expected = [
            _kl_loop(logits[j], logits[i], temperature)
            for i in range(members)
            for j in range(members)
            if i != j
        ]
        value = mutual_kl(logits, torch.zeros(4), temperature=temperature)
        assert float(value) == pytest.approx(sum(expected) / len(expected) * temperature**2, rel=1e-5)


def test_mutual_kl_gradient_pulls_each_member_towards_the_other():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 5, generator=generator, requires_grad=True)
    mutual_kl(logits, torch.zeros(3)).backward()
    # d/dz_i KL(sg(p_j) || softmax(z_i)) = (p_i - p_j) / B, halved by the mean over the two ordered pairs
    probabilities = logits.detach().softmax(dim=2)
    torch.testing.assert_close(logits.grad[0], (probabilities[0] - probabilities[1]) / 3 / 2)
    torch.testing.assert_close(logits.grad[1], (probabilities[1] - probabilities[0]) / 3 / 2)
    same = torch.randn(1, 3, 5, generator=generator).expand(2, 3, 5)
    assert float(mutual_kl(same, torch.zeros(3))) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_metric_mutual_matches_loop(dtype):
    generator = torch.Generator().manual_seed(4)
    features = torch.randn(3, 5, 4, generator=generator, dtype=dtype)
    distances = [
        [[float(torch.linalg.vector_norm(member[a] - member[b])) for b in range(5)] for a in range(5)]
        for member in features
    ]
    expected = []
    for i in range(3):
        for j in range(3):
            if i != j:
                expected.append(
                    sum((distances[j][a][b] - distances[i][a][b]) ** 2 for a in range(5) for b in range(5))
                    / 25
                )
    value = metric_mutual(features, torch.zeros(5), normalize=False)
    assert float(value) == pytest.approx(sum(expected) / len(expected), rel=1e-4, abs=1e-6)
    normalised = metric_mutual(features, torch.zeros(5))
    unit = features / features.norm(dim=2, keepdim=True)
    assert float(normalised) == pytest.approx(
        float(metric_mutual(unit, torch.zeros(5), normalize=False)), rel=1e-5
    )
    # scaling one member's features changes nothing once normalised
    scaled = features.clone()
    scaled[1] *= 7.0
    assert float(metric_mutual(scaled, torch.zeros(5))) == pytest.approx(float(normalised), rel=1e-5)


def test_metric_mutual_gradient_only_through_the_student():
    generator = torch.Generator().manual_seed(5)
    student = torch.randn(4, 3, generator=generator, requires_grad=True)
    teacher = torch.randn(4, 3, generator=generator)
    value = metric_mutual(torch.stack([student, teacher]), torch.zeros(4))
    value.backward()
    assert student.grad.abs().sum() > 0


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"\[M, B, K\]"):
        mutual_kl(torch.randn(1, 3, 4), torch.zeros(3))
    with pytest.raises(ValueError, match=r"\[M, B, D\]"):
        metric_mutual(torch.randn(3, 4), torch.zeros(3))
    with pytest.raises(ValueError, match="temperature"):
        mutual_kl(torch.randn(2, 3, 4), torch.zeros(3), temperature=0.0)
