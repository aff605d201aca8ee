"""Person detectors: one batched interface, one place that applies the score and height thresholds.

Every detector maps a batch of :class:`~reidkit.track.video.Frame` records to one list of :class:`Detection`
records per frame. Image detectors (:class:`HogDetector`, :class:`OpenVinoPedestrianDetector`) only implement
``detect_images`` (raw boxes of a batch of images); :class:`MotDetections` reads precomputed MOTChallenge
``det.txt`` files, so the output of any outside detector plugs into the same place.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from reidkit.errors import DatasetError, ReidkitError
from reidkit.track.video import Frame

__all__ = [
    "Detection",
    "Detector",
    "HogDetector",
    "ImageDetector",
    "MotDetections",
    "OpenVinoPedestrianDetector",
    "apply_thresholds",
]


@dataclass(frozen=True)
class Detection:
    """One person box in one frame.

    Attributes:
        frame: frame number, 1-based.
        box: ``(x, y, w, h)`` in pixels, top-left corner and size.
        score: detector confidence (scale depends on the detector).
    """

    frame: int
    box: tuple[float, float, float, float]
    score: float


@runtime_checkable
class Detector(Protocol):
    """Anything that finds people in a batch of frames."""

    def detect(self, frames: Sequence[Frame]) -> list[list[Detection]]:
        """One list of detections per frame, in the order of ``frames``."""
        ...


def _check_thresholds(min_score: float, min_height: float) -> tuple[float, float]:
    if not math.isfinite(min_score):
        raise ValueError(f"min_score must be a finite number, got {min_score}")
    if not math.isfinite(min_height) or min_height < 0:
        raise ValueError(f"min_height must be a number >= 0 (pixels), got {min_height}")
    return float(min_score), float(min_height)


def apply_thresholds(boxes: np.ndarray, min_score: float, min_height: float) -> np.ndarray:
    """Keep the boxes with ``score >= min_score`` and ``h >= min_height``.

    Args:
        boxes: ``[N, 5]`` rows ``(x, y, w, h, score)``.
        min_score: lowest score kept.
        min_height: lowest box height kept, in pixels.

    Returns:
        ``[M, 5]`` float64, the kept rows in their order.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
    keep = (boxes[:, 4] >= min_score) & (boxes[:, 3] >= min_height)
    return boxes[keep]


def _to_detections(frame: int, boxes: np.ndarray) -> list[Detection]:
    return [
        Detection(frame=frame, box=(float(x), float(y), float(w), float(h)), score=float(s))
        for x, y, w, h, s in boxes
    ]


