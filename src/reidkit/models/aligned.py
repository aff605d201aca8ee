"""AlignedReID: a global branch plus per-row local features compared by shortest-path alignment.

Reference: Zhang et al., "AlignedReID: Surpassing Human-Level Performance in Person Re-Identification",
arXiv 2017.
"""

from __future__ import annotations

from torch import Tensor

from reidkit.errors import ConfigError
from reidkit.models.backbones import DEFAULT_TRUNK, TrunkSpec
from reidkit.models.baseline import BaselineModel, make_reduction
from reidkit.models.output import ReidOutput


class AlignedReID(BaselineModel):
    """AlignedReID model: the baseline's global branch plus a local branch on the same trunk map.

    ``images [B, 3, H, W]`` -> trunk map ``[B, C, h, w]``, then

    - global branch (:class:`~reidkit.models.baseline.BaselineModel` without attribute heads): global pooling
      -> ``g [B, C]`` (triplet, ``global``) -> BNNeck -> classifier (``logits``);
    - local branch: max pooling along the width of each row -> ``[B, C, h, 1]`` -> 1x1 conv + BN + ReLU to
      ``local_dim`` -> ``local_features [B, h, local_dim]``.

    The local features are trained by the aligned triplet loss (:func:`reidkit.losses.aligned.aligned_triplet`,
    a loss term with ``on: output``): hard examples mined with the global distance, the triplet applied to the
    global and the shortest-path local distances. ``embed`` returns the global feature; the local features for
    the optional combined distance (global + :func:`reidkit.losses.aligned.local_distance`) come from
    :meth:`embed_local`. The local distance costs ``O(h^2 * local_dim)`` per pair plus a ``2h - 1``-step
    dynamic programme, against ``O(C)`` for the global Euclidean distance.

    Reference: Zhang et al., "AlignedReID: Surpassing Human-Level Performance in Person Re-Identification",
    arXiv 2017.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        trunk: TrunkSpec = DEFAULT_TRUNK,
        local_dim: int = 128,
        pooling: str = "avg",
        bnneck: bool = True,
        embed_feature: str = "after_bn",
    ) -> None:
        """
        Args:
            num_classes: number of training identities.
            trunk: the trunk to build (backbone name, pretrained weights, last stride).
            local_dim: channels of each row's local feature (128 in the paper).
            pooling: global pooling of the global branch (``"avg"``, ``"max"``, ``"gem"``).
            bnneck: BatchNorm (bias frozen) between the global feature and the classifier.
            embed_feature: ``"after_bn"`` or ``"before_bn"``: which global feature ``embed`` returns.
        """
        if local_dim < 1:
            raise ConfigError(f"local_dim must be >= 1, got {local_dim!r}")
        super().__init__(
            num_classes=num_classes, trunk=trunk, pooling=pooling, bnneck=bnneck, embed_feature=embed_feature
        )
        self.local_reduction = make_reduction(self.embedding_dim, local_dim)
        self.local_dim = local_dim

    def _local(self, feature_map: Tensor) -> Tensor:
        rows = feature_map.amax(dim=3, keepdim=True)  # [B, C, h, 1]: horizontal max pooling
        return self.local_reduction(rows).squeeze(3).transpose(1, 2)  # [B, h, local_dim]

    def forward(self, images: Tensor) -> ReidOutput:
        """``images [B, 3, H, W]`` -> ReidOutput(embedding ``[B, C]``, global ``[[B, C]]``,
        logits ``[[B, num_classes]]``, local_features ``[B, h, local_dim]``)."""
        feature_map = self.trunk(images)
        output = self._global_output(feature_map)
        output.local_features = self._local(feature_map)
        return output

    def embed_local(self, images: Tensor) -> Tensor:
        """``images [B, 3, H, W]`` -> per-row local features ``[B, h, local_dim]`` for the aligned distance."""
        return self._local(self.trunk(images))
