"""Identity loss of pose-guided parts: each part classifier is trained only on the images that show the part."""

from __future__ import annotations

from torch import Tensor

from reidkit.losses.identity import cross_entropy
from reidkit.models.output import ReidOutput


def visible_part_cross_entropy(output: ReidOutput, pids: Tensor, *, epsilon: float = 0.0) -> Tensor:
    """Mean cross-entropy over the (image, part) pairs whose part is visible (``on: output``).

    Reads ``output.extra["pose.part_logits"]`` ``[B, R, C]`` and ``output.extra["pose.visible"]`` ``[B, R]``
    (:class:`reidkit.models.pose_parts.PoseParts`). A part that an image does not show gives no loss for that
    image; a batch with no visible part gives 0 (connected to the graph).

    Args:
        output: the model output.
        pids: ``[B]`` identity labels.
        epsilon: label smoothing, as in :func:`reidkit.losses.identity.cross_entropy`.

    Raises:
        ValueError: the output has no part logits or visibility (a model other than ``pose_parts``), or
            their shapes disagree.
    """
    from reidkit.models.pose_parts import PART_LOGITS, PART_VISIBLE

    if PART_LOGITS not in output.extra or PART_VISIBLE not in output.extra:
        raise ValueError(
            f"visible_part_cross_entropy needs the model outputs {PART_LOGITS!r} and {PART_VISIBLE!r} "
            "(model pose_parts)"
        )
    logits, visible = output.extra[PART_LOGITS], output.extra[PART_VISIBLE] > 0
    if (
        logits.dim() != 3
        or tuple(visible.shape) != tuple(logits.shape[:2])
        or logits.shape[0] != pids.shape[0]
    ):
        raise ValueError(
            f"part logits [B, R, C] and visibility [B, R] for {pids.shape[0]} labels expected, got "
            f"{tuple(logits.shape)} and {tuple(visible.shape)}"
        )
    labels = pids[:, None].expand(visible.shape)
    return cross_entropy(logits[visible], labels[visible], epsilon=epsilon)
