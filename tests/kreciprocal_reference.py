"""The k-reciprocal encoding of Zhong et al. (CVPR 2017, Sec. 3) with plain loops: the reference that the
re-ranking and the adaptation's Jaccard distance are checked against."""

from __future__ import annotations

import numpy as np


def transcribed_encoding(original: np.ndarray, k1: int, k2: int) -> tuple[np.ndarray, list[list[int]]]:
    """``[N, N]`` squared distances -> (the encoding ``V [N, N]`` after local query expansion, the rankings).

    ``original`` is scaled row by row by its largest value in place (the paper's normalisation).
    """
    count = original.shape[0]
    for i in range(count):  # each row scaled by its largest distance
        original[i] = original[i] / original[i].max()
    ranking = [list(np.argsort(original[i], kind="stable")) for i in range(count)]

    def nearest(i, k):  # N(i, k): the k + 1 nearest, the item itself included
        return ranking[i][: k + 1]

    def reciprocal(i, k):  # R(i, k) = {j in N(i, k) : i in N(j, k)}
        return [j for j in nearest(i, k) if i in nearest(j, k)]

    half = int(round(k1 / 2))
    encoding = np.zeros((count, count))
    for i in range(count):
        base = reciprocal(i, k1)
        expanded = set(base)
        for candidate in base:
            theirs = reciprocal(candidate, half)
            if len(set(theirs) & set(base)) > 2 / 3 * len(theirs):
                expanded |= set(theirs)
        members = sorted(expanded)
        weights = np.exp(-original[i, members])
        encoding[i, members] = weights / weights.sum()
    if k2 > 1:  # local query expansion over the k2 nearest
        encoding = np.array([encoding[ranking[i][:k2]].mean(axis=0) for i in range(count)])
    return encoding, ranking


def jaccard(first: np.ndarray, second: np.ndarray) -> float:
    """``1 - sum(min) / sum(max)`` of two encoding rows."""
    return 1.0 - np.minimum(first, second).sum() / np.maximum(first, second).sum()
