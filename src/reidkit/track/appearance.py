"""Appearance of a track: which of its boxes are worth embedding, and the tracklet feature.

**Quality of a box** (:func:`box_quality`), in [0, 1]: 0 when the box is shorter than ``min_height``, lies
within ``edge_margin`` pixels of the frame edge (the person is probably cut), or is covered by another box of
the same frame by more than ``max_overlap`` of its own area (``overlap = max_j |A ∩ B_j| / |A|``); otherwise
``min(1, h / (2 min_height)) * (1 - overlap)``: bigger and less covered is better. Detector scores are not
used: their scale differs between detectors.

**Sampling** (:class:`CropSampler`): per track at most ``samples_per_track`` crops, the best ones, kept at least
``min_spacing_frames`` apart (a better crop replaces a close one) and spread over the whole track (when the
slots are full, a distant new crop thins the tightest pair of kept ones), copied out of the frame and downscaled to
at most 1.5 times the embedder's input height, so memory is bounded by tracks x samples x crop size and frames
can be freed at once. A box narrower than the embedder's input aspect ratio is widened to it with the frame's
pixels (``widen``). A track none of whose boxes passes keeps its largest box as a fallback crop with a tiny
weight (:data:`FALLBACK_WEIGHT`), so every track gets a feature.

**Feature**: the crops' embeddings averaged with their quality as weights
(:func:`reidkit.embed.aggregate.quality_weighted_mean`); the thumbnail is the best crop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from reidkit.embed.aggregate import quality_weighted_mean

__all__ = ["FALLBACK_WEIGHT", "AppearanceSettings", "CropSampler", "Crop", "box_quality", "embed_tracks", "summarise"]

FALLBACK_WEIGHT = 1e-3


@dataclass(frozen=True)
class AppearanceSettings:
    """Which crops of a track are embedded (see the module docstring)."""

    samples_per_track: int = 16
    min_height: float = 48.0
    edge_margin: float = 4.0
    max_overlap: float = 0.3
    min_spacing_frames: int = 5
    embed_batch: int = 64
    widen: bool = True

    def __post_init__(self) -> None:
        if self.samples_per_track < 1 or self.embed_batch < 1 or self.min_spacing_frames < 0:
            raise ValueError("samples_per_track and embed_batch must be >= 1, min_spacing_frames >= 0")
        if self.min_height < 0 or self.edge_margin < 0 or not 0 <= self.max_overlap <= 1:
            raise ValueError("min_height and edge_margin must be >= 0 and max_overlap in [0, 1]")


def box_quality(boxes: np.ndarray, frame_size: tuple[int, int], settings: AppearanceSettings) -> np.ndarray:
    """Quality in [0, 1] of each box of one frame (formula in the module docstring).

    Args:
        boxes: ``[N, 4]`` ``(x, y, w, h)`` of every box of the frame (each is compared with all others).
        frame_size: ``(width, height)`` of the frame.
        settings: the thresholds.

    Returns:
        ``[N]`` float64.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return np.zeros(0)
    x0, y0, w, h = boxes.T
    x1, y1 = x0 + w, y0 + h
    width, height = frame_size
    m = settings.edge_margin
    inside = (x0 >= m) & (y0 >= m) & (x1 <= width - m) & (y1 <= height - m)
    ix = np.clip(np.minimum(x1[:, None], x1[None]) - np.maximum(x0[:, None], x0[None]), 0, None)
    iy = np.clip(np.minimum(y1[:, None], y1[None]) - np.maximum(y0[:, None], y0[None]), 0, None)
    inter = ix * iy
    np.fill_diagonal(inter, 0.0)
    area = np.maximum(w * h, 1e-9)
    overlap = (inter / area[:, None]).max(axis=1) if len(boxes) > 1 else np.zeros(1)
    size = np.minimum(1.0, h / max(2 * settings.min_height, 1e-9))
    quality = size * (1.0 - overlap)
    keep = inside & (h >= settings.min_height) & (overlap <= settings.max_overlap)
    return np.where(keep, quality, 0.0)


@dataclass
class Crop:
    """One sampled crop: frame number, quality weight and the RGB pixels."""

    frame: int
    quality: float
    pixels: np.ndarray = field(repr=False)


def cut_box(image: np.ndarray, box, max_height: int, aspect: float | None = None) -> np.ndarray:
    """The box's pixels as an RGB copy (BGR frame in), at most ``max_height`` rows high.

    With ``aspect`` (the embedder's input width / height), a box narrower than that is widened about its centre
    to it, with the frame's own pixels: the network then sees a person with the context it was trained on
    instead of a figure stretched sideways.
    """
    height, width = image.shape[:2]
    x, y, w, h = box
    if aspect is not None and w < aspect * h:
        x, w = x + w / 2 - aspect * h / 2, aspect * h
    left, top = max(0, int(np.floor(x))), max(0, int(np.floor(y)))
    right, bottom = min(width, int(np.ceil(x + w))), min(height, int(np.ceil(y + h)))
    if right <= left or bottom <= top:
        return np.zeros((0, 0, 3), np.uint8)
    crop = np.ascontiguousarray(image[top:bottom, left:right, ::-1])
    if crop.shape[0] > max_height:
        scale = max_height / crop.shape[0]
        size = (max(1, round(crop.shape[1] * scale)), max_height)
        crop = np.asarray(Image.fromarray(crop).resize(size, Image.BILINEAR))
    return crop


