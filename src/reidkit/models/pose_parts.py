"""Pose-guided part model: a global feature plus one feature per body region found from keypoints.

References: Zhao et al., "Spindle Net: Person Re-identification with Human Body Region Guided Feature
Decomposition and Fusion", CVPR 2017; Wei et al., "GLAD: Global-Local-Alignment Descriptor for Pedestrian
Retrieval", ACM MM 2017.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reidkit.data.keypoints import NUM_KEYPOINTS
from reidkit.errors import ConfigError
from reidkit.models.backbones import DEFAULT_TRUNK, TrunkSpec
from reidkit.models.baseline import build_pooling, make_bnneck, make_classifier, make_reduction
from reidkit.models.output import ReidOutput
from reidkit.models.pose_regions import REGIONS, pool_regions, region_boxes

#: ``ReidOutput.extra`` keys: per-part logits ``[B, R, num_classes]`` and part visibility ``[B, R]`` (float 0/1).
PART_LOGITS = "pose.part_logits"
PART_VISIBLE = "pose.visible"


class PoseParts(nn.Module):
    """Global branch plus pose-guided region branches on one trunk map.

    ``images [B, 3, H, W]``, ``keypoints [B, 17, 3]`` (pixels of ``images``) -> trunk map ``[B, C, h, w]``, then

    - global: pooling -> ``f [B, C]`` (triplet, ``global``) -> BNNeck -> classifier (``logits``);
    - regions (:func:`reidkit.models.pose_regions.region_boxes` of the keypoints, default head / torso / legs):
      ROI align of the map over each box (:func:`~reidkit.models.pose_regions.pool_regions`) -> ``[B, C]`` per
      region -> 1x1 conv + BN + ReLU to ``part_dim`` (``part_features``) -> its own classifier
      (``extra["pose.part_logits"] [B, R, num_classes]``); ``extra["pose.visible"] [B, R]`` says which regions
      the keypoints show. The ``visible_part_cross_entropy`` loss trains the part classifiers on visible parts
      only. A missing region (or no keypoints at all) is pooled over the whole image.

    ``embed`` returns ``[global f_bn, part_1, ..., part_R]``, each block L2-normalised (``C + R * part_dim``);
    :meth:`embed_parts` also gives the visibility for :func:`reidkit.models.pose_regions.visibility_distance`.
    """

    #: ``forward`` / ``embed`` take ``keypoints=`` (the training loop passes ``Batch.keypoints``).
    uses_keypoints = True

    def __init__(
        self,
        *,
        num_classes: int,
        trunk: TrunkSpec = DEFAULT_TRUNK,
        regions: Mapping[str, Sequence[int]] | None = None,
        part_dim: int = 256,
        pooling: str = "avg",
        margin: float = 0.05,
        min_visible: int = 1,
        bins: int = 2,
    ) -> None:
        """
        Args:
            num_classes: number of training identities.
            trunk: the trunk to build (any backbone).
            regions: region name -> COCO-17 keypoint indices (default :data:`REGIONS`: head, torso, legs).
            part_dim: channels of each region feature.
            pooling: global pooling (``"avg"``, ``"max"``, ``"gem"``).
            margin, min_visible: of :func:`region_boxes`.
            bins: ROI-align cells per side of :func:`pool_regions`.
        """
        super().__init__()
        regions = dict(REGIONS if regions is None else regions)
        if not regions:
            raise ConfigError("regions: expected at least one region (name -> keypoint indices)")
        for name, indices in regions.items():
            if (
                not isinstance(indices, Sequence)
                or not indices
                or not all(isinstance(i, int) and 0 <= i < NUM_KEYPOINTS for i in indices)
            ):
                raise ConfigError(
                    f"regions.{name}: expected a list of COCO-17 keypoint indices in [0, {NUM_KEYPOINTS}), "
                    f"got {indices!r}"
                )
        if part_dim < 1 or bins < 1 or min_visible < 1 or margin < 0:
            raise ConfigError(
                f"part_dim, bins, min_visible must be >= 1 and margin >= 0, got {part_dim}, {bins}, "
                f"{min_visible}, {margin}"
            )
        self.regions = {name: tuple(indices) for name, indices in regions.items()}
        self.margin, self.min_visible, self.bins = float(margin), int(min_visible), int(bins)
        self.trunk, channels = trunk.build()
        self.pool = build_pooling(pooling)
        self.bnneck = make_bnneck(channels)
        self.classifier = make_classifier(channels, num_classes)
        count = len(self.regions)
        self.reductions = nn.ModuleList(make_reduction(channels, part_dim) for _ in range(count))
        self.part_classifiers = nn.ModuleList(make_classifier(part_dim, num_classes) for _ in range(count))
        self.part_dim = part_dim
        self.embedding_dim = channels + count * part_dim
        self.feature_dim = channels  # size of global_features[0]

    def _features(
        self, images: Tensor, keypoints: Tensor | None
    ) -> tuple[Tensor, Tensor, list[Tensor], Tensor]:
        """-> ``(f [B, C], f_bn [B, C], R x [B, part_dim], visible [B, R] bool)``."""
        size = (int(images.shape[-2]), int(images.shape[-1]))
        if keypoints is None:
            keypoints = images.new_zeros(images.shape[0], NUM_KEYPOINTS, 3)
        elif keypoints.dim() != 3 or keypoints.shape[0] != images.shape[0] or keypoints.shape[2] != 3:
            raise ValueError(
                f"keypoints: expected [{images.shape[0]}, {NUM_KEYPOINTS}, 3], got {tuple(keypoints.shape)}"
            )
        feature_map = self.trunk(images)
        feature = self.pool(feature_map).flatten(1)
        boxes, visible = region_boxes(
            keypoints.float(), size, self.regions, margin=self.margin, min_visible=self.min_visible
        )
        pooled = pool_regions(feature_map, boxes, size, bins=self.bins)  # [B, R, C]
        parts = [
            reduction(pooled[:, index, :, None, None]).flatten(1)
            for index, reduction in enumerate(self.reductions)
        ]
        return feature, self.bnneck(feature), parts, visible

    def forward(self, images: Tensor, keypoints: Tensor | None = None) -> ReidOutput:
        """``images [B, 3, H, W]``, ``keypoints [B, 17, 3]`` or None -> ReidOutput(embedding, global ``[f]``,
        logits ``[global]``, parts ``R x [B, part_dim]``, extra part logits and visibility)."""
        feature, normalised, parts, visible = self._features(images, keypoints)
        part_logits = torch.stack(
            [classifier(part) for classifier, part in zip(self.part_classifiers, parts, strict=True)], dim=1
        )
        return ReidOutput(
            embedding=self._concatenate(normalised, parts),
            global_features=[feature],
            part_features=parts,
            logits=[self.classifier(normalised)],
            extra={PART_LOGITS: part_logits, PART_VISIBLE: visible.to(part_logits.dtype)},
        )

    @staticmethod
    def _concatenate(normalised: Tensor, parts: list[Tensor]) -> Tensor:
        return torch.cat(
            [F.normalize(normalised, dim=1), *(F.normalize(part, dim=1) for part in parts)], dim=1
        )

    def embed(self, images: Tensor, keypoints: Tensor | None = None) -> Tensor:
        """``[B, 3, H, W]`` (+ keypoints) -> ``[B, C + R * part_dim]``: global and parts, each L2-normalised."""
        _, normalised, parts, _ = self._features(images, keypoints)
        return self._concatenate(normalised, parts)

    def embed_parts(self, images: Tensor, keypoints: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """-> ``(global f_bn [B, C], parts [B, R, part_dim], visible [B, R] bool)``, not normalised."""
        _, normalised, parts, visible = self._features(images, keypoints)
        return normalised, torch.stack(parts, dim=1), visible
