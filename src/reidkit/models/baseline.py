"""The IDE / "bag of tricks" baseline: trunk -> global pooling -> BNNeck -> bias-free classifier.

Also holds the pooling layers and the BNNeck / classifier initialisation shared by the other heads.

Reference: Zheng et al., "Person Re-identification: Past, Present and Future" (IDE), arXiv 2016;
Luo et al., "Bag of Tricks and A Strong Baseline for Deep Person Re-identification", CVPRW 2019;
Radenović et al., "Fine-tuning CNN Image Retrieval with No Human Annotation" (GeM pooling), TPAMI 2018.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reidkit.errors import ConfigError
from reidkit.models.backbones import DEFAULT_TRUNK, TrunkSpec
from reidkit.models.output import ReidOutput

POOLINGS = ("avg", "max", "gem")


class GeneralizedMeanPooling(nn.Module):
    """GeM pooling ``(mean(x^p))^(1/p)`` over the spatial dims, with a learnable exponent ``p``.

    ``[B, C, h, w] -> [B, C, 1, 1]``. ``p = 1`` is average pooling, ``p -> inf`` tends to max pooling.

    Reference: Radenović et al., "Fine-tuning CNN Image Retrieval with No Human Annotation", TPAMI 2018.
    """

    def __init__(self, *, p: float = 3.0, learnable: bool = True, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)), requires_grad=learnable)
        self.eps = eps

    def forward(self, feature_map: Tensor) -> Tensor:
        pooled = F.adaptive_avg_pool2d(feature_map.clamp_min(self.eps).pow(self.p), 1)
        return pooled.pow(1.0 / self.p)


def build_pooling(name: str) -> nn.Module:
    """Global pooling ``[B, C, h, w] -> [B, C, 1, 1]``: ``"avg"``, ``"max"`` or ``"gem"``."""
    if name == "avg":
        return nn.AdaptiveAvgPool2d(1)
    if name == "max":
        return nn.AdaptiveMaxPool2d(1)
    if name == "gem":
        return GeneralizedMeanPooling()
    raise ConfigError(f"unknown pooling {name!r}; choose from {list(POOLINGS)}")


def make_bnneck(dim: int) -> nn.BatchNorm1d:
    """BatchNorm1d with its bias fixed at 0 (BNNeck: the BN shift would only move the classifier's input)."""
    bnneck = nn.BatchNorm1d(dim)
    nn.init.ones_(bnneck.weight)
    nn.init.zeros_(bnneck.bias)
    bnneck.bias.requires_grad_(False)
    return bnneck


def make_classifier(dim: int, num_classes: int) -> nn.Linear:
    """Bias-free linear ID classifier initialised with N(0, 0.001^2), as in the bag-of-tricks baseline."""
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes!r}")
    classifier = nn.Linear(dim, num_classes, bias=False)
    nn.init.normal_(classifier.weight, std=0.001)
    return classifier


def make_reduction(in_channels: int, out_channels: int) -> nn.Sequential:
    """1x1 conv (no bias) + BatchNorm2d + ReLU: ``[B, in, h, w] -> [B, out, h, w]`` (PCB / MGN reductions)."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
    norm = nn.BatchNorm2d(out_channels)
    return nn.Sequential(conv, norm, nn.ReLU(inplace=True))


class BaselineModel(nn.Module):
    """IDE baseline with the bag-of-tricks BNNeck.

    ``images [B, 3, H, W]`` -> trunk ``[B, C, h, w]`` -> pooling -> ``f [B, C]`` -> BNNeck -> ``f_bn [B, C]``
    -> bias-free classifier -> logits ``[B, num_classes]``. The triplet loss uses ``f`` (``global``), the ID
    loss the logits; retrieval uses ``f_bn`` (or ``f`` with ``embed_feature="before_bn"``).

    Optional attribute heads (multi-task ID + attributes, Lin et al. 2019) add one linear classifier per
    attribute on ``f_bn``; their logits are in ``extra["attributes.<name>"]`` (``[B, num_values]``) and are not part
    of the embedding.

    Reference: Luo et al., "Bag of Tricks and A Strong Baseline for Deep Person Re-identification",
    CVPRW 2019; Zheng et al., "Person Re-identification: Past, Present and Future", arXiv 2016.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        trunk: TrunkSpec = DEFAULT_TRUNK,
        pooling: str = "avg",
        bnneck: bool = True,
        embed_feature: str = "after_bn",
        attributes: dict[str, int] | None = None,
    ) -> None:
        """
        Args:
            num_classes: number of training identities.
            trunk: the trunk to build (backbone name, pretrained weights, last stride).
            pooling: ``"avg"``, ``"max"`` or ``"gem"``.
            bnneck: insert the BNNeck between the feature and the classifier (False: plain IDE).
            embed_feature: ``"after_bn"`` (BNNeck output) or ``"before_bn"`` (pooled feature) for ``embed``.
            attributes: optional ``{attribute name: number of values}`` for attribute classification heads.
        """
        super().__init__()
        if embed_feature not in ("after_bn", "before_bn"):
            raise ConfigError(f"embed_feature must be 'after_bn' or 'before_bn', got {embed_feature!r}")
        self.trunk, channels = trunk.build()
        self.pool = build_pooling(pooling)
        self.bnneck = make_bnneck(channels) if bnneck else nn.Identity()
        self.classifier = make_classifier(channels, num_classes)
        self.attribute_heads = nn.ModuleDict()
        for name, count in (attributes or {}).items():
            if not isinstance(count, int) or count < 2:
                raise ConfigError(
                    f"attributes.{name} must be an integer number of values >= 2, got {count!r}"
                )
            self.attribute_heads[name] = make_classifier(channels, count)
        self.embed_before_bn = embed_feature == "before_bn"
        self.embedding_dim = channels
        self.feature_dim = channels  # size of global_features[0] (for losses with per-class state)

    def _global(self, feature_map: Tensor) -> tuple[Tensor, Tensor]:
        """Trunk map ``[B, C, h, w]`` -> ``(f, f_bn)``: pooled feature and its BNNeck output, ``[B, C]``."""
        feature = self.pool(feature_map).flatten(1)
        return feature, self.bnneck(feature)

    def forward(self, images: Tensor) -> ReidOutput:
        """``images [B, 3, H, W]`` -> ReidOutput(embedding [B, C], global [f [B, C]], logits [[B, classes]])."""
        return self._global_output(self.trunk(images))

    def _global_output(self, feature_map: Tensor) -> ReidOutput:
        """The ReidOutput of the global branch (and attribute heads) on a trunk map ``[B, C, h, w]``."""
        feature, normalised = self._global(feature_map)
        extra = {f"attributes.{name}": head(normalised) for name, head in self.attribute_heads.items()}
        return ReidOutput(
            embedding=feature if self.embed_before_bn else normalised,
            global_features=[feature],
            logits=[self.classifier(normalised)],
            extra=extra,
        )

    def embed(self, images: Tensor) -> Tensor:
        """``images [B, 3, H, W]`` -> retrieval feature ``[B, embedding_dim]`` (not L2-normalised)."""
        feature, normalised = self._global(self.trunk(images))
        return feature if self.embed_before_bn else normalised
