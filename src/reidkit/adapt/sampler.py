"""`PseudoLabelSampler`: P x K batches over pseudo-identities that are re-clustered at the start of every epoch.

``reidkit adapt`` trains with the same :func:`reidkit.engine.fit` loop as ``reidkit train``; what changes every
epoch is the labelling. :meth:`PseudoLabelSampler.set_epoch` (called by the loop before each epoch's batches)
asks its ``relabel(epoch)`` callback for the epoch's pseudo-labels (one per target image, -1 = outlier left out
of that epoch), writes them into the dataset's records, and builds a :class:`~reidkit.data.sampler.PKSampler` over
the clustered images (seed and epoch as for ``train``).

Exact resume: the labels of each epoch are kept in ``labels_dir/epoch_<NNNN>.npy`` (written atomically). An
epoch started from its first batch is clustered afresh (from the weights at the end of the previous epoch, the
same in a straight and a resumed run); an epoch resumed part-way reads its saved labels instead, because the
weights have moved since it was clustered and the cluster memory in the checkpoint belongs to those labels.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from reidkit._io import atomic_write_bytes
from reidkit.data.image_dataset import ImageDataset
from reidkit.data.sampler import PKSampler
from reidkit.errors import CheckpointError, ReidkitError

__all__ = ["PseudoLabelSampler"]


class PseudoLabelSampler:
    """P x K batches over the clustered images of ``dataset``; labels from ``relabel(epoch)`` each epoch.

    Args:
        dataset: the target images (their record pids are overwritten with the epoch's pseudo-labels).
        relabel: ``relabel(epoch) -> [N]`` int64 labels (``-1``: outlier), called at the start of an epoch.
        labels_dir: where each epoch's labels are kept for resuming.
        p, k, seed: as for :class:`~reidkit.data.sampler.PKSampler`.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        relabel: Callable[[int], np.ndarray],
        labels_dir: str | Path,
        *,
        p: int,
        k: int,
        seed: int = 0,
    ) -> None:
        if p < 1 or k < 1:
            raise ValueError(f"P and K must be >= 1, got P={p}, K={k}")
        self.dataset, self.relabel, self.labels_dir = dataset, relabel, Path(labels_dir)
        self.p, self.k, self.seed = p, k, seed
        self.epoch = self.start_batch = 0
        self._labelled_epoch: int | None = None
        self._inner: PKSampler | None = None
        self._indices = np.zeros(0, dtype=np.int64)

    def labels_path(self, epoch: int) -> Path:
        return self.labels_dir / f"epoch_{epoch:04d}.npy"

    def _labels(self, epoch: int, start_batch: int) -> np.ndarray:
        path = self.labels_path(epoch)
        if start_batch == 0:
            labels = np.asarray(self.relabel(epoch), dtype=np.int64)
            buffer = io.BytesIO()
            np.save(buffer, labels)
            atomic_write_bytes(path, buffer.getvalue())
            return labels
        if not path.is_file():
            raise CheckpointError(
                f"resuming epoch {epoch + 1} at batch {start_batch} needs its pseudo-labels {path}, which are gone"
            )
        return np.load(path)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Label the epoch (cluster, or read the labels of an epoch resumed part-way) and select its batches."""
        if self._labelled_epoch != epoch:
            labels = self._labels(epoch, start_batch)
            if len(labels) != len(self.dataset.records):
                raise ReidkitError(
                    f"epoch {epoch + 1}: {len(labels)} pseudo-labels for {len(self.dataset)} images"
                )
            self.dataset.records = [
                replace(record, pid=int(label))
                for record, label in zip(self.dataset.records, labels, strict=True)
            ]
            self._indices = np.flatnonzero(labels >= 0)
            try:
                self._inner = PKSampler(labels[self._indices], p=self.p, k=self.k, seed=self.seed)
            except ValueError as error:
                raise ReidkitError(
                    f"epoch {epoch + 1}: the clustering left {len(set(labels[self._indices].tolist()))} "
                    f"pseudo-identities, fewer than data.p = {self.p}; lower adapt.min_samples or raise "
                    "adapt.eps, or lower data.p"
                ) from error
            self._labelled_epoch = epoch
        self.epoch, self.start_batch = epoch, start_batch
        assert self._inner is not None
        self._inner.set_epoch(epoch, start_batch)

    def batches(self, epoch: int) -> list[list[int]]:
        """All batches of ``epoch`` (labelled by :meth:`set_epoch` first), as dataset indices."""
        if self._inner is None or self._labelled_epoch != epoch:
            self.set_epoch(epoch)
        assert self._inner is not None
        return [[int(self._indices[i]) for i in batch] for batch in self._inner.batches(epoch)]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches(self.epoch)[self.start_batch :]

    def __len__(self) -> int:
        return len(self.batches(self.epoch)) - self.start_batch
