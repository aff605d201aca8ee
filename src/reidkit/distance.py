"""Distances between feature vectors: the one implementation shared by losses, evaluation and re-ranking.

* :func:`pairwise_distance` — ``[..., M, D] x [..., N, D] -> [..., M, N]``, autograd-friendly (losses);
* :func:`paired_distance` — ``[N, D] x [N, D] -> [N]``, row ``i`` against row ``i`` (center loss);
* :class:`GalleryDistance` — query blocks against one fixed gallery, no autograd, in place, bit-identical to
  :func:`pairwise_distance` of the same block (memory-bounded evaluation);
* :class:`SquaredRowDistance` — squared distances between rows of one feature matrix, as blocks or as lists
  of pairs, no autograd (k-reciprocal re-ranking);
* :func:`pairwise_distance_numpy` — :func:`pairwise_distance` for callers holding numpy arrays.

Metrics (:data:`METRICS`): ``"euclidean"`` ``||x - y||``, ``"sqeuclidean"`` ``||x - y||^2`` and ``"cosine"``
``1 - cos(x, y)``. Euclidean distance is computed as ``sqrt(max(||x||^2 + ||y||^2 - 2 x.y, eps))`` so that the
gradient stays finite when two features coincide (``d/dz sqrt(z)`` is infinite at ``z = 0``); the squared
distance is clamped at 0 (the expanded form can round slightly below it).

The blocked classes evaluate exactly the same floating-point operations, in the same order, as
:func:`pairwise_distance` (``(|x|^2 + |y|^2) - 2 (x @ y^T)``, then the clamps), only in place and with the
fixed side's norms computed once; that is what makes their results bit-identical to :func:`pairwise_distance`
called on the same blocks. (Rows of one large product may differ in the last bit from the same rows computed
as a smaller block: BLAS chooses its kernels by matrix shape.)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

METRICS = ("euclidean", "sqeuclidean", "cosine")

#: metrics of :class:`SquaredRowDistance` (the distance that is squared).
SQUARED_METRICS = ("euclidean", "cosine")

#: floor under the squared distance before the square root (keeps gradients finite at d = 0).
EPS = 1e-12


def _check_metric(metric: str, allowed: tuple[str, ...] = METRICS) -> None:
    if metric not in allowed:
        raise KeyError(f"unknown distance metric {metric!r}; choose from {list(allowed)}")


def squared_euclidean(x: Tensor, y: Tensor) -> Tensor:
    """``[..., M, D] x [..., N, D] -> [..., M, N]`` squared Euclidean distances, clamped at 0."""
    x_norm = x.pow(2).sum(dim=-1, keepdim=True)
    y_norm = y.pow(2).sum(dim=-1, keepdim=True).transpose(-1, -2)
    dist = x_norm + y_norm - 2.0 * (x @ y.transpose(-1, -2))
    return dist.clamp_min(0.0)


def euclidean(x: Tensor, y: Tensor) -> Tensor:
    """``[..., M, D] x [..., N, D] -> [..., M, N]`` Euclidean distances, finite gradient at zero distance."""
    return squared_euclidean(x, y).clamp_min(EPS).sqrt()


def cosine(x: Tensor, y: Tensor) -> Tensor:
    """``[..., M, D] x [..., N, D] -> [..., M, N]`` cosine distances ``1 - cos(x, y)`` in [0, 2]."""
    return 1.0 - F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).transpose(-1, -2)


_PAIRWISE = {"euclidean": euclidean, "sqeuclidean": squared_euclidean, "cosine": cosine}


def pairwise_distance(x: Tensor, y: Tensor | None = None, metric: str = "euclidean") -> Tensor:
    """Distance matrix between the rows of ``x`` and the rows of ``y`` (default ``x``).

    Leading dimensions, when present, are batch dimensions: matrix ``b`` compares ``x[b]`` with ``y[b]``.

    Args:
        x: ``[M, D]`` (or ``[..., M, D]``) features.
        y: ``[N, D]`` (or ``[..., N, D]`` with the same leading dimensions as ``x``) features, or None.
        metric: ``"euclidean"``, ``"sqeuclidean"`` or ``"cosine"``.

    Returns:
        ``[M, N]`` (or ``[..., M, N]``) distances, differentiable with respect to ``x`` and ``y``.

    Raises:
        ValueError: when the shapes do not fit; KeyError: for an unknown metric.
    """
    if y is None:
        y = x
    if x.dim() < 2 or y.dim() != x.dim() or x.shape[:-2] != y.shape[:-2] or x.shape[-1] != y.shape[-1]:
        raise ValueError(
            "x, y: expected [M, D] and [N, D] features (or [..., M, D] and [..., N, D] with the same "
            f"leading dimensions), got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    _check_metric(metric)
    return _PAIRWISE[metric](x, y)


def paired_distance(x: Tensor, y: Tensor, metric: str = "euclidean") -> Tensor:
    """Distance of each row of ``x`` to the same row of ``y``, autograd-friendly.

    Computed from the difference ``x - y`` (no cancellation), not from the expanded form.

    Args:
        x: ``[N, D]`` features.
        y: ``[N, D]`` features.
        metric: ``"euclidean"``, ``"sqeuclidean"`` or ``"cosine"``.

    Returns:
        ``[N]`` distances ``d(x[i], y[i])``.
    """
    if x.dim() != 2 or x.shape != y.shape:
        raise ValueError(
            f"x, y: expected two [N, D] features of one shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    _check_metric(metric)
    if metric == "cosine":
        return 1.0 - F.cosine_similarity(x, y, dim=1)
    distance = (x - y).pow(2).sum(dim=1)
    if metric == "euclidean":
        distance = distance.clamp_min(EPS).sqrt()
    return distance


def _check_features(features: Tensor, name: str) -> None:
    if not isinstance(features, Tensor) or features.dim() != 2 or not features.is_floating_point():
        description = (
            f"shape {tuple(features.shape)}, dtype {features.dtype}"
            if isinstance(features, Tensor)
            else type(features).__name__
        )
        raise ValueError(f"{name}: expected a floating-point [N, D] tensor, got {description}")


class GalleryDistance:
    """Distances of query blocks to one fixed gallery: no autograd, in place, bit-identical results.

    ``GalleryDistance(gallery, metric)(query)`` equals ``pairwise_distance(query, gallery, metric)`` bit for
    bit, for any block ``query``: the same operations in the same order, with the gallery's norms (or its normalisation, for cosine)
    computed once instead of once per block and two allocations per block instead of four.

    Args:
        gallery: ``[N, D]`` gallery features (detached; kept by reference, not copied).
        metric: ``"euclidean"``, ``"sqeuclidean"`` or ``"cosine"``.
    """

    def __init__(self, gallery: Tensor, metric: str = "euclidean"):
        _check_features(gallery, "gallery")
        _check_metric(metric)
        self.metric = metric
        gallery = gallery.detach()
        self.gallery_norm: Tensor | None = None  # [1, N] squared norms (Euclidean metrics)
        self._gallery_finite: bool | None = None  # cosine: whether the normalised gallery is finite
        if metric == "cosine":
            self.gallery = F.normalize(gallery, dim=1)
        else:
            self.gallery = gallery
            self.gallery_norm = gallery.pow(2).sum(dim=-1, keepdim=True).transpose(-1, -2)

    def __len__(self) -> int:
        return self.gallery.shape[0]

    def __call__(self, query: Tensor) -> Tensor:
        """``[B, D]`` query features (same dtype and device as the gallery) -> ``[B, N]`` distances."""
        left, norms = self.split(query)
        return self.finish(left @ self.gallery.t(), norms)

    def split(self, query: Tensor) -> tuple[Tensor, Tensor | None]:
        """The query's two parts: ``(left [B, D], norms [B, 1] or None)``.

        ``left`` is what multiplies the gallery (the query itself, L2-normalised for cosine) and ``norms`` its
        squared norms (None for cosine). Computed once for many blocks of rows, then
        ``finish(left[rows] @ gallery^T, norms[rows])`` gives the distances of those rows, bit for bit.
        """
        _check_features(query, "query")
        if query.shape[1] != self.gallery.shape[1] or query.dtype != self.gallery.dtype:
            raise ValueError(
                f"query: expected [B, {self.gallery.shape[1]}] {self.gallery.dtype} features like the gallery, "
                f"got shape {tuple(query.shape)}, dtype {query.dtype}"
            )
        query = query.detach()
        if self.metric == "cosine":
            return F.normalize(query, dim=-1), None
        return query, query.pow(2).sum(dim=-1, keepdim=True)

    def finish(self, product: Tensor, norms: Tensor | None, out: Tensor | None = None) -> Tensor:
        """``[B, N]`` distances from ``product = left @ gallery^T`` and ``norms`` (see :meth:`split`).

        ``product`` is overwritten; cosine distances are returned in it, the other metrics in ``out`` (a new
        tensor when None).
        """
        if self.metric == "cosine":
            return product.neg_().add_(1.0)  # == 1 - x exactly
        dist = torch.add(norms, self.gallery_norm, out=out)  # (|q|^2 + |g|^2) - 2 q.g, as pairwise_distance
        dist.sub_(product.mul_(2.0))
        if self.metric == "euclidean":
            return dist.clamp_min_(EPS).sqrt_()  # max(max(x, 0), EPS) == max(x, EPS)
        return dist.clamp_min_(0.0)

    def never_nan(self, left: Tensor, norms: Tensor | None) -> bool:
        """True when no distance of these query rows (from :meth:`split`) to the gallery can be NaN.

        So it is for finite features whose squared norms stay below an eighth of the largest float: no product,
        sum or difference can then overflow. False means only that the distances must be checked.
        """
        if self.metric == "cosine":
            if self._gallery_finite is None:
                self._gallery_finite = bool(torch.isfinite(self.gallery).all())
            return self._gallery_finite and bool(torch.isfinite(left).all())
        limit = torch.finfo(self.gallery.dtype).max / 8
        return bool((norms <= limit).all()) and bool((self.gallery_norm <= limit).all())


class SquaredRowDistance:
    """Squared distances between rows of one feature matrix, computed on demand; no autograd.

    For ``metric="euclidean"`` the values equal ``pairwise_distance(f[rows], f[cols], "sqeuclidean")`` and
    for ``"cosine"`` ``pairwise_distance(f[rows], f[cols], "cosine") ** 2``, bit for bit in :meth:`block`;
    :meth:`pairs` evaluates the same formula per pair (equal up to the rounding of a dot product).

    Args:
        features: ``[N, D]`` features (detached; L2-normalised once for cosine).
        metric: ``"euclidean"`` or ``"cosine"``: the distance that is squared.

    Attributes:
        features: ``[N, D]`` the features the distances are computed on (normalised for cosine).
        norms: ``[N]`` their squared norms.
    """

    def __init__(self, features: Tensor, metric: str = "euclidean"):
        _check_features(features, "features")
        _check_metric(metric, SQUARED_METRICS)
        self.metric = metric
        features = features.detach()
        self.features = F.normalize(features, dim=1) if metric == "cosine" else features
        self.norms = self.features.pow(2).sum(dim=1)

    def __len__(self) -> int:
        return self.features.shape[0]

    def block(self, rows: slice | Tensor, cols: slice | Tensor) -> Tensor:
        """``[R, C]`` squared distances between ``features[rows]`` and ``features[cols]``."""
        left, right = self.features[rows], self.features[cols]
        return self.from_products(left @ right.t(), rows, cols)

    def from_products(self, product: Tensor, rows: slice | Tensor, cols: slice | Tensor) -> Tensor:
        """``[R, C]`` squared distances from the ``[R, C]`` dot products of ``features[rows]`` and
        ``features[cols]`` (computed elsewhere, e.g. in a lower precision); ``product`` is overwritten."""
        if self.metric == "cosine":
            return product.neg_().add_(1.0).pow_(2)  # (1 - x)^2, in place
        # (|a|^2 + |b|^2) - 2 a.b in place: the same rounding as the expression, two allocations
        distance = self.norms[rows][:, None] + self.norms[cols][None, :]
        return distance.sub_(product.mul_(2.0)).clamp_min_(0.0)

    def pairs(self, rows: Tensor, cols: Tensor) -> Tensor:
        """``[P]`` squared distances between ``features[rows[p]]`` and ``features[cols[p]]``.

        Args:
            rows, cols: ``[P]`` integer row indices.
        """
        if rows.shape != cols.shape or rows.dim() != 1:
            raise ValueError(
                f"rows, cols: expected two [P] index tensors, got {tuple(rows.shape)}, {tuple(cols.shape)}"
            )
        product = (self.features[rows] * self.features[cols]).sum(dim=1)
        if self.metric == "cosine":
            return (1.0 - product).pow(2)
        return (self.norms[rows] + self.norms[cols] - 2.0 * product).clamp_min(0.0)

    def row_pairs(self, rows: Tensor, cols: Tensor) -> Tensor:
        """``[R, K]`` squared distances between ``features[rows[r]]`` and ``features[cols[r, k]]``.

        Equal bit for bit to :meth:`pairs` on the flattened pairs (the same products, summed over the same
        contiguous rows), without gathering the repeated ``features[rows[r]]``.

        Args:
            rows: ``[R]`` row indices; ``cols``: ``[R, K]`` column indices per row.
        """
        if rows.dim() != 1 or cols.dim() != 2 or cols.shape[0] != rows.shape[0]:
            raise ValueError(
                f"rows, cols: expected [R] and [R, K] index tensors, got {tuple(rows.shape)}, {tuple(cols.shape)}"
            )
        product = (self.features[cols] * self.features[rows][:, None, :]).sum(dim=2)
        if self.metric == "cosine":
            return (1.0 - product).pow(2)
        return (self.norms[rows][:, None] + self.norms[cols] - 2.0 * product).clamp_min(0.0)


def _numpy_features(array, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"{name}: expected [N, D] features, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    elif array.dtype == np.float16:
        array = array.astype(np.float32)  # the expanded form cancels badly in half precision
    if not array.flags.writeable:
        array = array.copy()  # torch.from_numpy needs a writeable buffer (memory maps, frombuffer)
    return np.ascontiguousarray(array)


def pairwise_distance_numpy(
    a: np.ndarray, b: np.ndarray | None = None, metric: str = "euclidean"
) -> np.ndarray:
    """:func:`pairwise_distance` on numpy arrays (same numbers, no autograd).

    Args:
        a: ``[M, D]`` features; ``b``: ``[N, D]`` features or None (``a``). float32 and float64 are kept
            (mixed inputs: float64), float16 is computed in float32, integers in float64.
        metric: ``"euclidean"``, ``"sqeuclidean"`` or ``"cosine"``.

    Returns:
        ``[M, N]`` numpy distances.
    """
    x = _numpy_features(a, "a")
    y = x if b is None else _numpy_features(b, "b")
    dtype = np.result_type(x.dtype, y.dtype)
    with torch.no_grad():
        distance = pairwise_distance(
            torch.from_numpy(x.astype(dtype, copy=False)),
            torch.from_numpy(y.astype(dtype, copy=False)),
            metric,
        )
    return distance.numpy()
