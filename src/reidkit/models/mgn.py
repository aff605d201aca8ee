"""MGN: multiple granularity network (one global branch and two stripe branches on a shared ResNet-50).

A MobileNetV2 trunk is accepted too, split at the same place (see :func:`reidkit.models.backbones.trunk_stages`).

Reference: Wang et al., "Learning Discriminative Features with Multiple Granularities for Person
Re-Identification", ACM MM 2018.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reidkit.errors import ConfigError
from reidkit.models.backbones import DEFAULT_TRUNK, TrunkSpec, set_stage_stride, trunk_stages
from reidkit.models.baseline import make_classifier, make_reduction
from reidkit.models.output import ReidOutput

CLASSIFIED = ("all", "global", "parts")
TRIPLET_FEATURES = ("pooled", "reduced")


class MGN(nn.Module):
    """Multiple Granularity Network.

    The ResNet is shared up to and including ``layer3[0]`` (res_conv4_1). Each of the three branches owns a
    copy of the rest of ``layer3`` and of ``layer4`` (with a MobileNetV2 trunk: the same split of its stages,
    see :func:`reidkit.models.backbones.trunk_stages`; 1280 channels instead of 2048):

    - *global*: ``layer4`` keeps its down-sampling (``[B, 2048, 12, 4]`` at 384x128);
    - *part-2* and *part-3*: ``layer4`` with stride 1 (``[B, 2048, 24, 8]``), split into 2 and 3 horizontal
      stripes.

    (``global_stride`` and the trunk's ``last_stride`` set the two ``layer4`` strides; the defaults follow the
    paper.)

    Every branch max-pools its whole map to a 2048-d global feature ``z`` (``z_G``, ``z_P2``, ``z_P3``); the
    part branches also max-pool each stripe. Each of these 8 features is reduced by its own 1x1 conv + BN +
    ReLU to 256-d (``f``) and classified by its own classifier. Test feature: the 8 reduced features
    concatenated (2048-d).

    Outputs (the losses pick them by name, so which features get softmax and which get triplet is set by the
    loss terms and the two options below): ``logits`` = the 8 classifier outputs (global branch, part-2
    global, part-3 global, then the 2 + 3 stripes) or only the 3 global / 5 stripe ones (``classified``);
    ``global_features`` = the three global features, 2048-d ``z`` (``triplet_features="pooled"``, default) or
    their 256-d reductions (``"reduced"``); ``part_features`` = the 5 reduced stripe features (no triplet by
    default: a stripe may contain only background).

    Reference: Wang et al., "Learning Discriminative Features with Multiple Granularities for Person
    Re-Identification", ACM MM 2018.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        trunk: TrunkSpec = DEFAULT_TRUNK,
        global_stride: int = 2,
        reduced_dim: int = 256,
        part_counts: tuple[int, ...] | list[int] = (2, 3),
        classified: str = "all",
        triplet_features: str = "pooled",
    ) -> None:
        """
        Args:
            num_classes: number of training identities.
            trunk: a ResNet (``resnet50`` in the paper) or ``mobilenet_v2`` trunk; its last stride is that of
                the *part* branches' ``layer4`` (1 in the paper).
            global_stride: stride of the *global* branch's ``layer4`` (2 in the paper).
            reduced_dim: channels of each reduced feature (256).
            part_counts: stripes of each part branch (``(2, 3)``).
            classified: which reduced features get a classifier output in ``logits``: ``"all"``,
                ``"global"`` or ``"parts"``.
            triplet_features: ``"pooled"`` (2048-d ``z``) or ``"reduced"`` (256-d ``f``) global features.
        """
        super().__init__()
        if classified not in CLASSIFIED:
            raise ConfigError(f"classified must be one of {list(CLASSIFIED)}, got {classified!r}")
        if triplet_features not in TRIPLET_FEATURES:
            raise ConfigError(
                f"triplet_features must be one of {list(TRIPLET_FEATURES)}, got {triplet_features!r}"
            )
        part_counts = tuple(part_counts)
        if not part_counts or any(not isinstance(count, int) or count < 1 for count in part_counts):
            raise ConfigError(f"part_counts must be a list of positive integers, got {list(part_counts)!r}")
        for key, value in (("last_stride", trunk.last_stride), ("global_stride", global_stride)):
            if value not in (1, 2):
                raise ConfigError(f"{key} must be 1 or 2, got {value!r}")
        shared_trunk, channels = trunk.build(last_stride=global_stride)
        stem, (layer1, layer2, layer3, layer4) = trunk_stages(shared_trunk)
        self.shared = nn.Sequential(*stem, layer1, layer2, layer3[0])
        rest = nn.Sequential(layer3[1:], layer4)
        self.global_branch = copy.deepcopy(rest)
        self.part_branches = nn.ModuleList()
        for _ in part_counts:
            branch = copy.deepcopy(rest)
            set_stage_stride(branch[1], trunk.last_stride)
            self.part_branches.append(branch)
        self.part_counts = part_counts
        count = 1 + len(part_counts) + sum(part_counts)
        self.reductions = nn.ModuleList(make_reduction(channels, reduced_dim) for _ in range(count))
        self.classifiers = nn.ModuleList(make_classifier(reduced_dim, num_classes) for _ in range(count))
        self.classified = classified
        self.triplet_on_pooled = triplet_features == "pooled"
        self.embedding_dim = count * reduced_dim
        self.feature_dim = channels if self.triplet_on_pooled else reduced_dim  # size of global_features[i]

    def branch_maps(self, images: Tensor) -> list[Tensor]:
        """``images [B, 3, H, W]`` -> ``[global map [B, C, H/32, W/32], part maps [B, C, H/16, W/16]...]``."""
        shared = self.shared(images)
        return [self.global_branch(shared)] + [branch(shared) for branch in self.part_branches]

    def _features(self, images: Tensor) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """``(z, f_global, f_parts)``: 3 pooled ``[B, C]``, 3 reduced global and 5 reduced stripe ``[B, 256]``."""
        maps = self.branch_maps(images)
        pooled_global = [F.adaptive_max_pool2d(feature_map, 1) for feature_map in maps]
        pooled_parts = []
        for feature_map, count in zip(maps[1:], self.part_counts, strict=True):
            if feature_map.shape[2] < count:
                raise ValueError(
                    f"MGN: a {feature_map.shape[2]}-row part map cannot be split into {count} stripes"
                )
            stripes = F.adaptive_max_pool2d(feature_map, (count, 1))
            pooled_parts.extend(stripes[:, :, index, None] for index in range(count))
        pooled = pooled_global + pooled_parts
        reduced = [
            reduction(feature).flatten(1) for reduction, feature in zip(self.reductions, pooled, strict=True)
        ]
        global_count = len(pooled_global)
        z = [feature.flatten(1) for feature in pooled_global]
        return z, reduced[:global_count], reduced[global_count:]

    def forward(self, images: Tensor) -> ReidOutput:
        """``images [B, 3, 384, 128]`` -> ReidOutput(embedding ``[B, 2048]``, global 3 x ``[B, 2048 or 256]``,
        parts 5 x ``[B, 256]``, logits up to 8 x ``[B, num_classes]``)."""
        z, reduced_global, reduced_parts = self._features(images)
        reduced = reduced_global + reduced_parts
        logits = [classifier(feature) for classifier, feature in zip(self.classifiers, reduced, strict=True)]
        if self.classified == "global":
            logits = logits[: len(reduced_global)]
        elif self.classified == "parts":
            logits = logits[len(reduced_global) :]
        return ReidOutput(
            embedding=torch.cat(reduced, dim=1),
            global_features=z if self.triplet_on_pooled else reduced_global,
            part_features=reduced_parts,
            logits=logits,
        )

    def embed(self, images: Tensor) -> Tensor:
        """``images [B, 3, H, W]`` -> the 8 reduced features concatenated, ``[B, embedding_dim]`` (2048)."""
        _, reduced_global, reduced_parts = self._features(images)
        return torch.cat(reduced_global + reduced_parts, dim=1)
