"""Triplet-family metric losses on a P x K batch: triplet (all or random triplets), improved triplet,
batch-hard triplet (TriHard, hard and soft margin), adaptive-weighted triplet and margin sample mining (MSML).

All mining is vectorised on the ``[B, B]`` distance matrix with same-identity / different-identity masks.
A positive of anchor ``a`` is another image (``p != a``) of the same identity; a negative is an image of a
different identity. Anchors without a positive (an identity with one image in the batch) or without a
negative (a batch of one identity) are left out of the mean; when no anchor is left the loss is a zero that
is still connected to the graph (so ``backward`` works and gives zero gradients).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from reidkit.distance import METRICS, pairwise_distance

TRIPLET_MODES = ("all", "random")


def identity_masks(pids: Tensor) -> tuple[Tensor, Tensor]:
    """Same-identity and different-identity masks of a batch.

    Args:
        pids: ``[B]`` identity labels.

    Returns:
        ``(positive, negative)``, both ``[B, B]`` bool: ``positive[i, j]`` is True when ``i != j`` and the
        ids match; ``negative[i, j]`` when the ids differ.
    """
    same = pids[:, None] == pids[None, :]
    eye = torch.eye(pids.shape[0], dtype=torch.bool, device=pids.device)
    return same & ~eye, ~same


def check_metric_inputs(features: Tensor, pids: Tensor, metric: str) -> None:
    """Check ``features [B, D]``, ``pids [B]`` (same ``B``) and that ``metric`` is a known distance.

    Raises:
        ValueError: naming the argument and what was expected.
    """
    if features.dim() != 2:
        raise ValueError(f"features: expected [B, D], got shape {tuple(features.shape)}")
    if pids.dim() != 1 or pids.shape[0] != features.shape[0]:
        raise ValueError(
            f"pids: expected [B] with B = {features.shape[0]} to match features, "
            f"got shape {tuple(pids.shape)}"
        )
    if metric not in METRICS:
        raise ValueError(f"metric: unknown distance {metric!r}; choose from {list(METRICS)}")


def prepare_metric_inputs(features: Tensor, pids: Tensor, metric: str) -> Tensor:
    """Validate the inputs (:func:`check_metric_inputs`); return the features, half precision upcast.

    float16 / bfloat16 features (from mixed-precision forwards) are computed on in float32: the expanded
    distance ``|x|^2 + |y|^2 - 2 x.y`` cancels catastrophically in half precision.

    Raises:
        ValueError: naming the argument and what was expected.
    """
    check_metric_inputs(features, pids, metric)
    if features.dtype in (torch.float16, torch.bfloat16):
        return features.float()
    return features


def batch_distances(features: Tensor, pids: Tensor, metric: str) -> tuple[Tensor, Tensor, Tensor]:
    """The distance matrix of a batch and its identity masks, what every pair-mining loss starts from.

    Args:
        features: ``[B, D]`` features (validated and upcast by :func:`prepare_metric_inputs`).
        pids: ``[B]`` identity labels.
        metric: ``"euclidean"``, ``"sqeuclidean"`` or ``"cosine"``.

    Returns:
        ``(dist, positive, negative)``: ``[B, B]`` distances and the ``[B, B]`` bool masks of
        :func:`identity_masks`.

    Raises:
        ValueError: naming the argument and what was expected.
    """
    features = prepare_metric_inputs(features, pids, metric)
    positive, negative = identity_masks(pids)
    return pairwise_distance(features, features, metric), positive, negative


def zero_loss(reference: Tensor) -> Tensor:
    """A scalar 0 connected to ``reference``'s graph (backward gives zero gradients, never an error)."""
    return reference.sum() * 0.0


def mean_or_zero(terms: Tensor, reference: Tensor) -> Tensor:
    """The mean of the per-anchor (or per-triplet) loss ``terms``; :func:`zero_loss` of ``reference`` when
    there are none."""
    return terms.mean() if terms.numel() else zero_loss(reference)


def _ranking_terms(gap: Tensor, *, margin: float, soft: bool) -> Tensor:
    """Per-anchor ranking loss of ``gap = d_ap - d_an``: ``max(gap + margin, 0)``, or ``log(1 + exp(gap))``
    with ``soft`` (the soft margin)."""
    return F.softplus(gap) if soft else F.relu(gap + margin)


