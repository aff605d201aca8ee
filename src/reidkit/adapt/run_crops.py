"""Training crops from a tracking run: a few crops per tracklet, and the constraints the video gives for free.

``reidkit adapt --tracks RUN`` learns from the people a ``reidkit track`` run found. :func:`extract_run_crops`
reads each camera's source again and cuts up to ``per_tracklet`` crops per tracklet at frames spread evenly over
its span (widened to the model's aspect ratio with frame pixels, as the tracker's appearance stage does), and
records what the video says about identity without any label:

- every crop of one tracklet is one person (``groups``: the tracklet of each crop);
- two tracklets with a box in the same frame of the same camera are two people (``cannot_link``).

The crops are JPEG files ``<out>/<camera>/<local id>_<frame>.jpg`` written into a temp folder beside ``out`` and
renamed into place when all are written, with ``manifest.json`` (the run's ``tracklets.sqlite`` SHA-256, the
settings and every crop); a second call with the same run and settings reads the manifest instead of decoding the
video again.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from reidkit._io import file_sha256
from reidkit.data.records import Sample
from reidkit.errors import DatasetError

__all__ = ["MANIFEST_NAME", "TrackCrops", "cannot_link_pairs", "extract_run_crops"]

MANIFEST_NAME = "manifest.json"
_FORMAT = 1


@dataclass(frozen=True, eq=False)  # holds an array
class TrackCrops:
    """The crops of a run and their constraints.

    Attributes:
        samples: one :class:`Sample` per crop (pid -1: unknown; camid: the camera's index in the run).
        groups: ``[N]`` int64, the tracklet (index into ``tracklets``) of each crop.
        tracklets: ``(camera, local id)`` of each tracklet that has crops.
        cannot_link: pairs ``(a, b)``, ``a < b``, of tracklets with a box in a common frame of one camera.
    """

    samples: tuple[Sample, ...]
    groups: np.ndarray
    tracklets: tuple[tuple[str, int], ...]
    cannot_link: tuple[tuple[int, int], ...]


def cannot_link_pairs(tracklets: Sequence) -> list[tuple[int, int]]:
    """Pairs ``(a, b)``, ``a < b``, of tracklets (``camera``, ``frames``) of one camera that share a frame."""
    pairs = []
    for a, first in enumerate(tracklets):
        for b in range(a + 1, len(tracklets)):
            second = tracklets[b]
            if (
                first.camera != second.camera
                or first.frames[0] > second.frames[-1]
                or second.frames[0] > first.frames[-1]
            ):
                continue
            if np.intersect1d(first.frames, second.frames, assume_unique=True).size:
                pairs.append((a, b))
    return pairs


def _spread(frames: np.ndarray, count: int) -> np.ndarray:
    """Up to ``count`` row indices spread evenly over a tracklet's boxes (first and last included)."""
    if len(frames) <= count:
        return np.arange(len(frames))
    return np.unique(np.round(np.linspace(0, len(frames) - 1, count)).astype(np.int64))



def _read_manifest(out: Path, expected: dict) -> TrackCrops | None:
    path = out / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if manifest.get("key") != expected:
        return None
    crops = manifest["crops"]
    samples = tuple(Sample(str(out / c["file"]), -1, int(c["camid"])) for c in crops)
    if not all(Path(s.path).is_file() for s in samples):
        return None
    return TrackCrops(
        samples,
        np.array([c["group"] for c in crops], dtype=np.int64),
        tuple((str(camera), int(local)) for camera, local in manifest["tracklets"]),
        tuple((int(a), int(b)) for a, b in manifest["cannot_link"]),
    )


def extract_run_crops(
    run_dir: str | Path,
    out: str | Path,
    *,
    per_tracklet: int = 8,
    aspect: float = 0.5,
    max_height: int = 256,
    min_height: float = 24.0,
) -> TrackCrops:
    """Cut training crops from the cameras of a tracking run (see the module docstring).

    Args:
        run_dir: a ``reidkit track`` run folder (its cameras' sources must still be readable).
        out: the crop folder (replaced when the run or the settings changed).
        per_tracklet: crops per tracklet, spread over its span.
        aspect: width / height the boxes are widened to (the model's input aspect).
        max_height: crops taller than this are scaled down.
        min_height: boxes lower than this (pixels) give no crop.

    Raises:
        DatasetError: the run cannot be read, a camera source is missing, or no tracklet gives a crop.
    """
    from reidkit.track.appearance import cut_box
    from reidkit.track.runfiles import TRACKLETS_NAME, read_run_files
    from reidkit.track.runinfo import RunFileError
    from reidkit.track.video import open_source

    if per_tracklet < 1:
        raise DatasetError(f"per_tracklet must be >= 1, got {per_tracklet}")
    try:
        files = read_run_files(run_dir)
    except RunFileError as error:
        raise DatasetError(f"--tracks {run_dir}: {error}") from error
    out = Path(out)
    key = {
        "format": _FORMAT,
        "tracklets_sha256": file_sha256(files.directory / TRACKLETS_NAME),
        "settings": [per_tracklet, aspect, max_height, min_height],
    }
    cached = _read_manifest(out, key)
    if cached is not None:
        return cached
    cameras = {camera.name: index for index, camera in enumerate(files.info.cameras)}
    wanted: dict[str, dict[int, list[tuple[int, np.ndarray]]]] = {name: {} for name in cameras}
    for position, tracklet in enumerate(files.tracklets):
        for row in _spread(tracklet.frames, per_tracklet):
            if tracklet.boxes[row, 3] >= min_height:
                frame = int(tracklet.frames[row])
                wanted[tracklet.camera].setdefault(frame, []).append((position, tracklet.boxes[row]))
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        crops = _cut_crops(files, wanted, staging, cut_box, open_source, aspect, max_height)
        if not crops:
            raise DatasetError(
                f"--tracks {run_dir}: no tracklet has a box of {min_height} pixels or more to crop"
            )
        used = sorted({position for position, _ in crops})
        group_of = {position: group for group, position in enumerate(used)}
        tracklets = [files.tracklets[p] for p in used]
        manifest = {
            "key": key,
            "tracklets": [list(t.key) for t in tracklets],
            "cannot_link": [list(pair) for pair in cannot_link_pairs(tracklets)],
            "crops": [
                {
                    "file": name,
                    "group": group_of[position],
                    "camid": cameras[files.tracklets[position].camera],
                }
                for position, name in crops
            ],
        }
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result = _read_manifest(out, key)
    assert result is not None  # just written
    return result


def _cut_crops(
    files, wanted, staging: Path, cut_box, open_source, aspect, max_height
) -> list[tuple[int, str]]:
    """Read each camera once and write the wanted crops; ``[(tracklet position, file name)]`` in write order."""
    crops = []
    for camera in files.info.cameras:
        frames = wanted[camera.name]
        if not frames:
            continue
        try:
            source = open_source(camera.source, camera.name, camera.fps)
        except (
            Exception
        ) as error:  # a moved video file, an unreadable folder: the run is fine, its source is not
            raise DatasetError(
                f"camera {camera.name!r}: cannot read its source {camera.source}: {error}"
            ) from error
        folder = staging / _safe(camera.name)
        folder.mkdir()
        last = max(frames)
        for frame in source:
            number = frame.index
            for position, box in frames.get(number, []):
                pixels = cut_box(frame.image, box, max_height, aspect)
                if pixels.size == 0:
                    continue
                local = files.tracklets[position].local_id
                name = f"{folder.name}/{local:05d}_{number:06d}.jpg"
                Image.fromarray(pixels).save(staging / name, quality=95)
                crops.append((position, name))
            if number >= last:
                break
    return crops


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "camera"
