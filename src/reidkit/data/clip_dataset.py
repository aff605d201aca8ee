"""`ClipDataset`: tracklets + transform -> clips of ``seq_len`` frames for training a temporal model.

Item ``i`` is one clip of tracklet ``i`` as an :class:`~reidkit.data.batch.ImageItem` whose ``image`` is
``[T, 3, H, W]``; :func:`reidkit.data.batch.collate_items` stacks them into a :class:`~reidkit.data.batch.Batch`
of clips ``[B, T, 3, H, W]``. The frames are chosen by :func:`reidkit.data.frames.sample_frames` (``"random"``:
one random frame per segment; ``"evenly"``), and every frame of a clip gets the same random augmentation (the
same flip, crop offset and erased rectangle: a clip shows one walk, not ``T`` differently augmented images).

The frame choice and the augmentation depend only on the item's seed (the ``(index, seed)`` keys of
:class:`reidkit.data.sampler.SeededBatches`, a function of the training seed, epoch and batch), so a resumed
run draws the same clips. A plain index uses :func:`reidkit.data.frames.clip_rng` ``(0, 0, index)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from reidkit.data.batch import ImageItem, collate_items
from reidkit.data.frames import FRAME_MODES, clip_rng, sample_frames
from reidkit.data.records import Sample, Tracklet, VideoSplit
from reidkit.data.transforms import read_image

__all__ = ["ClipDataset", "frame_samples"]


class ClipDataset(Dataset):
    """One clip of ``seq_len`` frames per tracklet, augmented alike.

    Args:
        tracklets: the training tracklets (relabelled pids).
        transform: ``transform(image, rng) -> [3, H, W]`` (e.g. :class:`reidkit.data.transforms.TrainTransform`).
        seq_len: frames per clip.
        mode: ``"random"`` (restricted random sampling) or ``"evenly"``.

    Raises:
        ValueError: ``seq_len`` below 1, a mode other than random / evenly, or a tracklet without frames.
    """

    #: the ``collate_fn`` of a DataLoader over this dataset: items -> :class:`Batch` of clips
    collate = staticmethod(collate_items)

    def __init__(
        self,
        tracklets: Sequence[Tracklet],
        transform: Callable[..., Tensor],
        *,
        seq_len: int,
        mode: str = "random",
    ) -> None:
        if mode not in FRAME_MODES or mode == "all":
            raise ValueError(f"training clips are drawn 'random' or 'evenly', got {mode!r}")
        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
            raise ValueError(f"seq_len must be an integer >= 1 (frames per clip), got {seq_len!r}")
        empty = [t for t in tracklets if not t.paths]
        if empty:
            raise ValueError(f"tracklet of pid {empty[0].pid}, camera {empty[0].camid} has no frames")
        self.tracklets = list(tracklets)
        self.transform = transform
        self.seq_len = seq_len
        self.mode = mode

    def __len__(self) -> int:
        return len(self.tracklets)

    def _clip(self, key: int | tuple[int, int]) -> tuple[int, list[int], np.random.SeedSequence]:
        """(tracklet index, frame indices, augmentation seed) of item ``key``.

        An item seed gives two independent streams, the frame choice and the augmentation; a plain index uses
        :func:`reidkit.data.frames.clip_rng` ``(0, 0, index)`` for the choice.
        """
        index, seed = key if isinstance(key, tuple) else (key, None)
        if seed is None:
            choice, augmentation = clip_rng(0, 0, index), np.random.SeedSequence([0, 0, index, 1])
        else:
            choice_seed, augmentation = np.random.SeedSequence(seed).spawn(2)
            choice = np.random.default_rng(choice_seed)
        count = len(self.tracklets[index].paths)
        return index, sample_frames(count, self.seq_len, self.mode, rng=choice)[0], augmentation

    def frame_indices(self, key: int | tuple[int, int]) -> list[int]:
        """The frame indices (into ``tracklets[index].paths``) of the clip of item ``key``."""
        return self._clip(key)[1]

    def __getitem__(self, key: int | tuple[int, int]) -> ImageItem:
        index, indices, augmentation = self._clip(key)
        tracklet = self.tracklets[index]
        frames = [
            # a fresh generator from the same seed for each frame: the same random draws, the same augmentation
            self.transform(read_image(tracklet.paths[i]), np.random.default_rng(augmentation))
            for i in indices
        ]
        return ImageItem(torch.stack(frames), tracklet.pid, tracklet.camid)


def frame_samples(split: VideoSplit) -> list[Sample]:
    """Every frame of the train tracklets of ``split`` as a :class:`Sample` (a single-frame model's training set)."""
    return [Sample(path, t.pid, t.camid) for t in split.train for path in t.paths]