class CropSampler:
    """The best, time-spread crops of every live track (see the module docstring).

    Args:
        settings: how many crops, how far apart, which boxes pass.
        input_size: the embedder's input ``(height, width)``; crops are kept at most 1.5 times as high and, with
            ``settings.widen``, widened to its aspect ratio.
    """

    def __init__(self, settings: AppearanceSettings, input_size: tuple[int, int] = (256, 128)) -> None:
        self.settings = settings
        self.max_height = max(16, int(round(1.5 * input_size[0])))
        self.aspect = input_size[1] / input_size[0] if settings.widen else None
        self._crops: dict[int, list[Crop]] = {}
        self._fallback: dict[int, tuple[float, Crop]] = {}
        self._first: dict[int, int] = {}

    @property
    def held(self) -> int:
        """Crops held now (over all live tracks)."""
        return sum(len(c) for c in self._crops.values()) + len(self._fallback)

    def offer(self, track_id: int, frame: int, image: np.ndarray, box, quality: float) -> None:
        """Consider one box of a track; keeps a copy of its pixels only when it is among the best."""
        crops = self._crops.setdefault(track_id, [])
        self._first.setdefault(track_id, frame)
        if quality <= 0:
            area = float(box[2] * box[3])
            if not crops and (track_id not in self._fallback or area > self._fallback[track_id][0]):
                pixels = cut_box(image, box, self.max_height, self.aspect)
                if pixels.size:
                    self._fallback[track_id] = (area, Crop(frame, FALLBACK_WEIGHT, pixels))
            return
        length = frame - self._first[track_id]
        spacing = max(self.settings.min_spacing_frames, length / self.settings.samples_per_track)
        close = [i for i, c in enumerate(crops) if abs(c.frame - frame) < spacing]
        if close:
            # it must beat every close crop and replaces them all, so crops stay spaced in any order of offers
            if max(crops[i].quality for i in close) >= quality:
                return
            replaced = close
        elif len(crops) >= self.settings.samples_per_track:
            replaced = self._thin(crops, length, quality)
            if not replaced:
                return
        else:
            replaced = []
        pixels = cut_box(image, box, self.max_height, self.aspect)
        if not pixels.size:
            return
        crops[:] = [c for i, c in enumerate(crops) if i not in replaced]
        crops.append(Crop(frame, float(quality), pixels))
        self._fallback.pop(track_id, None)

    def _thin(self, crops: list[Crop], length: int, quality: float) -> list[int]:
        """Which kept crop a new, distant crop replaces when all slots are full (none: keep them all).

        While the two closest kept crops are nearer than ``length / samples_per_track`` frames (the crops bunch
        up at the start of a long track), the worse of them goes, so the sample spreads over the whole track;
        once they are spread, the worst crop goes if the new one is better.
        """
        order = sorted(range(len(crops)), key=lambda i: crops[i].frame)
        gaps = [(crops[order[n + 1]].frame - crops[order[n]].frame, n) for n in range(len(order) - 1)]
        if gaps:
            gap, n = min(gaps)
            if gap < length / self.settings.samples_per_track:
                a, b = order[n], order[n + 1]
                return [a if crops[a].quality < crops[b].quality else b]
        worst = min(range(len(crops)), key=lambda i: crops[i].quality)
        return [worst] if crops[worst].quality < quality else []

    def pop(self, track_id: int) -> list[Crop]:
        """The crops of a finished track (its fallback crop when none passed), forgotten here."""
        self._first.pop(track_id, None)
        crops = self._crops.pop(track_id, [])
        fallback = self._fallback.pop(track_id, None)
        if not crops and fallback is not None:
            crops = [fallback[1]]
        return sorted(crops, key=lambda c: c.frame)


def embed_tracks(
    crops_by_track: dict[int, list[Crop]], embedder, batch: int = 64
) -> dict[int, tuple[list[Crop], np.ndarray]]:
    """Embed the crops of several tracks in shared batches.

    Args:
        crops_by_track: track id -> its crops (tracks without crops are left out of the answer).
        embedder: any :class:`reidkit.embed.Embedder`.
        batch: images per embedder call.

    Returns:
        track id -> ``(crops, [K, D] float32 embeddings of the crops, in the same order)``.
    """
    order = [(track, crop) for track, crops in crops_by_track.items() for crop in crops]
    if not order:
        return {}
    features = []
    for start in range(0, len(order), batch):
        images = [Image.fromarray(crop.pixels) for _, crop in order[start : start + batch]]
        features.append(np.asarray(embedder.embed_images(images), dtype=np.float32))
    all_features = np.concatenate(features)
    out = {}
    offset = 0
    for track, crops in crops_by_track.items():
        if crops:
            out[track] = (list(crops), all_features[offset : offset + len(crops)])
            offset += len(crops)
    return out


def summarise(crops: list[Crop], features: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """``(feature [D] unit norm, total quality, thumbnail)`` of a track from its crops and their embeddings."""
    weights = np.array([c.quality for c in crops])
    best = max(crops, key=lambda c: c.quality)
    return quality_weighted_mean(features, weights), float(weights.sum()), best.pixels
