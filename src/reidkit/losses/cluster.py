"""The ``cluster_contrast`` loss term: a cluster memory's contrastive loss, then its momentum update.

The memory (:class:`reidkit.adapt.memory.ClusterMemory`, or :class:`~reidkit.adapt.memory.CameraMemory`
with ``camera_aware``) is the term's state, owned by the :class:`~reidkit.losses.criterion.Criterion`; the
adaptation loop refills it every epoch through ``criterion.cluster_memory().reset(...)``. The batch's pids are
the pseudo-labels (outliers, pid -1, never reach the term).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

if TYPE_CHECKING:
    from reidkit.adapt.memory import CameraMemory, ClusterMemory


def cluster_contrast(
    features: Tensor,
    pids: Tensor,
    memory: ClusterMemory | CameraMemory,
    *,
    camids: Tensor | None = None,
    update: bool = True,
) -> Tensor:
    """Contrastive loss of features against a cluster memory, then the memory's momentum update.

    The loss is computed first (it uses the centroids before the update, and the update replaces them by a
    new tensor, so backpropagation is unaffected); the update uses detached features.

    Reference: Dai et al., "Cluster Contrast for Unsupervised Person Re-Identification", ACCV 2022; with a
    :class:`~reidkit.adapt.memory.CameraMemory`: Wang et al., "Camera-aware Proxies for Unsupervised Person
    Re-Identification", AAAI 2021.

    Args:
        features: ``[B, D]`` features; ``pids``: ``[B]`` pseudo-labels ``0..C-1``.
        memory: the term's memory.
        camids: ``[B]`` camera ids (needed by a camera-aware memory).
        update: run the momentum update (the criterion passes its training mode).

    Returns:
        The scalar loss.
    """
    if memory.camera_aware:
        if camids is None:
            raise ValueError("cluster_contrast: a camera-aware memory needs the batch's camids")
        value = memory.loss(features, pids, camids)
        if update:
            memory.update(features.detach(), pids, camids)
        return value
    value = memory.loss(features, pids)
    if update:
        memory.update(features.detach(), pids)
    return value


def cluster_memory_state(
    num_classes: int,
    feat_dim: int,
    *,
    temperature: float = 0.05,
    momentum: float = 0.2,
    mode: str = "mean",
    camera_aware: bool = False,
    inter_weight: float = 0.5,
) -> dict[str, nn.Module]:
    """The ``cluster_contrast`` term's state: ``{"memory": an empty memory of dimension feat_dim}``.

    Args:
        num_classes: unused (the number of clusters changes every epoch).
        feat_dim: feature dimension of the selected output.
        temperature, momentum, mode: of the memory (``mode``: ``"mean"`` or ``"hard"``).
        camera_aware: one proxy per (cluster, camera) (:class:`~reidkit.adapt.memory.CameraMemory`) instead
            of one centroid per cluster.
        inter_weight: weight of the inter-camera term (camera-aware only).
    """
    from reidkit.adapt.memory import CameraMemory, ClusterMemory  # the adapt package builds on the losses

    del num_classes
    if camera_aware:
        memory: nn.Module = CameraMemory(
            feat_dim, temperature=temperature, momentum=momentum, mode=mode, inter_weight=inter_weight
        )
    else:
        memory = ClusterMemory(feat_dim, temperature=temperature, momentum=momentum, mode=mode)
    return {"memory": memory}
