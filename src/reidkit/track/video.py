"""Frame sources: one camera each, streamed frame by frame (bounded memory).

Two layouts are read:

- a video file, decoded with OpenCV (``cv2.VideoCapture``); the camera name is the file stem unless given and the
  frame rate comes from the container unless given;
- a MOTChallenge sequence folder: ``seqinfo.ini`` plus an image folder (``img1/`` by default) holding
  ``000001.jpg`` .. ``{seqLength:06d}{imExt}``.

Frames are numbered from 1, as in MOTChallenge files (``det.txt``, ``gt.txt``, tracker output), and frame ``i``
is at ``(i - 1) / fps`` seconds.
"""

from __future__ import annotations

import configparser
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reidkit.errors import DatasetError

__all__ = ["Frame", "FrameSource", "ImageFolderSource", "VideoFileSource", "open_source"]

SEQINFO_FIELDS = ("name", "frameRate", "seqLength", "imWidth", "imHeight", "imExt")


def _cv2():
    """Import OpenCV, with an install hint when it is missing."""
    try:
        import cv2
    except ImportError as error:
        raise DatasetError(
            "reading video needs OpenCV: pip install 'reidkit[video]' (opencv-python-headless)"
        ) from error
    return cv2


@dataclass(frozen=True)
class Frame:
    """One decoded frame of one camera.

    Attributes:
        index: frame number, 1-based (MOTChallenge convention).
        time_s: time of the frame in seconds, ``(index - 1) / fps``.
        image: ``[H, W, 3]`` uint8 BGR image.
    """

    index: int
    time_s: float
    image: np.ndarray


class FrameSource:
    """Frames of one camera, read lazily; iterating again starts again from the first frame.

    Attributes:
        camera: camera name.
        fps: frames per second.
        size: ``(width, height)`` of every frame in pixels.
    """

    camera: str
    fps: float
    size: tuple[int, int]
    _length: int | None = None

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def __len__(self) -> int:
        if self._length is None:
            raise TypeError(f"the number of frames of camera {self.camera!r} is not known before reading it")
        return self._length

    @property
    def num_frames(self) -> int | None:
        """Number of frames when known before reading (``len(source)``), else None."""
        return self._length

    def _frame(self, index: int, image: np.ndarray) -> Frame:
        return Frame(index=index, time_s=(index - 1) / self.fps, image=image)


def _check_fps(fps: float, where: str) -> float:
    fps = float(fps)
    if not np.isfinite(fps) or fps <= 0:
        raise DatasetError(f"{where}: frame rate must be a positive number of frames per second, got {fps}")
    return fps


class VideoFileSource(FrameSource):
    """A video file decoded with OpenCV.

    Args:
        path: the video file.
        camera: camera name; default the file stem.
        fps: frames per second; default the container's frame rate (an error when it has none).

    Raises:
        DatasetError: the file is missing, cannot be opened or decoded, holds no frame, or has no frame rate.
    """

    def __init__(self, path: str | Path, camera: str | None = None, fps: float | None = None) -> None:
        cv2 = _cv2()
        self.path = Path(path)
        if not self.path.is_file():
            raise DatasetError(f"video file {str(self.path)!r} does not exist")
        self.camera = camera if camera is not None else self.path.stem
        capture = self._open()
        try:
            ok, first = capture.read()
            if not ok or first is None:
                raise DatasetError(
                    f"video file {str(self.path)!r} holds no decodable frame (empty or corrupt video)"
                )
            if fps is None:
                fps = capture.get(cv2.CAP_PROP_FPS)
                if not fps or not np.isfinite(fps) or fps <= 0:
                    raise DatasetError(
                        f"video file {str(self.path)!r} does not say its frame rate; pass fps explicitly"
                    )
            self.fps = _check_fps(fps, f"video file {str(self.path)!r}")
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        finally:
            capture.release()
        self._check_image(first, 1)
        height, width = first.shape[:2]
        self.size = (int(width), int(height))
        self._length = count if count > 0 else None

    def _open(self):
        cv2 = _cv2()
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            capture.release()
            raise DatasetError(
                f"video file {str(self.path)!r} cannot be opened by OpenCV (unreadable or corrupt video)"
            )
        return capture

    def _check_image(self, image: np.ndarray, index: int) -> None:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DatasetError(
                f"video file {str(self.path)!r} frame {index}: expected a [H, W, 3] uint8 BGR image, "
                f"got shape {image.shape} dtype {image.dtype}"
            )

    def __iter__(self) -> Iterator[Frame]:
        """Yield the frames in order, decoding one at a time.

        Raises:
            DatasetError: a frame's size differs from the first frame's.
        """
        capture = self._open()
        try:
            index = 0
            while True:
                ok, image = capture.read()
                if not ok or image is None:
                    return
                index += 1
                self._check_image(image, index)
                if (image.shape[1], image.shape[0]) != self.size:
                    raise DatasetError(
                        f"video file {str(self.path)!r} frame {index}: size {image.shape[1]}x{image.shape[0]} "
                        f"differs from the first frame's {self.size[0]}x{self.size[1]}"
                    )
                yield self._frame(index, image)
        finally:
            capture.release()


