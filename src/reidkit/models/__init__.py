"""Backbones, heads and ReID models, and the explicit model registry :data:`MODELS`."""

from __future__ import annotations

from typing import Any

from torch import nn

from reidkit.errors import ConfigError
from reidkit.models.aligned import AlignedReID
from reidkit.models.backbones import BACKBONES, build_backbone, find_mobilenet_v2_weights
from reidkit.models.baseline import BaselineModel
from reidkit.models.jlml import JLML
from reidkit.models.mgn import MGN
from reidkit.models.mutual import MutualModel
from reidkit.models.output import ReidOutput
from reidkit.models.pcb import PCB

#: model name -> class; every class takes keyword-only arguments
#: ``(num_classes, backbone, pretrained, last_stride, **model-specific params)``.
MODELS: dict[str, type[nn.Module]] = {
    "baseline": BaselineModel,
    "pcb": PCB,
    "mgn": MGN,
    "aligned": AlignedReID,
    "jlml": JLML,
    "mutual": MutualModel,
}


def build_model(
    name: str,
    *,
    num_classes: int,
    backbone: str = "resnet50",
    pretrained: str | None = None,
    last_stride: int = 1,
    **params: Any,
) -> nn.Module:
    """Build a registered model.

    Args:
        name: one of :data:`MODELS`.
        num_classes: number of training identities.
        backbone: trunk name (one of ``BACKBONES``).
        pretrained: None, ``"imagenet"`` or a path to a state-dict file for the trunk.
        last_stride: stride of the trunk's last stage.
        **params: model-specific keyword arguments (an unknown one raises ConfigError).

    Returns:
        The model: ``forward(images) -> ReidOutput``, ``embed(images) -> [B, embedding_dim]``.
    """
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    try:
        return MODELS[name](
            num_classes=num_classes,
            backbone=backbone,
            pretrained=pretrained,
            last_stride=last_stride,
            **params,
        )
    except TypeError as error:
        if "unexpected keyword argument" in str(error):
            raise ConfigError(f"model {name!r}: {error}") from error
        raise


__all__ = [
    "BACKBONES",
    "MODELS",
    "AlignedReID",
    "BaselineModel",
    "JLML",
    "MGN",
    "MutualModel",
    "PCB",
    "ReidOutput",
    "build_backbone",
    "build_model",
    "find_mobilenet_v2_weights",
]
