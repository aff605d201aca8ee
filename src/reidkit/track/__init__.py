"""Video tracking: frame sources and person detectors (per-camera tracking and linking build on these)."""

from __future__ import annotations

from reidkit.track.detect import (
    Detection,
    Detector,
    HogDetector,
    ImageDetector,
    MotDetections,
    OpenVinoPedestrianDetector,
    apply_thresholds,
)
from reidkit.track.video import Frame, FrameSource, ImageFolderSource, VideoFileSource, open_source

__all__ = [
    "Detection",
    "Detector",
    "Frame",
    "FrameSource",
    "HogDetector",
    "ImageDetector",
    "ImageFolderSource",
    "MotDetections",
    "OpenVinoPedestrianDetector",
    "VideoFileSource",
    "apply_thresholds",
    "open_source",
]
