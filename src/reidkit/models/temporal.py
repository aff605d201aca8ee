"""Video ReID: an image model as the frame encoder plus a temporal head that pools a tracklet's frames into one.

``clips [B, T, 3, H, W]`` -> frames ``[B*T, 3, H, W]`` through the frame model -> per-frame features
``[B, T, C]`` -> temporal head -> one feature per tracklet ``[B, C]`` -> the frame model's own neck and
classifier, so the output is a :class:`ReidOutput` per tracklet and every loss works unchanged.

Heads (:data:`TEMPORAL_HEADS`):

- ``avg``: the mean over frames (temporal average pooling);
- ``max``: the element-wise max over frames;
- ``attention``: temporal attention, a two-layer MLP scores each frame's feature, ``softmax`` over T gives the
  weights of a weighted sum;
- ``rnn``: an LSTM (or GRU) over the frames in order; the tracklet feature is the mean of its hidden states
  (temporal pooling of the recurrent outputs, McLaughlin et al.), projected back to ``C`` by a linear layer;
  the only head that depends on the frame order;
- ``quality``: a quality branch (two-layer MLP + sigmoid) predicts each frame's quality ``s_t`` in (0, 1) from
  its feature; the weights ``w_t = s_t / sum_t s_t`` give the weighted sum ``sum_t w_t f_t``. This is the
  learned version of the weights of :func:`reidkit.embed.aggregate.quality_weighted_mean` (non-negative,
  normalised by their sum); the quality branch reads the frame encoder's feature, not the image (QAN's own
  branch sees the image), so it shares the trunk and works on any frame model.

The scorers' last layers start at zero, so attention and quality start as average pooling.

Logits. For a :class:`BaselineModel` frame model (trunk -> pooling -> ``f`` -> BNNeck -> classifier), the head
pools the pre-BNNeck features ``f``; the tracklet feature then goes through the frame model's BNNeck and
classifier (and attribute heads): ``global = [F]``, ``logits = [classifier(bnneck(F))]``, ``embedding =
bnneck(F)`` (or ``F`` with ``embed_feature="before_bn"``). The BNNeck thus normalises tracklet features, in
training and in its running statistics, never single frames. In eval mode the BNNeck is affine, so for the
weighted heads the tracklet embedding is exactly ``sum_t w_t embed(frame_t)``. Any other frame model is used
through its ``forward``: the head pools the frame embeddings, and every global / part / local feature and
logits tensor is the weighted mean over frames with the head's weights (a plain mean for ``max`` and ``rnn``);
for the weighted heads and a bias-free linear classifier on the embedding, these logits are exactly the
classifier applied to the pooled embedding. That path keeps each model's own frame-level normalisation.

Reference: McLaughlin et al., "Recurrent Convolutional Network for Video-based Person Re-identification",
CVPR 2016 (RNN over frames, temporal pooling); Liu et al., "Quality Aware Network for Set to Set Recognition",
CVPR 2017; Gao and Nevatia, "Revisiting Temporal Modeling for Video-based Person ReID", BMVC 2018 (temporal
pooling, temporal attention and RNN heads compared on one frame encoder).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reidkit.data.frames import check_clip_indices
from reidkit.errors import ConfigError
from reidkit.models.backbones import TrunkSpec
from reidkit.models.baseline import BaselineModel
from reidkit.models.output import ReidOutput

TEMPORAL_HEADS = ("avg", "max", "attention", "rnn", "quality")
RNN_CELLS = ("lstm", "gru")

__all__ = [
    "RNN_CELLS",
    "TEMPORAL_HEADS",
    "Pooled",
    "TemporalModel",
    "build_temporal_head",
    "build_temporal_model",
    "frames_as_clip",
]


class Pooled(NamedTuple):
    """What a temporal head returns.

    Attributes:
        feature: ``[B, C]`` the tracklet feature.
        weights: ``[B, T]`` the frame weights (positive, summing to one over T) with ``feature = sum_t w_t f_t``,
            or None for the heads that are not a weighted sum (``max``, ``rnn``).
        quality: ``[B, T]`` the quality scores in (0, 1) before normalisation (``quality`` head only), else None.
    """

    feature: Tensor
    weights: Tensor | None = None
    quality: Tensor | None = None


def _weighted_sum(features: Tensor, weights: Tensor) -> Tensor:
    """``features [B, T, C]``, ``weights [B, T]`` -> ``[B, C]``."""
    return (weights.unsqueeze(-1) * features).sum(dim=1)


def _log_sigmoid(logit: Tensor) -> Tensor:
    """``log(sigmoid(x)) = -softplus(-x)``, accurate for every x in PyTorch and in ONNX (its Softplus op).

    ``F.logsigmoid`` is as exact in PyTorch, but the ONNX exporter writes it as ``Log(Sigmoid(x))``, which loses
    precision below x = -10 and is ``-inf`` below about -88.
    """
    return -F.softplus(-logit)


def _scorer(dim: int, hidden: int) -> nn.Sequential:
    """Per-frame scalar score ``[..., dim] -> [..., 1]``; the last layer starts at zero (equal scores)."""
    last = nn.Linear(hidden, 1)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(inplace=True), last)


class AveragePooling(nn.Module):
    """``[B, T, C] -> [B, C]`` mean over frames; weights ``1/T``."""

    def forward(self, features: Tensor) -> Pooled:
        weights = features.new_ones(features.shape[:2]) / features.shape[1]
        return Pooled(features.mean(dim=1), weights)


class MaxPooling(nn.Module):
    """``[B, T, C] -> [B, C]`` element-wise max over frames (no frame weights)."""

    def forward(self, features: Tensor) -> Pooled:
        return Pooled(features.amax(dim=1))


class TemporalAttention(nn.Module):
    """``[B, T, C] -> [B, C]``: ``w = softmax_T(MLP(f_t))``, feature ``sum_t w_t f_t``.

    Reference: Gao and Nevatia, "Revisiting Temporal Modeling for Video-based Person ReID", BMVC 2018.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.scorer = _scorer(dim, hidden)

    def forward(self, features: Tensor) -> Pooled:
        weights = self.scorer(features).squeeze(-1).softmax(dim=1)
        return Pooled(_weighted_sum(features, weights), weights)


