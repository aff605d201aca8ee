from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reidkit.embed.aggregate import quality_weighted_mean
from reidkit.errors import ConfigError
from reidkit.models import AlignedReID, TrunkSpec, build_model
from reidkit.models.output import ReidOutput
from reidkit.models.temporal import (
    TEMPORAL_HEADS,
    TemporalModel,
    _log_sigmoid,
    build_temporal_head,
    build_temporal_model,
    frames_as_clip,
)

HEIGHT, WIDTH = 64, 32
WEIGHTED_HEADS = ("attention", "quality")
ORDER_FREE_HEADS = ("avg", "max", "attention", "quality")


def _randomise(module: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial parameters (the scorers start at zero, which would make attention plain averaging)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator))
    return module


def _baseline(num_classes: int = 5, **params) -> nn.Module:
    torch.manual_seed(0)
    model = build_model("baseline", num_classes=num_classes, backbone="resnet18", last_stride=2, **params)
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():  # non-trivial running statistics, so eval-mode batch norm matters
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module.running_mean.copy_(0.1 * torch.randn(module.running_mean.shape, generator=generator))
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
    return model


def _temporal(head: str, **params) -> TemporalModel:
    model = TemporalModel(_baseline(**params), head, hidden=16)
    _randomise(model.head, seed=2)
    return model


def _clips(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, length, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(seed))


class HandSetFrames(nn.Module):
    """A frame model whose feature is written in the image: ``embedding = images[:, 0, 0, :dim]``."""

    def __init__(self, dim: int, num_classes: int = 3) -> None:
        super().__init__()
        self.embedding_dim = dim
        self.classifier = nn.Linear(dim, num_classes, bias=False)

    def forward(self, images: torch.Tensor) -> ReidOutput:
        feature = self.embed(images)
        return ReidOutput(
            embedding=feature,
            global_features=[2 * feature],
            logits=[self.classifier(feature)],
            local_features=feature.reshape(len(feature), 2, -1),
        )

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return images[:, 0, 0, : self.embedding_dim]


# --- heads on features -------------------------------------------------------------------------------------


@pytest.mark.parametrize("head", TEMPORAL_HEADS)
def test_order_invariance_of_every_head_but_rnn(head):
    pooling = _randomise(build_temporal_head(head, 16, hidden=8)).eval()
    features = torch.randn(3, 6, 16, generator=torch.Generator().manual_seed(5))
    order = torch.tensor([4, 2, 0, 5, 1, 3])
    with torch.no_grad():
        original = pooling(features)
        permuted = pooling(features[:, order])
    assert original.feature.shape == (3, 16)
    if head in ORDER_FREE_HEADS:
        torch.testing.assert_close(permuted.feature, original.feature, atol=1e-5, rtol=0)
        if original.weights is not None:
            torch.testing.assert_close(permuted.weights, original.weights[:, order], atol=1e-6, rtol=0)
    else:
        assert (permuted.feature - original.feature).abs().max() > 1e-3


@pytest.mark.parametrize("head", WEIGHTED_HEADS)
def test_learned_weights_are_positive_sum_to_one_and_give_the_feature(head):
    pooling = _randomise(build_temporal_head(head, 16, hidden=8))
    features = torch.randn(4, 7, 16, generator=torch.Generator().manual_seed(6))
    pooled = pooling(features)
    assert pooled.weights.shape == (4, 7)
    assert (pooled.weights > 0).all()
    torch.testing.assert_close(pooled.weights.sum(dim=1), torch.ones(4))
    assert pooled.weights.std(dim=1).min() > 1e-3  # not uniform once the scorer is trained
    torch.testing.assert_close(pooled.feature, (pooled.weights.unsqueeze(-1) * features).sum(dim=1))
    if head == "quality":
        logit = pooling.scorer(features).squeeze(-1)
        torch.testing.assert_close(pooled.quality, torch.sigmoid(logit))
        expected = torch.sigmoid(logit) / torch.sigmoid(logit).sum(dim=1, keepdim=True)
        torch.testing.assert_close(pooled.weights, expected)
    else:
        torch.testing.assert_close(pooled.weights, pooling.scorer(features).squeeze(-1).softmax(dim=1))


def test_quality_weights_stay_finite_when_every_quality_is_tiny():
    pooling = build_temporal_head("quality", 4, hidden=2)
    with torch.no_grad():
        pooling.scorer[2].bias.fill_(-200.0)  # sigmoid underflows to 0 in float32
    pooled = pooling(torch.randn(2, 3, 4))
    assert torch.isfinite(pooled.weights).all()
    torch.testing.assert_close(pooled.weights, torch.full((2, 3), 1 / 3))


