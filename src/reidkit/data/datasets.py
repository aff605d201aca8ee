"""Parsers for the standard image ReID dataset layouts and the dataset registry.

Every parser takes the dataset root and returns a :class:`~reidkit.data.records.Split` built by
:func:`~reidkit.data.records.make_split` (the one place train ids are relabelled 0..N-1); query and gallery keep
the original ids. Camera ids are 0-based (Market-1501 ``c1`` is camid 0). ``root`` may be the dataset folder
itself or its parent (e.g. ``root/Market-1501-v15.09.15/``). Parsers never open images.

Query and gallery are required, train is not: a test-only benchmark (train folder or list absent, or holding no
images) gives an empty train split, which evaluation accepts and training refuses.

Layouts:

* Market-1501 (and the synthetic data written by ``reidkit synth``): ``bounding_box_train/``,
  ``bounding_box_test/``, ``query/``; names ``0002_c1s1_000451_03.jpg``. pid -1 (junk) is dropped; pid 0
  (distractors) is kept in the gallery only.
* DukeMTMC-reID: the same three folders; names ``0001_c2_f0046182.jpg``.
* MSMT17: ``train/``, ``test/`` (v1) or ``mask_train_v2/``, ``mask_test_v2/`` (v2) with ``list_train.txt``,
  ``list_val.txt``, ``list_query.txt``, ``list_gallery.txt``; lines ``0000/0000_000_01_0303morning_0015_0.jpg 0``
  (the camera is the third ``_`` field of the file name, 1-based). Train = list_train + list_val by default;
  it is empty when the train folder holds no images or list_train.txt is absent.
* CUHK03, new protocol (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal Encoding", CVPR
  2017; 767 train / 700 test identities): ``images_detected/`` or ``images_labeled/`` with the split file
  ``cuhk03_new_protocol_config_{detected,labeled}.mat`` (``filelist``, ``labels``, ``camId``, ``train_idx``,
  ``query_idx``, ``gallery_idx``; 1-based indices). MATLAB v5 files are read with scipy, v7.3 files with h5py.
  Train is empty without ``train_idx`` or when none of its images is there; some of them missing is an error.
* custom: see :mod:`reidkit.data.folder`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reidkit.data.folder import (
    check_files_exist,
    describe_contents,
    existing_directory,
    format_examples,
    has_images,
    list_images,
    load_custom,
    optional_folder,
    require_nonempty,
)
from reidkit.data.records import Sample, Split, make_split
from reidkit.data.records import format_summary as format_summary  # re-exported
from reidkit.data.records import summarize_split as summarize_split  # re-exported
from reidkit.data.registry import load_from_registry
from reidkit.errors import DatasetError

_MARKET_NAME = re.compile(r"^(-?\d+)_c(\d+)")
_CUHK03_NAME = re.compile(r"\d+_\d+_(\d+)_\d+\.\w+")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def find_dataset_folder(
    root: str | Path,
    *,
    dataset: str,
    layouts: Sequence[Sequence[str]],
    known_names: Sequence[str] = (),
    optional: Sequence[str] = (),
) -> Path:
    """Find the folder that holds a dataset: ``root`` itself or one of its sub-folders.

    Args:
        root: the path the user gave.
        dataset: the dataset's display name, for messages.
        layouts: alternative sets of required entries; names ending in ``/`` are folders, others files.
        known_names: the dataset's usual folder names, preferred when several sub-folders match.
        optional: entries only training needs (named in the message when no folder matches).

    Returns:
        The absolute dataset folder.

    Raises:
        DatasetError: root missing, or neither it nor exactly one sub-folder has one of the layouts.
    """
    root_path = existing_directory(root, dataset=dataset)

    def present(folder: Path, entry: str) -> bool:
        return (folder / entry).is_dir() if entry.endswith("/") else (folder / entry).is_file()

    def matches(folder: Path) -> bool:
        return any(all(present(folder, entry) for entry in layout) for layout in layouts)

    if matches(root_path):
        return root_path
    children = sorted(c for c in root_path.iterdir() if c.is_dir() and not c.name.startswith("."))
    candidates = [c for c in children if matches(c)]
    if len(candidates) > 1:
        preferred = [c for c in candidates if c.name in known_names]
        if len(preferred) == 1:
            return preferred[0]
        raise DatasetError(
            f"{root_path} holds several {dataset} folders ({', '.join(c.name for c in candidates)}); "
            "point the root at one of them"
        )
    if candidates:
        return candidates[0]
    expected = " or ".join(", ".join(layout) for layout in layouts)
    best = max(layouts, key=lambda layout: sum(present(root_path, entry) for entry in layout))
    missing = [entry for entry in best if not present(root_path, entry)]
    usual = f" (usually named {', '.join(n + '/' for n in known_names)})" if known_names else ""
    expected += f" ({', '.join(optional)} only to train)" if optional else ""
    raise DatasetError(
        f"{root_path} is not a {dataset} folder: expected {expected} in it or in one of its sub-folders{usual}; "
        f"missing {', '.join(missing)}; found {describe_contents(root_path)}"
    )


# ---------------------------------------------------------------------------------------------------------------
# Market-1501 / DukeMTMC-reID / synthetic


def _parse_market_folder(directory: Path, *, dataset: str, example: str) -> list[Sample]:
    """Samples of one Market-style folder (junk and distractors still included)."""
    images = list_images(directory)
    samples: list[Sample] = []
    bad: list[str] = []
    for path in images:
        match = _MARKET_NAME.match(path.name)
        if match is None or int(match.group(2)) < 1:
            bad.append(path.name)
            continue
        samples.append(Sample(str(path), int(match.group(1)), int(match.group(2)) - 1))
    if bad:
        raise DatasetError(
            f"{len(bad)} of {len(images)} image name(s) in {directory} do not parse as {dataset} names "
            f"'<pid>_c<camera from 1>...' like {example!r}: e.g. {format_examples(bad)}"
        )
    return samples


@dataclass(frozen=True)
class _MarketLayout:
    """A dataset in Market-1501's folders: its registry name, display name, a file-name example, folder names."""

    name: str
    dataset: str
    example: str
    known: tuple[str, ...]


