"""Video dataset parsers on generated folder trees (tiny PNG / JPG frames, .mat files via scipy)."""

from __future__ import annotations

import io
import json
import re
from functools import cache
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from PIL import Image

from reidkit.data.records import Tracklet, VideoSplit, relabel_tracklets
from reidkit.data.video_datasets import (
    VIDEO_ALIASES,
    VIDEO_DATASETS,
    load_ilidsvid,
    load_mars,
    load_prid2011,
    load_video_dataset,
)
from reidkit.data.video_folders import (
    frame_sort_key,
    load_custom_tracklets,
    load_dukemtmc_videoreid,
    load_tracked_run,
)
from reidkit.errors import DatasetError


@cache
def _encoded(suffix: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (2, 4), (120, 30, 200)).save(buffer, format="PNG" if suffix == ".png" else "JPEG")
    return buffer.getvalue()


def frames(folder: Path, *names: str) -> None:
    """Write tiny images named ``names`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(_encoded(Path(name).suffix.lower()))


def names_of(tracklet: Tracklet) -> list[str]:
    return [Path(p).name for p in tracklet.paths]


def summary(tracklets: tuple[Tracklet, ...]) -> list[tuple[int, int, int]]:
    """(pid, camid, frames) per tracklet."""
    return [(t.pid, t.camid, len(t.paths)) for t in tracklets]


def test_relabel_tracklets_and_video_split_counts() -> None:
    tracklets = [Tracklet(("a",), 7, 0), Tracklet(("b",), 3, 2), Tracklet(("c",), 7, 1)]
    relabelled, mapping = relabel_tracklets(tracklets)
    assert mapping == {3: 0, 7: 1}
    assert [t.pid for t in relabelled] == [1, 0, 1] and [t.paths for t in relabelled] == [
        ("a",),
        ("b",),
        ("c",),
    ]
    split = VideoSplit(relabelled, (), ())
    assert (split.num_train_pids, split.num_train_cams) == (2, 3)


def test_frame_sort_key_is_natural() -> None:
    names = ["x_F10.jpg", "x_F9.jpg", "x_F100.jpg", "x_F1.jpg"]
    assert sorted(names, key=frame_sort_key) == ["x_F1.jpg", "x_F9.jpg", "x_F10.jpg", "x_F100.jpg"]


# ---------------------------------------------------------------------------------------------------------------
# MARS

# frame names per track, as listed in the name file (the first track's lines are out of order on purpose)
MARS_TRAIN = [
    ["0001C1T0001F003.jpg", "0001C1T0001F001.jpg", "0001C1T0001F002.jpg"],
    ["0001C2T0001F001.jpg", "0001C2T0001F002.jpg"],
    ["0005C3T0002F001.jpg", "0005C3T0002F002.jpg", "0005C3T0002F003.jpg", "0005C3T0002F004.jpg"],
]
MARS_TEST = [
    ["0002C1T0001F001.jpg", "0002C1T0001F002.jpg"],  # query
    ["0002C2T0001F001.jpg", "0002C2T0001F002.jpg", "0002C2T0001F003.jpg"],
    ["0003C1T0001F001.jpg"],  # query
    ["0003C4T0001F001.jpg", "0003C4T0001F002.jpg"],
    ["00-1C1T0001F001.jpg", "00-1C1T0001F002.jpg"],  # junk (also listed in query_IDX: dropped from query)
    ["0000C2T0001F001.jpg"],  # distractor
]


def _track_rows(tracks: list[list[str]]) -> np.ndarray:
    rows, start = [], 1
    for names in tracks:
        pid = -1 if names[0].startswith("00-1") else int(names[0][:4])
        rows.append([start, start + len(names) - 1, pid, int(names[0][5])])
        start += len(names)
    return np.array(rows, dtype=np.float64)  # MATLAB doubles


def make_mars(folder: Path, *, train: bool = True) -> Path:
    parts = [("test", MARS_TEST)] + ([("train", MARS_TRAIN)] if train else [])
    (folder / "info").mkdir(parents=True)
    for part, tracks in parts:
        names = [name for track in tracks for name in track]
        for name in names:
            frames(folder / f"bbox_{part}" / name[:4], name)
        (folder / "info" / f"{part}_name.txt").write_text("\n".join(names) + "\n")
        scipy.io.savemat(
            folder / "info" / f"tracks_{part}_info.mat", {f"track_{part}_info": _track_rows(tracks)}
        )
    scipy.io.savemat(folder / "info" / "query_IDX.mat", {"query_IDX": np.array([[1.0, 3.0, 5.0]])})
    return folder


def test_mars_counts_relabel_junk_cameras_and_sorted_frames(tmp_path: Path) -> None:
    split = load_mars(make_mars(tmp_path / "MARS"))
    assert split.name == "mars" and split.has_camids
    # train: original pids 1, 5 -> 0, 1; cameras 1-based -> 0-based
    assert summary(split.train) == [(0, 0, 3), (0, 1, 2), (1, 2, 4)]
    assert split.extra["train_pid_mapping"] == {1: 0, 5: 1}
    assert names_of(split.train[0]) == ["0001C1T0001F001.jpg", "0001C1T0001F002.jpg", "0001C1T0001F003.jpg"]
    assert all(Path(p).is_file() and Path(p).parent.name == "0001" for p in split.train[0].paths)
    # query rows 1, 3 (row 5 is junk: dropped and counted)
    assert summary(split.query) == [(2, 0, 2), (3, 0, 1)]
    assert split.extra["query_dropped"] == 1
    # gallery: every test track, junk (-1) and distractor (0) kept for the protocol to handle
    assert summary(split.gallery) == [(2, 0, 2), (2, 1, 3), (3, 0, 1), (3, 3, 2), (-1, 0, 2), (0, 1, 1)]
    assert (split.extra["junk"], split.extra["distractors"]) == (1, 1)
    assert Path(split.gallery[4].paths[0]).parent.name == "00-1"


def test_mars_query_out_of_gallery_parent_root_and_test_only(tmp_path: Path) -> None:
    make_mars(tmp_path / "MARS")
    split = load_mars(tmp_path, query_in_gallery=False)  # the parent folder works too
    assert summary(split.gallery) == [(2, 1, 3), (3, 3, 2), (0, 1, 1)]
    test_only = load_mars(make_mars(tmp_path / "other" / "mars", train=False))
    assert test_only.train == () and test_only.num_train_pids == 0 and len(test_only.query) == 2


def test_mars_missing_query_file_names_it(tmp_path: Path) -> None:
    base = make_mars(tmp_path / "MARS")
    (base / "info" / "query_IDX.mat").unlink()
    with pytest.raises(
        DatasetError, match=r"info/query_IDX\.mat does not exist \(expected the \.mat file with 1-based rows"
    ):
        load_mars(base)


def test_mars_bad_rows_name_the_file_and_row(tmp_path: Path) -> None:
    base = make_mars(tmp_path / "MARS")
    mat = base / "info" / "tracks_test_info.mat"
    rows = _track_rows(MARS_TEST)
    rows[1, 1] = 99  # end past the name list
    scipy.io.savemat(mat, {"track_test_info": rows})
    with pytest.raises(DatasetError, match=r"tracks_test_info\.mat row 2 .*start <= end <= 11"):
        load_mars(base)
    rows = _track_rows(MARS_TEST)
    rows[0, 3] = 2  # camera 2, but the frames say C1
    scipy.io.savemat(mat, {"track_test_info": rows})
    with pytest.raises(DatasetError, match=r"row 1 .*'0002C1T0001F001\.jpg' is of pid 2 camera 1"):
        load_mars(base)
    scipy.io.savemat(mat, {"track_test_info": rows[:, :3]})
    with pytest.raises(DatasetError, match=r"4 columns .*shape \(6, 3\)"):
        load_mars(base)
    scipy.io.savemat(mat, {"tracks": rows})
    with pytest.raises(
        DatasetError, match=r"tracks_test_info\.mat lacks the variable track_test_info .*; found tracks"
    ):
        load_mars(base)


def test_mars_reads_v73_mat_files(tmp_path: Path) -> None:
    """MATLAB v7.3 (HDF5) stores an N x 4 matrix as 4 x N: the parser transposes it back."""
    base = make_mars(tmp_path / "MARS")
    for name, variable, value in (
        ("tracks_test_info.mat", "track_test_info", _track_rows(MARS_TEST)),
        ("query_IDX.mat", "query_IDX", np.array([[1.0, 3.0]])),
    ):
        path = base / "info" / name
        with h5py.File(path, "w", userblock_size=512) as handle:
            handle.create_dataset(variable, data=value.T).attrs["MATLAB_class"] = np.bytes_("double")
        with open(path, "r+b") as stream:
            stream.write(b"MATLAB 7.3 MAT-file".ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM")
    split = load_mars(base)
    assert summary(split.query) == [(2, 0, 2), (3, 0, 1)] and len(split.gallery) == 6


def test_mars_missing_frame_and_bad_query_index(tmp_path: Path) -> None:
    base = make_mars(tmp_path / "MARS")
    (base / "bbox_test" / "0003" / "0003C4T0001F002.jpg").unlink()
    with pytest.raises(
        DatasetError, match=r"test_name\.txt refers to 1 of 11 frame\(s\).*0003C4T0001F002\.jpg"
    ):
        load_mars(base)
    frames(base / "bbox_test" / "0003", "0003C4T0001F002.jpg")
    scipy.io.savemat(base / "info" / "query_IDX.mat", {"query_IDX": np.array([[1.0, 7.0]])})
    with pytest.raises(DatasetError, match=r"query_IDX\.mat: query_IDX holds 1 index\(es\) outside 1\.\.6"):
        load_mars(base)


def test_mars_missing_train_list_and_missing_folder(tmp_path: Path) -> None:
    base = make_mars(tmp_path / "MARS")
    (base / "info" / "train_name.txt").unlink()
    with pytest.raises(DatasetError, match=r"train_name\.txt does not exist"):
        load_mars(base)
    with pytest.raises(DatasetError, match=r"not a MARS folder: expected bbox_test/, info/"):
        load_mars(tmp_path / "MARS" / "bbox_test")
    with pytest.raises(DatasetError, match=r"does not exist \(expected the MARS dataset"):
        load_mars(tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------------------------
# iLIDS-VID

ILIDS_PEOPLE = ["person001", "person002", "person004", "person005", "person007", "person010"]


def make_ilids(folder: Path, *, sets: np.ndarray | None = None) -> Path:
    for camera in ("cam1", "cam2"):
        for n, person in enumerate(ILIDS_PEOPLE):
            count = 2 + (n % 3)
            names = [f"{camera}_{person}_{frame:05d}.png" for frame in range(count, 0, -1)]
            frames(folder / "i-LIDS-VID" / "sequences" / camera / person, *names)
    split_dir = folder / "train-test people splits"
    split_dir.mkdir(parents=True)
    if sets is None:
        sets = np.array([[3, 1, 5, 2, 6, 4], [1, 2, 3, 4, 5, 6]], dtype=np.float64)
    scipy.io.savemat(split_dir / "train_test_splits_ilidsvid.mat", {"ls_set": sets})
    return folder


def test_ilidsvid_split_query_cam1_gallery_cam2(tmp_path: Path) -> None:
    split = load_ilidsvid(make_ilids(tmp_path / "iLIDS-VID"))
    assert split.name == "ilidsvid" and split.extra["num_splits"] == 2
    # row 0 = indices 3 1 5 | 2 6 4: the first half (person004, person001, person007) is the test set
    assert [(t.pid, t.camid) for t in split.query] == [(1, 0), (4, 0), (7, 0)]
    assert [(t.pid, t.camid) for t in split.gallery] == [(1, 1), (4, 1), (7, 1)]
    assert split.extra["train_pid_mapping"] == {2: 0, 5: 1, 10: 2}
    assert [(t.pid, t.camid) for t in split.train] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    assert names_of(split.query[0]) == ["cam1_person001_00001.png", "cam1_person001_00002.png"]
    assert all("/cam2/" in t.paths[0] for t in split.gallery)


def test_ilidsvid_train_first_and_other_split(tmp_path: Path) -> None:
    root = make_ilids(tmp_path / "iLIDS-VID")
    swapped = load_ilidsvid(root, train_first=True)
    assert [t.pid for t in swapped.query] == [2, 5, 10]
    second = load_video_dataset("iLIDS-VID", tmp_path, split=1)
    assert [t.pid for t in second.query] == [1, 2, 4] and second.extra["split"] == 1


def test_ilidsvid_errors_name_the_file(tmp_path: Path) -> None:
    root = make_ilids(tmp_path / "a")
    with pytest.raises(
        DatasetError, match=r"split=2 is out of range: .*train_test_splits_ilidsvid\.mat holds 2"
    ):
        load_ilidsvid(root, split=2)
    bad = make_ilids(tmp_path / "b", sets=np.array([[1, 2, 3, 4, 5, 9]], dtype=np.float64))
    with pytest.raises(DatasetError, match=r"row 1 of ls_set holds indices outside 1\.\.6 \(e\.g\. '9'\)"):
        load_ilidsvid(bad)
    (root / "train-test people splits" / "train_test_splits_ilidsvid.mat").unlink()
    with pytest.raises(DatasetError, match=r"train_test_splits_ilidsvid\.mat does not exist"):
        load_ilidsvid(root)
    other = make_ilids(tmp_path / "c")
    for frame in (other / "i-LIDS-VID/sequences/cam2/person007").iterdir():
        frame.unlink()
    (other / "i-LIDS-VID/sequences/cam2/person007").rmdir()
    with pytest.raises(
        DatasetError, match=r"1 person\(s\) of split 0 have no folder in .*cam2: e\.g\. 'person007'"
    ):
        load_ilidsvid(other)


# ---------------------------------------------------------------------------------------------------------------
# PRID2011

PRID_A = {
    "person_0001": 4,
    "person_0002": 3,
    "person_0003": 5,
    "person_0004": 3,
    "person_0005": 3,
    "person_0006": 2,
}
PRID_B = {
    "person_0001": 3,
    "person_0002": 4,
    "person_0003": 1,
    "person_0004": 3,
    "person_0005": 3,
    "person_0007": 2,
}


def make_prid(folder: Path, splits: list | None = None) -> Path:
    for camera, people in (("cam_a", PRID_A), ("cam_b", PRID_B)):
        for person, count in people.items():
            frames(
                folder / "prid_2011" / "multi_shot" / camera / person,
                *[f"{n:04d}.png" for n in range(1, count + 1)],
            )
    if splits is not None:
        (folder / "splits_prid2011.json").write_text(json.dumps(splits))
    return folder


PRID_SPLITS = [
    {"train": ["person_0001", "person_0002"], "test": ["person_0004", "person_0003"]},
    {"train": ["person_0003", "person_0004"], "test": ["person_0001", "person_0005"]},
]


def test_prid2011_json_splits(tmp_path: Path) -> None:
    split = load_prid2011(make_prid(tmp_path / "prid2011", PRID_SPLITS))
    assert split.extra["generated_splits"] is False
    assert summary(split.train) == [(0, 0, 4), (0, 1, 3), (1, 0, 3), (1, 1, 4)]
    assert summary(split.query) == [(3, 0, 5), (4, 0, 3)]
    assert summary(split.gallery) == [(3, 1, 1), (4, 1, 3)]
    assert [t.pid for t in load_prid2011(tmp_path, split=1).query] == [1, 5]


def test_prid2011_generated_splits_use_people_in_both_cameras(tmp_path: Path) -> None:
    root = make_prid(tmp_path / "prid2011")
    split = load_prid2011(root, min_frames=3)
    # both cameras with >= 3 frames: persons 1, 2, 4, 5 (3 has one frame in cam_b; 6 and 7 are in one camera)
    people = sorted(split.extra["train_pid_mapping"]) + [t.pid for t in split.query]
    assert sorted(people) == [1, 2, 4, 5] and len(split.query) == len(split.gallery) == 2
    assert split.extra["generated_splits"] is True
    again = load_prid2011(root, min_frames=3)
    assert again == split
    assert len(load_prid2011(root, min_frames=1).query) == 3  # person 3 joins (5 people: 2 train, 3 test)


def test_prid2011_errors(tmp_path: Path) -> None:
    bad = [{"train": ["person_0001"], "test": ["person_0006"]}]
    root = make_prid(tmp_path / "a", bad)
    with pytest.raises(
        DatasetError, match=r"splits_prid2011\.json: split 0 names 1 person\(s\) .*'person_0006'"
    ):
        load_prid2011(root)
    (root / "splits_prid2011.json").write_text(json.dumps({"train": []}))
    with pytest.raises(DatasetError, match=r"splits_prid2011\.json: expected a list of \{\"train\""):
        load_prid2011(root)
    (root / "splits_prid2011.json").write_text(json.dumps(PRID_SPLITS))
    with pytest.raises(DatasetError, match=r"split=5 is out of range.*holds 2 split"):
        load_prid2011(root, split=5)
    with pytest.raises(DatasetError, match=r"PRID2011 split file .*missing\.json does not exist"):
        load_prid2011(root, split_file=str(tmp_path / "missing.json"))
    with pytest.raises(DatasetError, match=r"only 0 person\(s\)"):
        load_prid2011(make_prid(tmp_path / "b"), min_frames=50)


# ---------------------------------------------------------------------------------------------------------------
# DukeMTMC-VideoReID


def make_duke(folder: Path) -> Path:
    def tracklet(split: str, pid: str, track: str, camera: int, numbers: list[int]) -> None:
        names = [f"{pid}_C{camera}_F{n}_X{1000 + n}.jpg" for n in numbers]
        frames(folder / split / pid / track, *names)

    tracklet("train", "0003", "0001", 1, [10, 9, 100])  # natural order: F9, F10, F100
    tracklet("train", "0003", "0002", 2, [1, 2])
    tracklet("train", "0011", "0005", 8, [4])
    (folder / "train" / "0011" / "0006").mkdir()  # an empty tracklet folder: skipped
    tracklet("query", "0002", "0001", 6, [1, 2])
    tracklet("gallery", "0002", "0002", 5, [1, 2, 3])
    tracklet("gallery", "0007", "0001", 1, [7])
    return folder


def test_dukemtmc_videoreid_counts_cameras_and_frame_order(tmp_path: Path) -> None:
    make_duke(tmp_path / "DukeMTMC-VideoReID")
    split = load_video_dataset("dukevideo", tmp_path)
    assert split.name == "dukemtmc_videoreid"
    assert summary(split.train) == [(0, 0, 3), (0, 1, 2), (1, 7, 1)]
    assert names_of(split.train[0]) == [
        "0003_C1_F9_X1009.jpg",
        "0003_C1_F10_X1010.jpg",
        "0003_C1_F100_X1100.jpg",
    ]
    assert summary(split.query) == [(2, 5, 2)] and summary(split.gallery) == [(2, 4, 3), (7, 0, 1)]
    assert split.extra["empty_tracklets_skipped"] == 1
    assert load_video_dataset("DukeMTMC-VideoReID", tmp_path) == split


def test_dukemtmc_videoreid_bad_names_and_missing_gallery(tmp_path: Path) -> None:
    base = make_duke(tmp_path / "duke")
    frames(base / "query" / "0002" / "0001", "0002_C5_F3_X1.jpg")
    with pytest.raises(
        DatasetError, match=r"frames of tracklet .*query/0002/0001 name several cameras \(C5, C6\)"
    ):
        load_dukemtmc_videoreid(base)
    (base / "query" / "0002" / "0001" / "0002_C5_F3_X1.jpg").unlink()
    frames(base / "query" / "0002" / "0001", "frame3.jpg")
    with pytest.raises(
        DatasetError, match=r"1 frame name\(s\) in .*0001 carry no camera field.*'frame3\.jpg'"
    ):
        load_dukemtmc_videoreid(base)
    frames(tmp_path / "other" / "query" / "0001" / "0001", "0001_C1_F1_X1.jpg")
    with pytest.raises(DatasetError, match=r"missing gallery/"):
        load_dukemtmc_videoreid(tmp_path / "other")


# ---------------------------------------------------------------------------------------------------------------
# custom tracklets


def make_custom(folder: Path) -> Path:
    frames(folder / "train" / "bob" / "c1_walk", "b.png", "a.png")
    frames(folder / "train" / "bob" / "c10_walk", "a.png")
    frames(folder / "train" / "alice" / "c2_t1", "1.png")
    frames(folder / "query" / "carol" / "c2_t1", "1.jpg", "2.jpg")
    frames(folder / "gallery" / "carol" / "c1_t2", "1.jpg")
    frames(folder / "gallery" / "dave" / "c10_t1", "1.jpg")
    return folder


def test_custom_tracklets_cameras_identities_and_relabel(tmp_path: Path) -> None:
    split = load_video_dataset("custom_tracklets", make_custom(tmp_path / "mine"))
    assert split.extra["camera_names"] == ["1", "2", "10"]  # numeric order
    assert split.extra["identity_names"] == ["alice", "bob", "carol", "dave"]
    assert summary(split.train) == [(0, 1, 1), (1, 0, 2), (1, 2, 1)]
    assert names_of(split.train[1]) == ["a.png", "b.png"]
    assert summary(split.query) == [(2, 1, 2)] and summary(split.gallery) == [(2, 0, 1), (3, 2, 1)]


def test_custom_tracklets_camera_folders_no_cameras_and_junk(tmp_path: Path) -> None:
    root = tmp_path / "cams"
    frames(root / "query" / "5" / "north" / "t1", "1.jpg")
    frames(root / "gallery" / "5" / "south" / "t1", "1.jpg", "2.jpg")
    frames(root / "gallery" / "-1" / "south" / "t9", "1.jpg")  # junk: dropped
    split = load_custom_tracklets(root, camera_folders=True)
    assert split.train == () and split.extra["camera_names"] == ["north", "south"]
    assert summary(split.query) == [(5, 0, 1)] and summary(split.gallery) == [(5, 1, 2)]
    assert split.extra["junk_dropped"] == 1
    plain = load_custom_tracklets(make_custom(tmp_path / "mine"), cameras=False)
    assert not plain.has_camids and {t.camid for t in plain.gallery} == {-1}


def test_custom_tracklets_errors(tmp_path: Path) -> None:
    root = make_custom(tmp_path / "mine")
    frames(root / "gallery" / "dave" / "t7", "1.jpg")
    with pytest.raises(
        DatasetError, match=r"1 tracklet folder name\(s\) under .*gallery carry no camera.*'dave/t7'"
    ):
        load_custom_tracklets(root)
    with pytest.raises(DatasetError, match=r"camera_pattern='c\\\\d\+' has no group"):
        load_custom_tracklets(root, camera_pattern=r"c\d+")
    frames(root / "query" / "carol", "loose.jpg")
    with pytest.raises(DatasetError, match=r"holds 1 image\(s\) directly .*'loose\.jpg'"):
        load_custom_tracklets(root, camera_pattern=r"(\d+)")
    frames(tmp_path / "half" / "query" / "1" / "c1", "1.jpg")
    with pytest.raises(DatasetError, match=r"not a custom tracklets folder: missing gallery/"):
        load_custom_tracklets(tmp_path / "half")


# ---------------------------------------------------------------------------------------------------------------
# tracking run


def make_tracked_run(folder: Path) -> Path:
    from reidkit.track.records import Tracklet as TrackedTracklet
    from reidkit.track.runfiles import CameraInfo, RunInfo, write_run

    info = RunInfo(
        cameras=[CameraInfo("hall", "/v/hall.avi", 10.0), CameraInfo("door", "/v/door.avi", 25.0)],
        embedder={"name": None, "fingerprint": None, "dim": None},
    )
    crop = np.full((16, 8, 3), 90, dtype=np.uint8)
    specs = [("hall", 1, 4, crop), ("door", 2, 4, crop), ("door", 3, 9, None), ("hall", 4, None, crop)]
    tracklets = [
        TrackedTracklet(
            camera=camera,
            local_id=local_id,
            frames=np.arange(1, 4),
            boxes=np.ones((3, 4)),
            scores=np.ones(3),
            fps=info.camera(camera).fps,
            thumbnail=thumbnail,
            global_id=global_id,
        )
        for camera, local_id, global_id, thumbnail in specs
    ]
    write_run(folder, info, tracklets)
    return folder


def test_tracked_run_is_a_gallery_of_thumbnails(tmp_path: Path) -> None:
    split = load_tracked_run(make_tracked_run(tmp_path / "run"))
    assert split.train == () and split.query == ()
    assert summary(split.gallery) == [(4, 0, 1), (4, 1, 1)]
    assert all(Path(t.paths[0]).is_file() for t in split.gallery)
    assert [(n["camera"], n["local_id"]) for n in split.extra["tracklets"]] == [("hall", 1), ("door", 2)]
    assert (split.extra["skipped_no_thumbnail"], split.extra["skipped_unlinked"]) == (1, 1)
    assert split.extra["tracklets"][1]["end_time"] == pytest.approx(2 / 25)


def test_tracked_run_errors(tmp_path: Path) -> None:
    root = make_tracked_run(tmp_path / "run")
    (root / "thumbs" / "door_2.jpg").unlink()
    with pytest.raises(DatasetError, match=r"tracklets\.sqlite refers to 1 thumbnail\(s\) .*door_2\.jpg"):
        load_video_dataset("tracked-run", root)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"cannot read the tracking run .*empty.*run\.json is missing"):
        load_tracked_run(tmp_path / "empty")


# ---------------------------------------------------------------------------------------------------------------
# registry


def test_registry_names_unknown_name_and_options() -> None:
    assert sorted(VIDEO_DATASETS) == [
        "custom_tracklets",
        "dukemtmc_videoreid",
        "ilidsvid",
        "mars",
        "prid2011",
        "tracked_run",
    ]
    assert VIDEO_ALIASES == {"dukevideo": "dukemtmc_videoreid"}
    with pytest.raises(DatasetError) as caught:
        load_video_dataset("ilids", "/nowhere")
    message = str(caught.value)
    assert "unknown video dataset 'ilids'" in message
    assert all(name in message for name in [*VIDEO_DATASETS, *VIDEO_ALIASES])
    with pytest.raises(
        DatasetError, match=r"'mars' does not take the option\(s\) split; it takes query_in_gallery"
    ):
        load_video_dataset("MARS", "/nowhere", split=1)
    with pytest.raises(DatasetError, match=r"option split must be an integer, got '1'"):
        load_video_dataset("prid2011", "/nowhere", split="1")


@pytest.mark.parametrize("name", sorted(VIDEO_DATASETS))
def test_every_registered_loader_reports_a_missing_root(name: str, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "absent")) + r" does not exist"):
        load_video_dataset(name, tmp_path / "absent")
