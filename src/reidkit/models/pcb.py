"""PCB: part-based convolutional baseline (uniform horizontal stripes), with optional refined part pooling.

Reference: Sun et al., "Beyond Part Models: Person Retrieval with Refined Part Pooling (and A Strong
Convolutional Baseline)", ECCV 2018.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reidkit.errors import ConfigError
from reidkit.models.backbones import DEFAULT_TRUNK, TrunkSpec
from reidkit.models.baseline import make_classifier, make_reduction
from reidkit.models.output import ReidOutput


class RefinedPartPooling(nn.Module):
    """RPP: soft assignment of every column vector of the map to the ``parts`` parts, then weighted pooling.

    ``P(P_i | f) = softmax_i(W_i^T f)`` with a 1x1 conv part classifier ``W``; part ``i``'s feature is the
    ``P(P_i | f)``-weighted mean of the column vectors ``f`` (normalised by the total weight, so that a hard
    stripe assignment gives exactly the uniform partition's average pooling).
    ``[B, C, h, w] -> [B, C, parts]``.
    """

    def __init__(self, channels: int, parts: int) -> None:
        super().__init__()
        self.part_classifier = nn.Conv2d(channels, parts, kernel_size=1, bias=False)
        nn.init.normal_(self.part_classifier.weight, std=0.001)

    def assignment(self, feature_map: Tensor) -> Tensor:
        """``[B, C, h, w] -> [B, parts, h, w]`` probabilities of each location belonging to each part."""
        return self.part_classifier(feature_map).softmax(dim=1)

    def forward(self, feature_map: Tensor) -> Tensor:
        weights = self.assignment(feature_map).flatten(2)  # [B, parts, h*w]
        columns = feature_map.flatten(2)  # [B, C, h*w]
        pooled = torch.einsum("bph,bch->bcp", weights, columns)
        return pooled / weights.sum(dim=2).clamp_min(1e-6)[:, None, :]


class PCB(nn.Module):
    """Part-based Convolutional Baseline.

    ``images [B, 3, 384, 128]`` -> ResNet trunk with last stride 1 -> ``[B, 2048, 24, 8]`` -> ``parts`` (6)
    horizontal stripes, average-pooled -> ``g_i [B, 2048]`` -> per stripe 1x1 conv + BN + ReLU -> ``h_i [B, 256]``
    -> per stripe classifier (ID loss on each: a ``cross_entropy`` term ``on: logits`` averages the 6).
    Test feature: the concatenated ``h_i`` (``parts * reduced_dim``; 1536-d), or the concatenated ``g_i``
    (``embed_feature="pooled"``, 12288-d). With ``refined_pooling=True`` the uniform stripes are replaced by
    :class:`RefinedPartPooling` (the paper trains it after the uniform PCB has converged, with the rest of
    the network first frozen, then fine-tuned jointly).

    Outputs: ``part_features = [h_1..h_p]``, ``logits = [one per stripe]``, ``global_features = [concatenated
    h]`` (for an optional triplet term), ``extra["pcb.assignment"]`` ``[B, parts, h, w]`` with RPP.

    Reference: Sun et al., "Beyond Part Models: Person Retrieval with Refined Part Pooling (and A Strong
    Convolutional Baseline)", ECCV 2018.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        trunk: TrunkSpec = DEFAULT_TRUNK,
        parts: int = 6,
        reduced_dim: int = 256,
        refined_pooling: bool = False,
        dropout: float = 0.0,
        embed_feature: str = "reduced",
    ) -> None:
        """
        Args:
            num_classes: number of training identities.
            trunk: the trunk to build (``resnet50`` with last stride 1 in the paper).
            parts: number of horizontal stripes (6 in the paper).
            reduced_dim: channels of each stripe after the 1x1 conv reduction (256).
            refined_pooling: use refined part pooling (RPP) instead of uniform stripes.
            dropout: dropout probability before each stripe classifier (0 disables).
            embed_feature: ``"reduced"`` (concatenated ``h``) or ``"pooled"`` (concatenated ``g``).
        """
        super().__init__()
        if parts < 1:
            raise ConfigError(f"parts must be >= 1, got {parts!r}")
        if embed_feature not in ("reduced", "pooled"):
            raise ConfigError(f"embed_feature must be 'reduced' or 'pooled', got {embed_feature!r}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")
        self.trunk, channels = trunk.build()
        self.parts = parts
        self.rpp = RefinedPartPooling(channels, parts) if refined_pooling else None
        self.reductions = nn.ModuleList(make_reduction(channels, reduced_dim) for _ in range(parts))
        self.dropout = nn.Dropout(dropout)
        self.classifiers = nn.ModuleList(make_classifier(reduced_dim, num_classes) for _ in range(parts))
        self.embed_pooled = embed_feature == "pooled"
        self.embedding_dim = parts * (channels if self.embed_pooled else reduced_dim)
        self.feature_dim = parts * reduced_dim  # size of global_features[0] (the concatenated stripes)

    def _stripes(self, feature_map: Tensor) -> Tensor:
        """``[B, C, h, w] -> [B, C, parts]`` pooled stripes (uniform or refined)."""
        if self.rpp is not None:
            return self.rpp(feature_map)
        if feature_map.shape[2] < self.parts:
            raise ValueError(
                f"PCB: the feature map has {feature_map.shape[2]} rows, fewer than parts={self.parts}; "
                "use a taller input or last_stride 1"
            )
        return F.adaptive_avg_pool2d(feature_map, (self.parts, 1)).squeeze(3)

    def _features(self, images: Tensor) -> tuple[Tensor, list[Tensor], Tensor]:
        feature_map = self.trunk(images)
        pooled = self._stripes(feature_map)
        reduced = [
            reduction(pooled[:, :, index, None, None]).flatten(1)
            for index, reduction in enumerate(self.reductions)
        ]
        return pooled, reduced, feature_map

    def forward(self, images: Tensor) -> ReidOutput:
        """``images [B, 3, H, W]`` -> ReidOutput(embedding ``[B, embedding_dim]``, parts ``p x [B, 256]``,
        logits ``p x [B, num_classes]``)."""
        pooled, reduced, feature_map = self._features(images)
        concatenated = torch.cat(reduced, dim=1)
        extra = {"pcb.assignment": self.rpp.assignment(feature_map)} if self.rpp is not None else {}
        return ReidOutput(
            embedding=pooled.transpose(1, 2).flatten(1) if self.embed_pooled else concatenated,
            global_features=[concatenated],
            part_features=reduced,
            logits=[
                classifier(self.dropout(part))
                for classifier, part in zip(self.classifiers, reduced, strict=True)
            ],
            extra=extra,
        )

    def embed(self, images: Tensor) -> Tensor:
        """``images [B, 3, H, W]`` -> concatenated stripe features ``[B, embedding_dim]``."""
        pooled, reduced, _ = self._features(images)
        return pooled.transpose(1, 2).flatten(1) if self.embed_pooled else torch.cat(reduced, dim=1)
