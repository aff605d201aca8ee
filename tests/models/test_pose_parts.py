"""The pose-guided part model: shapes, gradients, embedding blocks, and the part loss on visible parts only."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reidkit.errors import ConfigError
from reidkit.losses.criterion import build_criterion
from reidkit.losses.parts import visible_part_cross_entropy
from reidkit.models import BACKBONES, build_model
from reidkit.models.output import ReidOutput
from reidkit.models.pose_parts import PART_LOGITS, PART_VISIBLE
from reidkit.models.pose_regions import region_boxes


def _keypoints(batch: int, height: int = 64, width: int = 32) -> torch.Tensor:
    points = torch.zeros(batch, 17, 3)
    points[..., 0] = width / 2
    points[..., 1] = torch.linspace(4, height - 4, 17)
    points[..., 2] = 1.0
    return points


def test_forward_backward_shapes_and_embedding():
    model = build_model("pose_parts", num_classes=7, backbone="resnet18", last_stride=2, part_dim=16)
    images = torch.randn(4, 3, 64, 32)
    keypoints = _keypoints(4)
    keypoints[1, 11:, 2] = 0.0  # legs (and the hips) not seen
    output = model(images, keypoints=keypoints)
    assert output.embedding.shape == (4, 512 + 3 * 16) == (4, model.embedding_dim)
    assert [tuple(t.shape) for t in output.part_features] == [(4, 16)] * 3
    assert output.extra[PART_LOGITS].shape == (4, 3, 7)
    assert output.extra[PART_VISIBLE].tolist()[1] == [1.0, 1.0, 0.0]
    criterion = build_criterion(
        [
            {"name": "cross_entropy", "on": "logits"},
            {"name": "visible_part_cross_entropy", "on": "output"},
            {"name": "trihard", "on": "global"},
        ],
        num_classes=7,
        feat_dim=model.feature_dim,
    )
    from reidkit.data.batch import Batch

    batch = Batch(images, torch.tensor([0, 0, 1, 1]), torch.zeros(4, dtype=torch.int64), keypoints=keypoints)
    loss, _ = criterion(output, batch)
    loss.backward()
    assert all(p.grad is not None for p in model.part_classifiers.parameters())
    model.eval()
    with torch.no_grad():
        embedding = model.embed(images, keypoints)
        global_feature, parts, visible = model.embed_parts(images, keypoints)
    blocks = torch.split(embedding, [512, 16, 16, 16], dim=1)
    torch.testing.assert_close(torch.stack([b.norm(dim=1) for b in blocks]), torch.ones(4, 4))
    torch.testing.assert_close(blocks[0], F.normalize(global_feature, dim=1))
    torch.testing.assert_close(blocks[2], F.normalize(parts[:, 1], dim=1))
    assert visible.tolist()[1] == [True, True, False]


def test_region_boxes_of_the_model_regions():
    model = build_model("pose_parts", num_classes=3, backbone="resnet18", last_stride=2, part_dim=8).eval()
    keypoints = _keypoints(1)
    boxes, _ = region_boxes(keypoints, (64, 32), model.regions, margin=model.margin)
    assert boxes[0, 0, 3] < boxes[0, 2, 1]  # head above legs


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_every_backbone_builds(backbone):
    model = build_model("pose_parts", num_classes=3, backbone=backbone, last_stride=2, part_dim=8).eval()
    with torch.no_grad():
        embedding = model.embed(torch.randn(2, 3, 64, 32), _keypoints(2))
    assert embedding.shape == (2, model.embedding_dim)


def test_custom_regions_and_bad_ones():
    model = build_model(
        "pose_parts",
        num_classes=3,
        backbone="resnet18",
        last_stride=2,
        part_dim=8,
        regions={"upper": [0, 5, 6]},
    )
    assert model.embedding_dim == 512 + 8
    with pytest.raises(ConfigError, match="regions.upper"):
        build_model("pose_parts", num_classes=3, backbone="resnet18", regions={"upper": [0, 17]})


def test_part_loss_counts_only_visible_parts():
    # hand case: 2 images x 2 parts; image 0 shows part 0 only, image 1 shows both
    logits = torch.tensor(
        [[[2.0, 0.0, -1.0], [9.0, -9.0, 0.0]], [[0.0, 1.0, 0.0], [0.5, 0.5, 3.0]]], requires_grad=True
    )
    visible = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    pids = torch.tensor([0, 2])
    output = ReidOutput(embedding=torch.zeros(2, 1), extra={PART_LOGITS: logits, PART_VISIBLE: visible})
    value = visible_part_cross_entropy(output, pids)
    expected = (
        F.cross_entropy(logits[0, 0:1], pids[:1])
        + F.cross_entropy(logits[1, 0:1], pids[1:])
        + F.cross_entropy(logits[1, 1:2], pids[1:])
    ) / 3
    torch.testing.assert_close(value, expected)
    value.backward()
    assert torch.equal(logits.grad[0, 1], torch.zeros(3))  # the hidden part gets no gradient
    # no visible part at all: 0, still connected to the graph
    none = ReidOutput(embedding=torch.zeros(2, 1), extra={PART_LOGITS: logits, PART_VISIBLE: visible * 0})
    assert float(visible_part_cross_entropy(none, pids).detach()) == 0.0
    with pytest.raises(ValueError, match="pose_parts"):
        visible_part_cross_entropy(ReidOutput(embedding=torch.zeros(2, 1)), pids)
