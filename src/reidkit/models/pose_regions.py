"""Body regions from keypoints: boxes where the body actually is, features pooled from them, and a distance that
compares only the regions both images show.

Keypoints are COCO-17 ``[B, 17, 3]`` rows ``(x, y, visibility)`` in input-image pixels (visibility > 0: seen).
A region (default: head, torso, legs; :data:`REGIONS`) is the box around its visible keypoints, widened by
``margin`` of the image size on each side; a region with fewer than ``min_visible`` visible keypoints is missing
(``visible`` False, box = the whole image, so pooling stays defined).

* :func:`region_boxes` -> ``(boxes [B, R, 4] x1 y1 x2 y2, visible [B, R])``;
* :func:`pool_regions` -> ``[B, R, C]``: ROI align of a backbone feature map over each box, averaged;
* :func:`visibility_distance` -> ``[Q, G]``: the global distance and the part distances of the regions visible in
  both images, averaged (an occluded part is ignored, not counted as far).

These are the pieces of the pose-guided part model (Spindle Net, CVPR 2017; GLAD, 2017).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

#: COCO-17 keypoint names, in their order.
COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle",
)  # fmt: skip
#: default regions: name -> COCO-17 keypoint indices.
REGIONS: dict[str, tuple[int, ...]] = {
    "head": (0, 1, 2, 3, 4),
    "torso": (5, 6, 11, 12),
    "legs": (11, 12, 13, 14, 15, 16),
}


def region_boxes(
    keypoints: Tensor,
    image_size: tuple[int, int],
    regions: Mapping[str, Sequence[int]] = REGIONS,
    *,
    margin: float = 0.05,
    min_visible: int = 1,
) -> tuple[Tensor, Tensor]:
    """Boxes of the ``regions`` around their visible keypoints.

    Args:
        keypoints: ``[B, K, 3]`` ``(x, y, visibility)`` in pixels of an image of ``image_size = (H, W)``.
        regions: name -> keypoint indices.
        margin: widening of each box on every side, as a fraction of the image width (x) and height (y).
        min_visible: visible keypoints a region needs; with fewer it is missing.

    Returns:
        ``boxes [B, R, 4]`` float ``(x1, y1, x2, y2)`` clipped to the image (the whole image for a missing
        region) and ``visible [B, R]`` bool, regions in the order of ``regions``.

    Raises:
        ValueError: ``keypoints`` is not ``[B, K, 3]``, or a region names a keypoint index outside ``[0, K)``.
    """
    if keypoints.dim() != 3 or keypoints.shape[2] != 3:
        raise ValueError(f"keypoints: expected [B, K, 3] (x, y, visibility), got {tuple(keypoints.shape)}")
    height, width = image_size
    count = keypoints.shape[1]
    boxes, visible = [], []
    for name, indices in regions.items():
        if not indices or min(indices) < 0 or max(indices) >= count:
            raise ValueError(f"region {name!r}: keypoint indices {list(indices)} must be in [0, {count})")
        points = keypoints[:, list(indices)]  # [B, n, 3]
        seen = points[..., 2] > 0
        big = torch.finfo(keypoints.dtype).max
        x1 = torch.where(seen, points[..., 0], big).amin(dim=1) - margin * width
        y1 = torch.where(seen, points[..., 1], big).amin(dim=1) - margin * height
        x2 = torch.where(seen, points[..., 0], -big).amax(dim=1) + margin * width
        y2 = torch.where(seen, points[..., 1], -big).amax(dim=1) + margin * height
        box = torch.stack(
            [x1.clamp(0, width), y1.clamp(0, height), x2.clamp(0, width), y2.clamp(0, height)], 1
        )
        present = seen.sum(dim=1) >= min_visible
        whole = box.new_tensor([0.0, 0.0, float(width), float(height)]).expand_as(box)
        boxes.append(torch.where(present[:, None], box, whole))
        visible.append(present)
    return torch.stack(boxes, dim=1), torch.stack(visible, dim=1)


def pool_regions(
    feature_map: Tensor, boxes: Tensor, image_size: tuple[int, int], *, bins: int = 2, sampling_ratio: int = 2
) -> Tensor:
    """``[B, C, h, w]`` feature map, ``[B, R, 4]`` image-pixel boxes -> ``[B, R, C]`` region features.

    ROI align (``torchvision.ops.roi_align``, ``aligned=True``) into ``bins x bins`` cells of ``sampling_ratio^2``
    bilinear samples each, averaged. The feature map is taken to cover the image uniformly (scale ``h / H``).
    """
    from torchvision.ops import roi_align

    if (
        feature_map.dim() != 4
        or boxes.dim() != 3
        or boxes.shape[0] != feature_map.shape[0]
        or boxes.shape[2] != 4
    ):
        raise ValueError(
            f"feature_map [B, C, h, w] and boxes [B, R, 4] expected, got {tuple(feature_map.shape)} and "
            f"{tuple(boxes.shape)}"
        )
    batch, regions = boxes.shape[:2]
    scale_y, scale_x = feature_map.shape[2] / image_size[0], feature_map.shape[3] / image_size[1]
    if abs(scale_x - scale_y) > 1e-6 * max(scale_x, scale_y):
        raise ValueError(
            f"feature map {tuple(feature_map.shape[2:])} does not cover image {image_size} uniformly"
        )
    index = torch.arange(batch, device=boxes.device, dtype=boxes.dtype).repeat_interleave(regions)
    rois = torch.cat([index[:, None], boxes.reshape(-1, 4).to(feature_map.dtype)], dim=1)
    pooled = roi_align(
        feature_map, rois, (bins, bins), spatial_scale=scale_y, sampling_ratio=sampling_ratio, aligned=True
    )
    return pooled.mean(dim=(2, 3)).reshape(batch, regions, -1)


def visibility_distance(
    global_distance: Tensor, q_parts: Tensor, q_visible: Tensor, g_parts: Tensor, g_visible: Tensor
) -> Tensor:
    """``[Q, G]``: mean of the global distance and the cosine distances of the parts visible in both images.

    Args:
        global_distance: ``[Q, G]`` distance of the global features.
        q_parts, g_parts: ``[Q, R, D]`` and ``[G, R, D]`` part features (normalised here).
        q_visible, g_visible: ``[Q, R]`` and ``[G, R]`` bool.

    Returns:
        ``(global + sum of shared part distances) / (1 + number of shared parts)``: a pair that shares no part is
        compared by its global distance alone.
    """
    if q_parts.dim() != 3 or g_parts.shape[1:] != q_parts.shape[1:]:
        raise ValueError(
            f"parts: expected [Q, R, D] and [G, R, D], got {tuple(q_parts.shape)}, {tuple(g_parts.shape)}"
        )
    q = torch.nn.functional.normalize(q_parts, dim=2)
    g = torch.nn.functional.normalize(g_parts, dim=2)
    part = 1.0 - torch.einsum("qrd,grd->qgr", q, g)  # [Q, G, R]
    shared = (q_visible[:, None, :] & g_visible[None, :, :]).to(part.dtype)
    return (global_distance + (part * shared).sum(dim=2)) / (1.0 + shared.sum(dim=2))
