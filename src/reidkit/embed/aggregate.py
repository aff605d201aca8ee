"""Many embeddings of one person -> one: the quality-weighted mean (tracklets, video ReID).

``feature = normalise(sum_i w_i f_i / sum_i w_i)`` for L2-normalised frame embeddings ``f_i`` and
non-negative quality weights ``w_i`` (a crop's size, sharpness or visibility; with equal weights this is plain
average pooling). Frames with weight 0 do not count; at least one weight must be positive.
"""

from __future__ import annotations

import numpy as np

__all__ = ["quality_weighted_mean"]


def quality_weighted_mean(features: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The L2-normalised weighted mean of ``features``.

    Args:
        features: ``[N, D]`` embeddings (N >= 1).
        weights: ``[N]`` non-negative weights, at least one positive; default all 1.

    Returns:
        ``[D]`` float32 with unit L2 norm.

    Raises:
        ValueError: empty input, shapes that do not match, non-finite values, a negative weight, all weights 0,
            or a mean of length 0 (embeddings that cancel out).
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) == 0:
        raise ValueError(f"expected [N, D] features with N >= 1, got shape {features.shape}")
    weights = np.ones(len(features)) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if len(weights) != len(features):
        raise ValueError(f"{len(features)} features but {len(weights)} weights")
    if not (np.isfinite(features).all() and np.isfinite(weights).all()):
        raise ValueError("features and weights must be finite")
    if (weights < 0).any():
        raise ValueError(f"weights must be >= 0, got minimum {weights.min()}")
    total = weights.sum()
    if total <= 0:
        raise ValueError("at least one weight must be > 0")
    mean = (weights[:, None] * features).sum(axis=0) / total
    norm = np.linalg.norm(mean)
    if norm == 0:
        raise ValueError("the weighted mean has length 0 (the embeddings cancel out)")
    return (mean / norm).astype(np.float32)
