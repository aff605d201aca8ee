"""Cut a track where the tracker swapped people: the appearance before and after a point differs too much.

Motion-only trackers (the ones of the ``trackers`` library) swap ids when people cross and occlude each other;
a swapped track holds two people and poisons every later link. A track's sampled crops are in time order with
their embeddings ``e_1..e_K``; for each split point ``s`` (at least ``min_crops`` on each side) the distance
``1 - cos(mean(e_1..e_s), mean(e_s+1..e_K))`` of the two quality-weighted means is computed, and the track is cut
at the best ``s`` when that distance exceeds ``threshold``; both parts are examined again. The cut falls between
the two crops' frames, on the frame where the box jumps most (``|dx| / h + |dh| / h`` of the box centre and
height from one frame to the next), which is where the tracker moved from one person to the other; when no frame
stands out (jumps within :data:`JUMP_TIE` of the largest), the one nearest the middle of the gap between the two
crops, since people who cross on straight paths swap where they cover each other, between the crops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reidkit.embed.aggregate import quality_weighted_mean

__all__ = ["SwitchSettings", "split_points"]

#: box jumps (in box heights) that differ by less than this from the largest count as equally large
JUMP_TIE = 0.05


@dataclass(frozen=True)
class SwitchSettings:
    """When a track is cut (module docstring)."""

    enabled: bool = True
    threshold: float = 0.45
    min_crops: int = 3

    def __post_init__(self) -> None:
        if not self.threshold >= 0 or self.min_crops < 1:
            raise ValueError(f"switch threshold must be >= 0 and min_crops >= 1, got {self.threshold}, {self.min_crops}")


def _best_split(features: np.ndarray, weights: np.ndarray, min_crops: int) -> tuple[int, float]:
    best, where = -1.0, -1
    for s in range(min_crops, len(features) - min_crops + 1):
        left = quality_weighted_mean(features[:s], weights[:s])
        right = quality_weighted_mean(features[s:], weights[s:])
        distance = 1.0 - float(np.dot(left, right))
        if distance > best:
            best, where = distance, s
    return where, best


def _cut_frame(frames: np.ndarray, boxes: np.ndarray, after: int, upto: int) -> int:
    """The first frame of the second part: the frame in ``(after, upto]`` where the box jumps most."""
    inside = np.flatnonzero((frames > after) & (frames <= upto))
    if len(inside) == 0:
        return upto
    centre = boxes[:, 0] + boxes[:, 2] / 2
    height = np.maximum(boxes[:, 3], 1e-9)
    jumps = []
    for i in inside:
        if i == 0:
            jumps.append(0.0)
            continue
        jumps.append(abs(centre[i] - centre[i - 1]) / height[i - 1] + abs(height[i] - height[i - 1]) / height[i - 1])
    # jumps within JUMP_TIE of the largest are no clear sign; of those, the one nearest the gap's middle (people
    # crossing on straight paths: no box jumps and the swap happens mid-gap, where they cover each other)
    jumps = np.asarray(jumps)
    candidates = inside[jumps >= jumps.max() - JUMP_TIE]
    middle = (after + upto) / 2
    return int(frames[candidates[int(np.argmin(np.abs(frames[candidates] - middle)))]])


def split_points(
    frames: np.ndarray,
    boxes: np.ndarray,
    crop_frames: np.ndarray,
    features: np.ndarray,
    weights: np.ndarray,
    settings: SwitchSettings,
) -> list[int]:
    """Frames at which a new part of the track starts (ascending; empty: keep the track whole).

    Args:
        frames: ``[N]`` the track's frame numbers, ascending.
        boxes: ``[N, 4]`` its boxes ``(x, y, w, h)``.
        crop_frames: ``[K]`` frames of the sampled crops, ascending.
        features: ``[K, D]`` their embeddings.
        weights: ``[K]`` their quality weights (> 0).
        settings: threshold and minimum crops per part.
    """
    if not settings.enabled or len(crop_frames) < 2 * settings.min_crops:
        return []
    where, distance = _best_split(features, weights, settings.min_crops)
    if where < 0 or distance <= settings.threshold:
        return []
    cut = _cut_frame(frames, boxes, int(crop_frames[where - 1]), int(crop_frames[where]))
    left = split_points(frames, boxes, crop_frames[:where], features[:where], weights[:where], settings)
    right = split_points(frames, boxes, crop_frames[where:], features[where:], weights[where:], settings)
    return sorted({*left, cut, *right})