_MARKET1501 = _MarketLayout(
    "market1501", "Market-1501", "0002_c1s1_000451_03.jpg", ("Market-1501-v15.09.15", "Market-1501", "market1501")
)
_DUKEMTMCREID = _MarketLayout(
    "dukemtmcreid", "DukeMTMC-reID", "0001_c2_f0046182.jpg", ("DukeMTMC-reID", "dukemtmc-reid", "dukemtmcreid")
)
_SYNTHETIC = _MarketLayout("synthetic", "synthetic", "0001_c1s1_000001_00.jpg", ("synthetic",))


def _load_market_layout(root: str | Path, layout_of: _MarketLayout) -> Split:
    name, dataset, example, known = layout_of.name, layout_of.dataset, layout_of.example, layout_of.known
    folders = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
    layout, optional = ["query/", "bounding_box_test/"], ["bounding_box_train/"]
    base = find_dataset_folder(root, dataset=dataset, layouts=[layout], known_names=known, optional=optional)
    parsed = {
        split: _parse_market_folder(base / folder, dataset=dataset, example=example)
        if split != "train" or optional_folder(base / folder)
        else []  # test-only copy: no train folder
        for split, folder in folders.items()
    }
    # pid -1: junk boxes (dropped everywhere). pid 0: distractors (not people of the set): gallery only.
    train = [s for s in parsed["train"] if s.pid > 0]
    query = [s for s in parsed["query"] if s.pid > 0]
    gallery = [s for s in parsed["gallery"] if s.pid >= 0]
    for split, samples in (("query", query), ("gallery", gallery)):
        require_nonempty(samples, split_name=split, dataset=dataset, where=base / folders[split])
    everything = [s for samples in parsed.values() for s in samples]
    extra = {
        "root": str(base),
        "junk_dropped": sum(s.pid < 0 for s in everything),
        "distractors": sum(s.pid == 0 for s in gallery),
        "distractors_dropped": sum(s.pid == 0 for s in parsed["train"] + parsed["query"]),
    }
    return make_split(train, query, gallery, name=name, extra=extra)


def load_market1501(root: str | Path) -> Split:
    """Market-1501 (Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015)."""
    return _load_market_layout(root, _MARKET1501)


def load_dukemtmcreid(root: str | Path) -> Split:
    """DukeMTMC-reID (Zheng et al., "Unlabeled Samples Generated by GAN Improve the Person Re-identification
    Baseline in vitro", ICCV 2017)."""
    return _load_market_layout(root, _DUKEMTMCREID)


