"""How well a clustering of an album groups photos by person: pairwise precision / recall / F and adjusted Rand.

Both scores are computed from the contingency table of (true label, predicted cluster), in
``O(N log N)``, never by looping over the ``N (N - 1) / 2`` pairs. In a prediction, ``-1`` (noise, unclustered)
means "in no cluster": each such item counts as a cluster of its own, so it makes no predicted pair. In the
true labels every value, ``-1`` included, is a label like any other; leave out items of unknown identity before
scoring (:func:`person_ids_from_names` marks them).

Pairwise scores (as in the face- and person-clustering literature): a pair of items is *positive* when both
share a label. Precision = true pairs predicted together / pairs predicted together; recall = true pairs
predicted together / true pairs; F = their harmonic mean.

Reference: Hubert & Arabie, "Comparing partitions", Journal of Classification 1985 (the adjusted Rand index).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reidkit.errors import DatasetError

#: label value of an unclustered item in a prediction (and of an unknown identity from file names)
NOISE = -1

_MARKET1501_NAME = re.compile(r"^(-?\d+)_c\d")
#: schemes of :func:`person_ids_from_names`: name -> (pattern, an example file name)
NAME_SCHEMES: dict[str, tuple[re.Pattern[str], str]] = {
    "market1501": (_MARKET1501_NAME, "0002_c1s1_000451_01.jpg"),
}
_MAX_EXAMPLES = 5


def _as_labels(values: Sequence[int] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of integer labels, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integer labels, got dtype {array.dtype}")
    return array.astype(np.int64)


def _noise_as_singletons(pred: np.ndarray) -> np.ndarray:
    """``pred`` with every ``-1`` replaced by a label of its own (larger than every real label)."""
    pred = pred.copy()
    noise = pred == NOISE
    start = int(pred.max(initial=0)) + 1
    pred[noise] = start + np.arange(int(noise.sum()))
    return pred


def _pairs(counts: np.ndarray) -> int:
    """Number of unordered pairs inside groups of the given sizes: ``sum n (n - 1) / 2`` (exact integer)."""
    counts = counts.astype(np.int64)
    return int((counts * (counts - 1) // 2).sum())


def pair_counts(
    true: Sequence[int] | np.ndarray, pred: Sequence[int] | np.ndarray
) -> tuple[int, int, int, int]:
    """Pair counts of a clustering from its contingency table.

    Args:
        true: ``[N]`` true labels (any integers).
        pred: ``[N]`` predicted clusters; ``-1`` = unclustered (a cluster of its own).

    Returns:
        ``(together, predicted, positive, total)``: pairs that share a label and a cluster, pairs that share
        a cluster, pairs that share a label, all ``N (N - 1) / 2`` pairs.
    """
    true, pred = _as_labels(true, "true"), _as_labels(pred, "pred")
    if len(true) != len(pred):
        raise ValueError(f"true has {len(true)} labels but pred has {len(pred)}")
    pred = _noise_as_singletons(pred)
    _, true_index = np.unique(true, return_inverse=True)
    _, pred_index = np.unique(pred, return_inverse=True)
    cells = np.unique(np.stack([true_index, pred_index]), axis=1, return_counts=True)[1] if len(true) else []
    together = _pairs(np.asarray(cells))
    predicted = _pairs(np.bincount(pred_index)) if len(pred) else 0
    positive = _pairs(np.bincount(true_index)) if len(true) else 0
    return together, predicted, positive, len(true) * (len(true) - 1) // 2


def pairwise_scores(
    true: Sequence[int] | np.ndarray, pred: Sequence[int] | np.ndarray
) -> tuple[float, float, float]:
    """Pairwise precision, recall and F1 of a clustering.

    Args:
        true: ``[N]`` true labels.
        pred: ``[N]`` predicted clusters; ``-1`` = unclustered (each such item its own cluster).

    Returns:
        ``(precision, recall, f1)``. With no predicted pair precision is 1 (nothing wrong was claimed); with no
        true pair recall is 1 (nothing was missed); F1 is 0 when both precision and recall are 0.
    """
    together, predicted, positive, _ = pair_counts(true, pred)
    precision = together / predicted if predicted else 1.0
    recall = together / positive if positive else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return float(precision), float(recall), float(f1)


def adjusted_rand_index(true: Sequence[int] | np.ndarray, pred: Sequence[int] | np.ndarray) -> float:
    """The adjusted Rand index (Hubert & Arabie) of a clustering: 1 = identical partitions, ~0 = chance.

    ``-1`` in ``pred`` is a cluster of its own per item, as in :func:`pairwise_scores`. When the index cannot
    be adjusted (both partitions trivial in the same way, e.g. fewer than two items) it is 1, as in
    ``sklearn.metrics.adjusted_rand_score``.
    """
    together, predicted, positive, total = pair_counts(true, pred)
    if total == 0:
        return 1.0
    expected = float(predicted) * float(positive) / total
    largest = (predicted + positive) / 2
    if largest == expected:
        return 1.0
    return float((together - expected) / (largest - expected))


def person_ids_from_names(paths: Sequence[str | Path], scheme: str = "market1501") -> np.ndarray:
    """``[N]`` person ids read from file names; ``-1`` for identities the names mark as unknown.

    ``market1501``: ``0002_c1s1_000451_01.jpg`` -> 2. Market-1501's junk boxes (``-1_...``) and distractors
    (``0000_...``) are people of unknown identity: they get ``-1``, to be left out of scoring.

    Raises:
        DatasetError: an unknown scheme, or file names that do not follow it (the first few are named).
    """
    if scheme not in NAME_SCHEMES:
        raise DatasetError(f"unknown file-name scheme {scheme!r}; choose from {sorted(NAME_SCHEMES)}")
    pattern, example = NAME_SCHEMES[scheme]
    ids, bad = [], []
    for path in paths:
        match = pattern.match(Path(path).name)
        if match is None:
            bad.append(str(path))
            continue
        pid = int(match.group(1))
        ids.append(pid if pid > 0 else NOISE)
    if bad:
        shown = ", ".join(bad[:_MAX_EXAMPLES]) + (
            f" and {len(bad) - _MAX_EXAMPLES} more" if len(bad) > _MAX_EXAMPLES else ""
        )
        raise DatasetError(
            f"{len(bad)} file names do not carry a {scheme} person id (expected names like {example}): {shown}"
        )
    return np.asarray(ids, dtype=np.int64)


def score_clustering(true: Sequence[int] | np.ndarray, pred: Sequence[int] | np.ndarray) -> dict:
    """Pairwise P/R/F and ARI over the items of known identity (``true >= 0``).

    Returns:
        ``{"precision", "recall", "f1", "ari", "items_scored", "items_unknown", "identities"}``.
    """
    true, pred = _as_labels(true, "true"), _as_labels(pred, "pred")
    known = true >= 0
    precision, recall, f1 = pairwise_scores(true[known], pred[known])
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "ari": adjusted_rand_index(true[known], pred[known]),
        "items_scored": int(known.sum()),
        "items_unknown": int((~known).sum()),
        "identities": int(len(np.unique(true[known]))),
    }
