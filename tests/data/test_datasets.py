"""Parsers of the standard layouts on generated folder trees (empty image files: parsers never decode)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from reidkit.data.datasets import (
    DATASETS,
    format_summary,
    load_cuhk03,
    load_dataset,
    load_dukemtmcreid,
    load_market1501,
    load_mat,
    load_msmt17,
    load_synthetic,
    summarize_split,
)
from reidkit.data.records import Sample, Split
from reidkit.errors import DatasetError


def touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")


def by_name(samples: tuple[Sample, ...]) -> dict[str, Sample]:
    return {Path(s.path).name: s for s in samples}


# ---------------------------------------------------------------------------------------------------------------
# Market-1501 / DukeMTMC-reID / synthetic

MARKET_TRAIN = [
    "0002_c1s1_000451_03.jpg",
    "0002_c2s1_000551_01.jpg",
    "0007_c3s3_000001_01.jpg",
    "0007_c1s1_000002_01.jpg",
    "0010_c6s4_000003_01.jpg",
    "-1_c1s1_000004_01.jpg",  # junk: dropped
    "0000_c2s1_000005_01.jpg",  # distractor: never in train
]
MARKET_QUERY = ["0001_c1s1_001051_00.jpg", "0001_c2s1_000001_00.jpg", "0003_c3s1_000002_00.jpg"]
MARKET_GALLERY = [
    "0001_c3s1_000101_01.jpg",
    "0001_c4s1_000102_02.jpg",
    "0003_c1s1_000103_01.jpg",
    "0000_c1s1_000104_01.jpg",  # distractors: kept in the gallery
    "0000_c5s2_000105_03.jpg",
    "-1_c1s1_000106_01.jpg",  # junk: dropped
    "-1_c2s1_000107_04.jpg",
]


def make_market(folder: Path) -> Path:
    touch(folder / "bounding_box_train", *MARKET_TRAIN, "Thumbs.db")
    touch(folder / "query", *MARKET_QUERY)
    touch(folder / "bounding_box_test", *MARKET_GALLERY, "Thumbs.db")
    return folder


def test_market1501_counts_junk_distractors_relabel_and_cameras(tmp_path: Path) -> None:
    split = load_market1501(make_market(tmp_path / "Market-1501-v15.09.15"))
    assert split.name == "market1501" and split.has_camids
    assert (len(split.train), len(split.query), len(split.gallery)) == (5, 3, 5)
    train = by_name(split.train)
    # original ids 2, 7, 10 -> 0, 1, 2 in sorted order of original id; camera c6 -> camid 5
    assert {name: (s.pid, s.camid) for name, s in train.items()} == {
        "0002_c1s1_000451_03.jpg": (0, 0),
        "0002_c2s1_000551_01.jpg": (0, 1),
        "0007_c3s3_000001_01.jpg": (1, 2),
        "0007_c1s1_000002_01.jpg": (1, 0),
        "0010_c6s4_000003_01.jpg": (2, 5),
    }
    assert sorted(s.pid for s in split.query) == [1, 1, 3]
    assert {name: (s.pid, s.camid) for name, s in by_name(split.gallery).items()} == {
        "0001_c3s1_000101_01.jpg": (1, 2),
        "0001_c4s1_000102_02.jpg": (1, 3),
        "0003_c1s1_000103_01.jpg": (3, 0),
        "0000_c1s1_000104_01.jpg": (0, 0),
        "0000_c5s2_000105_03.jpg": (0, 4),
    }
    assert all(s.pid >= 0 for s in split.train + split.query + split.gallery)
    assert split.extra["junk_dropped"] == 3 and split.extra["distractors"] == 2
    assert all(Path(s.path).is_file() for s in split.train + split.query + split.gallery)


def test_market1501_root_or_parent_give_the_same_split(tmp_path: Path) -> None:
    folder = make_market(tmp_path / "Market-1501-v15.09.15")
    (tmp_path / "unrelated").mkdir()
    assert load_market1501(tmp_path) == load_market1501(folder)
    # several matching sub-folders: the usual name wins, otherwise the user must choose
    make_market(tmp_path / "copy")
    assert load_market1501(tmp_path) == load_market1501(folder)
    (folder / "query").rename(tmp_path / "moved")  # no longer a Market-1501 folder
    make_market(tmp_path / "copy2")
    with pytest.raises(DatasetError, match="several Market-1501 folders.*copy, copy2"):
        load_market1501(tmp_path)


def test_dukemtmcreid_names(tmp_path: Path) -> None:
    touch(tmp_path / "DukeMTMC-reID/bounding_box_train", "0001_c2_f0046182.jpg", "0005_c8_f0000001.jpg")
    touch(tmp_path / "DukeMTMC-reID/query", "0003_c1_f0000002.jpg")
    touch(tmp_path / "DukeMTMC-reID/bounding_box_test", "0003_c5_f0000003.jpg", "0004_c7_f0000004.jpg")
    split = load_dukemtmcreid(tmp_path)
    assert split.name == "dukemtmcreid"
    assert sorted((s.pid, s.camid) for s in split.train) == [(0, 1), (1, 7)]
    assert [(s.pid, s.camid) for s in split.query] == [(3, 0)]
    assert sorted((s.pid, s.camid) for s in split.gallery) == [(3, 4), (4, 6)]


def test_synthetic_uses_the_market_layout(tmp_path: Path) -> None:
    split = load_synthetic(make_market(tmp_path))
    assert split.name == "synthetic"
    assert (len(split.train), len(split.query), len(split.gallery)) == (5, 3, 5)


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"does_not_exist does not exist.*Market-1501"):
        load_market1501(tmp_path / "does_not_exist")


def test_wrong_layout_names_expected_and_found(tmp_path: Path) -> None:
    touch(tmp_path / "bounding_box_train", "0001_c1s1_000001_01.jpg")
    touch(tmp_path, "notes.txt")
    with pytest.raises(DatasetError) as error:
        load_market1501(tmp_path)
    message = str(error.value)
    assert "not a Market-1501 folder" in message
    assert "expected query/, bounding_box_test/ (bounding_box_train/ only to train)" in message
    assert "missing query/, bounding_box_test/" in message
    assert "found bounding_box_train/, notes.txt" in message


def test_unparseable_names_are_counted_with_five_examples(tmp_path: Path) -> None:
    make_market(tmp_path)
    bad = ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg", "0001_c0s1_000001_01.jpg"]
    touch(tmp_path / "query", *bad)
    with pytest.raises(DatasetError) as error:
        load_market1501(tmp_path)
    message = str(error.value)
    assert f"7 of {7 + len(MARKET_QUERY)} image name(s) in {tmp_path / 'query'}" in message
    assert "'0001_c0s1_000001_01.jpg', 'a.jpg', 'b.jpg', 'c.jpg', 'd.jpg' (and 2 more)" in message


@pytest.mark.parametrize("folder", ["query", "bounding_box_test"])
def test_empty_split(tmp_path: Path, folder: str) -> None:
    make_market(tmp_path)
    for path in (tmp_path / folder).iterdir():
        if folder == "bounding_box_test" and not path.name.startswith("-1"):
            path.unlink()  # only junk left in the gallery: still empty
        elif folder != "bounding_box_test":
            path.unlink()
    split_name = {"query": "query", "bounding_box_test": "gallery"}[folder]
    with pytest.raises(DatasetError, match=f"the {split_name} split of the Market-1501 dataset is empty"):
        load_market1501(tmp_path)


# ---------------------------------------------------------------------------------------------------------------
# MSMT17


def msmt_name(pid: int, camera: int, index: int) -> str:
    return f"{pid:04d}/{pid:04d}_{index:03d}_{camera:02d}_0303morning_{index:04d}_0.jpg"


def make_msmt(folder: Path, *, version: str) -> Path:
    train_dir, test_dir = ("train", "test") if version == "v1" else ("mask_train_v2", "mask_test_v2")
    lists = {
        "list_train.txt": (train_dir, [(0, 1, 0), (0, 3, 1), (1, 15, 0), (1, 2, 1), (4, 1, 0)]),
        "list_val.txt": (train_dir, [(1, 4, 2), (2, 5, 0)]),
        "list_query.txt": (test_dir, [(0, 1, 0), (7, 2, 0)]),
        "list_gallery.txt": (test_dir, [(0, 6, 1), (7, 9, 1), (9, 1, 0)]),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for list_name, (image_dir, rows) in lists.items():
        names = [msmt_name(*row) for row in rows]
        touch(folder / image_dir, *names)
        text = "".join(f"{name} {row[0]}\n" for name, row in zip(names, rows, strict=True))
        (folder / list_name).write_text(text)
    return folder


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_msmt17_with_and_without_val(tmp_path: Path, version: str) -> None:
    folder = make_msmt(tmp_path / f"MSMT17_{version.upper()}", version=version)
    split = load_msmt17(tmp_path)
    assert split.extra["version"] == version and split.name == "msmt17"
    train_dir = "train" if version == "v1" else "mask_train_v2"
    assert all(Path(s.path).parent.parent == folder / train_dir for s in split.train)
    # train = list_train (5) + list_val (2); ids 0, 1, 2, 4 -> 0..3; camera 15 -> camid 14
    assert len(split.train) == 7 and split.num_train_pids == 4
    assert sorted((s.pid, s.camid) for s in split.train) == [
        (0, 0),
        (0, 2),
        (1, 1),
        (1, 3),
        (1, 14),
        (2, 4),
        (3, 0),
    ]
    assert sorted((s.pid, s.camid) for s in split.query) == [(0, 0), (7, 1)]
    assert sorted((s.pid, s.camid) for s in split.gallery) == [(0, 5), (7, 8), (9, 0)]

    without_val = load_msmt17(folder, include_val=False)
    assert len(without_val.train) == 5 and without_val.num_train_pids == 3
    assert sorted((s.pid, s.camid) for s in without_val.train) == [(0, 0), (0, 2), (1, 1), (1, 14), (2, 0)]
    assert without_val.query == split.query and without_val.gallery == split.gallery

    # list_val is only required when it is used
    (folder / "list_val.txt").unlink()
    assert load_msmt17(folder, include_val=False) == without_val
    with pytest.raises(DatasetError, match="missing list_val.txt"):
        load_msmt17(folder)


def test_msmt17_list_referring_to_missing_images(tmp_path: Path) -> None:
    folder = make_msmt(tmp_path, version="v1")
    for row in [(0, 6, 1), (7, 9, 1)]:
        (folder / "test" / msmt_name(*row)).unlink()
    with pytest.raises(DatasetError) as error:
        load_msmt17(folder)
    message = str(error.value)
    assert f"{folder / 'list_gallery.txt'} refers to 2 of 3 image(s) that do not exist" in message
    assert msmt_name(0, 6, 1) in message and msmt_name(7, 9, 1) in message


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("0000/0000_000_01_0303morning_0015_0.jpg", "expected '<image path> <pid>'"),
        ("0000/0000_000_01_0303morning_0015_0.jpg x", "expected '<image path> <pid>'"),
        ("0000/0000_000_cam_0303morning_0015_0.jpg 0", "cannot read the camera"),
    ],
)
def test_msmt17_malformed_line_names_file_and_line(tmp_path: Path, line: str, expected: str) -> None:
    folder = make_msmt(tmp_path, version="v1")
    with open(folder / "list_query.txt", "a") as stream:
        stream.write(line + "\n")
    with pytest.raises(DatasetError, match=re.escape(f"{folder / 'list_query.txt'} line 3: {expected}")):
        load_msmt17(folder)


# ---------------------------------------------------------------------------------------------------------------
# CUHK03 (new protocol)


def cuhk03_protocol(num_ids: int, num_train: int) -> dict:
    """2 cameras x 2 images per identity; the first ``num_train`` ids train, the others are split into one query
    per camera and the rest gallery (as in the new protocol)."""
    files, labels, cameras, train, query, gallery = [], [], [], [], [], []
    for pid in range(1, num_ids + 1):
        for camera in (1, 2):
            for image in (1, 2):
                files.append(f"1_{pid:03d}_{camera}_{image:02d}.png")
                labels.append(pid)
                cameras.append(camera)
                index = len(files)  # 1-based
                if pid <= num_train:
                    train.append(index)
                elif image == 1:
                    query.append(index)
                else:
                    gallery.append(index)
    return {
        "filelist": files,
        "labels": np.array(labels, dtype=np.float64),
        "camId": np.array(cameras, dtype=np.float64),
        "train_idx": np.array(train, dtype=np.float64),
        "query_idx": np.array(query, dtype=np.float64),
        "gallery_idx": np.array(gallery, dtype=np.float64),
    }


def write_mat_v5(path: Path, protocol: dict) -> None:
    cell = np.empty((len(protocol["filelist"]), 1), dtype=object)
    for row, name in enumerate(protocol["filelist"]):
        cell[row, 0] = name
    columns = {key: np.asarray(value)[:, None] for key, value in protocol.items() if key != "filelist"}
    scipy.io.savemat(path, {"filelist": cell, **columns})


def write_mat_v73(path: Path, protocol: dict) -> None:
    """A MATLAB v7.3 file as MATLAB writes it: HDF5 with a 512-byte MATLAB header, column vectors stored
    transposed, the cell array as object references to uint16 char arrays."""
    with h5py.File(path, "w", userblock_size=512) as handle:
        refs = handle.create_group("#refs#")
        references = []
        for index, name in enumerate(protocol["filelist"]):
            chars = refs.create_dataset(f"c{index}", data=np.array([[ord(c)] for c in name], dtype=np.uint16))
            chars.attrs["MATLAB_class"] = np.bytes_("char")
            references.append(chars.ref)
        cell = handle.create_dataset("filelist", data=np.array([references], dtype=h5py.ref_dtype))
        cell.attrs["MATLAB_class"] = np.bytes_("cell")
        for key, value in protocol.items():
            if key != "filelist":
                numbers = handle.create_dataset(key, data=np.asarray(value, dtype=np.float64)[None, :])
                numbers.attrs["MATLAB_class"] = np.bytes_("double")
    header = (
        b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Sun Nov 22 04:00:00 2026 HDF5 schema 1.00 ."
    )
    header = header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM"
    with open(path, "r+b") as stream:
        stream.write(header.ljust(512, b"\x00"))


def make_cuhk03(
    folder: Path, *, variant: str, num_ids: int = 6, num_train: int = 3, writer=write_mat_v5
) -> dict:
    protocol = cuhk03_protocol(num_ids, num_train)
    touch(folder / f"images_{variant}", *protocol["filelist"])
    writer(folder / f"cuhk03_new_protocol_config_{variant}.mat", protocol)
    return protocol


@pytest.mark.parametrize("variant", ["detected", "labeled"])
@pytest.mark.parametrize("writer", [write_mat_v5, write_mat_v73], ids=["v5", "v7.3"])
def test_cuhk03_new_protocol(tmp_path: Path, variant: str, writer) -> None:
    folder = tmp_path / "cuhk03"
    num_ids, num_train = (6, 3) if variant == "detected" else (5, 2)
    make_cuhk03(folder, variant=variant, num_ids=num_ids, num_train=num_train, writer=writer)
    if writer is write_mat_v73:  # scipy refuses v7.3, so this really takes the h5py path
        with pytest.raises(NotImplementedError):
            scipy.io.loadmat(folder / f"cuhk03_new_protocol_config_{variant}.mat")
    split = load_cuhk03(tmp_path, variant=variant)
    assert split.name == "cuhk03" and split.extra["variant"] == variant
    num_test = num_ids - num_train
    assert (len(split.train), len(split.query), len(split.gallery)) == (
        4 * num_train,
        2 * num_test,
        2 * num_test,
    )
    assert sorted({s.pid for s in split.train}) == list(range(num_train))
    assert sorted({s.pid for s in split.query}) == list(range(num_train + 1, num_ids + 1))
    assert {s.pid for s in split.gallery} == {s.pid for s in split.query}
    assert all(Path(s.path).parent == folder / f"images_{variant}" for s in split.train + split.query)
    for sample in split.train + split.query + split.gallery:
        # 1_<pid>_<camera>_<image>.png: camera 1/2 -> camid 0/1
        assert sample.camid == int(Path(sample.path).name.split("_")[2]) - 1
    for sample in split.query + split.gallery:
        assert sample.pid == int(Path(sample.path).name.split("_")[1])
    assert all(Path(s.path).name.endswith("_01.png") for s in split.query)


def test_cuhk03_uses_the_requested_variant(tmp_path: Path) -> None:
    make_cuhk03(tmp_path, variant="detected", num_ids=6, num_train=3)
    with pytest.raises(DatasetError, match="missing images_labeled/, cuhk03_new_protocol_config_labeled.mat"):
        load_cuhk03(tmp_path, variant="labeled")
    with pytest.raises(DatasetError, match="unknown CUHK03 variant 'both'; choose from detected, labeled"):
        load_cuhk03(tmp_path, variant="both")


def test_cuhk03_explicit_split_file(tmp_path: Path) -> None:
    protocol = make_cuhk03(tmp_path / "data", variant="detected")
    moved = tmp_path / "elsewhere.mat"
    (tmp_path / "data/cuhk03_new_protocol_config_detected.mat").rename(moved)
    split = load_cuhk03(tmp_path / "data", split_file=moved)
    assert len(split.train) == len(protocol["train_idx"])


def test_cuhk03_camera_from_file_names_without_cam_id(tmp_path: Path) -> None:
    protocol = make_cuhk03(tmp_path, variant="detected")
    with_cam_id = load_cuhk03(tmp_path)
    mat = tmp_path / "cuhk03_new_protocol_config_detected.mat"
    write_mat_v5(mat, {key: value for key, value in protocol.items() if key != "camId"})
    assert load_cuhk03(tmp_path) == with_cam_id
    protocol["filelist"][3] = "odd-name.png"
    touch(tmp_path / "images_detected", "odd-name.png")
    write_mat_v5(mat, {key: value for key, value in protocol.items() if key != "camId"})
    with pytest.raises(
        DatasetError, match=r"no camId variable and 1 of 24 filelist name.s. .*'odd-name.png'"
    ):
        load_cuhk03(tmp_path)


def test_mat_helpers_read_the_same_from_both_formats(tmp_path: Path) -> None:
    protocol = cuhk03_protocol(3, 1)
    write_mat_v5(tmp_path / "a.mat", protocol)
    write_mat_v73(tmp_path / "b.mat", protocol)
    v5, v73 = load_mat(tmp_path / "a.mat"), load_mat(tmp_path / "b.mat")
    assert v73["filelist"] == protocol["filelist"]
    for key in ("labels", "camId", "train_idx"):
        np.testing.assert_array_equal(np.ravel(v5[key]), np.ravel(v73[key]))
        np.testing.assert_array_equal(np.ravel(v73[key]), protocol[key])


def test_mat_v73_needs_h5py_and_a_sound_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "split.mat"
    write_mat_v73(path, cuhk03_protocol(2, 1))
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "h5py", None)  # as if h5py were not installed
        with pytest.raises(ImportError, match=re.escape("pip install reidkit[mat]")):
            load_mat(path)
    with open(path, "r+b") as stream:  # keep the MATLAB header, break the HDF5 part
        stream.seek(512)
        stream.write(b"\x00" * 64)
    with pytest.raises(DatasetError, match="cannot read .*split.mat as a MATLAB v7.3 .HDF5. file"):
        load_mat(path)


def test_cuhk03_bad_split_files(tmp_path: Path) -> None:
    protocol = make_cuhk03(tmp_path, variant="detected")
    mat = tmp_path / "cuhk03_new_protocol_config_detected.mat"

    write_mat_v5(mat, {**protocol, "query_idx": np.array([1.0, 25.0, 0.0])})
    with pytest.raises(
        DatasetError, match=r"query_idx holds 2 index\(es\) outside 1..24 \(1-based\), e.g. '25', '0'"
    ):
        load_cuhk03(tmp_path)

    without = {key: value for key, value in protocol.items() if key not in ("query_idx", "labels")}
    write_mat_v5(mat, without)
    with pytest.raises(
        DatasetError, match="lacks the variable.s. labels, query_idx; .*found camId, filelist, gallery_idx, train"
    ):
        load_cuhk03(tmp_path)

    mat.write_bytes(b"this is not a MATLAB file at all, just some text padded out" * 4)
    with pytest.raises(DatasetError, match="cannot read .* as a MATLAB .mat file"):
        load_cuhk03(tmp_path)

    write_mat_v5(mat, protocol)
    (tmp_path / "images_detected" / protocol["filelist"][-1]).unlink()
    (tmp_path / "images_detected" / protocol["filelist"][0]).unlink()
    with pytest.raises(
        DatasetError, match=r"refers to 2 of 24 image\(s\) that do not exist, e.g. .*1_001_1_01.png"
    ):
        load_cuhk03(tmp_path)


# ---------------------------------------------------------------------------------------------------------------
# Registry and summaries


def build_for(name: str, root: Path) -> dict:
    """Write a small tree for registry entry ``name``; return the options to load it."""
    if name in ("market1501", "synthetic"):
        make_market(root)
    elif name == "dukemtmcreid":
        touch(root / "bounding_box_train", "0001_c2_f0046182.jpg")
        touch(root / "query", "0002_c1_f0000002.jpg")
        touch(root / "bounding_box_test", "0002_c3_f0000003.jpg")
    elif name == "msmt17":
        make_msmt(root, version="v2")
    elif name == "cuhk03":
        make_cuhk03(root, variant="labeled")
        return {"variant": "labeled"}
    elif name == "custom":
        touch(
            root,
            *(
                f"{pid:03d}_c{camera}_{image}.jpg"
                for pid in range(4)
                for camera in (1, 2)
                for image in (1, 2)
            ),
        )
        return {"pattern": r"(?P<pid>\d+)_c(?P<camid>\d+)"}
    return {}


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_registered_dataset_loads(tmp_path: Path, name: str) -> None:
    options = build_for(name, tmp_path)
    split = load_dataset(name, tmp_path, **options)
    assert isinstance(split, Split) and split.train and split.query and split.gallery
    assert sorted({s.pid for s in split.train}) == list(range(split.num_train_pids))
    assert all(s.camid >= 0 for s in split.train + split.query + split.gallery)


def test_registry_names_and_options(tmp_path: Path) -> None:
    make_market(tmp_path)
    assert load_dataset("Market-1501", tmp_path) == load_market1501(tmp_path)
    with pytest.raises(DatasetError) as error:
        load_dataset("market", tmp_path)
    assert str(error.value) == (
        "unknown dataset 'market'; choose from cuhk03, custom, dukemtmcreid, market1501, msmt17, synthetic"
    )
    with pytest.raises(DatasetError, match="'market1501' does not take the option.s. variant; it takes none"):
        load_dataset("market1501", tmp_path, variant="labeled")
    with pytest.raises(DatasetError, match="'msmt17' does not take the option.s. val; it takes include_val"):
        load_dataset("msmt17", tmp_path, val=False)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("msmt17", {"include_val": "no"}, "option include_val must be true or false, got 'no'"),
        ("custom", {"seed": 1.5}, "option seed must be an integer, got 1.5"),
        ("custom", {"cameras": 0}, "option cameras must be true or false, got 0"),
        ("custom", {"train_fraction": "half"}, "option train_fraction must be a number, got 'half'"),
        ("cuhk03", {"variant": 3}, "option variant must be a string, got 3"),
    ],
)
def test_option_types_are_checked(tmp_path: Path, name: str, options: dict, message: str) -> None:
    with pytest.raises(DatasetError, match=f"dataset {name!r}: {message}"):
        load_dataset(name, tmp_path, **options)


def test_summary_counts_and_table(tmp_path: Path) -> None:
    summary = summarize_split(load_market1501(make_market(tmp_path)))
    assert summary == {
        "name": "market1501",
        "has_camids": True,
        "train": {"ids": 3, "images": 5, "cameras": 4},
        "query": {"ids": 2, "images": 3, "cameras": 3},
        "gallery": {"ids": 3, "images": 5, "cameras": 4},
    }
    assert format_summary(summary).splitlines() == [
        "dataset: market1501",
        "split    ids  images  cameras",
        "-------  ---  ------  -------",
        "train      3       5        4",
        "query      2       3        3",
        "gallery    3       5        4",
    ]


def test_summary_without_cameras() -> None:
    samples = tuple(Sample(f"{i}.jpg", i // 2, -1) for i in range(4))
    summary = summarize_split(Split(samples, samples[:1], samples[1:], name="x", has_camids=False))
    assert summary["train"] == {"ids": 2, "images": 4, "cameras": 0}
    lines = format_summary(summary).splitlines()
    assert lines[0] == "dataset: x (no camera ids)"
    assert lines[3].split() == ["train", "2", "4", "-"]
