"""Cluster memories: L2-normalised centroids of the pseudo-identities, an InfoNCE loss and momentum updates.

:class:`ClusterMemory` holds one centroid per cluster (Cluster Contrast), :class:`CameraMemory` one proxy per
(cluster, camera) pair (camera-aware proxies). Both are re-initialised every epoch from the features of the
clustered images (:func:`centroids_of`, :func:`proxies_of` -> ``reset``), so their size changes; their
buffers are resized when a state dict of another size is loaded, so checkpoints round-trip.

The momentum update replaces the buffer by a new tensor instead of writing into it, so a loss computed before
the update still backpropagates through the centroids it used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["UPDATE_MODES", "CameraMemory", "ClusterMemory", "centroids_of", "proxies_of"]

#: ``mean``: each entry moves towards the mean of its batch features; ``hard``: towards the least similar one.
UPDATE_MODES = ("mean", "hard")


def _check_labels(labels: Tensor, count: int, name: str = "labels") -> None:
    if labels.dim() != 1 or labels.shape[0] != count or labels.dtype.is_floating_point:
        raise ValueError(f"{name}: expected [{count}] integer labels, got {labels.dtype} {tuple(labels.shape)}")


def _check_features(features: Tensor, name: str = "features") -> None:
    if features.dim() != 2:
        raise ValueError(f"{name}: expected [B, D] features, got shape {tuple(features.shape)}")


def _group_means(features: Tensor, index: Tensor, count: int) -> Tensor:
    """``[count, D]`` L2-normalised mean of the normalised ``features`` of each index ``0..count-1``."""
    normalised = F.normalize(features.detach(), dim=1)
    sums = normalised.new_zeros(count, normalised.shape[1]).index_add_(0, index, normalised)
    present = torch.bincount(index, minlength=count)
    if bool((present == 0).any()):
        missing = (present == 0).nonzero()[:, 0][:5].tolist()
        raise ValueError(f"labels: every label 0..{count - 1} needs an item; {missing} have none")
    return F.normalize(sums, dim=1)


def centroids_of(features: Tensor, labels: Tensor) -> Tensor:
    """Cluster centroids: the normalised mean of the normalised features of each cluster.

    Args:
        features: ``[N, D]`` features; ``labels``: ``[N]`` cluster labels ``0..C-1``, -1 (outliers) ignored.

    Returns:
        ``[C, D]`` unit-norm centroids (no autograd).

    Raises:
        ValueError: bad shapes, or a label ``0..C-1`` without items.
    """
    _check_features(features)
    _check_labels(labels, features.shape[0])
    keep = labels >= 0
    count = int(labels.max()) + 1 if bool(keep.any()) else 0
    return _group_means(features[keep.to(features.device)], labels[keep].to(features.device), count)


def proxies_of(features: Tensor, labels: Tensor, cameras: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Camera-aware proxies: the normalised mean feature of every (cluster, camera) pair present.

    Args:
        features: ``[N, D]``; ``labels``: ``[N]`` cluster labels, -1 ignored; ``cameras``: ``[N]`` camera ids.

    Returns:
        (``[P, D]`` unit-norm proxies, ``[P]`` their cluster, ``[P]`` their camera), sorted by cluster then
        camera (no autograd).
    """
    _check_features(features)
    _check_labels(labels, features.shape[0])
    _check_labels(cameras, features.shape[0], "cameras")
    keep = labels >= 0
    pairs = torch.stack([labels[keep], cameras[keep]], dim=1).to(torch.int64)
    unique, inverse = torch.unique(pairs, dim=0, return_inverse=True)  # rows sorted lexicographically
    proxies = _group_means(features[keep.to(features.device)], inverse.to(features.device), unique.shape[0])
    return proxies, unique[:, 0].contiguous(), unique[:, 1].contiguous()


