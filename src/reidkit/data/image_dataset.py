"""`ImageDataset`: records + transform -> ``(image [3, H, W], pid, camid)`` items for a DataLoader."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from torch import Tensor
from torch.utils.data import Dataset

from reidkit.data.records import Sample
from reidkit.data.transforms import read_image


class ImageDataset(Dataset):
    """Images of ``records`` passed through ``transform(image, rng)``.

    An item key is either an index, or ``(index, seed)`` from :class:`reidkit.data.sampler.SeededBatches`;
    the seed makes the random augmentation of that item reproducible.
    """

    def __init__(self, records: Sequence[Sample], transform: Callable[..., Tensor]) -> None:
        self.records = list(records)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, int, int]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        record = self.records[index]
        rng = np.random.default_rng(seed) if seed is not None else None
        return self.transform(read_image(record.path), rng), record.pid, record.camid
