"""Pose-guided regions: boxes from hand-placed keypoints, ROI pooling against a naive crop + mean, and the
visibility-aware part distance on a hand-built case."""

from __future__ import annotations

import pytest
import torch

from reidkit.models.pose_regions import pool_regions, region_boxes, visibility_distance


def _keypoints(points: dict[int, tuple[float, float]]) -> torch.Tensor:
    rows = torch.zeros(1, 17, 3)
    for index, (x, y) in points.items():
        rows[0, index] = torch.tensor([x, y, 1.0])
    return rows


def test_region_boxes_from_hand_placed_keypoints():
    # a 128 x 64 person: head at the top, shoulders and hips, knees and ankles; the right ankle is unseen
    points = {0: (32, 10), 1: (30, 8), 2: (34, 8), 5: (20, 30), 6: (44, 30), 11: (24, 64), 12: (40, 64)}
    points.update({13: (24, 90), 14: (40, 92), 15: (22, 120)})
    boxes, visible = region_boxes(_keypoints(points), (128, 64), margin=0.0)
    assert visible.tolist() == [[True, True, True]]
    assert boxes[0, 0].tolist() == [30, 8, 34, 10]  # head: nose and eyes
    assert boxes[0, 1].tolist() == [20, 30, 44, 64]  # torso: shoulders to hips
    assert boxes[0, 2].tolist() == [22, 64, 40, 120]  # legs: hips to the seen ankle
    widened, _ = region_boxes(_keypoints(points), (128, 64), margin=0.25)
    assert widened[0, 0].tolist() == [14, 0, 50, 42]  # +-16 px in x, +-32 px in y, clipped at the top


def test_a_region_without_enough_visible_keypoints_is_missing_and_covers_the_image():
    points = {5: (20, 30), 6: (44, 30), 11: (24, 64), 12: (40, 64)}  # no head, no knees or ankles
    boxes, visible = region_boxes(_keypoints(points), (128, 64), margin=0.0, min_visible=3)
    assert visible.tolist() == [[False, True, False]]
    assert boxes[0, 0].tolist() == [0, 0, 64, 128] and boxes[0, 2].tolist() == [0, 0, 64, 128]
    with pytest.raises(ValueError, match="expected \\[B, K, 3\\]"):
        region_boxes(torch.zeros(1, 17, 2), (128, 64))
    with pytest.raises(ValueError, match="region 'x': keypoint indices \\[20\\]"):
        region_boxes(_keypoints(points), (128, 64), {"x": (20,)})


def test_roi_pooling_equals_a_naive_crop_and_mean_on_cell_aligned_boxes():
    torch.manual_seed(0)
    feature_map = torch.randn(2, 5, 16, 8)  # a stride-8 map of a 128 x 64 image
    cells = [[(0, 0, 4, 4), (2, 6, 6, 10), (4, 12, 8, 16)], [(0, 4, 4, 8), (4, 0, 8, 4), (2, 8, 6, 12)]]
    boxes = torch.tensor([[[8.0 * c for c in box] for box in row] for row in cells])  # x1 y1 x2 y2 in pixels
    pooled = pool_regions(feature_map, boxes, (128, 64), bins=2, sampling_ratio=2)
    for b, row in enumerate(cells):
        for r, (x1, y1, x2, y2) in enumerate(row):
            naive = feature_map[b, :, y1:y2, x1:x2].mean(dim=(1, 2))
            torch.testing.assert_close(pooled[b, r], naive, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="does not cover image"):
        pool_regions(feature_map, boxes, (128, 128))


def test_visibility_distance_ignores_a_part_missing_in_either_image():
    q_parts = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])  # [1 query, 3 parts, 2]
    g_parts = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 1.0], [5.0, 0.0]]])
    q_visible = torch.tensor([[True, True, False]])  # the query's legs are occluded
    g_visible = torch.tensor([[True, True, True], [False, True, True]])
    global_distance = torch.tensor([[0.2, 0.6]])
    got = visibility_distance(global_distance, q_parts, q_visible, g_parts, g_visible)
    # gallery 0 shares head (distance 0) and torso (1): (0.2 + 0 + 1) / 3; gallery 1 shares only the torso (1)
    torch.testing.assert_close(got, torch.tensor([[1.2 / 3, 1.6 / 2]]))
    none = visibility_distance(
        global_distance, q_parts, torch.zeros(1, 3, dtype=torch.bool), g_parts, g_visible
    )
    torch.testing.assert_close(none, global_distance)  # nothing shared: the global distance alone
