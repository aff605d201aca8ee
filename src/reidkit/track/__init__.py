"""Video -> people: cameras, detection, per-camera tracking, appearance, linking, outputs and scoring.

The stages and their modules: :mod:`.cameras` and :mod:`.video` (inputs), :mod:`.detect` (detectors),
:mod:`.tracking` (the ``trackers`` library), :mod:`.appearance` and :mod:`.switches` (crops, features, cuts),
:mod:`.camera` (one camera streamed), :mod:`.linking` and :mod:`.agglomerative` (identities), :mod:`.pipeline`
(the whole job), :mod:`.runfiles` and :mod:`.render` (outputs), :mod:`.motfiles` and :mod:`.evaluate` (scoring).
"""

from __future__ import annotations

from reidkit.track.agglomerative import constrained_agglomerative
from reidkit.track.appearance import AppearanceSettings, CropSampler, box_quality
from reidkit.track.camera import CameraResult, track_camera
from reidkit.track.cameras import CameraInput, cameras_from_folder, cameras_from_paths, cameras_from_yaml
from reidkit.track.detect import (
    Detection,
    Detector,
    HogDetector,
    ImageDetector,
    MotDetections,
    OpenVinoPedestrianDetector,
    apply_thresholds,
)
from reidkit.track.linking import LinkSettings, RelinkSettings, distance_summary, link_tracklets
from reidkit.track.pipeline import DetectorSettings, TrackOptions, TrackSummary, track_cameras
from reidkit.track.records import Tracklet
from reidkit.track.switches import SwitchSettings
from reidkit.track.tracking import TRACKER_NAMES, CameraTracker, TrackerSettings
from reidkit.track.video import Frame, FrameSource, ImageFolderSource, VideoFileSource, open_source

__all__ = [
    "TRACKER_NAMES",
    "AppearanceSettings",
    "CameraInput",
    "CameraResult",
    "CameraTracker",
    "CropSampler",
    "Detection",
    "Detector",
    "DetectorSettings",
    "Frame",
    "FrameSource",
    "HogDetector",
    "ImageDetector",
    "ImageFolderSource",
    "LinkSettings",
    "MotDetections",
    "OpenVinoPedestrianDetector",
    "RelinkSettings",
    "SwitchSettings",
    "TrackOptions",
    "TrackSummary",
    "TrackerSettings",
    "Tracklet",
    "VideoFileSource",
    "apply_thresholds",
    "box_quality",
    "cameras_from_folder",
    "cameras_from_paths",
    "cameras_from_yaml",
    "constrained_agglomerative",
    "distance_summary",
    "link_tracklets",
    "open_source",
    "track_camera",
    "track_cameras",
]