def test_log_sigmoid_is_accurate_far_into_both_tails():
    x = torch.tensor([-300.0, -90.0, -50.0, -10.0, -1e-3, 0.0, 2.0, 40.0, 300.0])
    torch.testing.assert_close(_log_sigmoid(x), F.logsigmoid(x), atol=1e-6, rtol=1e-6)
    x = torch.linspace(-120, 120, 2001, dtype=torch.float64)
    torch.testing.assert_close(_log_sigmoid(x), F.logsigmoid(x), atol=1e-8, rtol=1e-8)
    x = torch.zeros(3, requires_grad=True)
    _log_sigmoid(x).sum().backward()  # the scorers start at 0: the gradient there must be sigmoid(-0) = 1/2
    torch.testing.assert_close(x.grad, torch.full((3,), 0.5))


@pytest.mark.parametrize("head", TEMPORAL_HEADS)
def test_heads_basic_values(head):
    features = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(7))
    pooled = build_temporal_head(head, 8, hidden=4)(features)  # default init
    if head in ("avg", "attention", "quality"):  # the scorers start at zero: average pooling
        torch.testing.assert_close(pooled.feature, features.mean(dim=1))
        torch.testing.assert_close(pooled.weights, torch.full((2, 5), 0.2))
    elif head == "max":
        torch.testing.assert_close(pooled.feature, features.amax(dim=1))
        assert pooled.weights is None
    else:
        assert pooled.weights is None and pooled.feature.shape == (2, 8)


def test_rnn_head_is_the_projected_mean_of_hidden_states_and_accepts_gru():
    pooling = build_temporal_head("rnn", 8, hidden=4, rnn="gru")
    features = torch.randn(2, 5, 8)
    states, _ = pooling.recurrent(features)
    torch.testing.assert_close(pooling(features).feature, pooling.projection(states.mean(dim=1)))
    assert isinstance(build_temporal_head("rnn", 8, hidden=4).recurrent, nn.LSTM)
    with pytest.raises(ConfigError, match="rnn cell must be one of"):
        build_temporal_head("rnn", 8, rnn="transformer")


def test_head_errors():
    with pytest.raises(ConfigError, match=r"unknown temporal head \(model.temporal\) 'mean'"):
        build_temporal_head("mean", 8)
    with pytest.raises(ConfigError, match="hidden must be an integer >= 1"):
        build_temporal_head("attention", 8, hidden=0)
    with pytest.raises(ConfigError, match="feature dim must be"):
        build_temporal_head("quality", 0)


@pytest.mark.parametrize("head", WEIGHTED_HEADS)
def test_quality_and_attention_learn_to_down_weight_occluded_frames(head):
    """Frames with a zero image (occluded) carry no identity; a few steps teach the head to ignore them."""
    torch.manual_seed(0)
    dim, length, count = 8, 6, 12
    generator = torch.Generator().manual_seed(0)
    prototypes = F.normalize(torch.randn(3, dim, generator=generator), dim=1) * 2
    pids = torch.arange(count) % 3
    images = torch.zeros(count, length, 3, 1, dim)
    bad = torch.zeros(count, length, dtype=torch.bool)
    for i in range(count):
        occluded = torch.randperm(length, generator=generator)[: 1 + i % 3]
        bad[i, occluded] = True
        clean = prototypes[pids[i]] + 0.1 * torch.randn(length, dim, generator=generator)
        images[i, :, 0, 0] = torch.where(bad[i].unsqueeze(-1), torch.zeros(dim), clean)
    model = TemporalModel(HandSetFrames(dim), head, hidden=8)
    optimiser = torch.optim.Adam(model.head.parameters(), lr=0.05)

    def loss_and_weights():
        output = model(images)
        return ((output.embedding - prototypes[pids]) ** 2).sum(dim=1).mean(), output.extra["frame_weights"]

    first, weights = loss_and_weights()
    torch.testing.assert_close(weights, torch.full((count, length), 1 / length))  # starts as average pooling
    for _ in range(60):
        loss, _ = loss_and_weights()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    last, weights = loss_and_weights()
    assert last < 0.2 * first
    assert weights[bad].mean() < 0.1 * weights[~bad].mean()
    assert (weights[bad] < 0.05).all()


# --- the temporal model on the baseline ---------------------------------------------------------------------