def hardest_pairs(dist: Tensor, positive: Tensor, negative: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per anchor, the farthest positive and the nearest negative distance.

    Args:
        dist: ``[B, B]`` distances.
        positive, negative: ``[B, B]`` bool masks from :func:`identity_masks`.

    Returns:
        ``(d_ap, d_an, valid)``: ``[B]`` hardest-positive and hardest-negative distances and a ``[B]`` bool
        mask of anchors that have both (``d_ap``/``d_an`` of the other anchors are -inf/+inf).
    """
    d_ap = torch.where(positive, dist, dist.new_tensor(float("-inf"))).amax(dim=1)
    d_an = torch.where(negative, dist, dist.new_tensor(float("inf"))).amin(dim=1)
    valid = positive.any(dim=1) & negative.any(dim=1)
    return d_ap, d_an, valid


def _triplet_distances(
    dist: Tensor, positive: Tensor, negative: Tensor, mode: str, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """``(d_ap, d_an)``: ``[T]`` distances of the triplets chosen by ``mode`` (see :func:`triplet`)."""
    if mode == "all":
        size = dist.shape[0]
        triplets = positive[:, :, None] & negative[:, None, :]
        d_ap = dist[:, :, None].expand(size, size, size)[triplets]
        d_an = dist[:, None, :].expand(size, size, size)[triplets]
        return d_ap, d_an
    if mode == "random":
        # one random key per (anchor, candidate); the arg-max over a mask is a uniform draw from that mask.
        device = generator.device if generator is not None else torch.device("cpu")
        keys = torch.rand(dist.shape, generator=generator, device=device).to(dist.device)
        lowest = keys.new_tensor(-1.0)
        positive_index = torch.where(positive, keys, lowest).argmax(dim=1)
        negative_index = torch.where(negative, keys, lowest).argmax(dim=1)
        valid = positive.any(dim=1) & negative.any(dim=1)
        anchors = torch.arange(dist.shape[0], device=dist.device)[valid]
        return dist[anchors, positive_index[valid]], dist[anchors, negative_index[valid]]
    raise ValueError(f"mode: unknown triplet mode {mode!r}; choose from {list(TRIPLET_MODES)}")


def triplet(
    features: Tensor,
    pids: Tensor,
    *,
    margin: float = 0.3,
    metric: str = "euclidean",
    mode: str = "all",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Triplet loss on triplets taken from the batch.

    ``loss = mean_{(a, p, n)} max(d(a, p) - d(a, n) + margin, 0)`` over the triplets chosen by ``mode``:
    ``"all"``: every valid triplet (``p`` another image of ``a``'s identity, ``n`` of another identity;
    ``[B, B, B]`` memory); ``"random"``: for each anchor one positive and one negative drawn uniformly with
    ``generator``. With no valid triplet the loss is 0 (connected to the graph).

    Args:
        features: ``[B, D]`` features.
        pids: ``[B]`` identity labels.
        margin: ``alpha`` (>= 0).
        metric: ``"euclidean"``, ``"sqeuclidean"`` or ``"cosine"``.
        mode: ``"all"`` or ``"random"``.
        generator: random source for ``mode="random"`` (a CPU generator is fine for any device).

    Returns:
        Scalar loss.

    Reference: Schroff et al., "FaceNet: A Unified Embedding for Face Recognition and Clustering", CVPR 2015;
    Ding et al., "Deep Feature Learning with Relative Distance Comparison for Person Re-identification",
    Pattern Recognition 2015.
    """
    dist, positive, negative = batch_distances(features, pids, metric)
    d_ap, d_an = _triplet_distances(dist, positive, negative, mode, generator)
    return mean_or_zero(F.relu(d_ap - d_an + margin), dist)


def improved_triplet(
    features: Tensor,
    pids: Tensor,
    *,
    margin: float = 0.3,
    positive_margin: float = 0.0,
    positive_weight: float = 1.0,
    metric: str = "euclidean",
    mode: str = "all",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Improved triplet loss: the triplet hinge plus a pull of each positive pair towards the anchor.

    ``loss = mean_{(a, p, n)} [max(d_ap - d_an + margin, 0)
    + positive_weight * max(d_ap - positive_margin, 0)]`` over the triplets of :func:`triplet` (``mode``).
    With the defaults the second term is ``d_ap``: ``d_ap + max(d_ap - d_an + alpha, 0)``. With no valid
    triplet the loss is 0 (connected to the graph).

    Args:
        features: ``[B, D]`` features.
        pids: ``[B]`` identity labels.
        margin: inter-class margin ``alpha``.
        positive_margin: intra-class margin (``tau_2`` in the paper): positive pairs closer than it are not
            pulled further.
        positive_weight: weight of the intra-class term (``beta`` in the paper).
        metric, mode, generator: as in :func:`triplet`.

    Returns:
        Scalar loss.

    Reference: Cheng et al., "Person Re-Identification by Multi-Channel Parts-Based CNN with Improved Triplet
    Loss Function", CVPR 2016.
    """
    dist, positive, negative = batch_distances(features, pids, metric)
    d_ap, d_an = _triplet_distances(dist, positive, negative, mode, generator)
    terms = F.relu(d_ap - d_an + margin) + positive_weight * F.relu(d_ap - positive_margin)
    return mean_or_zero(terms, dist)


def trihard(
    features: Tensor,
    pids: Tensor,
    *,
    margin: float = 0.3,
    metric: str = "euclidean",
    soft: bool = False,
) -> Tensor:
    """Batch-hard triplet loss (TriHard): per anchor the farthest positive and the nearest negative.

    ``loss = mean_a max(max_p d(a, p) - min_n d(a, n) + margin, 0)``, or with ``soft=True`` the soft margin
    ``mean_a log(1 + exp(max_p d(a, p) - min_n d(a, n)))`` (``margin`` is then not used). The mean runs over
    anchors that have a positive and a negative in the batch; with none the loss is 0 (connected to the
    graph).

    Args:
        features: ``[B, D]`` features of a P x K batch.
        pids: ``[B]`` identity labels.
        margin: ``alpha`` (0.3 in the bag-of-tricks baseline).
        metric: ``"euclidean"``, ``"sqeuclidean"`` or ``"cosine"``.
        soft: use the soft-margin ``softplus`` instead of the hinge.

    Returns:
        Scalar loss.

    Reference: Hermans et al., "In Defense of the Triplet Loss for Person Re-Identification", arXiv 2017.
    """
    dist, positive, negative = batch_distances(features, pids, metric)
    d_ap, d_an, valid = hardest_pairs(dist, positive, negative)
    return mean_or_zero(_ranking_terms(d_ap[valid] - d_an[valid], margin=margin, soft=soft), dist)


def adaptive_triplet(
    features: Tensor,
    pids: Tensor,
    *,
    margin: float = 0.3,
    metric: str = "euclidean",
    soft: bool = False,
) -> Tensor:
    """Adaptive-weighted triplet loss: softmax-weighted positive and negative distances per anchor.

    For anchor ``a`` with positives ``P(a)`` and negatives ``N(a)``:
    ``w_p = exp(d_ap) / sum_{p' in P(a)} exp(d_ap')``, ``w_n = exp(-d_an) / sum_{n' in N(a)} exp(-d_an')``,
    ``D_p = sum_p w_p d_ap``, ``D_n = sum_n w_n d_an`` and
    ``loss = mean_a max(D_p - D_n + margin, 0)`` (or ``log(1 + exp(D_p - D_n))`` with ``soft=True``, the
    paper's choice; ``margin`` is then not used). Far positives and near negatives get most of the weight, but
    every pair keeps a gradient. The weights are differentiated too. Anchors without a positive or a negative
    are left out; with none left the loss is 0 (connected to the graph).

    Args:
        features: ``[B, D]`` features.
        pids: ``[B]`` identity labels.
        margin: hinge margin when ``soft`` is False.
        metric: ``"euclidean"``, ``"sqeuclidean"`` or ``"cosine"``.
        soft: soft-margin ``softplus`` instead of the hinge.

    Returns:
        Scalar loss.

    Reference: Ristani and Tomasi, "Features for Multi-Target Multi-Camera Tracking and Re-Identification",
    CVPR 2018.
    """
    dist, positive, negative = batch_distances(features, pids, metric)
    valid = positive.any(dim=1) & negative.any(dim=1)
    # rows of the anchors that have both (a row without one would softmax over nothing)
    rows, positive, negative = dist[valid], positive[valid], negative[valid]
    minus_inf = rows.new_tensor(float("-inf"))
    positive_weights = torch.where(positive, rows, minus_inf).softmax(dim=1)
    negative_weights = torch.where(negative, -rows, minus_inf).softmax(dim=1)
    d_ap = (positive_weights * rows).sum(dim=1)
    d_an = (negative_weights * rows).sum(dim=1)
    return mean_or_zero(_ranking_terms(d_ap - d_an, margin=margin, soft=soft), dist)


def msml(
    features: Tensor,
    pids: Tensor,
    *,
    margin: float = 0.3,
    metric: str = "euclidean",
) -> Tensor:
    """Margin sample mining loss (MSML): the batch's hardest positive pair against its hardest negative pair.

    ``loss = max(max_{y_i = y_j, i != j} d(i, j) - min_{y_k != y_l} d(k, l) + margin, 0)``: one term per
    batch, the two pairs need not share an image. A batch without a positive pair or without a negative pair
    gives 0 (connected to the graph).

    Args:
        features: ``[B, D]`` features.
        pids: ``[B]`` identity labels.
        margin: ``alpha``.
        metric: ``"euclidean"``, ``"sqeuclidean"`` or ``"cosine"``.

    Returns:
        Scalar loss.

    Reference: Xiao et al., "Margin Sample Mining Loss: A Deep Learning Based Method for Person
    Re-identification", arXiv 2017.
    """
    dist, positive, negative = batch_distances(features, pids, metric)
    if not (bool(positive.any()) and bool(negative.any())):
        return zero_loss(dist)
    hardest_positive = dist[positive].max()
    hardest_negative = dist[negative].min()
    return F.relu(hardest_positive - hardest_negative + margin)