def _momentum_update(bank: Tensor, features: Tensor, index: Tensor, momentum: float, mode: str) -> Tensor:
    """A new bank where every entry of ``index`` moved by momentum towards its batch features, renormalised.

    ``bank[c] <- normalize(m * bank[c] + (1 - m) * target)``, ``target`` the mean of the normalised batch
    features of ``c`` (``mean``) or the one least similar to ``bank[c]`` (``hard``; ties: the first).
    """
    normalised = F.normalize(features.detach(), dim=1).to(bank.dtype)
    index = index.to(bank.device)
    entries, inverse = torch.unique(index, return_inverse=True)
    if mode == "mean":
        sums = bank.new_zeros(entries.shape[0], bank.shape[1]).index_add_(0, inverse, normalised)
        target = sums / torch.bincount(inverse, minlength=entries.shape[0])[:, None].to(bank.dtype)
    else:
        similarity = (normalised * bank[index]).sum(dim=1)
        lowest = similarity.new_full((entries.shape[0],), float("inf")).scatter_reduce(
            0, inverse, similarity, "amin"
        )
        position = torch.arange(index.shape[0], device=bank.device)
        candidate = torch.where(similarity == lowest[inverse], position, index.shape[0])
        chosen = torch.full_like(entries, index.shape[0]).scatter_reduce(0, inverse, candidate, "amin")
        target = normalised[chosen]
    updated = bank.clone()
    updated[entries] = F.normalize(momentum * bank[entries] + (1.0 - momentum) * target, dim=1)
    return updated


def _check_settings(temperature: float, momentum: float, mode: str) -> None:
    if not float(temperature) > 0:
        raise ValueError(f"temperature: expected a positive number, got {temperature!r}")
    if not 0.0 <= float(momentum) <= 1.0:
        raise ValueError(f"momentum: expected a number in [0, 1], got {momentum!r}")
    if mode not in UPDATE_MODES:
        raise ValueError(f"mode: expected one of {list(UPDATE_MODES)}, got {mode!r}")


def _resize_buffers(module: nn.Module, state_dict, prefix: str, names: tuple[str, ...]) -> None:
    """Give each named buffer the shape of its entry in ``state_dict`` (kept device and dtype)."""
    for name in names:
        value = state_dict.get(prefix + name)
        current = getattr(module, name)
        if isinstance(value, Tensor) and value.shape != current.shape:
            setattr(module, name, current.new_empty(value.shape))


