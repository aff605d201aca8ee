"""P x K identity sampling for metric-learning batches.

Each batch holds P identities with K images each. An epoch is complete: every image of every
identity is used at least once. Each identity's images are shuffled and cut into chunks of K
(the last chunk, and identities with fewer than K images, are filled by sampling that identity's
images with replacement); batches draw P identities that still have chunks left, and when fewer
than P remain, the last batches are completed with chunks of randomly chosen other identities.
The order depends only on (seed, epoch), so a resumed run replays the same batches.

:class:`UnlabelledMixSampler` appends a fixed number of extra, unlabelled images (pid -1, for the LSRO loss)
to every P x K batch, cycling through them in an order that is also a function of (seed, epoch) only.

:class:`SeededBatches` gives each index its augmentation seed; with ``rank`` / ``world_size`` it yields one
process's share of every global batch (P / world identities, and its share of the unlabelled extras) for
distributed training: every process computes the same global batches, the shares are disjoint, together they are
the global batch, and an image keeps the seed of its position in the global batch, so the union of the ranks'
batches is exactly the single-process batch, whatever the number of processes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np


class _EpochBatches:
    """The batches of one epoch at a time, computed once per epoch; iterating starts at ``start_batch``."""

    epoch: int
    start_batch: int
    _cache: tuple[int, list[list[int]]] | None = None

    def _make_batches(self, epoch: int) -> list[list[int]]:
        raise NotImplementedError

    def batches(self, epoch: int) -> list[list[int]]:
        """All batches of ``epoch``, in order."""
        if self._cache is None or self._cache[0] != epoch:
            self._cache = (epoch, self._make_batches(epoch))
        return self._cache[1]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches(self.epoch)[self.start_batch :]

    def __len__(self) -> int:
        return len(self.batches(self.epoch)) - self.start_batch


class PKSampler(_EpochBatches):
    """Batch sampler yielding lists of ``P * K`` dataset indices.

    Args:
        pids: identity label of each dataset index.
        p: identities per batch.
        k: images per identity.
        seed: base seed; the order of epoch ``e`` is a function of ``(seed, e)`` only.
    """

    def __init__(self, pids: Sequence[int], *, p: int, k: int, seed: int = 0) -> None:
        if p < 1 or k < 1:
            raise ValueError(f"P and K must be >= 1, got P={p}, K={k}")
        self.index_by_pid: dict[int, list[int]] = defaultdict(list)
        for index, pid in enumerate(pids):
            self.index_by_pid[int(pid)].append(index)
        if len(self.index_by_pid) < p:
            raise ValueError(
                f"P x K sampling needs at least P={p} identities, the training set has {len(self.index_by_pid)}"
            )
        self.pids = sorted(self.index_by_pid)
        self.p, self.k, self.seed = p, k, seed
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch to iterate and skip its first ``start_batch`` batches (for resuming)."""
        self.epoch, self.start_batch = epoch, start_batch

    def _chunks(self, pid: int, rng: np.random.Generator) -> list[list[int]]:
        indices = np.array(self.index_by_pid[pid])
        order = list(indices[rng.permutation(len(indices))])
        remainder = (-len(order)) % self.k
        if remainder:
            order += list(rng.choice(indices, size=remainder, replace=True))
        return [[int(i) for i in order[start : start + self.k]] for start in range(0, len(order), self.k)]

    def _make_batches(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch])
        chunks = {pid: self._chunks(pid, rng) for pid in self.pids}
        batches: list[list[int]] = []
        while True:
            available = [pid for pid in self.pids if chunks[pid]]
            if not available:
                break
            if len(available) >= self.p:
                chosen = [available[i] for i in rng.choice(len(available), size=self.p, replace=False)]
            else:
                others = [pid for pid in self.pids if pid not in set(available)]
                fill = [
                    others[i] for i in rng.choice(len(others), size=self.p - len(available), replace=False)
                ]
                chosen = available + fill
            batch: list[int] = []
            for pid in chosen:
                batch += chunks[pid].pop() if chunks[pid] else self._chunks(pid, rng)[0]
            batches.append(batch)
        return batches


