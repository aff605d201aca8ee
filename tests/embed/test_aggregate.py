"""The quality-weighted mean against a plain loop, and its refusals."""

from __future__ import annotations

import numpy as np
import pytest

from reidkit.embed.aggregate import quality_weighted_mean


def _naive(features, weights):
    total = [0.0] * len(features[0])
    for row, weight in zip(features, weights, strict=True):
        for j, value in enumerate(row):
            total[j] += weight * value
    length = sum(v * v for v in total) ** 0.5
    return [v / length for v in total]


@pytest.mark.parametrize("seed", range(5))
def test_matches_a_naive_loop(seed):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(7, 5))
    weights = rng.uniform(0, 2, size=7)
    weights[2] = 0.0
    np.testing.assert_allclose(quality_weighted_mean(features, weights), _naive(features, weights), rtol=1e-6)


def test_zero_weight_rows_do_not_count_and_default_is_average():
    features = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    np.testing.assert_allclose(quality_weighted_mean(features, [1, 0, 0]), [1, 0])
    np.testing.assert_allclose(quality_weighted_mean(features[:2]), [2**-0.5, 2**-0.5], rtol=1e-6)
    assert quality_weighted_mean(features[:2]).dtype == np.float32


@pytest.mark.parametrize(
    "features, weights, message",
    [
        (np.zeros((0, 3)), None, "N >= 1"),
        (np.ones((2, 3)), [1.0], "2 features but 1 weights"),
        (np.ones((2, 3)), [1.0, -1.0], ">= 0"),
        (np.ones((2, 3)), [0.0, 0.0], "at least one weight"),
        (np.array([[np.nan, 1.0]]), None, "finite"),
        (np.array([[1.0, 0.0], [-1.0, 0.0]]), None, "cancel out"),
    ],
)
def test_bad_input_is_refused(features, weights, message):
    with pytest.raises(ValueError, match=message):
        quality_weighted_mean(features, weights)
