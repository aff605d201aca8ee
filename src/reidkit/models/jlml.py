"""JLML: joint learning of a global and a local (horizontal-stripe) branch on a shared low-level trunk.

Also holds the branch-embedding structured-sparsity regulariser (:func:`group_sparsity`), a plain loss
function of features.

Reference: Li, Zhu and Gong, "Person Re-Identification by Deep Joint Learning of Multi-Loss Classification",
IJCAI 2017.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from reidkit.errors import ConfigError
from reidkit.models.backbones import DEFAULT_TRUNK, TrunkSpec, trunk_stages
from reidkit.models.baseline import make_bnneck, make_classifier
from reidkit.models.output import ReidOutput


def _embedding_layer(in_features: int, out_features: int) -> nn.Sequential:
    """FC + BN + ReLU: a branch's feature-selection layer ``[B, in] -> [B, out]``."""
    linear = nn.Linear(in_features, out_features, bias=False)
    nn.init.kaiming_normal_(linear.weight, mode="fan_out", nonlinearity="relu")
    return nn.Sequential(linear, nn.BatchNorm1d(out_features), nn.ReLU(inplace=True))


class JLML(nn.Module):
    """Joint Learning of Multi-Loss classification.

    A shared low-level ResNet trunk (stem, ``layer1``, ``layer2``) feeds two branches with their own copies of
    ``layer3`` and ``layer4`` (a MobileNetV2 trunk is split at the same place, see
    :func:`reidkit.models.backbones.trunk_stages`):

    - global branch: the whole map -> average pooling -> FC + BN + ReLU -> ``global_dim`` (512) -> own classifier;
    - local branch: the shared map is cut into ``stripes`` (4) horizontal stripes; every stripe goes through the
      same (weight-shared) local ``layer3`` + ``layer4`` on its own, is average-pooled, and the stripe
      features are concatenated -> FC + BN + ReLU -> ``local_dim`` (512) -> own classifier.

    Each branch has its own ID loss (``logits = [global, local]``; a ``cross_entropy`` term averages them).
    Test feature: ``[global 512 | local 512]`` (1024-d). ``global_features = [global 512]`` and
    ``part_features = [local 512]`` are the branch embeddings, e.g. for :func:`group_sparsity`.

    Reference: Li, Zhu and Gong, "Person Re-Identification by Deep Joint Learning of Multi-Loss
    Classification", IJCAI 2017.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        trunk: TrunkSpec = DEFAULT_TRUNK,
        stripes: int = 4,
        global_dim: int = 512,
        local_dim: int = 512,
    ) -> None:
        """
        Args:
            num_classes: number of training identities.
            trunk: a ResNet or ``mobilenet_v2`` trunk; its last stride is that of both branches' ``layer4``.
            stripes: horizontal stripes of the local branch (the input height / 8 must be divisible by it).
            global_dim, local_dim: branch embedding sizes (512 each).
        """
        super().__init__()
        if stripes < 1 or global_dim < 1 or local_dim < 1:
            raise ConfigError(
                f"stripes, global_dim and local_dim must be >= 1, got {stripes}, {global_dim}, {local_dim}"
            )
        shared_trunk, channels = trunk.build()
        stem, (layer1, layer2, layer3, layer4) = trunk_stages(shared_trunk)
        self.shared = nn.Sequential(*stem, layer1, layer2)
        self.global_branch = nn.Sequential(layer3, layer4)
        self.local_branch = copy.deepcopy(self.global_branch)
        self.stripes = stripes
        self.global_embedding = _embedding_layer(channels, global_dim)
        self.local_embedding = _embedding_layer(stripes * channels, local_dim)
        self.global_classifier = nn.Sequential(
            make_bnneck(global_dim), make_classifier(global_dim, num_classes)
        )
        self.local_classifier = nn.Sequential(make_bnneck(local_dim), make_classifier(local_dim, num_classes))
        self.embedding_dim = global_dim + local_dim
        self.feature_dim = global_dim  # size of global_features[0]

    def _features(self, images: Tensor) -> tuple[Tensor, Tensor]:
        shared = self.shared(images)
        batch, channels, height, width = shared.shape
        if height % self.stripes:
            raise ValueError(
                f"JLML: the shared map has {height} rows (input height / 8), not divisible into "
                f"{self.stripes} stripes; use an input height that is a multiple of {8 * self.stripes}"
            )
        global_feature = self.global_embedding(self.global_branch(shared).mean(dim=(2, 3)))
        # [B, C, S*r, W] -> [B*S, C, r, W]: each stripe is processed on its own by the shared local layers
        stripes = shared.view(batch, channels, self.stripes, height // self.stripes, width)
        stripes = stripes.permute(0, 2, 1, 3, 4).reshape(batch * self.stripes, channels, -1, width)
        stripe_features = self.local_branch(stripes).mean(dim=(2, 3)).view(batch, -1)
        return global_feature, self.local_embedding(stripe_features)

    def forward(self, images: Tensor) -> ReidOutput:
        """``images [B, 3, H, W]`` -> ReidOutput(embedding ``[B, 1024]``, global ``[[B, 512]]``,
        parts ``[[B, 512]]``, logits ``[global, local]`` each ``[B, num_classes]``)."""
        global_feature, local_feature = self._features(images)
        return ReidOutput(
            embedding=torch.cat([global_feature, local_feature], dim=1),
            global_features=[global_feature],
            part_features=[local_feature],
            logits=[self.global_classifier(global_feature), self.local_classifier(local_feature)],
        )

    def embed(self, images: Tensor) -> Tensor:
        """``images [B, 3, H, W]`` -> ``[B, global_dim + local_dim]``."""
        return torch.cat(self._features(images), dim=1)


def group_sparsity(features: Tensor, pids: Tensor, *, groups: int = 0) -> Tensor:
    """Structured-sparsity (group L2,1) regulariser on a batch of branch embeddings.

    ``features [B, D]`` is split along ``D`` into groups (``groups = 0``: every dimension is its own group);
    the loss is ``sum_g ||F_g||_F / B`` where ``F_g`` is the ``[B, D/groups]`` block of group ``g``: an
    L1 norm over groups of their L2 norms, which drives whole groups of the embedding to zero over the batch
    (feature selection) rather than single entries. ``pids`` is unused (loss-function signature).

    Reference: Li, Zhu and Gong, "Person Re-Identification by Deep Joint Learning of Multi-Loss
    Classification", IJCAI 2017 (structured sparsity); Yuan and Lin, "Model selection and estimation in
    regression with grouped variables", JRSS-B 2006 (group lasso).
    """
    if features.dim() != 2:
        raise ValueError(f"features: expected [B, D], got shape {tuple(features.shape)}")
    batch, dim = features.shape
    count = dim if groups == 0 else groups
    if count < 1 or dim % count:
        raise ValueError(f"groups: {groups} does not divide the feature dimension {dim}")
    blocks = features.view(batch, count, dim // count)
    return blocks.pow(2).sum(dim=(0, 2)).clamp_min(1e-12).sqrt().sum() / batch