class UnlabelledMixSampler(_EpochBatches):
    """A :class:`PKSampler` whose every batch also holds ``per_batch`` indices of unlabelled images.

    Each batch is the P x K batch of ``base`` followed by ``per_batch`` unlabelled indices. The unlabelled
    indices are taken in turn from a shuffled order of ``unlabelled`` (reshuffled whenever it runs out), so
    every extra image is used once before any is used again. The order depends only on ``(seed, epoch)``, as for ``base``.

    Args:
        base: the P x K sampler of the labelled images (its ``seed`` is used).
        unlabelled: dataset indices of the unlabelled images.
        per_batch: unlabelled images per batch.
    """

    def __init__(self, base: PKSampler, unlabelled: Sequence[int], *, per_batch: int) -> None:
        if per_batch < 1:
            raise ValueError(f"per_batch (unlabelled images per batch) must be >= 1, got {per_batch}")
        if len(unlabelled) == 0:
            raise ValueError("unlabelled: expected at least one unlabelled image index")
        self.base = base
        self.unlabelled = np.asarray(unlabelled, dtype=np.int64)
        self.per_batch = per_batch

    @property
    def seed(self) -> int:
        return self.base.seed

    @property
    def epoch(self) -> int:
        return self.base.epoch

    @property
    def start_batch(self) -> int:
        return self.base.start_batch

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch to iterate and skip its first ``start_batch`` batches (for resuming)."""
        self.base.set_epoch(epoch, start_batch)

    def _make_batches(self, epoch: int) -> list[list[int]]:
        """``P * K`` labelled indices, then ``per_batch`` unlabelled ones, per batch."""
        # a stream separate from the base sampler's, so mixing in extra images leaves its batches unchanged
        rng = np.random.default_rng([self.seed, epoch, 1])
        pool: list[int] = []
        batches = []
        for labelled in self.base.batches(epoch):
            extra: list[int] = []
            while len(extra) < self.per_batch:
                if not pool:
                    pool = [int(i) for i in self.unlabelled[rng.permutation(len(self.unlabelled))]]
                extra.append(pool.pop())
            batches.append(list(labelled) + extra)
        return batches


def item_seed(seed: int, epoch: int, batch: int, position: int) -> int:
    """A per-image augmentation seed determined by where the image sits in the training schedule."""
    return int(np.random.default_rng([seed, epoch, batch, position]).integers(2**62))


class SeededBatches:
    """Wrap a :class:`PKSampler` (or :class:`UnlabelledMixSampler`) so that each index travels with its
    augmentation seed; with ``world_size > 1``, only the share of process ``rank`` of each batch.

    A share is identities ``[rank * P / W, (rank + 1) * P / W)`` of the batch's P (K images each, in batch order)
    followed by the same slice of its unlabelled extras. Seeds are those of the positions in the whole batch.

    Raises:
        ValueError: ``rank`` is not in ``[0, world_size)``, or ``world_size`` does not divide P (or the
            unlabelled images per batch).
    """

    def __init__(
        self, sampler: PKSampler | UnlabelledMixSampler, *, rank: int = 0, world_size: int = 1
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank {rank} of world_size {world_size}")
        base = sampler.base if isinstance(sampler, UnlabelledMixSampler) else sampler
        extra = sampler.per_batch if isinstance(sampler, UnlabelledMixSampler) else 0
        if base.p % world_size or extra % world_size:
            raise ValueError(
                f"{world_size} processes must divide data.p={base.p} identities per batch"
                + (f" and the {extra} unlabelled images per batch" if extra else "")
            )
        self.sampler, self.rank, self.world_size = sampler, rank, world_size
        labelled, extra_share = base.p * base.k // world_size, extra // world_size
        self._positions = list(range(rank * labelled, (rank + 1) * labelled))
        start = base.p * base.k + rank * extra_share
        self._positions += list(range(start, start + extra_share))

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        s = self.sampler
        for offset, batch in enumerate(s):
            number = s.start_batch + offset
            positions = self._positions if self.world_size > 1 else range(len(batch))
            yield [(batch[pos], item_seed(s.seed, s.epoch, number, pos)) for pos in positions]

    def __len__(self) -> int:
        return len(self.sampler)
