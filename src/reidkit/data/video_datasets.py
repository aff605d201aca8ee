"""Parsers for the video ReID benchmarks (MARS, iLIDS-VID, PRID2011) and the video dataset registry.

Every parser returns a :class:`~reidkit.data.records.VideoSplit` of :class:`~reidkit.data.records.Tracklet`
records (train relabelled 0..N-1, query / gallery with the original ids, 0-based camera ids, frames in natural
order); the folder-per-tracklet layouts (DukeMTMC-VideoReID, custom tracklets, tracking runs) and the shared
helpers are in :mod:`reidkit.data.video_folders`. ``root`` may be the dataset folder or its parent.

Layouts:

* MARS (Zheng et al., "MARS: A Video Benchmark for Large-Scale Person Re-identification", ECCV 2016):
  ``bbox_train/<pid4>/<name>``, ``bbox_test/<pid4>/<name>`` and ``info/`` with ``train_name.txt`` /
  ``test_name.txt`` (one frame name per line, e.g. ``0001C1T0001F001.jpg``: pid, camera, tracklet, frame; its
  folder is the first four characters, ``00-1`` for junk), ``tracks_train_info.mat`` / ``tracks_test_info.mat``
  (variables ``track_train_info`` / ``track_test_info``: one row per tracklet ``start, end, pid, camid``,
  start..end a 1-based inclusive range of lines of the name list, camid 1-based) and ``query_IDX.mat``
  (variable ``query_IDX``: 1-based rows of the test tracks); MATLAB v5 or v7.3 files. Frames are sorted by
  tracklet and frame number. The frame names of a row must carry the row's pid
  and camera. Train keeps pid > 0. The gallery is every test track (the original MARS protocol, where the
  query's own track is excluded as a same-camera match; ``query_in_gallery=False`` leaves the query tracks
  out, as some toolkits do), with junk (pid -1) kept so that the protocol can exclude it and distractors
  (pid 0) kept as negatives. Query tracks with pid <= 0 are dropped (counted in ``extra``). Without
  ``bbox_train/`` the train split is empty.
* iLIDS-VID (Wang et al., "Person Re-Identification by Video Ranking", ECCV 2014):
  ``i-LIDS-VID/sequences/cam{1,2}/<person>/*.png`` and ``train-test people splits/
  train_test_splits_ilidsvid.mat`` (variable ``ls_set``: one row per split of 1-based indices into the
  ``cam1`` person folders in sorted order). By default the first half of a row is the test set and the second half the train
  set, the convention of torchreid and its descendants; ``train_first=True`` swaps them.
* PRID2011 (Hirzer et al., "Person Re-Identification by Descriptive and Discriminative Classification", SCIA
  2011): ``prid_2011/multi_shot/cam_{a,b}/person_XXXX/*.png`` and ``splits_prid2011.json``, a list of
  ``{"train": [person folder names], "test": [...]}`` (the 178-person protocol of Wang et al., 89 / 89). Without
  the JSON, reidkit makes its own splits (not the published ones; ``extra["generated_splits"]`` says so): the
  people present in both cameras with at least ``min_frames`` frames in each (default 22: Wang et al. keep
  sequences of more than 21 frames), shuffled with seed ``split`` and cut in half. ``extra["num_splits"]`` is the
  number of splits in the JSON, or :data:`GENERATED_PRID_SPLITS` (10, the trials of the published protocol)
  for generated splits (any seed works; evaluating "every split" means seeds 0..9).

iLIDS-VID and PRID2011: train holds both cameras of the train people; query is the first camera (cam1 /
cam_a, camid 0) and gallery the second (camid 1) of the test people; pid is the number at the end of the
person folder name.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reidkit.data.datasets import find_dataset_folder, is_hdf5, load_mat
from reidkit.data.folder import format_examples
from reidkit.data.records import Tracklet, VideoSplit
from reidkit.data.registry import load_from_registry, registry_key
from reidkit.data.video_folders import (
    list_frames,
    load_custom_tracklets,
    load_dukemtmc_videoreid,
    load_tracked_run,
    make_video_split,
    require_tracklets,
    subfolders,
)
from reidkit.errors import DatasetError

#: ``extra["num_splits"]`` of PRID2011 with generated splits: the 10 trials of the published protocol.
GENERATED_PRID_SPLITS = 10

_MARS_NAME = re.compile(r"^(\d{4}|00-1)C(\d+)T(\d+)F(\d+)")
_PERSON_NUMBER = re.compile(r"(\d+)$")


# ---------------------------------------------------------------------------------------------------------------
# MARS


def _read_name_list(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"MARS name list {path} does not exist (expected one frame name per line)")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    while names and not names[-1]:
        names.pop()
    blank = [str(number) for number, name in enumerate(names, 1) if not name]
    if blank:
        raise DatasetError(
            f"{path}: line(s) {', '.join(blank[:5])} are empty; expected one frame name per line"
        )
    return names


def _mat_variable(path: Path, variable: str, what: str) -> np.ndarray:
    """An integer matrix variable of a .mat file (v5 or v7.3), as MATLAB shows it (rows x columns)."""
    if not path.is_file():
        raise DatasetError(f"{path} does not exist (expected the .mat file with {what})")
    variables = load_mat(path)
    if variable not in variables:
        found = sorted(key for key in variables if not key.startswith("__"))
        raise DatasetError(
            f"{path} lacks the variable {variable} ({what}); found {', '.join(found) or 'no variable'}"
        )
    array = np.asarray(variables[variable])
    if array.dtype.kind not in "iuf" or (array.dtype.kind == "f" and not np.all(np.mod(array, 1) == 0)):
        raise DatasetError(f"{path}: {variable} must hold integers ({what}), found an array of {array.dtype}")
    if is_hdf5(path):  # v7.3 files hold MATLAB's column-major matrices transposed
        array = array.T
    return array.astype(np.int64)


def _mars_tracks(names: list[str], rows: np.ndarray, image_dir: Path, *, where: str) -> list[Tracklet]:
    """One :class:`Tracklet` per row ``start, end, pid, camid`` (checked against the frame names)."""
    if rows.ndim != 2 or rows.shape[1] != 4:
        raise DatasetError(
            f"{where}: expected one row per tracklet of 4 columns (start, end, pid, camid), "
            f"found shape {rows.shape}"
        )
    tracklets = []
    for number, (start, end, pid, camid) in enumerate(rows.tolist(), 1):
        row = f"{where} row {number} ({start}, {end}, {pid}, {camid})"
        if not 1 <= start <= end <= len(names):
            raise DatasetError(
                f"{row}: expected 1 <= start <= end <= {len(names)} (1-based lines of the name list)"
            )
        if camid < 1 or pid < -1:
            raise DatasetError(f"{row}: expected pid >= -1 (-1 junk, 0 distractor) and camid >= 1 (1-based)")
        keyed = []
        for frame in names[start - 1 : end]:
            match = _MARS_NAME.match(frame)
            if match is None:
                raise DatasetError(
                    f"{row}: frame name {frame!r} does not parse as a MARS name like '0001C1T0001F001.jpg'"
                )
            name_pid = -1 if match.group(1) == "00-1" else int(match.group(1))
            if (name_pid, int(match.group(2))) != (pid, camid):
                raise DatasetError(
                    f"{row}: frame {frame!r} is of pid {name_pid} camera {match.group(2)}, not of the row's "
                    f"pid {pid} camera {camid}"
                )
            keyed.append((int(match.group(3)), int(match.group(4)), frame))
        frames = [frame for *_, frame in sorted(keyed)]  # by tracklet, then frame number
        tracklets.append(Tracklet(tuple(str(image_dir / f[:4] / f) for f in frames), pid, camid - 1))
    return tracklets


def _check_mars_frames(tracklets: Sequence[Tracklet], *, source: Path) -> None:
    """Every frame file exists (one listing per identity folder instead of a stat per frame)."""
    by_folder: dict[str, list[str]] = defaultdict(list)
    for tracklet in tracklets:
        for path in tracklet.paths:
            by_folder[os.path.dirname(path)].append(path)
    missing = []
    for folder, paths in sorted(by_folder.items()):
        present = set(os.listdir(folder)) if os.path.isdir(folder) else set()
        missing += [p for p in paths if os.path.basename(p) not in present]
    if missing:
        total = sum(len(paths) for paths in by_folder.values())
        raise DatasetError(
            f"{source} refers to {len(missing)} of {total} frame(s) that do not exist, "
            f"e.g. {format_examples(missing)}"
        )


def _read_mars_part(base: Path, part: str) -> list[Tracklet]:
    info = base / "info"
    names = _read_name_list(info / f"{part}_name.txt")
    mat_path = info / f"tracks_{part}_info.mat"
    rows = _mat_variable(mat_path, f"track_{part}_info", "rows start, end, pid, camid")
    tracklets = _mars_tracks(names, rows, base / f"bbox_{part}", where=str(mat_path))
    _check_mars_frames(tracklets, source=info / f"{part}_name.txt")
    return tracklets


def load_mars(root: str | Path, *, query_in_gallery: bool = True) -> VideoSplit:
    """MARS (see the module docstring for the layout and the protocol).

    Args:
        root: the MARS folder (holding ``bbox_test/`` and ``info/``) or its parent.
        query_in_gallery: keep the query tracks in the gallery (the original protocol); False leaves them out.
    """
    base = find_dataset_folder(
        root,
        dataset="MARS",
        layouts=[["bbox_test/", "info/"]],
        known_names=("MARS", "mars"),
        optional=["bbox_train/"],
    )
    train_all = _read_mars_part(base, "train") if (base / "bbox_train").is_dir() else []
    test = _read_mars_part(base, "test")
    query_path = base / "info" / "query_IDX.mat"
    query_rows = _mat_variable(query_path, "query_IDX", "1-based rows of tracks_test_info.mat").ravel()
    outside = [str(i) for i in query_rows.tolist() if not 1 <= i <= len(test)]
    if outside:
        raise DatasetError(
            f"{query_path}: query_IDX holds {len(outside)} index(es) outside 1..{len(test)} (1-based rows of "
            f"tracks_test_info.mat), e.g. {format_examples(outside)}"
        )
    query_set = {int(i) - 1 for i in query_rows}
    query_all = [test[i - 1] for i in query_rows.tolist()]
    query = [t for t in query_all if t.pid > 0]
    gallery = test if query_in_gallery else [t for i, t in enumerate(test) if i not in query_set]
    train = [t for t in train_all if t.pid > 0]
    require_tracklets(query, split_name="query", dataset="MARS", where=query_path)
    require_tracklets(
        gallery, split_name="gallery", dataset="MARS", where=base / "info" / "tracks_test_info.mat"
    )
    extra = {
        "root": str(base),
        "query_in_gallery": query_in_gallery,
        "train_dropped": len(train_all) - len(train),
        "query_dropped": len(query_all) - len(query),
        "junk": sum(t.pid == -1 for t in gallery),
        "distractors": sum(t.pid == 0 for t in gallery),
    }
    return make_video_split(train, query, gallery, name="mars", extra=extra)


# ---------------------------------------------------------------------------------------------------------------
# iLIDS-VID and PRID2011: two cameras, one tracklet per person per camera


def _person_ids(names: Sequence[str], *, where: Path) -> dict[str, int]:
    """The number at the end of each person folder name (``person_0012`` -> 12), checked to be unique."""
    ids: dict[str, int] = {}
    for name in names:
        match = _PERSON_NUMBER.search(name)
        if match is None:
            raise DatasetError(f"person folder {where / name} does not end in a number like 'person001'")
        ids[name] = int(match.group(1))
    if len(set(ids.values())) != len(ids):
        raise DatasetError(f"person folders under {where} share a number: {sorted(ids)}")
    return ids


def _two_camera_split(
    cameras: tuple[Path, Path], train: Sequence[str], test: Sequence[str], *, name: str, extra: dict
) -> VideoSplit:
    """Train: both cameras of ``train``; query: first camera of ``test``; gallery: second camera of ``test``."""
    ids = _person_ids(sorted({*train, *test}), where=cameras[0])
    skipped: list[str] = []

    def tracklets(people: Sequence[str], camids: Sequence[int]) -> list[Tracklet]:
        found = []
        for person in sorted(people, key=lambda n: ids[n]):
            for camid in camids:
                frames = list_frames(cameras[camid] / person)
                if frames:
                    found.append(Tracklet(frames, ids[person], camid))
                else:
                    skipped.append(str(cameras[camid] / person))
        return found

    train_tracklets = tracklets(train, (0, 1))
    query, gallery = tracklets(test, (0,)), tracklets(test, (1,))
    for split, found, camera in (("query", query, cameras[0]), ("gallery", gallery, cameras[1])):
        require_tracklets(found, split_name=split, dataset=name, where=camera)
    extra = {**extra, "empty_tracklets_skipped": len(skipped)}
    return make_video_split(train_tracklets, query, gallery, name=name, extra=extra)


def _camera_folders(base: Path, relative: Sequence[str], dataset: str) -> tuple[Path, Path]:
    folders = tuple(base / r for r in relative)
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        raise DatasetError(f"the {dataset} folder {base} lacks the camera folder(s) {', '.join(missing)}")
    return folders[0], folders[1]


def _person_folders(camera: Path) -> list[str]:
    return [p.name for p in subfolders(camera, expected="one folder of frames per person")]


def _check_split_index(split: int, count: int, source: Path) -> None:
    if not 0 <= split < count:
        raise DatasetError(f"split={split} is out of range: {source} holds {count} split(s) (0..{count - 1})")


def load_ilidsvid(root: str | Path, *, split: int = 0, train_first: bool = False) -> VideoSplit:
    """iLIDS-VID (see the module docstring).

    Args:
        root: the folder holding ``i-LIDS-VID/`` and ``train-test people splits/``, or its parent.
        split: which of the splits (rows of ``ls_set``) to use, from 0.
        train_first: the first half of the row is the train set (default: the test set).
    """
    base = find_dataset_folder(
        root,
        dataset="iLIDS-VID",
        layouts=[["i-LIDS-VID/", "train-test people splits/"]],
        known_names=("iLIDS-VID", "ilids-vid", "ilidsvid"),
    )
    cameras = _camera_folders(base, ("i-LIDS-VID/sequences/cam1", "i-LIDS-VID/sequences/cam2"), "iLIDS-VID")
    mat_path = base / "train-test people splits" / "train_test_splits_ilidsvid.mat"
    sets = _mat_variable(mat_path, "ls_set", "one row of 1-based person indices per split")
    if sets.ndim != 2 or sets.shape[1] < 2 or sets.shape[1] % 2:
        raise DatasetError(
            f"{mat_path}: ls_set must be a matrix of one row per split holding an even number of person "
            f"indices, found shape {sets.shape}"
        )
    _check_split_index(split, len(sets), mat_path)
    people = _person_folders(cameras[0])
    row = sets[split].tolist()
    bad = [str(i) for i in row if not 1 <= i <= len(people)]
    if bad or len(set(row)) != len(row):
        problem = (
            f"indices outside 1..{len(people)} (e.g. {format_examples(bad)})" if bad else "a repeated index"
        )
        raise DatasetError(
            f"{mat_path}: row {split + 1} of ls_set holds {problem}; expected distinct 1-based indices into "
            f"the {len(people)} sorted person folders of {cameras[0]}"
        )
    half = len(row) // 2
    first, second = [people[i - 1] for i in row[:half]], [people[i - 1] for i in row[half:]]
    train, test = (first, second) if train_first else (second, first)
    absent = [p for p in train + test if not (cameras[1] / p).is_dir()]
    if absent:
        raise DatasetError(
            f"{len(absent)} person(s) of split {split} have no folder in {cameras[1]}: e.g. {format_examples(absent)}"
        )
    extra = {"root": str(base), "split": split, "num_splits": len(sets), "train_first": train_first}
    return _two_camera_split(cameras, train, test, name="ilidsvid", extra=extra)


def _read_prid_splits(path: Path) -> list[tuple[list[str], list[str]]]:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise DatasetError(f"{path} cannot be read as JSON ({error})") from error
    expected = 'a list of {"train": [person folder names], "test": [...]}'
    if not isinstance(content, list) or not content:
        raise DatasetError(f"{path}: expected {expected}, found {type(content).__name__}")
    splits = []
    for number, entry in enumerate(content):
        parts = [entry.get(key) if isinstance(entry, dict) else None for key in ("train", "test")]
        if not all(isinstance(p, list) and all(isinstance(n, str) for n in p) for p in parts):
            raise DatasetError(f"{path}: split {number} is not {expected[7:]}")
        splits.append((parts[0], parts[1]))
    return splits


def _generated_prid_split(
    cameras: tuple[Path, Path], split: int, min_frames: int
) -> tuple[list[str], list[str]]:
    in_b = set(_person_folders(cameras[1]))
    eligible = [
        person
        for person in _person_folders(cameras[0])
        if person in in_b and min(len(list_frames(camera / person)) for camera in cameras) >= min_frames
    ]
    if len(eligible) < 2:
        raise DatasetError(
            f"only {len(eligible)} person(s) of {cameras[0]} are in {cameras[1]} with at least {min_frames} "
            "frames in each camera; at least 2 are needed to make a train / test split"
        )
    order = np.random.default_rng(split).permutation(len(eligible))
    people = [eligible[i] for i in order]
    return people[: len(people) // 2], people[len(people) // 2 :]


def load_prid2011(
    root: str | Path, *, split: int = 0, split_file: str | None = None, min_frames: int = 22
) -> VideoSplit:
    """PRID2011, multi-shot (see the module docstring).

    Args:
        root: the folder holding ``prid_2011/``, or its parent.
        split: which split of the JSON (or which seed of the generated splits) to use, from 0.
        split_file: the splits JSON; default ``splits_prid2011.json`` in the dataset folder (generated splits
            when that file is absent).
        min_frames: generated splits only: the fewest frames a person needs in each camera.
    """
    base = find_dataset_folder(
        root, dataset="PRID2011", layouts=[["prid_2011/"]], known_names=("prid2011", "PRID2011", "prid_2011")
    )
    cameras = _camera_folders(base, ("prid_2011/multi_shot/cam_a", "prid_2011/multi_shot/cam_b"), "PRID2011")
    json_path = Path(split_file).expanduser().absolute() if split_file else base / "splits_prid2011.json"
    extra: dict[str, Any] = {"root": str(base), "split": split}
    if json_path.is_file():
        splits = _read_prid_splits(json_path)
        _check_split_index(split, len(splits), json_path)
        train, test = splits[split]
        both = set(_person_folders(cameras[0])) & set(_person_folders(cameras[1]))
        absent = [p for p in train + test if p not in both]
        if absent:
            raise DatasetError(
                f"{json_path}: split {split} names {len(absent)} person(s) that are not folders in both "
                f"{cameras[0]} and {cameras[1]}: e.g. {format_examples(absent)}"
            )
        if set(train) & set(test):
            raise DatasetError(f"{json_path}: split {split} has people in both train and test")
        extra.update(split_file=str(json_path), generated_splits=False, num_splits=len(splits))
    elif split_file:
        raise DatasetError(f"PRID2011 split file {json_path} does not exist")
    else:
        if split < 0:
            raise DatasetError(f"split must be >= 0, got {split}")
        train, test = _generated_prid_split(cameras, split, min_frames)
        extra.update(generated_splits=True, min_frames=min_frames, num_splits=GENERATED_PRID_SPLITS)
    return _two_camera_split(cameras, train, test, name="prid2011", extra=extra)


# ---------------------------------------------------------------------------------------------------------------
# Registry

#: Every video dataset by name: ``loader(root, **options) -> VideoSplit``. Read-only.
VIDEO_DATASETS: dict[str, Callable[..., VideoSplit]] = {
    "mars": load_mars,
    "ilidsvid": load_ilidsvid,
    "prid2011": load_prid2011,
    "dukemtmc_videoreid": load_dukemtmc_videoreid,
    "custom_tracklets": load_custom_tracklets,
    "tracked_run": load_tracked_run,
}

#: Other names accepted by :func:`load_video_dataset`.
VIDEO_ALIASES: dict[str, str] = {"dukevideo": "dukemtmc_videoreid"}


def video_dataset_key(name: str) -> str | None:
    """The :data:`VIDEO_DATASETS` key that ``name`` selects (aliases, case, ``-`` and ``_`` as in
    :func:`load_video_dataset`), or None when it names no video dataset."""
    names = {registry_key(key): key for key in VIDEO_DATASETS}
    names.update({registry_key(alias): target for alias, target in VIDEO_ALIASES.items()})
    return names.get(registry_key(name))


def load_video_dataset(name: str, root: str | Path, **options: Any) -> VideoSplit:
    """Parse a video dataset by registry name.

    Args:
        name: a key of :data:`VIDEO_DATASETS` or :data:`VIDEO_ALIASES` (case, ``-`` and ``_`` ignored).
        root: the dataset folder or its parent (a run folder for ``tracked_run``).
        **options: the loader's keyword options (e.g. ``split`` for ilidsvid / prid2011, ``camera_pattern``
            for custom_tracklets).

    Raises:
        DatasetError: an unknown name or option (the message lists the choices), or any parse error.
    """
    return load_from_registry(
        VIDEO_DATASETS, name, root, options, kind="video dataset", aliases=VIDEO_ALIASES
    )


def is_video_dataset(name: str) -> bool:
    """Whether ``name`` is a video dataset of :func:`load_video_dataset` (tracklets, not images)."""
    return video_dataset_key(name) is not None
