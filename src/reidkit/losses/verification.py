"""Verification (Siamese) loss: a pair head that tells whether two features show the same person.

The head is learnable: the :class:`~reidkit.losses.criterion.Criterion` owns a :class:`PairHead` and passes it to
:func:`verification`. At evaluation time :func:`pair_scores` runs the head on every query-gallery pair (the
"pairwise scoring" mode: one head forward per pair, so much slower than a distance matrix).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reidkit.distance import pairwise_distance
from reidkit.losses.triplet import prepare_metric_inputs, zero_loss

NEGATIVE_MINING = ("hard", "random")


class PairHead(nn.Module):
    """Same-identity logit of a pair of features: ``w . (f1 - f2)^2 + b``.

    The element-wise square of the difference makes the score symmetric in the two images.

    Reference: Zheng, Zheng and Yang, "A Discriminatively Learned CNN Embedding for Person
    Re-identification", ACM TOMM 2017 (the "square layer" of the verification branch).
    """

    def __init__(self, feat_dim: int) -> None:
        super().__init__()
        self.feat_dim = feat_dim
        self.linear = nn.Linear(feat_dim, 1)

    def forward(self, first: Tensor, second: Tensor) -> Tensor:
        """``[N, D] x [N, D] -> [N]`` logits (positive: same identity)."""
        difference = (first - second).pow(2)
        return self.linear(difference.to(self.linear.weight.dtype)).squeeze(-1)


def mine_pairs(
    features: Tensor,
    pids: Tensor,
    *,
    negative_mining: str = "hard",
    metric: str = "euclidean",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Pairs for the verification loss from a P x K batch.

    Every positive pair ``i < j`` (same identity) is taken, and as many negative pairs ``i < j`` (different
    identities), or all of them if there are fewer: with ``negative_mining="hard"`` the closest ones under
    ``metric`` (on detached features), with ``"random"`` a uniform draw from ``generator``.

    Args:
        features: ``[B, D]`` features.
        pids: ``[B]`` identity labels.
        negative_mining: ``"hard"`` or ``"random"``.
        metric: distance used to rank negative pairs for ``"hard"`` mining.
        generator: random source for ``"random"`` mining.

    Returns:
        ``(first, second, same)``: ``[N]`` indices of the two images of each pair and ``[N]`` bool labels,
        positive pairs first.
    """
    if negative_mining not in NEGATIVE_MINING:
        raise ValueError(f"negative_mining: expected one of {list(NEGATIVE_MINING)}, got {negative_mining!r}")
    size = pids.shape[0]
    first, second = torch.triu_indices(size, size, offset=1, device=pids.device)
    same = pids[first] == pids[second]
    positive_first, positive_second = first[same], second[same]
    negative_first, negative_second = first[~same], second[~same]
    count = min(int(positive_first.numel()), int(negative_first.numel()))
    if negative_mining == "hard":
        with torch.no_grad():
            dist = pairwise_distance(features.detach(), features.detach(), metric)
        order = dist[negative_first, negative_second].argsort(stable=True)[:count]
    else:
        device = generator.device if generator is not None else torch.device("cpu")
        order = torch.randperm(int(negative_first.numel()), generator=generator, device=device)
        order = order[:count].to(pids.device)
    pair_first = torch.cat([positive_first, negative_first[order]])
    pair_second = torch.cat([positive_second, negative_second[order]])
    labels = torch.cat(
        [torch.ones_like(positive_first, dtype=torch.bool), torch.zeros_like(order, dtype=torch.bool)]
    )
    return pair_first, pair_second, labels


def verification(
    features: Tensor,
    pids: Tensor,
    head: PairHead,
    *,
    negative_mining: str = "hard",
    metric: str = "euclidean",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Verification loss: binary cross-entropy of the pair head on pairs mined from the batch.

    ``loss = mean_{(i, j)} BCE(sigmoid(head(f_i, f_j)), [y_i = y_j])`` over the pairs of :func:`mine_pairs`:
    all positive pairs plus as many hardest (or random) negative pairs, so the two classes are balanced. A
    batch without positive pairs (one image per identity) gives 0 (connected to the graph and to the head).

    Args:
        features: ``[B, D]`` features.
        pids: ``[B]`` identity labels.
        head: the pair head (owned by the criterion).
        negative_mining: ``"hard"`` (closest negative pairs) or ``"random"``.
        metric: distance used to rank negatives for hard mining.
        generator: random source for random mining.

    Returns:
        Scalar loss.

    Reference: Zheng, Zheng and Yang, "A Discriminatively Learned CNN Embedding for Person
    Re-identification", ACM TOMM 2017.
    """
    features = prepare_metric_inputs(features, pids, metric)
    first, second, same = mine_pairs(
        features, pids, negative_mining=negative_mining, metric=metric, generator=generator
    )
    if not bool(same.any()):
        return zero_loss(features) + sum(zero_loss(p) for p in head.parameters())
    logits = head(features[first], features[second])
    return F.binary_cross_entropy_with_logits(logits, same.to(logits.dtype))


@torch.no_grad()
def pair_scores(
    head: PairHead, query_features: Tensor, gallery_features: Tensor, batch_size: int = 4096
) -> Tensor:
    """Same-identity probability of every query-gallery pair, one head forward per pair.

    Args:
        head: a trained :class:`PairHead`.
        query_features: ``[M, D]``.
        gallery_features: ``[N, D]``.
        batch_size: number of pairs per head call (bounds memory at ``batch_size x D``).

    Returns:
        ``[M, N]`` probabilities in [0, 1]; ``1 - scores`` is a distance for evaluation.
    """
    if (
        query_features.dim() != 2
        or gallery_features.dim() != 2
        or query_features.shape[1] != gallery_features.shape[1]
    ):
        raise ValueError(
            f"expected [M, D] query and [N, D] gallery features, got {tuple(query_features.shape)} and "
            f"{tuple(gallery_features.shape)}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
    count, dim = gallery_features.shape[0], gallery_features.shape[1]
    scores = query_features.new_empty((query_features.shape[0], count))
    rows = max(1, batch_size // max(count, 1))
    for start in range(0, query_features.shape[0], rows):
        queries = query_features[start : start + rows]
        first = queries[:, None, :].expand(-1, count, -1).reshape(-1, dim)
        second = gallery_features[None, :, :].expand(queries.shape[0], -1, -1).reshape(-1, dim)
        logits = head(first, second).view(queries.shape[0], count)
        scores[start : start + rows] = torch.sigmoid(logits).to(scores.dtype)
    return scores
