"""`ImageDataset`: records + transform -> :class:`~reidkit.data.batch.ImageItem` s for a training DataLoader.

Its :attr:`ImageDataset.collate` (:func:`reidkit.data.batch.collate_items`) turns a list of items into a
:class:`~reidkit.data.batch.Batch`.

Also the training-data extras of the loss family: attribute labels per training image read from a CSV
(:func:`read_attribute_csv`, :func:`train_attribute_labels`) and extra unlabelled images
(:func:`unlabelled_samples`, pid -1).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from torch import Tensor
from torch.utils.data import Dataset

from reidkit.data.batch import ImageItem, collate_items
from reidkit.data.records import NO_CAMERA, Sample, Split
from reidkit.data.transforms import read_image
from reidkit.errors import DatasetError

#: pid of an unlabelled image (see :func:`reidkit.losses.identity.lsro`).
UNLABELLED_PID = -1
#: attribute code meaning "unknown" (ignored by the attribute loss).
UNKNOWN_ATTRIBUTE = -1


class ImageDataset(Dataset):
    """Images of ``records`` passed through ``transform(image, rng)``.

    An item key is either an index, or ``(index, seed)`` from :class:`reidkit.data.sampler.SeededBatches`;
    the seed makes the random augmentation of that item reproducible.

    Args:
        records: the samples.
        transform: ``transform(image, rng) -> [3, H, W]``.
        attribute_labels: optional ``{attribute name: code}`` per record, the items' ``attributes``
            (collated into ``{name: [B]}``).
        keypoints: optional ``[17, 3]`` keypoints per record in its stored image's pixels; the transform must
            then have ``with_points(image, points, rng)`` (:class:`reidkit.data.transforms.TrainTransform`), which
            moves them with the image (the items' ``keypoints``).
    """

    #: the ``collate_fn`` of a DataLoader over this dataset: items -> :class:`Batch`
    collate = staticmethod(collate_items)

    def __init__(
        self,
        records: Sequence[Sample],
        transform: Callable[..., Tensor],
        *,
        attribute_labels: Sequence[Mapping[str, int]] | None = None,
        keypoints: Sequence[np.ndarray] | None = None,
    ) -> None:
        self.records = list(records)
        self.transform = transform
        if attribute_labels is not None and len(attribute_labels) != len(self.records):
            raise ValueError(
                f"attribute_labels: expected one mapping per record ({len(self.records)}), "
                f"got {len(attribute_labels)}"
            )
        self.attribute_labels = [dict(labels) for labels in attribute_labels] if attribute_labels else None
        if keypoints is not None and len(keypoints) != len(self.records):
            raise ValueError(
                f"keypoints: expected one [17, 3] array per record ({len(self.records)}), got {len(keypoints)}"
            )
        self.keypoints = None if keypoints is None else list(keypoints)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int | tuple[int, int]) -> ImageItem:
        index, seed = key if isinstance(key, tuple) else (key, None)
        record = self.records[index]
        rng = np.random.default_rng(seed) if seed is not None else None
        attributes = self.attribute_labels[index] if self.attribute_labels is not None else None
        if self.keypoints is None:
            return ImageItem(
                self.transform(read_image(record.path), rng), record.pid, record.camid, attributes
            )
        image, points = self.transform.with_points(read_image(record.path), self.keypoints[index], rng)
        return ImageItem(image, record.pid, record.camid, attributes, points)


def unlabelled_samples(root: str | Path) -> list[Sample]:
    """The images under ``root`` (recursively, sorted by path) as samples with pid -1 and no camera.

    Raises:
        DatasetError: ``root`` is not a folder or holds no images.
    """
    from reidkit.data.folder import list_images

    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"unlabelled images: {root} is not a folder of images")
    paths = list_images(root, recursive=True)
    if not paths:
        raise DatasetError(f"unlabelled images: {root} holds no images (.jpg, .png, ...)")
    return [Sample(str(path), UNLABELLED_PID, NO_CAMERA) for path in paths]


def read_attribute_csv(path: str | Path) -> tuple[list[str], dict[int, dict[str, int]]]:
    """Read an attribute table ``pid,<attr1>,<attr2>,...`` (one row per identity, integer codes).

    A code of -1 means "unknown" (that image is left out of that attribute's loss).

    Returns:
        ``(attribute names in column order, {pid: {name: code}})``.

    Raises:
        DatasetError: naming the file and line of a missing/duplicate pid column or id, a row of the wrong
            length or a value that is not an integer >= -1.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"attribute file {path} does not exist")
    with open(path, newline="", encoding="utf-8") as stream:
        rows = list(csv.reader(stream))
    if not rows or not rows[0]:
        raise DatasetError(f"{path}: empty attribute file; expected a header 'pid,<attribute>,...'")
    header = [cell.strip() for cell in rows[0]]
    if header[0] != "pid" or len(header) < 2:
        raise DatasetError(
            f"{path}, line 1: expected a header 'pid,<attribute>,...', got {','.join(header)!r}"
        )
    names = header[1:]
    if len(set(names)) != len(names) or any(not name for name in names):
        raise DatasetError(f"{path}, line 1: attribute names must be non-empty and distinct, got {names}")
    table: dict[int, dict[str, int]] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DatasetError(
                f"{path}, line {number}: expected {len(header)} values ({','.join(header)}), got {len(row)}"
            )
        values = []
        for column, cell in zip(header, row, strict=True):
            cell = cell.strip()
            if not re.fullmatch(r"-?\d+", cell) or int(cell) < (0 if column == "pid" else UNKNOWN_ATTRIBUTE):
                expected = "an integer id" if column == "pid" else "an integer code >= 0 (or -1: unknown)"
                raise DatasetError(
                    f"{path}, line {number}: column {column!r} must be {expected}, got {cell!r}"
                )
            values.append(int(cell))
        pid = values[0]
        if pid in table:
            raise DatasetError(f"{path}, line {number}: pid {pid} appears twice")
        table[pid] = dict(zip(names, values[1:], strict=True))
    if not table:
        raise DatasetError(f"{path}: no attribute rows after the header")
    return names, table


def attribute_value_counts(names: Sequence[str], table: Mapping[int, Mapping[str, int]]) -> dict[str, int]:
    """Number of values of each attribute: ``max code + 1``, at least 2 (a classifier needs two classes)."""
    return {name: max(2, max(row[name] for row in table.values()) + 1) for name in names}


_MARKET_PID = re.compile(r"^(-?\d+)_c\d+")


def original_train_pids(split: Split) -> dict[int, int]:
    """``{relabelled train pid: original pid}`` of a split.

    Uses ``split.extra["train_pid_mapping"]`` (``{original: relabelled}``) when the loader stored it;
    otherwise reads the original id from Market-1501-style file names (``0002_c1s1_...``), checking that it
    agrees with the relabelling (one original id per label, in increasing order as
    :func:`reidkit.data.records.relabel` assigns them).

    Raises:
        DatasetError: the original ids cannot be recovered.
    """
    stored = split.extra.get("train_pid_mapping") if split.extra else None
    if stored:
        return {int(label): int(pid) for pid, label in stored.items()}
    mapping: dict[int, int] = {}
    for sample in split.train:
        match = _MARKET_PID.match(Path(sample.path).name)
        original = int(match.group(1)) if match else None
        if original is None or mapping.setdefault(sample.pid, original) != original:
            raise DatasetError(
                f"cannot recover the original identity of training image {sample.path} (needed to look up "
                "attribute labels by identity): its name is not '<pid>_c<camera>...'"
            )
    labels = sorted(mapping)
    if [mapping[label] for label in labels] != sorted(set(mapping.values())) or len(
        set(mapping.values())
    ) != len(labels):
        raise DatasetError("the training images' file-name ids do not match the relabelled identities")
    return mapping


def train_attribute_labels(
    split: Split, names: Sequence[str], table: Mapping[int, Mapping[str, int]], *, source: str | Path
) -> list[dict[str, int]]:
    """``{name: code}`` of every training sample of ``split``, looked up by its original identity.

    Raises:
        DatasetError: naming ``source`` and the training identities that have no row.
    """
    originals = original_train_pids(split)
    missing = sorted({originals[s.pid] for s in split.train} - set(table))
    if missing:
        shown = ", ".join(str(pid) for pid in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise DatasetError(
            f"{source}: no attribute row for {len(missing)} training identities (pids {shown})"
        )
    return [{name: int(table[originals[s.pid]][name]) for name in names} for s in split.train]