def test_baseline_frame_model_uses_its_bnneck_and_classifier_on_the_tracklet_feature():
    model = _temporal("quality").eval()
    assert model.uses_neck and model.embedding_dim == model.feature_dim == 512
    clips = _clips(2, 4)
    frame_model = model.frame_model
    with torch.no_grad():
        output = model(clips)
        features = frame_model.pool(frame_model.trunk(clips.flatten(0, 1))).flatten(1).reshape(2, 4, -1)
        weights = output.extra["frame_weights"]
        pooled = (weights.unsqueeze(-1) * features).sum(dim=1)
        frame_embeddings = frame_model.embed(clips.flatten(0, 1)).reshape(2, 4, -1)
    assert output.embedding.shape == (2, 512) and output.logits[0].shape == (2, 5)
    assert output.extra["frame_quality"].shape == (2, 4)
    torch.testing.assert_close(output.global_features[0], pooled, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(output.embedding, frame_model.bnneck(pooled), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(output.logits[0], frame_model.classifier(output.embedding))
    torch.testing.assert_close(model.embed(clips), output.embedding)
    # eval-mode BNNeck is affine: the tracklet embedding is the weighted mean of the frame embeddings ...
    weighted = (weights.unsqueeze(-1) * frame_embeddings).sum(dim=1)
    torch.testing.assert_close(output.embedding, weighted, atol=1e-4, rtol=1e-4)
    # ... i.e. the tracking pipeline's quality-weighted mean, given weights w_t * |f_t| for unit f_t
    for b in range(2):
        norms = frame_embeddings[b].norm(dim=1)
        unit = (frame_embeddings[b] / norms[:, None]).numpy()
        expected = quality_weighted_mean(unit, (weights[b] * norms).numpy())
        np.testing.assert_allclose(F.normalize(output.embedding[b], dim=0).numpy(), expected, atol=1e-5)


def test_bnneck_statistics_are_those_of_tracklet_features_not_frames():
    model = _temporal("avg").train()
    bnneck = model.frame_model.bnneck
    before = bnneck.running_mean.clone()
    clips = _clips(3, 4)
    output = model(clips)
    expected = (1 - bnneck.momentum) * before + bnneck.momentum * output.global_features[0].detach().mean(
        dim=0
    )
    torch.testing.assert_close(bnneck.running_mean, expected)
    assert int(bnneck.num_batches_tracked) == 1


def test_attribute_heads_and_before_bn_embedding_follow_the_frame_model():
    model = TemporalModel(_baseline(attributes={"gender": 2}, embed_feature="before_bn"), "avg").eval()
    with torch.no_grad():
        output = model(_clips(2, 3))
    torch.testing.assert_close(output.embedding, output.global_features[0])
    assert output.extra["attributes.gender"].shape == (2, 2)
    torch.testing.assert_close(output.extra["frame_weights"], torch.full((2, 3), 1 / 3))


@pytest.mark.parametrize("head", TEMPORAL_HEADS)
def test_embed_shapes_for_several_lengths_and_order(head):
    model = _temporal(head).eval()
    clips = _clips(2, 5, seed=3)
    order = torch.tensor([3, 0, 4, 1, 2])
    with torch.no_grad():
        for length in (1, 2, 5):
            assert model.embed(clips[:, :length]).shape == (2, 512)
        original, permuted = model.embed(clips), model.embed(clips[:, order])
    assert torch.isfinite(original).all()
    if head in ORDER_FREE_HEADS:
        torch.testing.assert_close(permuted, original, atol=1e-5, rtol=1e-5)
    else:
        assert (permuted - original).abs().max() > 1e-4


@pytest.mark.parametrize("head", TEMPORAL_HEADS)
def test_gradients_reach_the_frame_model_and_the_head(head):
    model = _temporal(head).train()
    output = model(_clips(4, 3))
    labels = torch.tensor([0, 1, 2, 3])
    loss = F.cross_entropy(output.logits[0], labels) + output.global_features[0].pow(2).mean()
    loss.backward()
    first_conv = next(p for name, p in model.frame_model.trunk.named_parameters() if p.dim() == 4)
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0
    assert model.frame_model.classifier.weight.grad.abs().sum() > 0
    for parameter in model.head.parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all()
        assert parameter.grad.abs().sum() > 0


def test_frame_weights_method():
    model = _temporal("attention").eval()
    weights = model.frame_weights(_clips(2, 3))
    assert weights.shape == (2, 3)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(2))
    assert _temporal("max").eval().frame_weights(_clips(1, 2)) is None


# --- other frame models, construction and errors -------------------------------------------------------------


def test_generic_frame_model_pools_every_output_with_the_head_weights():
    model = TemporalModel(HandSetFrames(4), "quality", hidden=3)
    _randomise(model.head, seed=4)
    images = torch.randn(2, 3, 3, 1, 4)
    output = model(images)
    frames = model.frame_model(images.flatten(0, 1))
    weights = output.extra["frame_weights"]

    def pooled(value):
        per_frame = value.reshape(2, 3, *value.shape[1:])
        return (weights.view(2, 3, *[1] * (per_frame.dim() - 2)) * per_frame).sum(dim=1)

    assert not model.uses_neck
    torch.testing.assert_close(output.embedding, pooled(frames.embedding))
    torch.testing.assert_close(output.global_features[0], pooled(frames.global_features[0]))
    torch.testing.assert_close(output.logits[0], model.frame_model.classifier(output.embedding))
    assert output.local_features.shape == (2, 2, 2)
    torch.testing.assert_close(output.local_features, pooled(frames.local_features))
    torch.testing.assert_close(model.embed(images), output.embedding)
    # max: the feature is the max, the other outputs the plain frame mean
    maximum = TemporalModel(model.frame_model, "max")(images)
    torch.testing.assert_close(maximum.embedding, images[:, :, 0, 0, :4].amax(dim=1))
    torch.testing.assert_close(maximum.logits[0], frames.logits[0].reshape(2, 3, -1).mean(dim=1))


def test_aligned_reid_keeps_its_own_forward():
    torch.manual_seed(0)
    aligned = AlignedReID(num_classes=3, trunk=TrunkSpec("resnet18", last_stride=2))
    model = TemporalModel(aligned, "avg").eval()
    assert not model.uses_neck
    with torch.no_grad():
        output = model(_clips(2, 2))
    assert output.local_features is not None and output.local_features.shape[0] == 2
    assert output.embedding.shape == (2, aligned.embedding_dim)


def test_construction_errors():
    with pytest.raises(ConfigError, match="dim=100 but the frame model's per-frame feature has size 4"):
        TemporalModel(HandSetFrames(4), "avg", dim=100)
    anonymous = HandSetFrames(4)
    del anonymous.embedding_dim
    with pytest.raises(ConfigError, match="has no embedding_dim; pass dim"):
        TemporalModel(anonymous, "avg")
    assert TemporalModel(anonymous, "attention", dim=4).embedding_dim == 4
    with pytest.raises(ConfigError, match="unknown temporal head"):
        TemporalModel(HandSetFrames(4), "pool")
    with pytest.raises(ValueError, match=r"expected clips \[B, T, 3, H, W\], got shape \[2, 3, 8, 8\]"):
        TemporalModel(HandSetFrames(4), "avg")(torch.zeros(2, 3, 8, 8))


def test_build_temporal_model():
    model = build_temporal_model(
        "baseline",
        temporal="rnn",
        num_classes=4,
        trunk=TrunkSpec("resnet18", last_stride=2),
        hidden=8,
        rnn="gru",
    )
    assert isinstance(model.head.recurrent, nn.GRU) and model.uses_neck
    assert model.frame_model.classifier.out_features == 4
    with pytest.raises(ConfigError, match="unknown temporal head"):
        build_temporal_model("baseline", temporal="lstm", num_classes=4, trunk=TrunkSpec("resnet18"))
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        build_temporal_model("nope", temporal="avg", num_classes=4, trunk=TrunkSpec("resnet18"))


def test_frames_as_clip():
    frames = torch.arange(5).float().view(5, 1, 1, 1).expand(5, 3, 2, 2)
    clips = frames_as_clip(frames, [[0, 1, 2], [3, 4, 4]])
    assert clips.shape == (2, 3, 3, 2, 2)
    assert clips[:, :, 0, 0, 0].tolist() == [[0, 1, 2], [3, 4, 4]]
    with pytest.raises(ValueError, match="out of range for 5 frames"):
        frames_as_clip(frames, [[0, 5]])


# --- ONNX export --------------------------------------------------------------------------------------------


class _Embed(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.model.embed(clips)


@pytest.mark.parametrize("head", TEMPORAL_HEADS)
@pytest.mark.parametrize("dynamic_length", [False, True])
def test_onnx_export_of_embed_with_fixed_or_dynamic_length(head, dynamic_length):
    pytest.importorskip("onnx", reason="ONNX export needs onnx: pip install 'reidkit[onnx]'")
    onnxruntime = pytest.importorskip("onnxruntime", reason="ONNX export needs onnxruntime")
    model = _temporal(head).eval()
    wrapper = _Embed(model).eval()  # export traces in the wrapper's mode
    axes = {0: "batch", 1: "frames"} if dynamic_length else {0: "batch"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (_clips(2, 4),),
            buffer,
            input_names=["clips"],
            output_names=["embedding"],
            dynamic_axes={"clips": axes, "embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    for batch, length in [(3, 4), (1, 4)] + ([(2, 1), (3, 7)] if dynamic_length else []):
        clips = _clips(batch, length, seed=batch * 10 + length)
        with torch.no_grad():
            expected = model.embed(clips).numpy()
        got = session.run(["embedding"], {"clips": clips.numpy()})[0]
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
