"""Mutual learning: two or more ReID models trained together, each also taught by the others.

Reference: Zhang et al., "Deep Mutual Learning", CVPR 2018 (arXiv 2017); Zhang et al., "AlignedReID:
Surpassing Human-Level Performance in Person Re-Identification", arXiv 2017 (metric mutual learning).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from reidkit.errors import ConfigError
from reidkit.models.backbones import DEFAULT_TRUNK, TrunkSpec
from reidkit.models.output import ReidOutput


class MutualModel(nn.Module):
    """A wrapper holding ``members`` models of the same kind, trained together.

    ``forward`` runs every member and returns one :class:`ReidOutput`:

    - ``logits``, ``global_features``, ``part_features``: every member's lists, concatenated (so an ordinary
      ``cross_entropy`` / ``trihard`` term trains every member; the criterion averages over the list);
    - ``extra["mutual.logits"]`` ``[M, B, num_classes]`` (each member's first logits) and
      ``extra["mutual.global"]`` ``[M, B, D]`` (each member's first global feature): the inputs of the
      mutual terms :func:`reidkit.losses.mutual.mutual_kl` and :func:`reidkit.losses.mutual.metric_mutual`;
    - ``extra["mutual.local"]`` ``[M, B, h, C]`` when the members have per-row local features (AlignedReID):
      :func:`reidkit.losses.aligned.aligned_triplet` then runs on every member;
    - ``embedding`` and ``embed``: member ``embed_member``'s (one model is kept for retrieval, as in the
      papers), or the mean over members with ``embed_member=-1``.

    Reference: Zhang et al., "Deep Mutual Learning", CVPR 2018; Zhang et al., "AlignedReID", arXiv 2017.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        trunk: TrunkSpec = DEFAULT_TRUNK,
        member: str = "aligned",
        members: int = 2,
        embed_member: int = 0,
        member_params: dict[str, Any] | None = None,
    ) -> None:
        """
        Args:
            num_classes: number of training identities.
            trunk: every member's trunk (each member builds its own copy).
            member: registered model name of the members (not ``"mutual"``).
            members: number of members (>= 2).
            embed_member: index of the member used for retrieval, or -1 for the mean of all members.
            member_params: extra keyword arguments of the member model.
        """
        super().__init__()
        from reidkit.models import MODELS, build_model_on  # the registry imports this module

        if member == "mutual" or member not in MODELS:
            raise ConfigError(
                f"member must be a model name from {sorted(set(MODELS) - {'mutual'})}, got {member!r}"
            )
        if members < 2:
            raise ConfigError(f"members must be >= 2 for mutual learning, got {members!r}")
        if not -1 <= embed_member < members:
            raise ConfigError(f"embed_member must be -1 or an index below {members}, got {embed_member!r}")
        self.members = nn.ModuleList(
            build_model_on(member, num_classes=num_classes, trunk=trunk, **(member_params or {}))
            for _ in range(members)
        )
        dims = {model.embedding_dim for model in self.members}
        self.embedding_dim = dims.pop()
        self.feature_dim = self.members[0].feature_dim
        self.embed_member = embed_member

    def forward(self, images: Tensor) -> ReidOutput:
        """``images [B, 3, H, W]`` -> the members' outputs merged as described in the class docstring."""
        outputs = [model(images) for model in self.members]
        extra: dict[str, Tensor] = {
            "mutual.logits": torch.stack([output.logits[0] for output in outputs]),
        }
        if all(output.global_features for output in outputs):
            extra["mutual.global"] = torch.stack([output.global_features[0] for output in outputs])
        if all(output.local_features is not None for output in outputs):
            extra["mutual.local"] = torch.stack([output.local_features for output in outputs])
        for index, output in enumerate(outputs):
            extra.update({f"member{index}.{key}": value for key, value in output.extra.items()})
        if self.embed_member >= 0:
            embedding = outputs[self.embed_member].embedding
        else:
            embedding = torch.stack([output.embedding for output in outputs]).mean(dim=0)
        return ReidOutput(
            embedding=embedding,
            global_features=[feature for output in outputs for feature in output.global_features],
            part_features=[feature for output in outputs for feature in output.part_features],
            logits=[logits for output in outputs for logits in output.logits],
            extra=extra,
        )

    def embed(self, images: Tensor) -> Tensor:
        """``images [B, 3, H, W]`` -> ``[B, embedding_dim]`` from the chosen member (or the members' mean)."""
        if self.embed_member >= 0:
            return self.members[self.embed_member].embed(images)
        return torch.stack([model.embed(images) for model in self.members]).mean(dim=0)
