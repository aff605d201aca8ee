"""Data-parallel training over processes started by ``torchrun`` (gloo on CPU, NCCL on CUDA).

Every process builds the same run (same seed, same model) and computes the same global P x K batches; process
``rank`` loads and forwards only its share (``SeededBatches(sampler, rank=, world_size=)``: whole identities).
After the forward pass, every process gathers the outputs and labels of all shares (:func:`gather_step`), so
each loss term (batch-hard triplet mining included) sees the whole global batch, exactly as one process would;
the other shares enter without gradient and a process's own share with it, so the backward pass gives each
process the gradient of its own samples, and the sum of the gradients over the processes
(:meth:`Distributed.sum_gradients`) is exactly the single-process gradient of the global batch. The optimiser
steps are then identical on every process and the weights stay equal. The global batch is the configured
``P x K``: the learning rate needs no scaling. Batch-norm layers normalise each share with its own statistics
unless converted to SyncBatchNorm (``train.sync_bn``, CUDA only).

Only rank 0 writes logs, checkpoints and metrics and runs the evaluation; the others wait for it.

Extraction (``torchrun ... -m reidkit extract``) shards the image list: process ``rank`` embeds one contiguous
run of it whose ends fall on batch boundaries (:func:`shard_bounds`), so every batch is the one a single process
would run; rank 0 gathers the rows in order (:meth:`Distributed.gather_rows`) and writes the one file.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from reidkit.data.batch import Batch
from reidkit.errors import ConfigError
from reidkit.models.output import ReidOutput

#: the variables ``torchrun`` sets for every process it starts.
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Distributed:
    """This process's place in a distributed run.

    Attributes:
        rank: 0 .. world_size - 1; rank 0 logs, checkpoints and evaluates.
        world_size: number of processes.
        local_rank: index on this machine (picks the GPU, ``cuda:<local_rank>``).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Distributed:
        """The run described by the ``torchrun`` variables; a single process when none is set.

        Raises:
            ConfigError: some of the variables are set but not all, or they do not make sense (e.g. a rank
                outside the world), which is what a process started by hand rather than by torchrun looks like.
        """
        environ = os.environ if environ is None else environ
        present = [name for name in TORCHRUN_VARIABLES if name in environ]
        if not present:
            return cls()
        missing = [name for name in TORCHRUN_VARIABLES if name not in environ]
        if missing:
            raise ConfigError(
                f"distributed training: {', '.join(present)} set but {', '.join(missing)} missing; launch with "
                "`torchrun --nproc-per-node N -m reidkit train ...` (or unset these variables)"
            )
        try:
            rank, world, local = (int(environ[name]) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
        except ValueError:
            raise ConfigError(
                "distributed training: RANK, WORLD_SIZE and LOCAL_RANK must be integers, got "
                f"{environ['RANK']!r}, {environ['WORLD_SIZE']!r}, {environ['LOCAL_RANK']!r}"
            ) from None
        if world < 1 or not 0 <= rank < world or local < 0:
            raise ConfigError(f"distributed training: rank {rank} of world size {world} (local rank {local})")
        return cls(rank, world, local)

    # ------------------------------------------------------------------ the process group
    def process_device(self, device: str | torch.device) -> torch.device:
        """The device of this process: ``cuda`` becomes ``cuda:<local_rank>`` in a distributed run (one GPU each)."""
        device = torch.device(device)
        if self.enabled and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    @contextlib.contextmanager
    def joined(self, device: torch.device) -> Iterator[Distributed]:
        """The process group, joined for the ``with`` block (:meth:`start`, then :meth:`stop`)."""
        self.start(device)
        try:
            yield self
        finally:
            self.stop()

    def start(self, device: torch.device, *, timeout_s: float = 1800.0) -> None:
        """Join the process group: NCCL for CUDA devices, gloo otherwise (no-op for one process)."""
        if not self.enabled or torch.distributed.is_initialized():
            return
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group(
            backend, rank=self.rank, world_size=self.world_size, timeout=timedelta(seconds=timeout_s)
        )

    def stop(self) -> None:
        if self.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    # ------------------------------------------------------------------ keeping the replicas equal
    def broadcast_module(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every process (the replicas start equal)."""
        if not self.enabled:
            return
        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                torch.distributed.broadcast(tensor.data, src=0)

    def sum_gradients(self, parameters: Iterable[Tensor]) -> None:
        """All-reduce (sum) the gradient of every parameter that has one, in one flat buffer.

        Every process runs the same loss on the same gathered batch, so the same parameters have gradients
        everywhere and the buffers line up.
        """
        if not self.enabled:
            return
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    def broadcast_object(self, value: Any) -> Any:
        """Rank 0's ``value`` on every process (any picklable object)."""
        if not self.enabled:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather_rows(self, rows: np.ndarray) -> np.ndarray | None:
        """Every process's ``[n_r, ...]`` rows, concatenated in rank order, on rank 0; None on the others."""
        if not self.enabled:
            return rows
        parts: list | None = [None] * self.world_size if self.is_main else None
        torch.distributed.gather_object(rows, parts, dst=0)
        return np.concatenate(parts) if parts is not None else None

    # ------------------------------------------------------------------ gathering a step
    def gather(self, tensor: Tensor, dim: int = 0) -> Tensor:
        """This process's ``tensor`` and every other's, concatenated along the batch axis ``dim`` in rank order;
        only the local part keeps its gradient."""
        if not self.enabled:
            return tensor
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        torch.distributed.all_gather(parts, tensor.detach().contiguous())
        parts[self.rank] = tensor
        return torch.cat(parts, dim=dim)


#: the run of one process (no process group); frozen, so safe as a default argument.
SINGLE_PROCESS = Distributed()


def shard_bounds(count: int, batch_size: int, rank: int, world_size: int) -> tuple[int, int]:
    """``[start, stop)`` of process ``rank``'s share of ``count`` items: contiguous, in order, every boundary a
    multiple of ``batch_size`` (the last process may get fewer, or none, of the batches)."""
    per_process = math.ceil(math.ceil(count / batch_size) / world_size) * batch_size
    return min(count, rank * per_process), min(count, (rank + 1) * per_process)


def _batch_axis(extra_name: str) -> int:
    """The batch axis of a model's extra output: ``[M, B, ...]`` for the mutual-learning members, else 0."""
    return 1 if extra_name.startswith("mutual.") else 0


def gather_step(distributed: Distributed, output: ReidOutput, batch: Batch) -> tuple[ReidOutput, Batch]:
    """The model output and labels of the whole global batch (see the module docstring).

    The images are not gathered (the criterion reads labels only): the gathered batch's ``images`` is an expanded
    view of one local image, with the right batch size.
    """
    if not distributed.enabled:
        return output, batch
    gather = distributed.gather
    gathered = ReidOutput(
        embedding=gather(output.embedding),
        global_features=[gather(t) for t in output.global_features],
        part_features=[gather(t) for t in output.part_features],
        logits=[gather(t) for t in output.logits],
        local_features=None if output.local_features is None else gather(output.local_features),
        extra={name: gather(t, _batch_axis(name)) for name, t in output.extra.items()},
    )
    pids = gather(batch.pids)
    attributes = None if batch.attributes is None else {k: gather(v) for k, v in batch.attributes.items()}
    images = batch.images[:1].expand(len(pids), *batch.images.shape[1:])
    return gathered, replace(
        batch, images=images, pids=pids, camids=gather(batch.camids), attributes=attributes, keypoints=None
    )
