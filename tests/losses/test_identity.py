"""Identity losses (cross-entropy + LSR, LSRO, attributes) against naive per-sample loops."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reidkit.losses.identity import attribute_loss, cross_entropy, lsro

DTYPES = [torch.float32, torch.float64]


def _tolerance(dtype: torch.dtype) -> dict[str, float]:
    return {"rel": 1e-5, "abs": 1e-5} if dtype == torch.float32 else {"rel": 1e-10, "abs": 1e-10}


def naive_smoothed_cross_entropy(logits: torch.Tensor, pids: list[int], epsilon: float) -> float:
    """Per sample: -sum_c q_c log p_c with q = (1 - eps) one-hot + eps / C (uniform for pid -1)."""
    total = 0.0
    rows = logits.double().tolist()
    for row, pid in zip(rows, pids, strict=True):
        top = max(row)
        log_norm = top + math.log(sum(math.exp(z - top) for z in row))
        classes = len(row)
        for c, z in enumerate(row):
            if pid == -1:
                target = 1.0 / classes
            else:
                target = (1.0 - epsilon) * (1.0 if c == pid else 0.0) + epsilon / classes
            total -= target * (z - log_norm)
    return total / len(pids)


def logits_and_pids(dtype, batch=7, classes=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    logits = 3.0 * torch.randn(batch, classes, generator=generator, dtype=dtype)
    pids = torch.randint(0, classes, (batch,), generator=generator)
    return logits, pids


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.5, 1.0])
def test_cross_entropy_matches_naive(dtype, epsilon):
    logits, pids = logits_and_pids(dtype)
    value = cross_entropy(logits, pids, epsilon=epsilon)
    assert value.dtype == dtype
    expected = naive_smoothed_cross_entropy(logits, pids.tolist(), epsilon)
    assert value.item() == pytest.approx(expected, **_tolerance(dtype))


@pytest.mark.parametrize("epsilon", [0.0, 0.1])
def test_cross_entropy_matches_torch_label_smoothing(epsilon):
    logits, pids = logits_and_pids(torch.float64, seed=1)
    expected = F.cross_entropy(logits, pids, label_smoothing=epsilon)
    assert cross_entropy(logits, pids, epsilon=epsilon).item() == pytest.approx(expected.item(), rel=1e-12)


def test_cross_entropy_hand_computed():
    # two classes, equal logits: p = 1/2 for both, loss = log 2 whatever the smoothing.
    logits = torch.zeros(3, 2, dtype=torch.float64)
    pids = torch.tensor([0, 1, 1])
    assert cross_entropy(logits, pids, epsilon=0.3).item() == pytest.approx(math.log(2.0))
    # logits (log 3, 0): p = (3/4, 1/4); eps = 0.2 -> q = (0.9, 0.1) for pid 0.
    logits = torch.tensor([[math.log(3.0), 0.0]], dtype=torch.float64)
    expected = -(0.9 * math.log(0.75) + 0.1 * math.log(0.25))
    assert cross_entropy(logits, torch.tensor([0]), epsilon=0.2).item() == pytest.approx(expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_gradient_is_softmax_minus_target(dtype):
    logits, pids = logits_and_pids(dtype, seed=2)
    logits.requires_grad_(True)
    cross_entropy(logits, pids, epsilon=0.1).backward()
    target = 0.9 * F.one_hot(pids, 5).to(dtype) + 0.1 / 5
    expected = (logits.detach().softmax(dim=1) - target) / logits.shape[0]
    torch.testing.assert_close(logits.grad, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("epsilon", [0.0, 0.1])
def test_lsro_matches_naive_with_unlabelled_rows(dtype, epsilon):
    logits, pids = logits_and_pids(dtype, batch=8, seed=3)
    pids[[1, 4, 5]] = -1
    value = lsro(logits, pids, epsilon=epsilon)
    expected = naive_smoothed_cross_entropy(logits, pids.tolist(), epsilon)
    assert value.item() == pytest.approx(expected, **_tolerance(dtype))


def test_lsro_without_unlabelled_rows_is_cross_entropy():
    logits, pids = logits_and_pids(torch.float64, seed=4)
    assert lsro(logits, pids, epsilon=0.1).item() == pytest.approx(
        cross_entropy(logits, pids, epsilon=0.1).item()
    )


def test_lsro_uniform_target_is_minimised_by_equal_logits():
    # the uniform target's loss is log C at equal logits and larger elsewhere.
    pids = torch.full((2,), -1)
    assert lsro(torch.zeros(2, 4), pids).item() == pytest.approx(math.log(4.0))
    assert lsro(torch.tensor([[1.0, 0.0, 0.0, 0.0]] * 2), pids).item() > math.log(4.0)


def test_identity_losses_reject_bad_labels_and_shapes():
    logits, pids = logits_and_pids(torch.float32)
    with pytest.raises(ValueError, match=r"pids: values must be in \[0, 5\), got \[5\]"):
        cross_entropy(logits, torch.tensor([0, 1, 2, 3, 4, 5, 0]))
    with pytest.raises(ValueError, match="pids: values must be in"):
        cross_entropy(logits, torch.tensor([0, 1, 2, 3, 4, -1, 0]))
    with pytest.raises(ValueError, match="pids: values must be in"):
        lsro(logits, torch.tensor([0, 1, 2, 3, 4, -2, 0]))
    with pytest.raises(ValueError, match="logits: expected"):
        cross_entropy(logits[0], pids)
    with pytest.raises(ValueError, match="pids: expected"):
        cross_entropy(logits, pids[:3])
    with pytest.raises(ValueError, match="epsilon"):
        cross_entropy(logits, pids, epsilon=1.5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_attribute_loss_matches_naive_with_unknown_labels(dtype):
    generator = torch.Generator().manual_seed(5)
    logits = {
        "gender": torch.randn(6, 2, generator=generator, dtype=dtype),
        "top_colour": torch.randn(6, 4, generator=generator, dtype=dtype),
    }
    labels = {"gender": torch.tensor([0, 1, 1, -1, 0, 1]), "top_colour": torch.tensor([3, -1, 0, 2, -1, 1])}
    expected = 0.0
    for name in logits:
        known = [i for i, label in enumerate(labels[name].tolist()) if label != -1]
        expected += naive_smoothed_cross_entropy(logits[name][known], labels[name][known].tolist(), 0.0)
    assert attribute_loss(logits, labels).item() == pytest.approx(expected, **_tolerance(dtype))


def test_attribute_loss_all_unknown_is_connected_zero_and_errors_are_clear():
    logits = {"hat": torch.randn(3, 2, requires_grad=True)}
    value = attribute_loss(logits, {"hat": torch.full((3,), -1)})
    assert value.item() == 0.0
    value.backward()
    assert torch.equal(logits["hat"].grad, torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"no labels for attributes \['hat'\]"):
        attribute_loss(logits, {"bag": torch.zeros(3, dtype=torch.long)})
    with pytest.raises(ValueError, match=r"attribute 'hat': labels must be in \[0, 2\)"):
        attribute_loss(logits, {"hat": torch.tensor([0, 2, 1])})
    with pytest.raises(ValueError, match="at least one attribute"):
        attribute_loss({}, {})


def test_gradients_finite_for_extreme_logits():
    logits = torch.tensor([[1e4, -1e4, 0.0], [0.0, 0.0, 0.0]], requires_grad=True)
    value = cross_entropy(logits, torch.tensor([1, 0]), epsilon=0.1) + lsro(logits, torch.tensor([-1, 2]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_precision_logits_are_computed_in_float32(half):
    logits, pids = logits_and_pids(torch.float32, seed=6)
    leaf = logits.to(half).requires_grad_(True)
    for loss in (cross_entropy, lsro):
        value = loss(leaf, pids, epsilon=0.1)
        assert value.dtype == torch.float32
        assert value.item() == pytest.approx(loss(leaf.detach().float(), pids, epsilon=0.1).item(), rel=1e-6)
    value.backward()
    assert leaf.grad.dtype == half
