"""`ReidOutput`: what every model's ``forward`` returns.

A model never switches its output on a ``loss=`` string or on ``self.training``; it fills the fields
it has and loss terms pick the field they need by name (``on: logits`` / ``global`` / ``parts`` /
``local`` / ``embedding``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class ReidOutput:
    """Outputs of one forward pass.

    Attributes:
        embedding: ``[B, D]`` the retrieval feature (what ``embed`` returns, before L2 normalisation).
        global_features: features for metric losses, each ``[B, D_i]`` (e.g. the pre-BNNeck feature of
            the baseline, or MGN's three global features).
        part_features: per-part features, each ``[B, D_p]`` (PCB stripes, MGN part branches).
        logits: classifier outputs, each ``[B, num_classes]`` (one per classified feature).
        local_features: ``[B, H, C]`` per-row local features (AlignedReID), or None.
        extra: anything model-specific (attribute logits, pair heads); keyed by name.
    """

    embedding: Tensor
    global_features: list[Tensor] = field(default_factory=list)
    part_features: list[Tensor] = field(default_factory=list)
    logits: list[Tensor] = field(default_factory=list)
    local_features: Tensor | None = None
    extra: dict[str, Tensor] = field(default_factory=dict)

    #: names accepted by a loss term's ``on`` key, mapped to attribute names.
    FIELDS = {
        "embedding": "embedding",
        "global": "global_features",
        "parts": "part_features",
        "logits": "logits",
        "local": "local_features",
    }

    def select(self, on: str) -> Tensor | list[Tensor]:
        """Return the field a loss term names with ``on`` (see :attr:`FIELDS`), or ``extra[on]``."""
        if on in self.FIELDS:
            value = getattr(self, self.FIELDS[on])
        elif on in self.extra:
            value = self.extra[on]
        else:
            choices = sorted(set(self.FIELDS) | set(self.extra))
            raise KeyError(f"model output has no field {on!r}; choose from {choices}")
        if value is None or (isinstance(value, list) and not value):
            raise ValueError(f"model output field {on!r} is empty for this model")
        return value
