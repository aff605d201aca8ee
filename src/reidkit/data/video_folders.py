"""Video datasets stored as one folder per tracklet, tracking runs as galleries, and the shared video helpers.

Parsers here and in :mod:`reidkit.data.video_datasets` return a :class:`~reidkit.data.records.VideoSplit` built
by :func:`make_video_split` (train relabelled 0..N-1 by :func:`~reidkit.data.records.relabel_tracklets`; query
and gallery keep the original ids). Frames of a tracklet are sorted by :func:`frame_sort_key` (natural order:
``F9`` before ``F10``). A tracklet folder without frames is skipped and counted in
``extra["empty_tracklets_skipped"]``. Camera ids are 0-based. Parsers never open images.

Layouts:

* DukeMTMC-VideoReID (Wu et al., "Exploit the Unknown Gradually: One-Shot Video-Based Person
  Re-Identification by Stepwise Learning", CVPR 2018): ``train/``, ``query/``, ``gallery/``, each
  ``<pid>/<tracklet>/<frames>.jpg`` with frame names ``0001_C6_F0001_X54471.jpg``. The identity is the
  ``<pid>`` folder (an integer); the camera is the ``C<k>`` field of the frame names (1-based; every frame of a
  tracklet must name the same camera). ``train/`` is optional (absent: a test-only set).
* custom tracklets: ``<root>/{train,query,gallery}/<identity>/<tracklet>/<frames>`` (jpg, png, ...). The camera
  is searched in the tracklet folder name with ``camera_pattern`` (default ``c(\\d+)``: ``c2_walk`` is camera
  ``2``; the named group ``camid`` if there is one, else the first group); with ``camera_folders=True`` the
  layout is ``<identity>/<camera>/<tracklet>/<frames>`` and the camera folder name is the camera. Camera values
  are mapped to 0..C-1 in sorted order (numeric when all are integers) over all splits, names kept in
  ``extra["camera_names"]``; ``cameras=False`` reads the data without camera ids (camid -1, ``has_camids``
  False). Identity folder names are the ids when all are integers, else numbered in sorted order (names in
  ``extra["identity_names"]``); negative ids mark junk and are dropped. ``train/`` is optional.
* tracking run (a ``reidkit track`` output folder): a gallery source, not a benchmark. The run stores only
  the best crop of each tracklet, so every gallery :class:`~reidkit.data.records.Tracklet` has one frame (its
  thumbnail); pid is the run's ``global_id`` and camid the index of the camera in ``run.json``. Train and query
  are empty. Tracklets without a thumbnail or without a global id are skipped and counted in ``extra``;
  ``extra["tracklets"]`` holds ``{camera, local_id, start_time, end_time}`` of each gallery tracklet in order.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from reidkit.data.datasets import find_dataset_folder
from reidkit.data.folder import (
    describe_contents,
    existing_directory,
    format_examples,
    list_images,
    optional_folder,
)
from reidkit.data.records import NO_CAMERA, Tracklet, VideoSplit, relabel_tracklets
from reidkit.errors import DatasetError

SPLIT_NAMES = ("train", "query", "gallery")
_DUKE_CAMERA = re.compile(r"_C(\d+)(?=[_.])")
_INTEGER = re.compile(r"[+-]?\d+")


# ---------------------------------------------------------------------------------------------------------------
# Shared helpers


def frame_sort_key(path: str | Path) -> tuple:
    """Natural sort key of a frame file name: runs of digits compare as numbers (``F9`` < ``F10``)."""
    name = os.path.basename(path)
    chunks = re.split(r"(\d+)", name.lower())
    return (tuple(int(c) if i % 2 else c for i, c in enumerate(chunks)), name)


def list_frames(folder: str | Path) -> tuple[str, ...]:
    """The image files directly in ``folder``, in :func:`frame_sort_key` order."""
    return tuple(str(p) for p in sorted(list_images(folder), key=frame_sort_key))


def make_video_split(
    train: Sequence[Tracklet],
    query: Sequence[Tracklet],
    gallery: Sequence[Tracklet],
    *,
    name: str,
    has_camids: bool = True,
    extra: dict | None = None,
) -> VideoSplit:
    """Build a :class:`VideoSplit`, relabelling train ids; ``extra["train_pid_mapping"]`` keeps the mapping."""
    train_relabelled, mapping = relabel_tracklets(train)
    notes = {**(extra or {}), "train_pid_mapping": mapping}
    return VideoSplit(
        train_relabelled, tuple(query), tuple(gallery), name=name, has_camids=has_camids, extra=notes
    )


def require_tracklets(
    tracklets: Sequence[Tracklet], *, split_name: str, dataset: str, where: str | Path
) -> None:
    """Raise a :class:`DatasetError` if a split has no tracklets."""
    if not tracklets:
        raise DatasetError(
            f"the {split_name} split of the {dataset} dataset has no tracklets (read from {where})"
        )


def subfolders(folder: Path, *, expected: str) -> list[Path]:
    """The non-hidden sub-folders of ``folder``, in natural order of their names (:func:`frame_sort_key`).

    Raises:
        DatasetError: ``folder`` holds image files directly (``expected`` names the layout for the message).
    """
    loose = list_images(folder)
    if loose:
        raise DatasetError(
            f"{folder} holds {len(loose)} image(s) directly (e.g. {format_examples([p.name for p in loose])}); "
            f"expected {expected}"
        )
    return sorted(
        (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=frame_sort_key
    )


def sorted_values(values: Sequence[str]) -> list[str]:
    """Unique values in numeric order when all are integers, else in string order."""
    unique = set(values)
    if all(_INTEGER.fullmatch(value) for value in unique):
        return sorted(unique, key=int)
    return sorted(unique)


def _train_folder_present(folder: Path) -> bool:
    """Whether an optional ``train/`` folder is there and not empty."""
    return optional_folder(folder) and any(not e.name.startswith(".") for e in folder.iterdir())


# ---------------------------------------------------------------------------------------------------------------
# DukeMTMC-VideoReID


def _duke_camera(frames: Sequence[str], folder: Path) -> int:
    cameras = set()
    bad = []
    for frame in frames:
        match = _DUKE_CAMERA.search(os.path.basename(frame))
        if match is None or int(match.group(1)) < 1:
            bad.append(os.path.basename(frame))
        else:
            cameras.add(int(match.group(1)))
    if bad:
        raise DatasetError(
            f"{len(bad)} frame name(s) in {folder} carry no camera field '_C<camera from 1>_' like "
            f"'0001_C6_F0001_X54471.jpg': e.g. {format_examples(bad)}"
        )
    if len(cameras) > 1:
        raise DatasetError(
            f"the frames of tracklet {folder} name several cameras ({', '.join(f'C{c}' for c in sorted(cameras))}); "
            "a tracklet comes from one camera"
        )
    return cameras.pop() - 1


def _parse_duke_folder(directory: Path, skipped: list[str]) -> list[Tracklet]:
    tracklets = []
    layout = "one folder per identity (<pid>/<tracklet>/<frames>.jpg)"
    for pid_folder in subfolders(directory, expected=layout):
        if not _INTEGER.fullmatch(pid_folder.name):
            raise DatasetError(
                f"identity folder {pid_folder} is not an integer id like '0001' (DukeMTMC-VideoReID layout "
                "<split>/<pid>/<tracklet>/<frames>.jpg)"
            )
        for folder in subfolders(
            pid_folder, expected="one folder per tracklet (<pid>/<tracklet>/<frames>.jpg)"
        ):
            frames = list_frames(folder)
            if not frames:
                skipped.append(str(folder))
                continue
            tracklets.append(Tracklet(frames, int(pid_folder.name), _duke_camera(frames, folder)))
    return tracklets


def load_dukemtmc_videoreid(root: str | Path) -> VideoSplit:
    """DukeMTMC-VideoReID: ``{train,query,gallery}/<pid>/<tracklet>/*.jpg`` (see the module docstring)."""
    dataset = "DukeMTMC-VideoReID"
    base = find_dataset_folder(
        root,
        dataset=dataset,
        layouts=[["query/", "gallery/"]],
        known_names=("DukeMTMC-VideoReID", "dukemtmc-videoreid", "dukemtmcvidreid"),
        optional=["train/"],
    )
    skipped: list[str] = []
    parts = {
        split: _parse_duke_folder(base / split, skipped)
        if split != "train" or _train_folder_present(base / split)
        else []
        for split in SPLIT_NAMES
    }
    for split in ("query", "gallery"):
        require_tracklets(parts[split], split_name=split, dataset=dataset, where=base / split)
    extra = {"root": str(base), "empty_tracklets_skipped": len(skipped)}
    return make_video_split(
        parts["train"], parts["query"], parts["gallery"], name="dukemtmc_videoreid", extra=extra
    )


# ---------------------------------------------------------------------------------------------------------------
# custom tracklets


def _camera_regex(pattern: str) -> re.Pattern[str]:
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise DatasetError(
            f"camera_pattern={pattern!r} is not a valid regular expression: {error}"
        ) from error
    if regex.groups < 1:
        raise DatasetError(
            f"camera_pattern={pattern!r} has no group; expected one capturing the camera, e.g. r'c(\\d+)' or "
            "r'(?P<camid>\\d+)'"
        )
    return regex


def _camera_of_name(regex: re.Pattern[str], name: str) -> str | None:
    match = regex.search(name)
    if match is None:
        return None
    value = match.group("camid") if "camid" in regex.groupindex else match.group(1)
    return value


def _read_custom_split(
    directory: Path, camera_of: Callable[[Path], str | None], *, camera_folders: bool, skipped: list[str]
) -> list[tuple[str, str | None, tuple[str, ...]]]:
    """(identity, camera or None, frames) per tracklet folder of one split folder."""
    entries = []
    bad: list[str] = []
    level = "<identity>/<camera>/<tracklet>/<frames>" if camera_folders else "<identity>/<tracklet>/<frames>"
    for identity in subfolders(directory, expected=f"one folder per identity ({level})"):
        groups = (
            [(c, c.name) for c in subfolders(identity, expected=f"one folder per camera ({level})")]
            if camera_folders
            else [(identity, None)]
        )
        for parent, camera_name in groups:
            for folder in subfolders(parent, expected=f"one folder per tracklet ({level})"):
                camera = camera_name if camera_folders else camera_of(folder)
                if camera is None:
                    bad.append(str(folder.relative_to(directory)))
                    continue
                frames = list_frames(folder)
                if not frames:
                    skipped.append(str(folder))
                    continue
                entries.append((identity.name, camera, frames))
    if bad:
        raise DatasetError(
            f"{len(bad)} tracklet folder name(s) under {directory} carry no camera for camera_pattern "
            f"(searched in the tracklet folder name): e.g. {format_examples(bad)}; set camera_pattern, use "
            "camera_folders=True for <identity>/<camera>/<tracklet>/, or cameras=False"
        )
    return entries


def load_custom_tracklets(
    root: str | Path,
    *,
    camera_pattern: str = r"c(\d+)",
    camera_folders: bool = False,
    cameras: bool = True,
    name: str = "custom_tracklets",
) -> VideoSplit:
    """Custom tracklets: ``<root>/{train,query,gallery}/<identity>/<tracklet>/<frames>`` (module docstring).

    Args:
        root: the folder holding ``query/``, ``gallery/`` and optionally ``train/``.
        camera_pattern: regular expression searched in each tracklet folder name; the group ``camid`` (or the
            first group) is the camera.
        camera_folders: the layout has a camera level ``<identity>/<camera>/<tracklet>/``; its folder name is the
            camera (``camera_pattern`` is then not used).
        cameras: False reads the data without camera ids (camid -1, ``has_camids`` False).
        name: the dataset name stored in the split.
    """
    label = "custom tracklets" + (f" ({name})" if name != "custom_tracklets" else "")
    base = existing_directory(root, dataset=label)
    missing = [f"{s}/" for s in ("query", "gallery") if not (base / s).is_dir()]
    if missing:
        raise DatasetError(
            f"{base} is not a {label} folder: missing {', '.join(missing)} (expected query/, gallery/ and "
            f"optionally train/, each <identity>/<tracklet>/<frames>); found {describe_contents(base)}"
        )
    regex = _camera_regex(camera_pattern) if cameras and not camera_folders else None

    def camera_of(folder: Path) -> str | None:
        return "" if regex is None else _camera_of_name(regex, folder.name)

    skipped: list[str] = []
    parts = {
        split: _read_custom_split(base / split, camera_of, camera_folders=camera_folders, skipped=skipped)
        if split != "train" or _train_folder_present(base / split)
        else []
        for split in SPLIT_NAMES
    }
    everything = [entry for entries in parts.values() for entry in entries]
    identity_names = sorted_values([identity for identity, _, _ in everything])
    numeric = all(_INTEGER.fullmatch(n) for n in identity_names)
    identity_of = {n: int(n) if numeric else i for i, n in enumerate(identity_names)}
    camera_names = sorted_values([camera for _, camera, _ in everything]) if cameras else []
    camera_index = {c: i for i, c in enumerate(camera_names)}
    extra: dict[str, Any] = {"root": str(base), "empty_tracklets_skipped": len(skipped), "junk_dropped": 0}
    if cameras:
        extra["camera_names"] = camera_names
    if not numeric:
        extra["identity_names"] = identity_names
    tracklets: dict[str, list[Tracklet]] = {}
    for split, entries in parts.items():
        kept = []
        for identity, camera, frames in entries:
            pid = identity_of[identity]
            if pid < 0:  # negative ids mark junk, as in the image layouts
                extra["junk_dropped"] += 1
                continue
            kept.append(Tracklet(frames, pid, camera_index[camera] if cameras else NO_CAMERA))
        tracklets[split] = kept
    for split in ("query", "gallery"):
        require_tracklets(tracklets[split], split_name=split, dataset=label, where=base / split)
    return make_video_split(
        tracklets["train"],
        tracklets["query"],
        tracklets["gallery"],
        name=name,
        has_camids=cameras,
        extra=extra,
    )


# ---------------------------------------------------------------------------------------------------------------
# tracking run


def load_tracked_run(root: str | Path) -> VideoSplit:
    """A ``reidkit track`` run folder as a gallery: one single-frame tracklet (the thumbnail) per tracklet.

    See the module docstring. Raises :class:`DatasetError` for a run folder that does not read, a missing
    thumbnail file, or a run with no usable tracklet.
    """
    from reidkit.track.runfiles import read_run_files
    from reidkit.track.runinfo import RunFileError

    base = existing_directory(root, dataset="tracking run")
    try:
        files = read_run_files(base)
    except RunFileError as error:
        raise DatasetError(f"cannot read the tracking run {base}: {error}") from error
    camera_index = {camera.name: i for i, camera in enumerate(files.info.cameras)}
    gallery, notes, missing = [], [], []
    no_thumbnail = unlinked = 0
    for tracklet in files.tracklets:
        thumbnail = files.thumbnails.get(tracklet.key)
        if thumbnail is None:
            no_thumbnail += 1
            continue
        if tracklet.global_id is None:
            unlinked += 1
            continue
        path = files.directory / thumbnail
        if not path.is_file():
            missing.append(str(path))
            continue
        gallery.append(Tracklet((str(path),), int(tracklet.global_id), camera_index[tracklet.camera]))
        notes.append(
            {
                "camera": tracklet.camera,
                "local_id": tracklet.local_id,
                "start_time": tracklet.start_time,
                "end_time": tracklet.end_time,
            }
        )
    if missing:
        raise DatasetError(
            f"{files.directory / 'tracklets.sqlite'} refers to {len(missing)} thumbnail(s) that do not exist, "
            f"e.g. {format_examples(missing)}"
        )
    if not gallery:
        raise DatasetError(
            f"the tracking run {files.directory} has no tracklet with a thumbnail and a global id "
            f"({len(files.tracklets)} tracklet(s): {no_thumbnail} without thumbnail, {unlinked} without global id)"
        )
    extra = {
        "root": str(files.directory),
        "camera_names": [camera.name for camera in files.info.cameras],
        "tracklets": notes,
        "skipped_no_thumbnail": no_thumbnail,
        "skipped_unlinked": unlinked,
    }
    return make_video_split([], [], gallery, name="tracked_run", extra=extra)
