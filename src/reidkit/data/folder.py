"""Custom (user) datasets, and the file-listing and checking helpers that every dataset parser shares.

A custom dataset is read in one of three modes:

* ``"pattern"``: a folder of images whose file names carry the identity and the camera, read with a regular
  expression that has the named groups ``pid`` and ``camid``, e.g. ``r"(?P<pid>\\d+)_c(?P<camid>\\d+)"``.
* ``"folders"``: one sub-folder per identity (the folder name is the identity); the camera comes from a regular
  expression with a ``camid`` group applied to each file name (``camera_pattern``).
* ``"csv"``: a CSV file with the header ``path,pid,camid`` (paths relative to the CSV's folder) and an optional
  ``split`` column whose values are ``train``, ``query`` or ``gallery``.

If the root holds ``query/`` and ``gallery/`` sub-folders (and ``train/``), each is read in the chosen mode (in CSV
mode each holds its own CSV file). Without ``train/``, or with an empty one, the train split is empty: a test-only
set, which can be evaluated but not trained on (likewise a ``split`` column without ``train`` rows). Otherwise
(and without a ``split`` column) the identities are split deterministically into train and test, and in the
test identities one image per identity per camera becomes a query; the rest form the gallery.

Identities must be integers in CSV files; folder names and regex groups that are not all integers are numbered
in sorted order. Negative identities mark junk images (as in Market-1501) and are dropped.
Camera ids are mapped to 0..C-1 in sorted order of the values found (numeric order when all are integers), over
all splits together. Without camera ids the dataset can still be read in the explicit "no camera ids" mode
(``cameras=False``): every camid is :data:`~reidkit.data.records.NO_CAMERA` and ``Split.has_camids`` is False.
Parsers never open images: unreadable files are reported when they are loaded.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from reidkit.data.records import NO_CAMERA, Sample, Split, make_split, split_by_identity
from reidkit.errors import DatasetError

#: File extensions read as images (compared case-insensitively). Other files (e.g. ``Thumbs.db``) are skipped.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"})

#: How many offending names an error message shows.
MAX_EXAMPLES = 5

SPLIT_NAMES = ("train", "query", "gallery")
MODES = ("pattern", "folders", "csv")
DEFAULT_CSV_NAME = "labels.csv"

_NO_CAMERA_HELP = (
    "Camera ids are needed by the standard cross-camera evaluation protocol. Either provide them, or load the "
    'data in the explicit "no camera ids" mode with cameras=False (on the command line: --option cameras=false); '
    "every camid then becomes -1 and evaluation excludes only the query image itself from its gallery."
)


def is_image_file(path: str | Path) -> bool:
    """True for a non-hidden file name with one of :data:`IMAGE_EXTENSIONS`."""
    name = os.path.basename(path)
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def list_images(directory: str | Path, *, recursive: bool = False) -> list[Path]:
    """Image files in ``directory`` (and its sub-folders when ``recursive``), sorted by path.

    Hidden files and files with other extensions are skipped. Images are not opened.
    """
    directory = Path(directory)
    if not recursive:
        with os.scandir(directory) as entries:
            return sorted(directory / e.name for e in entries if e.is_file() and is_image_file(e.name))
    found: list[Path] = []
    for folder, subfolders, files in os.walk(directory):
        subfolders[:] = [s for s in subfolders if not s.startswith(".")]
        found.extend(Path(folder) / f for f in files if is_image_file(f))
    return sorted(found)


def has_images(directory: str | Path) -> bool:
    """True when ``directory`` (or a sub-folder) holds at least one image file; stops at the first one."""
    for _, subfolders, files in os.walk(directory):
        subfolders[:] = [s for s in subfolders if not s.startswith(".")]
        if any(is_image_file(f) for f in files):
            return True
    return False


def optional_folder(path: Path) -> bool:
    """Whether an optional folder (e.g. a train folder) is there: False when absent.

    Raises:
        DatasetError: ``path`` exists but is not a folder.
    """
    if path.exists() and not path.is_dir():
        raise DatasetError(f"{path} is not a folder (expected a folder of images, or nothing)")
    return path.is_dir()


def format_examples(items: Sequence[str], limit: int = MAX_EXAMPLES) -> str:
    """``'a', 'b', 'c' (and 7 more)``: the first ``limit`` items of a list for an error message."""
    shown = ", ".join(repr(str(item)) for item in items[:limit])
    more = len(items) - limit
    return shown + (f" (and {more} more)" if more > 0 else "")


def check_files_exist(paths: Iterable[str], *, source: str | Path) -> None:
    """Raise a :class:`DatasetError` naming ``source`` if any of ``paths`` is not an existing file.

    Args:
        paths: image paths that a list/CSV/.mat file refers to.
        source: the file that refers to them (named in the message).
    """
    paths = list(paths)
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DatasetError(
            f"{source} refers to {len(missing)} of {len(paths)} image(s) that do not exist, "
            f"e.g. {format_examples(missing)}"
        )


def require_nonempty(samples: Sequence[Sample], *, split_name: str, dataset: str, where: str | Path) -> None:
    """Raise a :class:`DatasetError` if a split has no samples."""
    if not samples:
        raise DatasetError(f"the {split_name} split of the {dataset} dataset is empty (read from {where})")


def describe_contents(directory: Path, limit: int = 10) -> str:
    """A short listing of a folder for error messages: ``a/, b/, notes.txt (and 3 more)`` or ``nothing``."""
    try:
        entries = sorted(directory.iterdir())
    except OSError as error:
        return f"an unreadable folder ({error.strerror})"
    names = [e.name + ("/" if e.is_dir() else "") for e in entries]
    if not names:
        return "nothing (the folder is empty)"
    shown = ", ".join(names[:limit])
    return shown + (f" (and {len(names) - limit} more)" if len(names) > limit else "")


def existing_directory(root: str | Path, *, dataset: str) -> Path:
    """``root`` as an absolute path; raise a :class:`DatasetError` if it is missing or not a folder."""
    path = Path(root).expanduser().absolute()
    if not path.exists():
        raise DatasetError(f"dataset root {path} does not exist (expected the {dataset} dataset there)")
    if not path.is_dir():
        raise DatasetError(f"dataset root {path} is not a folder (expected the {dataset} dataset folder)")
    return path


@dataclass(frozen=True)
class _Entry:
    """One parsed image before identities and cameras are mapped to integers."""

    path: str
    identity: str  # the identity as written in the source (folder name, regex group or CSV cell)
    camera: str | None  # the camera as written in the source; None in "no camera ids" mode


def _compile(pattern: str, *, option: str, required: Sequence[str], cameras: bool) -> re.Pattern[str]:
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise DatasetError(f"{option}='{pattern}' is not a valid regular expression: {error}") from error
    for group in required:
        if group not in regex.groupindex:
            raise DatasetError(f"{option}='{pattern}' has no named group (?P<{group}>...)")
    if cameras and "camid" not in regex.groupindex:
        raise DatasetError(
            f"{option}='{pattern}' has no named group (?P<camid>...), so the images have no camera ids. "
            + _NO_CAMERA_HELP
        )
    return regex


def _parse_pattern_folder(directory: Path, regex: re.Pattern[str], *, cameras: bool) -> list[_Entry]:
    images = list_images(directory, recursive=True)
    entries: list[_Entry] = []
    bad: list[str] = []
    for path in images:
        match = regex.search(path.name)
        camera = match.groupdict().get("camid") if match and cameras else None
        if match is None or match.group("pid") is None or (cameras and camera is None):
            bad.append(str(path.relative_to(directory)))
            continue
        entries.append(_Entry(str(path), match.group("pid"), camera))
    if bad:
        raise DatasetError(
            f"{len(bad)} of {len(images)} image file name(s) in {directory} do not match the pattern "
            f"'{regex.pattern}' (named group{'s pid and camid' if cameras else ' pid'}): "
            f"e.g. {format_examples(bad)}"
        )
    return entries


def _parse_identity_folders(directory: Path, regex: re.Pattern[str] | None, *, cameras: bool) -> list[_Entry]:
    loose = list_images(directory)
    if loose:
        raise DatasetError(
            f"{directory} holds {len(loose)} image(s) directly (e.g. {format_examples([p.name for p in loose])}); "
            "in folders mode every image must be inside a sub-folder named after its identity"
        )
    entries: list[_Entry] = []
    bad: list[str] = []
    total = 0
    for folder in sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in list_images(folder, recursive=True):
            total += 1
            camera = None
            if cameras:
                assert regex is not None
                match = regex.search(path.name)
                camera = match.group("camid") if match else None
                if camera is None:
                    bad.append(str(path.relative_to(directory)))
                    continue
            entries.append(_Entry(str(path), folder.name, camera))
    if bad:
        raise DatasetError(
            f"{len(bad)} of {total} image file name(s) under {directory} do not match the camera pattern "
            f"'{regex.pattern if regex else None}' (named group camid): e.g. {format_examples(bad)}"
        )
    return entries


def _read_csv(csv_path: Path, *, cameras: bool, allow_split: bool) -> list[tuple[_Entry, str | None]]:
    """Rows of a ``path,pid,camid[,split]`` CSV as (entry, split or None)."""
    if not csv_path.is_file():
        raise DatasetError(
            f"CSV file {csv_path} does not exist (expected a header line path,pid,camid[,split])"
        )
    rows: list[tuple[_Entry, str | None]] = []
    with open(csv_path, newline="", encoding="utf-8-sig") as stream:
        reader = csv.DictReader(stream)
        header = [name.strip() for name in (reader.fieldnames or [])]
        reader.fieldnames = header
        required = ["path", "pid"] + (["camid"] if cameras else [])
        missing = [column for column in required if column not in header]
        if missing == ["camid"]:
            raise DatasetError(
                f"{csv_path} has no camid column (header: {','.join(header)}), so the images have no camera "
                "ids. " + _NO_CAMERA_HELP
            )
        if missing:
            raise DatasetError(
                f"{csv_path} is missing the column(s) {', '.join(missing)}: expected a header line "
                f"path,pid,camid[,split], found {','.join(header) if header else 'an empty file'!r}"
            )
        has_split = "split" in header
        if has_split and not allow_split:
            raise DatasetError(
                f"{csv_path} has a split column, but it already lies in a train/query/gallery folder; "
                "use one or the other"
            )
        for row in reader:
            where = f"{csv_path} line {reader.line_num}"
            if None in row or any(value is None for value in row.values()):
                found = sum(value is not None for key, value in row.items() if key is not None)
                raise DatasetError(
                    f"{where}: expected {len(header)} fields ({','.join(header)}), "
                    f"found {found + len(row.get(None) or [])}"
                )
            path = row["path"].strip()
            if not path:
                raise DatasetError(f"{where}: the path field is empty")
            pid = row["pid"].strip()
            if not re.fullmatch(r"[+-]?\d+", pid):
                raise DatasetError(f"{where}: pid {pid!r} is not an integer")
            camera = None
            if cameras:
                camera = row["camid"].strip()
                if not re.fullmatch(r"[+-]?\d+", camera):
                    raise DatasetError(f"{where}: camid {camera!r} is not an integer")
            split = None
            if has_split:
                split = row["split"].strip().lower()
                if split not in SPLIT_NAMES:
                    raise DatasetError(
                        f"{where}: split {row['split']!r} is not one of {', '.join(SPLIT_NAMES)}"
                    )
            full_path = path if os.path.isabs(path) else str(csv_path.parent / path)
            rows.append((_Entry(full_path, pid, camera), split))
    check_files_exist((entry.path for entry, _ in rows), source=csv_path)
    return rows


def _sorted_values(values: Iterable[str]) -> list[str]:
    """Unique values in numeric order when all are integers, else in string order."""
    unique = set(values)
    if all(re.fullmatch(r"[+-]?\d+", value) for value in unique):
        return sorted(unique, key=int)
    return sorted(unique)


def _to_samples(parts: dict[str, list[_Entry]], *, cameras: bool) -> tuple[dict[str, list[Sample]], dict]:
    """Map identities and cameras of all parts jointly to integers; drop junk (negative ids)."""
    everything = [entry for entries in parts.values() for entry in entries]
    extra: dict = {}
    identity_names = _sorted_values(entry.identity for entry in everything)
    if all(re.fullmatch(r"[+-]?\d+", name) for name in identity_names):
        identity_of = {name: int(name) for name in identity_names}
    else:
        identity_of = {name: index for index, name in enumerate(identity_names)}
        extra["identity_names"] = identity_names
    camera_of: dict[str | None, int] = {None: NO_CAMERA}
    if cameras:
        camera_names = _sorted_values(entry.camera for entry in everything if entry.camera is not None)
        camera_of.update({name: index for index, name in enumerate(camera_names)})
        extra["camera_names"] = camera_names
    samples: dict[str, list[Sample]] = {}
    junk = 0
    for part, entries in parts.items():
        kept = []
        for entry in entries:
            pid = identity_of[entry.identity]
            if pid < 0:  # negative ids mark junk images, as in Market-1501
                junk += 1
                continue
            kept.append(Sample(entry.path, pid, camera_of[entry.camera]))
        samples[part] = kept
    extra["junk_dropped"] = junk
    return samples, extra


def _parse_folder(
    folder: Path, *, mode: str, pattern: str | None, camera_pattern: str | None, cameras: bool
) -> list[_Entry]:
    """Entries of one folder in pattern or folders mode (see :func:`load_custom` for the arguments)."""
    if mode == "pattern":
        if pattern is None:
            raise DatasetError(
                "pattern mode needs pattern=, a regular expression with named groups pid and camid, "
                r"e.g. '(?P<pid>\d+)_c(?P<camid>\d+)'"
            )
        regex = _compile(pattern, option="pattern", required=["pid"], cameras=cameras)
        return _parse_pattern_folder(folder, regex, cameras=cameras)
    source = camera_pattern
    if (
        source is None
        and pattern is not None
        and "camid" in _compile(pattern, option="pattern", required=[], cameras=False).groupindex
    ):
        source = pattern
    if cameras and source is None:
        raise DatasetError(
            f"{folder}: in folders mode the camera comes from camera_pattern=, a regular expression with a "
            r"named group camid searched in each file name (e.g. '_c(?P<camid>\d+)'); none was given. "
            + _NO_CAMERA_HELP
        )
    regex = _compile(source, option="camera_pattern", required=[], cameras=cameras) if cameras else None
    return _parse_identity_folders(folder, regex, cameras=cameras)


def _has_split_folders(root_path: Path) -> bool:
    """Whether ``root_path`` is read as ``query/`` and ``gallery/`` (and optionally ``train/``) sub-folders.

    Raises:
        DatasetError: some split folders are there, but not both query/ and gallery/.
    """
    present = [s for s in SPLIT_NAMES if (root_path / s).is_dir()]
    missing = [s + "/" for s in ("query", "gallery") if s not in present]
    if present and missing:
        raise DatasetError(
            f"{root_path} has {', '.join(s + '/' for s in present)} but not {', '.join(missing)}: give query/ "
            "and gallery/ (and train/ to train on), or none of train/, query/, gallery/ (then identities are "
            "split into train and test)"
        )
    return bool(present)


def _read_split_folders(root_path: Path, read: Callable[[Path], list[_Entry]]) -> dict[str, list[_Entry]]:
    """Entries of ``root_path/{train,query,gallery}``; no train folder, or an empty one, gives no train entries."""
    parts: dict[str, list[_Entry]] = {}
    for split in SPLIT_NAMES:
        folder = root_path / split
        if split == "train" and (
            not optional_folder(folder) or all(e.name.startswith(".") for e in folder.iterdir())
        ):
            parts[split] = []  # a test-only dataset
        else:
            parts[split] = read(folder)
    return parts


def load_custom(
    root: str | Path,
    *,
    mode: str | None = None,
    pattern: str | None = None,
    camera_pattern: str | None = None,
    csv_file: str | Path | None = None,
    cameras: bool = True,
    train_fraction: float = 0.5,
    seed: int = 0,
    name: str = "custom",
) -> Split:
    """Read a custom dataset (see the module docstring for the three modes).

    Args:
        root: the dataset folder, or the CSV file itself in CSV mode.
        mode: ``"pattern"``, ``"folders"`` or ``"csv"``; None picks one: ``"csv"`` when ``root`` is a file,
            ``csv_file`` is given or ``root/labels.csv`` exists, ``"pattern"`` when ``pattern`` is given, else
            ``"folders"``.
        pattern: pattern mode: a regular expression searched in each file name, with named groups ``pid``
            (an integer) and ``camid``.
        camera_pattern: folders mode: a regular expression with a named group ``camid`` searched in each file
            name (``pattern`` is used when it has a ``camid`` group and this is not given).
        csv_file: CSV mode: the CSV file (relative to ``root``); default ``labels.csv``. With train/query/gallery
            sub-folders, each holds a CSV of this name.
        cameras: False for the explicit "no camera ids" mode (camid = NO_CAMERA, ``has_camids`` False).
        train_fraction: share of identities used for training when the data is split by identity.
        seed: seed of the split by identity and of the choice of query images.
        name: the dataset name stored in the split.

    Returns:
        A :class:`Split`; train ids relabelled 0..N-1, query/gallery ids as given (folder names that are not
        integers are numbered in sorted order; the names are kept in ``split.extra["identity_names"]``). The
        train split is empty for a test-only dataset (query/ and gallery/ without train/ or with an empty one).

    Raises:
        DatasetError: a missing root or CSV, a bad pattern, names that do not parse, missing camera ids, bad CSV
            rows, missing images, or an empty query or gallery split.
    """
    label = f"custom ({name})" if name != "custom" else "custom"
    root_path = Path(root).expanduser().absolute()
    if not root_path.exists():
        raise DatasetError(f"dataset root {root_path} does not exist (expected the {label} dataset there)")
    if root_path.is_file():
        if mode not in (None, "csv"):
            raise DatasetError(f"dataset root {root_path} is a file; only mode='csv' reads a file")
        csv_file, root_path, mode = root_path, root_path.parent, "csv"
    if mode is None:
        has_csv = csv_file is not None or (root_path / DEFAULT_CSV_NAME).is_file()
        mode = "csv" if has_csv else "pattern" if pattern is not None else "folders"
    if mode not in MODES:
        raise DatasetError(f"unknown custom dataset mode {mode!r}; choose from {', '.join(MODES)}")
    csv_name = Path(csv_file if csv_file is not None else DEFAULT_CSV_NAME)
    single_csv = mode == "csv" and (csv_name.is_absolute() or (root_path / csv_name).is_file())
    use_split_dirs = not single_csv and _has_split_folders(root_path)

    def read(folder: Path) -> list[_Entry]:
        if mode == "csv":
            return [e for e, _ in _read_csv(folder / csv_name, cameras=cameras, allow_split=False)]
        return _parse_folder(
            folder, mode=mode, pattern=pattern, camera_pattern=camera_pattern, cameras=cameras
        )

    parts: dict[str, list[_Entry]]
    where = root_path / csv_name if mode == "csv" else root_path
    if use_split_dirs:
        parts = _read_split_folders(root_path, read)
    elif mode == "csv":
        rows = _read_csv(where, cameras=cameras, allow_split=True)
        if rows and rows[0][1] is not None:  # a split column
            parts = {s: [e for e, split in rows if split == s] for s in SPLIT_NAMES}
        else:
            parts = {"all": [e for e, _ in rows]}
    else:
        parts = {"all": read(root_path)}

    samples, extra = _to_samples(parts, cameras=cameras)
    extra.update(root=str(root_path), mode=mode)
    if "all" in samples:
        if not samples["all"]:
            raise DatasetError(f"no images found for the {label} dataset in {where} ({mode} mode)")
        train, query, gallery = split_by_identity(
            samples["all"], train_fraction=train_fraction, seed=seed, cameras=cameras
        )
        extra["split_by_identity"] = {"train_fraction": train_fraction, "seed": seed}
        if not query:
            raise DatasetError(
                f"the query split of the {label} dataset in {where} is empty: no test identity "
                + ("appears in two or more cameras" if cameras else "has two or more images")
            )
    else:
        train, query, gallery = samples["train"], samples["query"], samples["gallery"]
    for split_name, split_samples in (("query", query), ("gallery", gallery)):
        origin = root_path / split_name if use_split_dirs else where
        require_nonempty(split_samples, split_name=split_name, dataset=label, where=origin)
    return make_split(train, query, gallery, name=name, has_camids=cameras, extra=extra)