class QualityPooling(nn.Module):
    """``[B, T, C] -> [B, C]``: quality ``s_t = sigmoid(MLP(f_t))``, ``w_t = s_t / sum_t s_t``, ``sum_t w_t f_t``.

    The weights are computed as ``softmax_T(log sigmoid(.))``, the same value without underflow when every
    quality is tiny (see :func:`_log_sigmoid`).

    Reference: Liu et al., "Quality Aware Network for Set to Set Recognition", CVPR 2017.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.scorer = _scorer(dim, hidden)

    def forward(self, features: Tensor) -> Pooled:
        logit = self.scorer(features).squeeze(-1)
        weights = _log_sigmoid(logit).softmax(dim=1)
        return Pooled(_weighted_sum(features, weights), weights, torch.sigmoid(logit))


class RecurrentPooling(nn.Module):
    """``[B, T, C] -> [B, C]``: an LSTM / GRU over the frames in order, mean of its hidden states, linear to ``C``.

    Reference: McLaughlin et al., "Recurrent Convolutional Network for Video-based Person Re-identification",
    CVPR 2016.
    """

    def __init__(self, dim: int, hidden: int, cell: str = "lstm") -> None:
        super().__init__()
        if cell not in RNN_CELLS:
            raise ConfigError(f"rnn cell must be one of {list(RNN_CELLS)}, got {cell!r}")
        recurrent = nn.LSTM if cell == "lstm" else nn.GRU
        self.recurrent = recurrent(dim, hidden, batch_first=True)
        self.projection = nn.Linear(hidden, dim)

    def forward(self, features: Tensor) -> Pooled:
        states, _ = self.recurrent(features)
        return Pooled(self.projection(states.mean(dim=1)))


def build_temporal_head(name: str, dim: int, *, hidden: int = 256, rnn: str = "lstm") -> nn.Module:
    """A temporal head ``[B, T, dim] -> Pooled`` by name (one of :data:`TEMPORAL_HEADS`).

    Args:
        name: ``"avg"``, ``"max"``, ``"attention"``, ``"rnn"`` or ``"quality"``.
        dim: per-frame feature size.
        hidden: hidden size of the attention / quality scorer and of the recurrent cell.
        rnn: the recurrent cell of the ``rnn`` head, ``"lstm"`` or ``"gru"``.
    """
    if name not in TEMPORAL_HEADS:
        raise ConfigError(
            f"unknown temporal head (model.temporal) {name!r}; choose from {list(TEMPORAL_HEADS)}"
        )
    if not isinstance(dim, int) or dim < 1:
        raise ConfigError(f"temporal head {name!r}: feature dim must be an integer >= 1, got {dim!r}")
    if not isinstance(hidden, int) or hidden < 1:
        raise ConfigError(f"temporal head {name!r}: hidden must be an integer >= 1, got {hidden!r}")
    if name == "avg":
        return AveragePooling()
    if name == "max":
        return MaxPooling()
    if name == "attention":
        return TemporalAttention(dim, hidden)
    if name == "quality":
        return QualityPooling(dim, hidden)
    return RecurrentPooling(dim, hidden, rnn)


def _uses_baseline_neck(frame_model: nn.Module) -> bool:
    """True for a BaselineModel whose forward and embed are the baseline's own (not AlignedReID's local branch)."""
    kind = type(frame_model)
    return (
        isinstance(frame_model, BaselineModel)
        and kind.forward is BaselineModel.forward
        and kind.embed is BaselineModel.embed
    )


class TemporalModel(nn.Module):
    """A frame model plus a temporal head: ``clips [B, T, 3, H, W]`` -> one :class:`ReidOutput` per tracklet.

    ``extra["frame_weights"]`` holds the ``[B, T]`` frame weights of the ``avg`` (``1/T``), ``attention`` and
    ``quality`` heads; ``extra["frame_quality"]`` the quality head's scores before normalisation. See the module
    docstring for how the logits are made.

    Reference: Liu et al., "Quality Aware Network for Set to Set Recognition", CVPR 2017; McLaughlin et al.,
    "Recurrent Convolutional Network for Video-based Person Re-identification", CVPR 2016.
    """

    def __init__(
        self,
        frame_model: nn.Module,
        head: str,
        *,
        dim: int | None = None,
        hidden: int = 256,
        rnn: str = "lstm",
    ) -> None:
        """
        Args:
            frame_model: any image model, ``forward(images [N, 3, H, W]) -> ReidOutput`` and ``embed(images)``.
            head: the temporal head, one of :data:`TEMPORAL_HEADS`.
            dim: size of the per-frame feature the head pools (the baseline's ``feature_dim``, else the
                frame model's ``embedding_dim``); default: read from the frame model.
            hidden: hidden size of the attention / quality scorer and of the recurrent cell.
            rnn: the recurrent cell of the ``rnn`` head, ``"lstm"`` or ``"gru"``.

        Raises:
            ConfigError: an unknown head or cell, a bad size, or a ``dim`` that the frame model contradicts.
        """
        super().__init__()
        self.frame_model = frame_model
        self.uses_neck = _uses_baseline_neck(frame_model)
        known = getattr(frame_model, "feature_dim" if self.uses_neck else "embedding_dim", None)
        if dim is None and known is None:
            raise ConfigError(
                f"temporal model on {type(frame_model).__name__}: the frame model has no embedding_dim; pass dim"
            )
        if dim is not None and known is not None and dim != known:
            raise ConfigError(
                f"temporal model: dim={dim} but the frame model's per-frame feature has size {known}"
            )
        self.head_name = head
        self.head = build_temporal_head(head, int(known if dim is None else dim), hidden=hidden, rnn=rnn)
        self.feature_dim = int(known if dim is None else dim)
        self.embedding_dim = self.feature_dim

    @staticmethod
    def _check(clips: Tensor) -> tuple[int, int]:
        if clips.dim() != 5 or clips.shape[2] != 3:
            raise ValueError(f"expected clips [B, T, 3, H, W], got shape {list(clips.shape)}")
        return clips.shape[0], clips.shape[1]

    # per-frame tensors are regrouped with reshape(batch, length, ...), not unflatten, which the ONNX exporter
    # would freeze to the example's sizes (the batch and T axes must stay dynamic)

    def _frame_features(self, frames: Tensor) -> Tensor:
        """The baseline's pre-BNNeck pooled feature ``f [N, C]`` of ``frames [N, 3, H, W]``."""
        return self.frame_model.pool(self.frame_model.trunk(frames)).flatten(1)

    def forward(self, clips: Tensor) -> ReidOutput:
        """``clips [B, T, 3, H, W]`` -> ReidOutput per tracklet: embedding ``[B, D]``, global / logits ``[B, .]``."""
        batch, length = self._check(clips)
        frames = clips.flatten(0, 1)
        if self.uses_neck:
            model = self.frame_model
            pooled = self.head(self._frame_features(frames).reshape(batch, length, -1))
            normalised = model.bnneck(pooled.feature)
            extra = {f"attributes.{name}": head(normalised) for name, head in model.attribute_heads.items()}
            output = ReidOutput(
                embedding=pooled.feature if model.embed_before_bn else normalised,
                global_features=[pooled.feature],
                logits=[model.classifier(normalised)],
                extra=extra,
            )
        else:
            output, pooled = self._pool_frame_output(self.frame_model(frames), batch, length)
        if pooled.weights is not None:
            output.extra["frame_weights"] = pooled.weights
        if pooled.quality is not None:
            output.extra["frame_quality"] = pooled.quality
        return output

    def _pool_frame_output(self, frames: ReidOutput, batch: int, length: int) -> tuple[ReidOutput, Pooled]:
        """A generic frame model's per-frame output -> per-tracklet output (head on the embedding, means elsewhere)."""
        pooled = self.head(frames.embedding.reshape(batch, length, -1))
        weights = pooled.weights
        if weights is None:
            weights = frames.embedding.new_ones(batch, length) / length

        def mean(value: Tensor) -> Tensor:
            per_frame = value.reshape(batch, length, *value.shape[1:])
            return (weights.view(batch, length, *[1] * (per_frame.dim() - 2)) * per_frame).sum(dim=1)

        extra = {
            name: mean(value)
            for name, value in frames.extra.items()
            if isinstance(value, Tensor) and value.dim() >= 1 and value.shape[0] == batch * length
        }
        output = ReidOutput(
            embedding=pooled.feature,
            global_features=[mean(value) for value in frames.global_features],
            part_features=[mean(value) for value in frames.part_features],
            logits=[mean(value) for value in frames.logits],
            local_features=None if frames.local_features is None else mean(frames.local_features),
            extra=extra,
        )
        return output, pooled

    def frame_weights(self, clips: Tensor) -> Tensor | None:
        """``clips [B, T, 3, H, W]`` -> the head's frame weights ``[B, T]`` (None for ``max`` and ``rnn``)."""
        return self.forward(clips).extra.get("frame_weights")

    def embed(self, clips: Tensor) -> Tensor:
        """``clips [B, T, 3, H, W]`` -> tracklet retrieval feature ``[B, embedding_dim]`` (not L2-normalised).

        T may differ between calls; it is the ``embedding`` of :meth:`forward`.
        """
        batch, length = self._check(clips)
        frames = clips.flatten(0, 1)
        if self.uses_neck:
            pooled = self.head(self._frame_features(frames).reshape(batch, length, -1)).feature
            return pooled if self.frame_model.embed_before_bn else self.frame_model.bnneck(pooled)
        return self.head(self.frame_model.embed(frames).reshape(batch, length, -1)).feature


def frames_as_clip(frames: Tensor, clips: Sequence[Sequence[int]]) -> Tensor:
    """Stack a tracklet's frames into clips, e.g. with the indices of :func:`reidkit.data.frames.sample_frames`.

    Args:
        frames: ``[N, 3, H, W]`` (or ``[N, ...]``) the tracklet's frames in temporal order.
        clips: ``C`` lists of ``T`` frame indices each.

    Returns:
        ``[C, T, 3, H, W]``.

    Raises:
        ValueError: no clips, clips of different or zero lengths, or an index outside ``range(N)``.
    """
    check_clip_indices(clips, len(frames))
    index = torch.as_tensor([list(map(int, clip)) for clip in clips], dtype=torch.long, device=frames.device)
    return frames[index]


def build_temporal_model(
    name: str,
    *,
    temporal: str,
    num_classes: int,
    trunk: TrunkSpec,
    hidden: int = 256,
    rnn: str = "lstm",
    **params: Any,
) -> TemporalModel:
    """A registered image model (``build_model_on(name, ...)``) wrapped in a :class:`TemporalModel`.

    Args:
        name: the frame model, one of ``reidkit.models.MODELS``.
        temporal: the temporal head, one of :data:`TEMPORAL_HEADS`.
        num_classes: number of training identities.
        trunk: the frame model's trunk.
        hidden: hidden size of the attention / quality scorer and of the recurrent cell.
        rnn: the recurrent cell of the ``rnn`` head.
        **params: the frame model's own parameters.
    """
    from reidkit.models import build_model_on  # the registry imports the model modules

    if temporal not in TEMPORAL_HEADS:
        raise ConfigError(
            f"unknown temporal head (model.temporal) {temporal!r}; choose from {list(TEMPORAL_HEADS)}"
        )
    frame_model = build_model_on(name, num_classes=num_classes, trunk=trunk, **params)
    return TemporalModel(frame_model, temporal, hidden=hidden, rnn=rnn)