def load_synthetic(root: str | Path) -> Split:
    """The synthetic pedestrians written by ``reidkit synth`` (Market-1501 layout)."""
    return _load_market_layout(root, _SYNTHETIC)


def _read_msmt_list(list_file: Path, image_dir: Path) -> list[Sample]:
    """Samples of one MSMT17 list file: lines ``<relative path> <pid>``."""
    samples: list[Sample] = []
    with open(list_file, encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            fields = line.split()
            if not fields:
                continue
            where = f"{list_file} line {number}"
            if len(fields) != 2 or not re.fullmatch(r"\d+", fields[1]):
                raise DatasetError(
                    f"{where}: expected '<image path> <pid>' like "
                    f"'0000/0000_000_01_0303morning_0015_0.jpg 0', found {line.strip()!r}"
                )
            name_fields = os.path.basename(fields[0]).split("_")
            if len(name_fields) < 3 or not name_fields[2].isdigit() or int(name_fields[2]) < 1:
                raise DatasetError(
                    f"{where}: cannot read the camera from {fields[0]!r}; expected the third '_' field of the "
                    "file name to be the camera number from 1 (e.g. 0000_000_01_0303morning_0015_0.jpg)"
                )
            samples.append(Sample(str(image_dir / fields[0]), int(fields[1]), int(name_fields[2]) - 1))
    check_files_exist((s.path for s in samples), source=list_file)
    return samples


def load_msmt17(root: str | Path, *, include_val: bool = True) -> Split:
    """MSMT17 (Wei et al., "Person Transfer GAN to Bridge Domain Gap for Person Re-Identification", CVPR 2018).

    Args:
        root: the ``MSMT17_V1`` / ``MSMT17_V2`` folder or its parent.
        include_val: train on list_train + list_val (the usual protocol); False trains on list_train only.
    """
    train_lists = ["list_train.txt"] + (["list_val.txt"] if include_val else [])
    test_lists = ["list_query.txt", "list_gallery.txt"]
    folders = {"v2": ("mask_train_v2", "mask_test_v2"), "v1": ("train", "test")}
    base = find_dataset_folder(
        root,
        dataset="MSMT17",
        layouts=[[test + "/", *test_lists] for _, test in folders.values()],
        known_names=("MSMT17_V1", "MSMT17_V2", "MSMT17"),
        optional=["mask_train_v2/ or train/", *train_lists],
    )
    version = "v2" if (base / "mask_test_v2").is_dir() else "v1"
    train_dir, test_dir = (base / folder for folder in folders[version])
    train: list[Sample] = []
    # A test-only copy (no train images, or no list_train.txt) has an empty train split.
    if optional_folder(train_dir) and has_images(train_dir) and (base / "list_train.txt").is_file():
        missing = [name for name in train_lists if not (base / name).is_file()]
        if missing:
            raise DatasetError(
                f"{base} has {train_dir.name}/ and list_train.txt but is missing {', '.join(missing)}, which "
                "the MSMT17 train split reads (include_val=false trains on list_train.txt alone)"
            )
        for name in train_lists:
            train += _read_msmt_list(base / name, train_dir)
    query = _read_msmt_list(base / "list_query.txt", test_dir)
    gallery = _read_msmt_list(base / "list_gallery.txt", test_dir)
    for split, samples, source in (("query", query, test_lists[0]), ("gallery", gallery, test_lists[1])):
        require_nonempty(samples, split_name=split, dataset="MSMT17", where=base / source)
    extra = {"root": str(base), "version": version, "include_val": include_val}
    return make_split(train, query, gallery, name="msmt17", extra=extra)


# ---------------------------------------------------------------------------------------------------------------
# CUHK03 (new protocol)


def _hdf5_value(handle: Any, dataset: Any) -> Any:
    """A MATLAB v7.3 variable as numpy array (numbers), str (char) or list (cell)."""
    import h5py

    matlab_class = dataset.attrs.get("MATLAB_class", b"")
    matlab_class = matlab_class.decode() if isinstance(matlab_class, bytes) else str(matlab_class)
    if dataset.attrs.get("MATLAB_empty", 0):  # MATLAB stores an empty array as its (zero) dimensions
        return "" if matlab_class == "char" else np.zeros(0, dtype=np.int64)
    data = dataset[()]
    if h5py.check_dtype(ref=dataset.dtype) is not None:
        return [_hdf5_value(handle, handle[reference]) for reference in np.asarray(data).ravel()]
    if matlab_class == "char":
        return "".join(chr(code) for code in np.asarray(data).ravel() if code)
    return np.asarray(data)


def _load_mat_hdf5(path: Path) -> dict[str, Any]:
    try:
        import h5py
    except ImportError as error:
        raise ImportError(
            f"{path} is a MATLAB v7.3 (HDF5) file; reading it needs h5py: pip install reidkit[mat]"
        ) from error
    try:
        with h5py.File(path, "r") as handle:
            return {
                key: _hdf5_value(handle, handle[key])
                for key in handle
                if not key.startswith("#") and isinstance(handle[key], h5py.Dataset)
            }
    except OSError as error:
        raise DatasetError(f"cannot read {path} as a MATLAB v7.3 (HDF5) file: {error}") from error


def is_hdf5(path: Path) -> bool:
    """True when ``path`` holds an HDF5 file (a MATLAB v7.3 .mat file), judged by the signature at its head."""
    with open(path, "rb") as stream:
        head = stream.read(2048 + len(_HDF5_SIGNATURE))
    return any(head[offset : offset + 8] == _HDF5_SIGNATURE for offset in (0, 512, 1024, 2048))


def load_mat(path: str | Path) -> dict[str, Any]:
    """Variables of a MATLAB .mat file: v5 (and older) via scipy, v7.3 (HDF5) via h5py.

    Raises:
        DatasetError: the file is not a readable .mat file.
        ImportError: a v7.3 file and h5py is not installed.
    """
    import scipy.io

    path = Path(path)
    try:
        return scipy.io.loadmat(str(path))
    except NotImplementedError:  # scipy's answer to v7.3 files
        return _load_mat_hdf5(path)
    except (ValueError, TypeError, OSError, EOFError) as error:
        if is_hdf5(path):
            return _load_mat_hdf5(path)
        raise DatasetError(f"cannot read {path} as a MATLAB .mat file: {error}") from error


def _mat_strings(value: Any, *, where: str) -> list[str]:
    """A MATLAB cell array of strings (as scipy or :func:`_load_mat_hdf5` returns it) as a list of str."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item if isinstance(item, str) else _single_string(item, where=where) for item in value]
    array = np.asarray(value)
    if array.dtype.kind in "US":
        return [str(item).strip() for item in array.ravel()]
    if array.dtype == object:
        return [_single_string(item, where=where) for item in array.ravel()]
    raise DatasetError(f"{where}: expected a cell array of file names, found an array of {array.dtype}")


def _single_string(item: Any, *, where: str) -> str:
    if isinstance(item, str):
        return item
    array = np.asarray(item)
    if array.dtype.kind in "US" and array.size == 1:
        return str(array.ravel()[0]).strip()
    if array.dtype.kind in "US":
        return "".join(str(c) for c in array.ravel()).strip()
    raise DatasetError(f"{where}: expected a file name, found {item!r}")


def _mat_integers(value: Any, *, where: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "iuf" or (array.dtype.kind == "f" and not np.all(np.mod(array, 1) == 0)):
        raise DatasetError(f"{where}: expected integers, found an array of {array.dtype}")
    return array.ravel().astype(np.int64)


def load_cuhk03(
    root: str | Path, *, variant: str = "detected", split_file: str | Path | None = None
) -> Split:
    """CUHK03 under the new protocol (767 train / 700 test identities).

    Reference: Zhong et al., "Re-ranking Person Re-identification with k-reciprocal Encoding", CVPR 2017; the
    images come from Li et al., "DeepReID: Deep Filter Pairing Neural Network for Person Re-identification",
    CVPR 2014.

    Args:
        root: the folder holding ``images_<variant>/`` and the split file, or its parent.
        variant: ``"detected"`` (detector boxes) or ``"labeled"`` (hand-drawn boxes).
        split_file: the protocol .mat file; default ``cuhk03_new_protocol_config_<variant>.mat`` in the folder.
    """
    if variant not in ("detected", "labeled"):
        raise DatasetError(f"unknown CUHK03 variant {variant!r}; choose from detected, labeled")
    image_folder = f"images_{variant}/"
    mat_name = f"cuhk03_new_protocol_config_{variant}.mat"
    layout = [image_folder] if split_file is not None else [image_folder, mat_name]
    base = find_dataset_folder(root, dataset=f"CUHK03 ({variant})", layouts=[layout], known_names=("cuhk03",))
    mat_path = Path(split_file).expanduser().absolute() if split_file is not None else base / mat_name
    if not mat_path.is_file():
        raise DatasetError(f"CUHK03 split file {mat_path} does not exist")
    variables = load_mat(mat_path)
    keys = ["filelist", "labels", "query_idx", "gallery_idx"]
    missing = [key for key in keys if key not in variables]
    if missing:
        found = sorted(key for key in variables if not key.startswith("__"))
        raise DatasetError(
            f"{mat_path} lacks the variable(s) {', '.join(missing)}; expected {', '.join(keys)}, camId and "
            f"train_idx (the CUHK03 new protocol split file), found {', '.join(found) or 'none'}"
        )
    files = _mat_strings(variables["filelist"], where=f"{mat_path}: filelist")
    labels = _mat_integers(variables["labels"], where=f"{mat_path}: labels")
    if "camId" in variables:
        cameras = _mat_integers(variables["camId"], where=f"{mat_path}: camId")
    else:  # the camera is also the third field of the file name (1_001_1_01.png)
        matches = [_CUHK03_NAME.fullmatch(os.path.basename(f)) for f in files]
        bad = [f for f, match in zip(files, matches, strict=True) if match is None]
        if bad:
            raise DatasetError(
                f"{mat_path} has no camId variable and {len(bad)} of {len(files)} filelist name(s) do not "
                f"carry the camera as '<campus>_<pid>_<camera>_<image>.png': e.g. {format_examples(bad)}"
            )
        cameras = np.array([int(match.group(1)) for match in matches if match], dtype=np.int64)
    if not len(files) == len(labels) == len(cameras):
        raise DatasetError(
            f"{mat_path}: filelist, labels and camId must have one entry per image; found {len(files)}, "
            f"{len(labels)} and {len(cameras)}"
        )
    if len(cameras) and cameras.min() < 1:
        raise DatasetError(f"{mat_path}: camId must hold 1-based camera numbers; found {cameras.min()}")
    image_dir = base / image_folder.rstrip("/")
    splits: dict[str, list[Sample]] = {}
    for split in ("train", "query", "gallery"):  # no train_idx: a test-only split file
        indices = _mat_integers(variables.get(f"{split}_idx", []), where=f"{mat_path}: {split}_idx")
        outside = indices[(indices < 1) | (indices > len(files))]
        if len(outside):
            raise DatasetError(
                f"{mat_path}: {split}_idx holds {len(outside)} index(es) outside 1..{len(files)} (1-based), "
                f"e.g. {format_examples([str(i) for i in outside])}"
            )
        splits[split] = [
            Sample(str(image_dir / files[i - 1]), int(labels[i - 1]), int(cameras[i - 1]) - 1)
            for i in indices
        ]
        if split != "train":
            require_nonempty(
                splits[split], split_name=split, dataset="CUHK03", where=f"{mat_path} ({split}_idx)"
            )
    if not any(os.path.isfile(s.path) for s in splits["train"]):
        splits["train"] = []  # a test-only copy of the images: none of the train images is there
    check_files_exist(sorted({s.path for samples in splits.values() for s in samples}), source=mat_path)
    extra = {"root": str(base), "variant": variant, "split_file": str(mat_path)}
    return make_split(splits["train"], splits["query"], splits["gallery"], name="cuhk03", extra=extra)


# ---------------------------------------------------------------------------------------------------------------
# Registry and summaries

#: Every dataset by name: ``loader(root, **options) -> Split``. Read-only: do not add entries at run time.
DATASETS: dict[str, Callable[..., Split]] = {
    "market1501": load_market1501,
    "dukemtmcreid": load_dukemtmcreid,
    "msmt17": load_msmt17,
    "cuhk03": load_cuhk03,
    "synthetic": load_synthetic,
    "custom": load_custom,
}


def load_dataset(name: str, root: str | Path, **options: Any) -> Split:
    """Parse a dataset by registry name.

    Args:
        name: a key of :data:`DATASETS` (case, ``-`` and ``_`` ignored: ``Market-1501`` works).
        root: the dataset folder or its parent.
        **options: the loader's keyword options (e.g. ``include_val`` for msmt17, ``variant`` for cuhk03,
            ``pattern`` / ``cameras`` for custom).

    Raises:
        DatasetError: an unknown name or option (the message lists the choices), or any parse error.
    """
    return load_from_registry(DATASETS, name, root, options, kind="dataset")
