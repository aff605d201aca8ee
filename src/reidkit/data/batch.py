"""`ImageItem` and `Batch`: one training image with its labels, and a collated batch of them.

:class:`reidkit.data.image_dataset.ImageDataset` yields an :class:`ImageItem` per index; :func:`collate_items`
(the training DataLoader's ``collate_fn``) stacks them into a :class:`Batch`, which the training loop moves to
the device and the loss criterion reads by field (``batch.pids``, ``batch.attributes``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import default_collate


@dataclass(frozen=True)
class ImageItem:
    """One transformed training image.

    Attributes:
        image: ``[3, H, W]`` network input.
        pid: identity label (-1 for an unlabelled image).
        camid: camera index.
        attributes: ``{attribute name: code}`` (-1: unknown), or None when the dataset has no attribute labels.
        keypoints: ``[17, 3]`` float32 ``(x, y, visibility)`` in pixels of ``image`` (see
            :mod:`reidkit.data.keypoints`), or None when the dataset carries no keypoints.
    """

    image: Tensor
    pid: int
    camid: int
    attributes: Mapping[str, int] | None = None
    keypoints: np.ndarray | None = None


@dataclass(frozen=True)
class Batch:
    """A batch of ``B`` training images (or clips of a video dataset) and their labels.

    Attributes:
        images: ``[B, 3, H, W]`` network input, or ``[B, T, 3, H, W]``: ``B`` clips of ``T`` frames.
        pids: ``[B]`` int64 identity labels (-1 for unlabelled images).
        camids: ``[B]`` int64 camera indices.
        attributes: ``{attribute name: [B] int64 codes}`` (-1: unknown), or None.
        keypoints: ``[B, 17, 3]`` float32 ``(x, y, visibility)`` in pixels of ``images`` (for the models with
            ``uses_keypoints``), or None.
    """

    images: Tensor
    pids: Tensor
    camids: Tensor
    attributes: Mapping[str, Tensor] | None = None
    keypoints: Tensor | None = None

    def __post_init__(self) -> None:
        size = self.pids.shape[0] if self.pids.dim() == 1 else -1
        labels = [self.camids, *(self.attributes or {}).values()]
        if size < 0 or self.images.dim() not in (4, 5) or self.images.shape[0] != size:
            raise ValueError(
                f"Batch: expected images [B, 3, H, W] (or clips [B, T, 3, H, W]) and pids [B], got "
                f"{tuple(self.images.shape)} and "
                f"{tuple(self.pids.shape)}"
            )
        if any(tuple(label.shape) != (size,) for label in labels):
            shapes = {"camids": tuple(self.camids.shape)}
            shapes.update({name: tuple(value.shape) for name, value in (self.attributes or {}).items()})
            raise ValueError(f"Batch: expected camids and attributes of shape [{size}], got {shapes}")
        if self.keypoints is not None and (
            self.keypoints.dim() != 3 or self.keypoints.shape[::2] != (size, 3)
        ):
            raise ValueError(f"Batch: expected keypoints [{size}, K, 3], got {tuple(self.keypoints.shape)}")

    def __len__(self) -> int:
        return int(self.pids.shape[0])

    @property
    def num_frames(self) -> int:
        """Images in the batch: ``B``, or ``B * T`` for clips."""
        return int(self.images.shape[0] * (self.images.shape[1] if self.images.dim() == 5 else 1))

    def to(self, device: str | torch.device, *, non_blocking: bool = False) -> Batch:
        """The same batch with every tensor on ``device``."""

        def move(tensor: Tensor) -> Tensor:
            return tensor.to(device, non_blocking=non_blocking)

        attributes = None
        if self.attributes is not None:
            attributes = {name: move(value) for name, value in self.attributes.items()}
        keypoints = None if self.keypoints is None else move(self.keypoints)
        return Batch(move(self.images), move(self.pids), move(self.camids), attributes, keypoints)

    def pin_memory(self) -> Batch:
        """The same batch in page-locked memory (called by a DataLoader with ``pin_memory=True``)."""
        attributes = None
        if self.attributes is not None:
            attributes = {name: value.pin_memory() for name, value in self.attributes.items()}
        keypoints = None if self.keypoints is None else self.keypoints.pin_memory()
        return Batch(
            self.images.pin_memory(), self.pids.pin_memory(), self.camids.pin_memory(), attributes, keypoints
        )


def collate_items(items: Sequence[ImageItem]) -> Batch:
    """Stack :class:`ImageItem` s into a :class:`Batch` (the training DataLoader's ``collate_fn``).

    Raises:
        ValueError: an empty list, or items that disagree on having attribute labels (or their names) or
            keypoints.
    """
    if not items:
        raise ValueError("collate_items: expected at least one item")
    with_attributes = [item.attributes is not None for item in items]
    attributes = None
    if any(with_attributes):
        names = list(items[0].attributes or {})
        if not all(with_attributes) or any(list(item.attributes or {}) != names for item in items):
            raise ValueError(
                f"collate_items: every item must have the same attribute labels; the first has {names}"
            )
        attributes = {
            name: torch.tensor([item.attributes[name] for item in items], dtype=torch.int64) for name in names
        }
    with_keypoints = [item.keypoints is not None for item in items]
    if any(with_keypoints) and not all(with_keypoints):
        raise ValueError("collate_items: every item must have keypoints, or none")
    keypoints = (
        torch.from_numpy(np.stack([item.keypoints for item in items])) if all(with_keypoints) else None
    )
    return Batch(
        # default_collate stacks in shared memory inside a DataLoader worker (no copy on the way back)
        images=default_collate([item.image for item in items]),
        pids=torch.tensor([item.pid for item in items], dtype=torch.int64),
        camids=torch.tensor([item.camid for item in items], dtype=torch.int64),
        attributes=attributes,
        keypoints=keypoints,
    )