def _read_seqinfo(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise DatasetError(f"MOTChallenge sequence file {str(path)!r} does not exist (expected seqinfo.ini)")
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keep camelCase keys
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as error:
        raise DatasetError(f"{str(path)!r} is not a valid ini file: {error}") from error
    if not parser.has_section("Sequence"):
        raise DatasetError(f"{str(path)!r} has no [Sequence] section")
    section = dict(parser.items("Sequence"))
    missing = [field for field in SEQINFO_FIELDS if not section.get(field, "").strip()]
    if missing:
        raise DatasetError(f"{str(path)!r} [Sequence] lacks the field(s) {', '.join(missing)}")
    return section


def _positive_int(section: dict[str, str], field: str, path: Path) -> int:
    try:
        value = int(section[field])
    except ValueError:
        value = 0
    if value <= 0:
        raise DatasetError(
            f"{str(path)!r} field {field}: expected a positive integer, got {section[field]!r}"
        )
    return value


class ImageFolderSource(FrameSource):
    """A MOTChallenge sequence folder: ``seqinfo.ini`` + ``img1/000001.jpg`` ...

    The image files are checked against ``seqinfo.ini`` when the source is made (every frame file present, no
    extra one, the first image of size ``imWidth x imHeight``); every later image is checked as it is read.

    Args:
        folder: the sequence folder (holding ``seqinfo.ini``).
        camera: camera name; default ``name`` from seqinfo.ini.
        fps: frames per second; default ``frameRate`` from seqinfo.ini.

    Raises:
        DatasetError: seqinfo.ini is missing or has a missing/invalid field, or the image files do not match it.
    """

    def __init__(self, folder: str | Path, camera: str | None = None, fps: float | None = None) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DatasetError(f"MOTChallenge sequence folder {str(self.folder)!r} does not exist")
        self.seqinfo = self.folder / "seqinfo.ini"
        section = _read_seqinfo(self.seqinfo)
        self.camera = camera if camera is not None else section["name"].strip()
        where = "fps argument"
        if fps is None:
            where = f"{str(self.seqinfo)!r} field frameRate"
            try:
                fps = float(section["frameRate"])
            except ValueError:
                fps = float("nan")
        self.fps = _check_fps(fps, where)
        length = _positive_int(section, "seqLength", self.seqinfo)
        width = _positive_int(section, "imWidth", self.seqinfo)
        height = _positive_int(section, "imHeight", self.seqinfo)
        self.size = (width, height)
        self._length = length
        ext = section["imExt"].strip()
        self.extension = ext if ext.startswith(".") else f".{ext}"
        self.image_dir = self.folder / section.get("imDir", "img1").strip()
        self._check_files()
        self._read(1)

    def image_path(self, index: int) -> Path:
        """Path of frame ``index`` (1-based)."""
        return self.image_dir / f"{index:06d}{self.extension}"

    def _check_files(self) -> None:
        if not self.image_dir.is_dir():
            raise DatasetError(
                f"image folder {str(self.image_dir)!r} named by {str(self.seqinfo)!r} (imDir) does not exist"
            )
        present = {path.name for path in self.image_dir.iterdir() if path.suffix == self.extension}
        expected = {self.image_path(index).name for index in range(1, self._length + 1)}
        missing = sorted(expected - present)
        if missing:
            raise DatasetError(
                f"image folder {str(self.image_dir)!r} lacks {len(missing)} of the {self._length} frames that "
                f"{str(self.seqinfo)!r} (seqLength={self._length}, imExt={self.extension}) names, first "
                f"{missing[0]!r}"
            )
        extra = sorted(present - expected)
        if extra:
            raise DatasetError(
                f"image folder {str(self.image_dir)!r} holds {len(extra)} {self.extension} file(s) beyond "
                f"seqLength={self._length} in {str(self.seqinfo)!r}, first {extra[0]!r}"
            )

    def _read(self, index: int) -> np.ndarray:
        cv2 = _cv2()
        path = self.image_path(index)
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetError(f"image {str(path)!r} cannot be read (missing, unreadable or corrupt)")
        if (image.shape[1], image.shape[0]) != self.size:
            raise DatasetError(
                f"image {str(path)!r} is {image.shape[1]}x{image.shape[0]} but {str(self.seqinfo)!r} says "
                f"imWidth={self.size[0]}, imHeight={self.size[1]}"
            )
        return image

    def __iter__(self) -> Iterator[Frame]:
        """Yield frames 1..seqLength, reading one image at a time."""
        for index in range(1, self._length + 1):
            yield self._frame(index, self._read(index))


def open_source(path: str | Path, camera: str | None = None, fps: float | None = None) -> FrameSource:
    """The frame source for ``path``: a MOTChallenge sequence folder or a video file.

    Raises:
        DatasetError: ``path`` does not exist or is not a readable video / sequence folder.
    """
    path = Path(path)
    if path.is_dir():
        return ImageFolderSource(path, camera=camera, fps=fps)
    if not path.exists():
        raise DatasetError(
            f"camera input {str(path)!r} does not exist (expected a video file or a sequence folder)"
        )
    return VideoFileSource(path, camera=camera, fps=fps)
