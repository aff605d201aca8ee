"""Backbones, heads and ReID models, and the explicit model registry :data:`MODELS`."""

from __future__ import annotations

from typing import Any

from torch import nn

from reidkit.errors import ConfigError
from reidkit.models.aligned import AlignedReID
from reidkit.models.backbones import BACKBONES, TrunkSpec, build_backbone, find_mobilenet_v2_weights
from reidkit.models.baseline import BaselineModel
from reidkit.models.jlml import JLML
from reidkit.models.mgn import MGN
from reidkit.models.mutual import MutualModel
from reidkit.models.output import ReidOutput
from reidkit.models.pcb import PCB
from reidkit.models.pose_parts import PoseParts

#: model name -> class; every class takes keyword-only arguments
#: ``(num_classes, trunk: TrunkSpec, **model-specific params)``.
MODELS: dict[str, type[nn.Module]] = {
    "baseline": BaselineModel,
    "pcb": PCB,
    "mgn": MGN,
    "aligned": AlignedReID,
    "jlml": JLML,
    "mutual": MutualModel,
    "pose_parts": PoseParts,
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
    if "trunk" in params:
        raise ConfigError(
            f"model {name!r}: unexpected parameter 'trunk'; "
            "set the trunk with backbone, pretrained and last_stride"
        )
    trunk = TrunkSpec(backbone=backbone, pretrained=pretrained, last_stride=last_stride)
    return build_model_on(name, num_classes=num_classes, trunk=trunk, **params)


def build_model_on(name: str, *, num_classes: int, trunk: TrunkSpec, **params: Any) -> nn.Module:
    """Build a registered model on a given trunk (:func:`build_model` with the trunk arguments in one).

    The video parameters ``temporal`` (a head of :data:`reidkit.models.temporal.TEMPORAL_HEADS`),
    ``temporal_hidden`` and ``rnn`` wrap the model in a :class:`~reidkit.models.temporal.TemporalModel` that
    takes clips ``[B, T, 3, H, W]``; the other parameters go to the frame model.

    Args:
        name: one of :data:`MODELS`.
        num_classes: number of training identities.
        trunk: the trunk to build the model on.
        **params: model-specific keyword arguments (an unknown one raises ConfigError).

    Returns:
        The model, as :func:`build_model` returns it.
    """
    temporal = params.pop("temporal", None)
    video = {key: params.pop(key) for key in ("temporal_hidden", "rnn") if key in params}
    if temporal is not None:
        from reidkit.models.temporal import build_temporal_model

        return build_temporal_model(
            name,
            temporal=temporal,
            num_classes=num_classes,
            trunk=trunk,
            hidden=video.get("temporal_hidden", 256),
            rnn=video.get("rnn", "lstm"),
            **params,
        )
    if video:
        raise ConfigError(
            f"model {name!r}: {sorted(video)} need a temporal head (temporal: avg, quality, ...)"
        )
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    try:
        return MODELS[name](num_classes=num_classes, trunk=trunk, **params)
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
    "PoseParts",
    "ReidOutput",
    "TrunkSpec",
    "build_backbone",
    "build_model",
    "build_model_on",
    "find_mobilenet_v2_weights",
]