class ClusterMemory(nn.Module):
    """One unit-norm centroid per pseudo-identity; InfoNCE loss over them and momentum updates.

    ``loss = cross_entropy(normalize(f) @ centroids.T / temperature, labels)``; after each step
    :meth:`update` moves every batch label's centroid: ``c <- normalize(m * c + (1 - m) * t)``, ``t`` the
    mean of the label's normalised batch features (``mode="mean"``) or the least similar of them
    (``mode="hard"``). (The authors' code applies the mean mode one feature at a time; the batch mean is the
    update of the paper's Eq. 4 per batch.)

    Reference: Dai et al., "Cluster Contrast for Unsupervised Person Re-Identification", ACCV 2022.

    Args:
        num_features: ``D`` of the initial, empty ``[0, D]`` buffer (:meth:`reset` may set any ``[C, D]``).
        temperature: softmax temperature (0.05).
        momentum: weight of the old centroid in the update (0.2).
        mode: ``"mean"`` or ``"hard"``.

    Attributes:
        centroids: ``[C, D]`` buffer of unit-norm centroids.
    """

    camera_aware = False
    centroids: Tensor

    def __init__(
        self, num_features: int = 0, *, temperature: float = 0.05, momentum: float = 0.2, mode: str = "mean"
    ) -> None:
        super().__init__()
        _check_settings(temperature, momentum, mode)
        self.temperature = float(temperature)
        self.momentum = float(momentum)
        self.mode = mode
        self.register_buffer("centroids", torch.zeros(0, int(num_features)))

    @property
    def num_clusters(self) -> int:
        return int(self.centroids.shape[0])

    def extra_repr(self) -> str:
        clusters, dim = self.centroids.shape
        settings = f"temperature={self.temperature}, momentum={self.momentum}, mode={self.mode!r}"
        return f"clusters={clusters}, dim={dim}, {settings}"

    def reset(self, centroids: Tensor) -> None:
        """Replace the centroids (normalised; kept on the buffer's device and dtype).

        Args:
            centroids: ``[C, D]`` new centroids (:func:`centroids_of`).
        """
        _check_features(centroids, "centroids")
        self.centroids = F.normalize(centroids.detach().to(self.centroids), dim=1).clone()

    def _check_batch(self, features: Tensor, labels: Tensor) -> None:
        _check_features(features)
        _check_labels(labels, features.shape[0])
        if self.num_clusters == 0:
            raise RuntimeError("ClusterMemory: no centroids; call reset(centroids_of(features, labels)) first")
        if features.shape[1] != self.centroids.shape[1]:
            raise ValueError(f"features: expected dimension {self.centroids.shape[1]}, got {features.shape[1]}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_clusters):
            raise ValueError(
                f"labels: expected cluster labels in [0, {self.num_clusters}), got "
                f"{int(labels.min())}..{int(labels.max())} (leave outliers out)"
            )

    def logits(self, features: Tensor) -> Tensor:
        """``[B, C]`` ``normalize(f) @ centroids.T / temperature``."""
        centroids = self.centroids.to(features.dtype)
        return F.normalize(features, dim=1) @ centroids.t() / self.temperature

    def loss(self, features: Tensor, labels: Tensor) -> Tensor:
        """InfoNCE of ``[B, D]`` features against their ``[B]`` cluster labels (mean over the batch)."""
        self._check_batch(features, labels)
        return F.cross_entropy(self.logits(features), labels.to(features.device))

    forward = loss

    @torch.no_grad()
    def update(self, features: Tensor, labels: Tensor) -> None:
        """Momentum update of the centroids of the batch's labels (after the optimiser step)."""
        self._check_batch(features, labels)
        if labels.numel():
            self.centroids = _momentum_update(self.centroids, features, labels, self.momentum, self.mode)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        _resize_buffers(self, state_dict, prefix, ("centroids",))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class CameraMemory(nn.Module):
    """One unit-norm proxy per (cluster, camera) pair; intra- and inter-camera contrastive losses.

    With ``s_p = normalize(f) . proxy_p / temperature`` and an item of cluster ``y`` seen by camera ``k``:

    * intra-camera: cross-entropy over the proxies of camera ``k``, target the item's own proxy ``(y, k)``;
    * inter-camera: ``-mean_{p in P(y)} log softmax_p(s)`` over all proxies, ``P(y)`` every proxy of ``y``;

    ``loss = mean(intra) + inter_weight * mean(inter)`` over the batch. :meth:`update` moves each item's own
    proxy by momentum (as :class:`ClusterMemory` does its centroids). (The paper restricts the inter-camera
    softmax to the positives and the hardest negative proxies, and averages the intra-camera loss per camera;
    here every proxy takes part and every item counts once.)

    Reference: Wang et al., "Camera-aware Proxies for Unsupervised Person Re-Identification", AAAI 2021.

    Args:
        num_features: ``D`` of the initial, empty buffers.
        temperature: softmax temperature (the paper: 0.07).
        momentum: weight of the old proxy in the update (0.2).
        mode: ``"mean"`` or ``"hard"``, as in :class:`ClusterMemory`.
        inter_weight: weight of the inter-camera term (the paper: 0.5).

    Attributes:
        proxies: ``[P, D]`` unit-norm proxies; ``proxy_labels``, ``proxy_cameras``: ``[P]`` their cluster and
            camera, sorted by cluster then camera, each pair once.
    """

    camera_aware = True
    proxies: Tensor
    proxy_labels: Tensor
    proxy_cameras: Tensor
    _BUFFERS = ("proxies", "proxy_labels", "proxy_cameras")

    def __init__(
        self,
        num_features: int = 0,
        *,
        temperature: float = 0.07,
        momentum: float = 0.2,
        mode: str = "mean",
        inter_weight: float = 0.5,
    ) -> None:
        super().__init__()
        _check_settings(temperature, momentum, mode)
        if not float(inter_weight) >= 0:
            raise ValueError(f"inter_weight: expected a non-negative number, got {inter_weight!r}")
        self.temperature = float(temperature)
        self.momentum = float(momentum)
        self.mode = mode
        self.inter_weight = float(inter_weight)
        self.register_buffer("proxies", torch.zeros(0, int(num_features)))
        self.register_buffer("proxy_labels", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("proxy_cameras", torch.zeros(0, dtype=torch.int64))

    @property
    def num_proxies(self) -> int:
        return int(self.proxies.shape[0])

    def extra_repr(self) -> str:
        return (
            f"proxies={self.num_proxies}, dim={self.proxies.shape[1]}, temperature={self.temperature}, "
            f"momentum={self.momentum}, mode={self.mode!r}, inter_weight={self.inter_weight}"
        )

    def reset(self, proxies: Tensor, labels: Tensor, cameras: Tensor) -> None:
        """Replace the proxies (:func:`proxies_of`); they are sorted by (cluster, camera).

        Args:
            proxies: ``[P, D]``; ``labels``, ``cameras``: ``[P]`` cluster and camera of each proxy.

        Raises:
            ValueError: bad shapes, negative labels, or a (cluster, camera) pair given twice.
        """
        _check_features(proxies, "proxies")
        _check_labels(labels, proxies.shape[0])
        _check_labels(cameras, proxies.shape[0], "cameras")
        device = self.proxy_labels.device
        labels, cameras = labels.to(device, torch.int64), cameras.to(device, torch.int64)
        if labels.numel() and int(torch.minimum(labels, cameras).min()) < 0:
            raise ValueError("labels, cameras: expected non-negative cluster and camera ids")
        order = torch.sort(cameras, stable=True).indices
        order = order[torch.sort(labels[order], stable=True).indices]
        labels, cameras = labels[order], cameras[order]
        if labels.numel() > 1 and bool(((labels[1:] == labels[:-1]) & (cameras[1:] == cameras[:-1])).any()):
            raise ValueError("labels, cameras: each (cluster, camera) pair must have one proxy")
        self.proxies = F.normalize(proxies.detach().to(self.proxies)[order], dim=1).clone()
        self.proxy_labels, self.proxy_cameras = labels, cameras

    def proxy_index(self, labels: Tensor, cameras: Tensor) -> Tensor:
        """``[B]`` index of the proxy of each (label, camera) pair.

        Raises:
            ValueError: a pair without a proxy (a cluster never seen by that camera at :meth:`reset`).
        """
        device = self.proxy_labels.device
        labels, cameras = labels.to(device, torch.int64), cameras.to(device, torch.int64)
        width = int(torch.cat([self.proxy_cameras, cameras]).max()) + 1
        keys = self.proxy_labels * width + self.proxy_cameras  # ascending
        wanted = labels * width + cameras
        index = torch.searchsorted(keys, wanted).clamp_max(self.num_proxies - 1)
        missing = keys[index] != wanted
        if bool(missing.any()):
            first = int(missing.nonzero()[0, 0])
            raise ValueError(
                f"labels, cameras: no proxy for cluster {int(labels[first])} in camera {int(cameras[first])}"
            )
        return index

    def _check_batch(self, features: Tensor, labels: Tensor, cameras: Tensor) -> Tensor:
        _check_features(features)
        _check_labels(labels, features.shape[0])
        _check_labels(cameras, features.shape[0], "cameras")
        if self.num_proxies == 0:
            raise RuntimeError("CameraMemory: no proxies; call reset(*proxies_of(features, labels, cameras)) first")
        if features.shape[1] != self.proxies.shape[1]:
            raise ValueError(f"features: expected dimension {self.proxies.shape[1]}, got {features.shape[1]}")
        if labels.numel() == 0:
            return labels.new_zeros(0)
        return self.proxy_index(labels, cameras)

    def loss(self, features: Tensor, labels: Tensor, cameras: Tensor) -> Tensor:
        """Intra-camera plus weighted inter-camera loss of ``[B, D]`` features (``[B]`` labels and cameras)."""
        own = self._check_batch(features, labels, cameras).to(features.device)
        proxies = self.proxies.to(features.dtype)
        logits = F.normalize(features, dim=1) @ proxies.t() / self.temperature  # [B, P]
        proxy_cameras = self.proxy_cameras.to(features.device)
        proxy_labels = self.proxy_labels.to(features.device)
        same_camera = proxy_cameras[None, :] == cameras.to(features.device)[:, None]
        intra = F.cross_entropy(logits.masked_fill(~same_camera, float("-inf")), own)
        positive = proxy_labels[None, :] == proxy_labels[own][:, None]
        log_probability = F.log_softmax(logits, dim=1)
        inter = -(log_probability * positive).sum(dim=1) / positive.sum(dim=1)
        return intra + self.inter_weight * inter.mean()

    forward = loss

    @torch.no_grad()
    def update(self, features: Tensor, labels: Tensor, cameras: Tensor) -> None:
        """Momentum update of each batch item's own (cluster, camera) proxy."""
        own = self._check_batch(features, labels, cameras)
        if own.numel():
            self.proxies = _momentum_update(self.proxies, features, own, self.momentum, self.mode)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        _resize_buffers(self, state_dict, prefix, self._BUFFERS)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
