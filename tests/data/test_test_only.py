"""Test-only datasets (query and gallery, no train part) with every parser, on generated folder trees.

Each case writes a full tree for one parser (empty image files: parsers never decode), loads it, then takes the
train part away (absent, or present but empty) and checks the train split is empty while query and gallery are
read exactly as before; a missing or empty query stays an error that names it.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from reidkit.data.datasets import DATASETS, format_summary, load_dataset, summarize_split
from reidkit.data.records import Sample, make_split
from reidkit.errors import DatasetError

PATTERN = r"(?P<pid>\d+)_c(?P<camid>\d+)"
# (pid, camera) of every image: train ids 1-3 in cameras 1-2; test ids 4-5, query in camera 1, gallery in 2
TRAIN = [(pid, camera) for pid in (1, 2, 3) for camera in (1, 2)]
QUERY = [(4, 1), (5, 1)]
GALLERY = [(4, 2), (5, 2), (5, 2)]


def touch(folder: Path, names: list[str]) -> None:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")


def replace_folder(folder: Path, *, keep: bool) -> None:
    """Remove ``folder``; with ``keep``, leave it there empty."""
    shutil.rmtree(folder)
    if keep:
        folder.mkdir()


# ---------------------------------------------------------------------------------------------------------------
# Market-1501 layout (market1501, dukemtmcreid, synthetic)


def market_names(rows: list[tuple[int, int]], *, duke: bool, start: int) -> list[str]:
    if duke:
        return [f"{pid:04d}_c{camera}_f{start + i:07d}.jpg" for i, (pid, camera) in enumerate(rows)]
    return [f"{pid:04d}_c{camera}s1_{start + i:06d}_01.jpg" for i, (pid, camera) in enumerate(rows)]


def build_market(root: Path, *, duke: bool = False) -> dict:
    touch(root / "bounding_box_train", market_names(TRAIN, duke=duke, start=0))
    touch(root / "query", market_names(QUERY, duke=duke, start=100))
    touch(root / "bounding_box_test", market_names(GALLERY, duke=duke, start=200))
    return {}


# ---------------------------------------------------------------------------------------------------------------
# MSMT17 (v1: train/ test/, v2: mask_train_v2/ mask_test_v2/)


def build_msmt(root: Path, *, version: str) -> dict:
    train_dir, test_dir = ("train", "test") if version == "v1" else ("mask_train_v2", "mask_test_v2")
    lists = {
        "list_train.txt": (train_dir, TRAIN[:4]),
        "list_val.txt": (train_dir, TRAIN[4:]),
        "list_query.txt": (test_dir, QUERY),
        "list_gallery.txt": (test_dir, GALLERY),
    }
    for index, (list_name, (image_dir, rows)) in enumerate(lists.items()):
        names = [
            f"{p:04d}/{p:04d}_{index}{i:02d}_{c:02d}_0303morning_0015_0.jpg" for i, (p, c) in enumerate(rows)
        ]
        touch(root / image_dir, names)
        (root / list_name).write_text(
            "".join(f"{name} {pid}\n" for name, (pid, _) in zip(names, rows, strict=True))
        )
    return {}


def msmt_train_dir(root: Path) -> Path:
    return root / ("train" if (root / "train").is_dir() else "mask_train_v2")


# ---------------------------------------------------------------------------------------------------------------
# CUHK03 (new protocol .mat file, MATLAB v5 or v7.3)


def cuhk03_protocol() -> dict:
    rows = TRAIN + QUERY + GALLERY
    files = [f"1_{pid:03d}_{camera}_{i:02d}.png" for i, (pid, camera) in enumerate(rows)]
    first_query, first_gallery = len(TRAIN) + 1, len(TRAIN) + len(QUERY) + 1
    return {
        "filelist": files,
        "labels": np.array([pid for pid, _ in rows], dtype=np.float64),
        "camId": np.array([camera for _, camera in rows], dtype=np.float64),
        "train_idx": np.arange(1, first_query, dtype=np.float64),
        "query_idx": np.arange(first_query, first_gallery, dtype=np.float64),
        "gallery_idx": np.arange(first_gallery, len(rows) + 1, dtype=np.float64),
    }


def write_mat(path: Path, protocol: dict, *, v73: bool) -> None:
    """A MATLAB v5 file, or a v7.3 one (HDF5; empty arrays stored as their dimensions, as MATLAB does)."""
    if not v73:
        cell = np.empty((len(protocol["filelist"]), 1), dtype=object)
        cell[:, 0] = protocol["filelist"]
        columns = {key: np.asarray(value)[:, None] for key, value in protocol.items() if key != "filelist"}
        scipy.io.savemat(path, {"filelist": cell, **columns})
        return
    with h5py.File(path, "w") as handle:
        references = []
        for index, name in enumerate(protocol["filelist"]):
            chars = handle.create_dataset(
                f"#refs#/c{index}", data=np.array([[ord(c)] for c in name], np.uint16)
            )
            chars.attrs["MATLAB_class"] = np.bytes_("char")
            references.append(chars.ref)
        handle.create_dataset("filelist", data=np.array([references], dtype=h5py.ref_dtype))
        for key, value in protocol.items():
            if key != "filelist":
                empty = len(value) == 0
                data = np.zeros(2, np.uint64) if empty else np.asarray(value, np.float64)[None, :]
                numbers = handle.create_dataset(key, data=data)
                numbers.attrs["MATLAB_class"] = np.bytes_("double")
                if empty:
                    numbers.attrs["MATLAB_empty"] = np.uint8(1)


def cuhk03_mat(root: Path) -> Path:
    return root / "cuhk03_new_protocol_config_detected.mat"


def rewrite_cuhk03(root: Path, **changes: np.ndarray | None) -> None:
    """Rewrite the split file with some variables replaced (None drops the variable)."""
    protocol = {**cuhk03_protocol(), **changes}
    v73 = h5py.is_hdf5(cuhk03_mat(root))
    write_mat(cuhk03_mat(root), {k: v for k, v in protocol.items() if v is not None}, v73=v73)


def build_cuhk03(root: Path, *, v73: bool) -> dict:
    protocol = cuhk03_protocol()
    touch(root / "images_detected", protocol["filelist"])
    write_mat(cuhk03_mat(root), protocol, v73=v73)
    return {}


def remove_cuhk03_train(root: Path) -> None:
    """A test-only copy: no train_idx, and none of the train images."""
    for name in cuhk03_protocol()["filelist"][: len(TRAIN)]:
        (root / "images_detected" / name).unlink()
    rewrite_cuhk03(root, train_idx=None)


# ---------------------------------------------------------------------------------------------------------------
# custom: split folders in pattern / folders / CSV mode, or one CSV with a split column


def custom_names(rows: list[tuple[int, int]], *, per_identity: bool) -> list[str]:
    if per_identity:
        return [f"{pid}/img_c{camera}_{i}.jpg" for i, (pid, camera) in enumerate(rows)]
    return [f"{pid:04d}_c{camera}_{i}.jpg" for i, (pid, camera) in enumerate(rows)]


def build_custom_folders(root: Path, *, mode: str) -> dict:
    for part, rows in (("train", TRAIN), ("query", QUERY), ("gallery", GALLERY)):
        names = custom_names(rows, per_identity=mode == "folders")
        touch(root / part, names)
        if mode == "csv":
            lines = "".join(
                f"{name},{pid},{camera}\n" for name, (pid, camera) in zip(names, rows, strict=True)
            )
            (root / part / "labels.csv").write_text("path,pid,camid\n" + lines)
    return {
        "pattern": {"pattern": PATTERN},
        "folders": {"mode": "folders", "camera_pattern": r"_c(?P<camid>\d+)"},
        "csv": {"mode": "csv"},
    }[mode]


def write_split_column_csv(root: Path, parts: tuple[str, ...] = ("train", "query", "gallery")) -> None:
    lines = []
    for part, rows in (("train", TRAIN), ("query", QUERY), ("gallery", GALLERY)):
        names = custom_names(rows, per_identity=False)
        touch(root / "images" / part, names)
        if part in parts:
            lines += [
                f"images/{part}/{name},{pid},{camera},{part}\n"
                for name, (pid, camera) in zip(names, rows, strict=True)
            ]
    (root / "labels.csv").write_text("path,pid,camid,split\n" + "".join(lines))


def build_custom_split_column(root: Path) -> dict:
    write_split_column_csv(root)
    return {}


def remove_split_column_train(root: Path) -> None:
    write_split_column_csv(root, ("query", "gallery"))
    shutil.rmtree(root / "images" / "train")


# ---------------------------------------------------------------------------------------------------------------
# the cases


@dataclass(frozen=True)
class Case:
    """One parser on a generated tree, and how to take its train or query part away."""

    id: str
    dataset: str  # the registry name
    build: Callable[[Path], dict]  # writes the full tree at root; returns the load options
    remove_train: Callable[[Path], None]  # train part absent
    empty_train: Callable[[Path], None]  # train part present, without images
    remove_query: Callable[[Path], None]
    query_missing: str  # regular expression of the error, {root} standing for the root
    empty_query: Callable[[Path], None]
    query_empty: str


def market_case(dataset: str, label: str, *, duke: bool = False) -> Case:
    return Case(
        id=dataset,
        dataset=dataset,
        build=lambda root: build_market(root, duke=duke),
        remove_train=lambda root: replace_folder(root / "bounding_box_train", keep=False),
        empty_train=lambda root: replace_folder(root / "bounding_box_train", keep=True),
        remove_query=lambda root: replace_folder(root / "query", keep=False),
        query_missing=f"{{root}} is not a {label} folder: expected query/, bounding_box_test/ .*missing query/",
        empty_query=lambda root: replace_folder(root / "query", keep=True),
        query_empty=f"the query split of the {label} dataset is empty \\(read from {{root}}/query\\)",
    )


def msmt_case(version: str) -> Case:
    return Case(
        id=f"msmt17-{version}",
        dataset="msmt17",
        build=lambda root: build_msmt(root, version=version),
        remove_train=lambda root: replace_folder(msmt_train_dir(root), keep=False),
        empty_train=lambda root: replace_folder(msmt_train_dir(root), keep=True),
        remove_query=lambda root: (root / "list_query.txt").unlink(),
        query_missing="{root} is not a MSMT17 folder: .*missing list_query.txt",
        empty_query=lambda root: (root / "list_query.txt").write_text(""),
        query_empty="the query split of the MSMT17 dataset is empty \\(read from {root}/list_query.txt\\)",
    )


def cuhk03_case(v73: bool) -> Case:
    return Case(
        id="cuhk03-v7.3" if v73 else "cuhk03-v5",
        dataset="cuhk03",
        build=lambda root: build_cuhk03(root, v73=v73),
        remove_train=remove_cuhk03_train,
        empty_train=lambda root: rewrite_cuhk03(root, train_idx=np.zeros(0)),
        remove_query=lambda root: rewrite_cuhk03(root, query_idx=None),
        query_missing="{root}/cuhk03_new_protocol_config_detected.mat lacks the variable.s. query_idx",
        empty_query=lambda root: rewrite_cuhk03(root, query_idx=np.zeros(0)),
        query_empty="the query split of the CUHK03 dataset is empty .*config_detected.mat .query_idx.",
    )


def custom_folders_case(mode: str) -> Case:
    return Case(
        id=f"custom-{mode}",
        dataset="custom",
        build=lambda root: build_custom_folders(root, mode=mode),
        remove_train=lambda root: replace_folder(root / "train", keep=False),
        empty_train=lambda root: replace_folder(root / "train", keep=True),
        remove_query=lambda root: replace_folder(root / "query", keep=False),
        query_missing="{root} has (train/, )?gallery/ but not query/",
        empty_query=lambda root: replace_folder(root / "query", keep=True),
        query_empty=(
            "the query split of the custom dataset is empty \\(read from {root}/query\\)"
            if mode != "csv"
            else "CSV file {root}/query/labels.csv does not exist"
        ),
    )


CASES = [
    market_case("market1501", "Market-1501"),
    market_case("dukemtmcreid", "DukeMTMC-reID", duke=True),
    market_case("synthetic", "synthetic"),
    msmt_case("v1"),
    msmt_case("v2"),
    cuhk03_case(v73=False),
    cuhk03_case(v73=True),
    custom_folders_case("pattern"),
    custom_folders_case("folders"),
    custom_folders_case("csv"),
    Case(
        id="custom-csv-split-column",
        dataset="custom",
        build=build_custom_split_column,
        remove_train=remove_split_column_train,
        empty_train=lambda root: write_split_column_csv(root, ("query", "gallery")),  # train images, no rows
        remove_query=lambda root: write_split_column_csv(root, ("train", "gallery")),
        query_missing="the query split of the custom dataset is empty \\(read from {root}/labels.csv\\)",
        empty_query=lambda root: write_split_column_csv(root, ("gallery",)),
        query_empty="the query split of the custom dataset is empty \\(read from {root}/labels.csv\\)",
    ),
]


def error_pattern(template: str, root: Path) -> str:
    return template.replace("{root}", re.escape(str(root)))


def test_every_registered_dataset_has_a_test_only_case() -> None:
    assert {case.dataset for case in CASES} == set(DATASETS)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
@pytest.mark.parametrize("train_part", ["absent", "empty"])
def test_no_train_part_gives_an_empty_train_split(tmp_path: Path, case: Case, train_part: str) -> None:
    options = case.build(tmp_path)
    full = load_dataset(case.dataset, tmp_path, **options)
    assert (len(full.train), len(full.query), len(full.gallery)) == (len(TRAIN), len(QUERY), len(GALLERY))
    (case.remove_train if train_part == "absent" else case.empty_train)(tmp_path)

    split = load_dataset(case.dataset, tmp_path, **options)
    assert split.train == () and split.num_train_pids == 0 and split.num_train_cams == 0
    assert split.extra["train_pid_mapping"] == {}
    assert split.query == full.query and split.gallery == full.gallery  # same paths, ids and cameras
    assert sorted(s.pid for s in split.query) == [4, 5] and sorted(s.pid for s in split.gallery) == [4, 5, 5]
    assert split.name == full.name and split.has_camids


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
@pytest.mark.parametrize("with_train", [True, False], ids=["with-train", "test-only"])
def test_missing_or_empty_query_is_an_error_naming_it(tmp_path: Path, case: Case, with_train: bool) -> None:
    options = case.build(tmp_path / "missing")
    case.build(tmp_path / "empty")
    for root in (tmp_path / "missing", tmp_path / "empty"):
        if not with_train:
            case.remove_train(root)
    case.remove_query(tmp_path / "missing")
    with pytest.raises(DatasetError, match=error_pattern(case.query_missing, tmp_path / "missing")):
        load_dataset(case.dataset, tmp_path / "missing", **options)
    case.empty_query(tmp_path / "empty")
    with pytest.raises(DatasetError, match=error_pattern(case.query_empty, tmp_path / "empty")):
        load_dataset(case.dataset, tmp_path / "empty", **options)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_a_wrong_root_is_still_an_error(tmp_path: Path, case: Case) -> None:
    options = case.build(tmp_path / "data")
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "elsewhere"))):
        load_dataset(case.dataset, tmp_path / "elsewhere", **options)


# ---------------------------------------------------------------------------------------------------------------
# real layout errors in the train part stay errors; parser-specific ways to be test-only


def test_market_train_errors_stay_errors(tmp_path: Path) -> None:
    build_market(tmp_path)
    touch(tmp_path / "bounding_box_train", ["person.jpg"])
    with pytest.raises(
        DatasetError, match=f"1 of 7 image name.s. in {re.escape(str(tmp_path))}/bounding_box_train"
    ):
        load_dataset("market1501", tmp_path)
    replace_folder(tmp_path / "bounding_box_train", keep=False)
    (tmp_path / "bounding_box_train").write_text("")
    with pytest.raises(DatasetError, match="bounding_box_train is not a folder"):
        load_dataset("market1501", tmp_path)


def test_market_test_only_copy_in_a_sub_folder_and_junk_only_train(tmp_path: Path) -> None:
    folder = tmp_path / "Market-1501-v15.09.15"
    build_market(folder)
    replace_folder(folder / "bounding_box_train", keep=True)
    touch(folder / "bounding_box_train", ["-1_c1s1_000001_01.jpg", "0000_c2s1_000002_01.jpg", "Thumbs.db"])
    split = load_dataset("Market-1501", tmp_path)  # the parent: the sub-folder is found
    assert split.train == () and split.extra["root"] == str(folder)
    assert (len(split.query), len(split.gallery)) == (len(QUERY), len(GALLERY))


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_msmt17_without_train_lists_or_with_a_broken_one(tmp_path: Path, version: str) -> None:
    build_msmt(tmp_path, version=version)
    full = load_dataset("msmt17", tmp_path)
    (tmp_path / "list_train.txt").rename(tmp_path / "list_train.bak")
    (tmp_path / "list_val.txt").unlink()
    split = load_dataset("msmt17", tmp_path)
    assert split.train == () and split.extra["version"] == version
    assert split.query == full.query and split.gallery == full.gallery
    # with train images and list_train.txt, the lists are read strictly
    (tmp_path / "list_train.bak").rename(tmp_path / "list_train.txt")
    with pytest.raises(DatasetError, match="missing list_val.txt"):
        load_dataset("msmt17", tmp_path)
    assert len(load_dataset("msmt17", tmp_path, include_val=False).train) == 4
    first = (tmp_path / "list_train.txt").read_text().split()[0]
    (msmt_train_dir(tmp_path) / first).unlink()
    with pytest.raises(DatasetError, match="list_train.txt refers to 1 of 4 image.s. that do not exist"):
        load_dataset("msmt17", tmp_path, include_val=False)


@pytest.mark.parametrize("v73", [False, True], ids=["v5", "v7.3"])
def test_cuhk03_train_images_missing(tmp_path: Path, v73: bool) -> None:
    build_cuhk03(tmp_path, v73=v73)
    train_files = cuhk03_protocol()["filelist"][: len(TRAIN)]
    (tmp_path / "images_detected" / train_files[0]).unlink()
    with pytest.raises(DatasetError, match="refers to 1 of 11 image.s. that do not exist"):
        load_dataset("cuhk03", tmp_path)
    for name in train_files[1:]:  # none of them there: a test-only copy of the images
        (tmp_path / "images_detected" / name).unlink()
    split = load_dataset("cuhk03", tmp_path)
    assert split.train == () and (len(split.query), len(split.gallery)) == (len(QUERY), len(GALLERY))


def test_custom_csv_split_folders_with_a_header_only_train_csv(tmp_path: Path) -> None:
    build_custom_folders(tmp_path, mode="csv")
    replace_folder(tmp_path / "train", keep=True)
    (tmp_path / "train" / "labels.csv").write_text("path,pid,camid\n")
    assert load_dataset("custom", tmp_path, mode="csv").train == ()
    (tmp_path / "train" / "labels.csv").unlink()
    touch(tmp_path / "train", ["0001_c1_0.jpg"])  # images but no CSV: a real layout error
    with pytest.raises(DatasetError, match="CSV file .*train/labels.csv does not exist"):
        load_dataset("custom", tmp_path, mode="csv")


def test_custom_train_and_query_without_gallery_is_an_error(tmp_path: Path) -> None:
    build_custom_folders(tmp_path, mode="pattern")
    replace_folder(tmp_path / "gallery", keep=False)
    with pytest.raises(DatasetError, match=f"{re.escape(str(tmp_path))} has train/, query/ but not gallery/"):
        load_dataset("custom", tmp_path, pattern=PATTERN)


# ---------------------------------------------------------------------------------------------------------------
# Split / make_split / summaries with an empty train split


def test_make_split_and_summary_with_an_empty_train_split() -> None:
    query = [Sample("q.jpg", 4, 0)]
    gallery = [Sample("g1.jpg", 4, 1), Sample("g2.jpg", 9, 2)]
    split = make_split([], query, gallery, name="site")
    assert split.train == () and split.num_train_pids == 0 and split.num_train_cams == 0
    assert split.extra["train_pid_mapping"] == {} and split.query == tuple(query)
    summary = summarize_split(split)
    assert summary["train"] == {"ids": 0, "images": 0, "cameras": 0}
    assert summary["gallery"] == {"ids": 2, "images": 2, "cameras": 2}
    lines = format_summary(summary).splitlines()
    assert lines[0] == "dataset: site (test only: empty train split)"
    assert lines[3].split() == ["train", "0", "0", "0"]