class ImageDetector:
    """Base of the detectors that look at pixels: thresholds, clipping to the image and the batch loop.

    Args:
        min_score: lowest score kept.
        min_height: lowest box height kept, in pixels (after clipping to the image).
    """

    def __init__(self, min_score: float, min_height: float = 0.0) -> None:
        self.min_score, self.min_height = _check_thresholds(min_score, min_height)

    def detect_images(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Raw boxes of each image, before thresholds.

        Args:
            images: ``[H, W, 3]`` uint8 BGR images.

        Returns:
            one ``[N, 5]`` array ``(x, y, w, h, score)`` per image, in pixels of that image.
        """
        raise NotImplementedError

    def detect(self, frames: Sequence[Frame]) -> list[list[Detection]]:
        """Detections of each frame, clipped to the image, thresholds applied."""
        for frame in frames:
            image = frame.image
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(
                    f"frame {frame.index}: expected a [H, W, 3] uint8 BGR image, got shape {image.shape} "
                    f"dtype {image.dtype}"
                )
        raw = self.detect_images([frame.image for frame in frames]) if frames else []
        result = []
        for frame, boxes in zip(frames, raw, strict=True):
            clipped = _clip(np.asarray(boxes, dtype=np.float64).reshape(-1, 5), frame.image.shape)
            result.append(
                _to_detections(frame.index, apply_thresholds(clipped, self.min_score, self.min_height))
            )
        return result


def _clip(boxes: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Clip ``[N, 5]`` (x, y, w, h, score) boxes to an image of ``shape`` (H, W, ...); drop empty ones."""
    height, width = shape[:2]
    x0 = np.clip(boxes[:, 0], 0, width)
    y0 = np.clip(boxes[:, 1], 0, height)
    x1 = np.clip(boxes[:, 0] + boxes[:, 2], 0, width)
    y1 = np.clip(boxes[:, 1] + boxes[:, 3], 0, height)
    out = np.stack([x0, y0, x1 - x0, y1 - y0, boxes[:, 4]], axis=1)
    return out[(out[:, 2] > 0) & (out[:, 3] > 0)]


class HogDetector(ImageDetector):
    """OpenCV's HOG + linear SVM people detector (built in, no model file); scores are SVM margins.

    Its window is 64x128 pixels: people shorter than about 100 pixels are found only with ``upscale > 1``.

    Args:
        min_score: lowest SVM margin kept.
        min_height: lowest box height kept, in pixels.
        upscale: images are enlarged by this factor before detection (boxes are mapped back).
        win_stride: window step in pixels.
        scale: image pyramid factor.
    """

    def __init__(
        self,
        min_score: float = 0.0,
        min_height: float = 0.0,
        upscale: float = 1.0,
        win_stride: int = 8,
        scale: float = 1.05,
    ) -> None:
        super().__init__(min_score, min_height)
        import cv2

        if not hasattr(cv2, "HOGDescriptor"):
            raise ReidkitError(
                f"OpenCV {cv2.__version__} has no HOGDescriptor (OpenCV 5 dropped it): install "
                "opencv-python-headless==4.14.0.94 as the only OpenCV build"
            )
        if not upscale > 0 or not scale > 1 or win_stride < 1:
            raise ValueError(
                f"need upscale > 0, scale > 1, win_stride >= 1; got {upscale}, {scale}, {win_stride}"
            )
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.upscale, self.win_stride, self.scale = float(upscale), int(win_stride), float(scale)

    def detect_images(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        import cv2

        result = []
        for image in images:
            if self.upscale != 1.0:
                image = cv2.resize(
                    image, None, fx=self.upscale, fy=self.upscale, interpolation=cv2.INTER_LINEAR
                )
            rects, weights = self._hog.detectMultiScale(
                image, winStride=(self.win_stride, self.win_stride), padding=(8, 8), scale=self.scale
            )
            rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4) / self.upscale
            weights = np.asarray(weights, dtype=np.float64).reshape(-1, 1)
            result.append(np.concatenate([rects, weights], axis=1))
        return result


class OpenVinoPedestrianDetector(ImageDetector):
    """Open Model Zoo ``pedestrian-detection-adas-0002`` (SSD) run with OpenVINO.

    Input ``[N, 3, 384, 672]`` BGR 0-255 (the frame is resized to it); output ``[1, 1, N*200, 7]`` rows
    ``(image_id, label, conf, x0, y0, x1, y1)``, corners normalised to [0, 1]; the rows end at the first
    ``image_id == -1`` (rows of zeros follow it). Batches are run at ``batch_size`` images (the model is reshaped
    once per batch size seen) and compiled with f32 inference precision for stable numbers.

    Args:
        xml_path: the IR ``.xml`` file; its ``.bin`` must lie beside it.
        min_score: lowest confidence kept (0-1).
        min_height: lowest box height kept, in pixels.
        batch_size: images per inference call.
        device: OpenVINO device name.

    Raises:
        ReidkitError: openvino is not installed, the .xml or .bin file is missing, or the model is not this detector.
    """

    def __init__(
        self,
        xml_path: str | Path,
        min_score: float = 0.5,
        min_height: float = 0.0,
        batch_size: int = 1,
        device: str = "CPU",
    ) -> None:
        super().__init__(min_score, min_height)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        try:
            import openvino
        except ImportError as error:
            raise ReidkitError(
                "the OpenVINO detector needs openvino: pip install 'reidkit[openvino]'"
            ) from error
        self.xml_path = Path(xml_path)
        bin_path = self.xml_path.with_suffix(".bin")
        for path, what in ((self.xml_path, "model file"), (bin_path, "weights file (.bin beside the .xml)")):
            if not path.is_file():
                raise ReidkitError(f"OpenVINO pedestrian detector {what} {str(path)!r} does not exist")
        self._core = openvino.Core()
        try:
            model = self._core.read_model(str(self.xml_path), str(bin_path))
        except Exception as error:  # OpenVINO raises RuntimeError subclasses with long messages
            raise ReidkitError(
                f"{str(self.xml_path)!r} cannot be read as an OpenVINO model: {error}"
            ) from error
        shape = tuple(model.inputs[0].get_partial_shape().to_shape()) if len(model.inputs) == 1 else ()
        out_shape = tuple(model.outputs[0].get_partial_shape().to_shape()) if len(model.outputs) == 1 else ()
        if len(shape) != 4 or shape[1] != 3 or len(out_shape) != 4 or out_shape[-1] != 7:
            raise ReidkitError(
                f"{str(self.xml_path)!r} is not an SSD detector: expected one [1, 3, H, W] input and one "
                f"[1, 1, K, 7] output, got inputs {shape} and outputs {out_shape}"
            )
        self._model = model
        self.input_size = (int(shape[3]), int(shape[2]))  # (width, height)
        self.batch_size, self.device = int(batch_size), device
        self._compiled: dict[int, object] = {}

    def _compiled_for(self, batch: int):
        if batch not in self._compiled:
            model = self._model.clone()
            width, height = self.input_size
            model.reshape([batch, 3, height, width])
            self._compiled[batch] = self._core.compile_model(
                model, self.device, {"INFERENCE_PRECISION_HINT": "f32"}
            )
        return self._compiled[batch]

    def detect_images(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        result: list[np.ndarray] = []
        for start in range(0, len(images), self.batch_size):
            result.extend(self._run(images[start : start + self.batch_size]))
        return result

    def _run(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        import cv2

        width, height = self.input_size
        blob = np.stack(
            [cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR) for image in images]
        )
        blob = np.ascontiguousarray(blob.transpose(0, 3, 1, 2), dtype=np.float32)
        rows = np.asarray(self._compiled_for(len(images))(blob)[0]).reshape(-1, 7)
        return parse_ssd_rows(rows, [image.shape[:2] for image in images])


def parse_ssd_rows(rows: np.ndarray, shapes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """Turn SSD ``DetectionOutput`` rows into pixel boxes per image.

    Args:
        rows: ``[K, 7]`` rows ``(image_id, label, conf, x0, y0, x1, y1)``, corners normalised; the first row with
            ``image_id == -1`` ends the list.
        shapes: ``(H, W)`` of each image of the batch.

    Returns:
        one ``[N, 5]`` float64 array ``(x, y, w, h, conf)`` per image, in row order.
    """
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 7)
    ends = np.flatnonzero(rows[:, 0] == -1)
    if ends.size:
        rows = rows[: ends[0]]
    out = []
    for image_id, (height, width) in enumerate(shapes):
        mine = rows[rows[:, 0] == image_id]
        x0, y0 = mine[:, 3] * width, mine[:, 4] * height
        x1, y1 = mine[:, 5] * width, mine[:, 6] * height
        out.append(np.stack([x0, y0, x1 - x0, y1 - y0, mine[:, 2]], axis=1))
    return out


class MotDetections:
    """Precomputed detections from a MOTChallenge ``det.txt`` file, served frame by frame.

    Each line is ``frame,id,x,y,w,h,conf[,...]`` (frame 1-based, box in pixels); later columns are ignored.
    Blank lines are skipped. The same thresholds as the image detectors are applied.

    Args:
        path: the ``det.txt`` file.
        min_score: lowest confidence kept; default keep all.
        min_height: lowest box height kept, in pixels.

    Raises:
        DatasetError: the file is missing or a line is malformed (the message names file and line).
    """

    def __init__(self, path: str | Path, min_score: float = -math.inf, min_height: float = 0.0) -> None:
        if min_score != -math.inf:
            min_score, min_height = _check_thresholds(min_score, min_height)
        else:
            _, min_height = _check_thresholds(0.0, min_height)
        self.min_score, self.min_height = float(min_score), float(min_height)
        self.path = Path(path)
        if not self.path.is_file():
            raise DatasetError(f"MOTChallenge detection file {str(self.path)!r} does not exist")
        by_frame: dict[int, list[tuple[float, ...]]] = {}
        with self.path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    frame, row = self._parse(line, number)
                    by_frame.setdefault(frame, []).append(row)
        self._boxes = {
            frame: apply_thresholds(np.asarray(rows, dtype=np.float64), self.min_score, self.min_height)
            for frame, rows in by_frame.items()
        }

    def _parse(self, line: str, number: int) -> tuple[int, tuple[float, ...]]:
        where = f"{str(self.path)!r} line {number}"
        fields = [field.strip() for field in line.split(",")]
        if len(fields) < 7:
            raise DatasetError(
                f"{where}: expected at least 7 comma-separated fields frame,id,x,y,w,h,conf, got {len(fields)}"
            )
        try:
            frame_value = float(fields[0])
            x, y, w, h, conf = (float(field) for field in fields[2:7])
        except ValueError as error:
            raise DatasetError(f"{where}: fields frame,x,y,w,h,conf must be numbers ({error})") from error
        if not frame_value.is_integer() or frame_value < 1:
            raise DatasetError(f"{where}: frame must be an integer >= 1 (1-based), got {fields[0]!r}")
        if not all(math.isfinite(value) for value in (x, y, w, h, conf)):
            raise DatasetError(f"{where}: x,y,w,h,conf must be finite numbers")
        if w <= 0 or h <= 0:
            raise DatasetError(f"{where}: box width and height must be > 0, got w={w}, h={h}")
        return int(frame_value), (x, y, w, h, conf)

    @property
    def frames(self) -> list[int]:
        """Frame numbers with at least one detection kept, ascending."""
        return sorted(frame for frame, boxes in self._boxes.items() if len(boxes))

    def boxes(self, frame: int) -> list[Detection]:
        """Detections of frame number ``frame`` (1-based); empty when the file has none."""
        return _to_detections(frame, self._boxes.get(frame, np.zeros((0, 5))))

    def detect(self, frames: Sequence[Frame]) -> list[list[Detection]]:
        """Detections of each frame, looked up by its ``index`` (the images are not looked at)."""
        return [self.boxes(frame.index) for frame in frames]
