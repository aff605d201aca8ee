"""The training loop; ``fit`` writes and resumes typed checkpoints.

A plain ``train_one_epoch`` and a ``fit(run, options)`` that calls it; no trainer class. ``run`` is a
:class:`reidkit.recipe.TrainingRun` (the objects of one training: data, model, criterion, optimiser, schedule
and what the checkpoint records about them), ``options`` a :class:`FitOptions` (how long, how often, where).
``fit`` saves a :class:`reidkit.checkpoint.Checkpoint` whose :class:`~reidkit.checkpoint.TrainingState` holds the
optimiser, AMP scaler, RNG state and the exact position (epoch, batch), so ``resume`` continues as if never
stopped.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from reidkit import checkpoint as checkpoints
from reidkit.checkpoint import CHECKPOINT_NAME, Checkpoint, ModelSpec, TrainingState
from reidkit.data.batch import Batch, collate_items
from reidkit.data.sampler import PKSampler, SeededBatches, UnlabelledMixSampler
from reidkit.distributed import SINGLE_PROCESS, Distributed, gather_step
from reidkit.errors import CheckpointError, ConfigError
from reidkit.precision import autocast, cpu_has_bf16
from reidkit.runlog import JsonLog, NullLog

if TYPE_CHECKING:
    from reidkit.recipe import TrainingRun

LOG_NAME = "log.jsonl"


# ------------------------------------------------------------------------------------------- the loop
@dataclass
class Progress:
    """Where training stands: ``epoch`` is the epoch in progress (0-based); ``batch`` the next batch in it."""

    epoch: int = 0
    batch: int = 0
    global_step: int = 0


def train_loader(
    dataset: Dataset,
    sampler: PKSampler | UnlabelledMixSampler,
    *,
    workers: int = 0,
    pin_memory: bool = False,
    generator: torch.Generator | None = None,
    distributed: Distributed = SINGLE_PROCESS,
) -> DataLoader:
    """:class:`~reidkit.data.batch.Batch` es of ``dataset`` (yielding ``ImageItem`` s) over ``sampler``'s
    current epoch (call its ``set_epoch`` first). Each index travels with its augmentation seed, so a batch is a
    function of (seed, epoch, position) only, whatever ``workers`` is; ``generator`` keeps the DataLoader off
    the global RNG. With ``distributed``, only this process's share of every batch is loaded."""
    return DataLoader(
        dataset,
        batch_sampler=SeededBatches(sampler, rank=distributed.rank, world_size=distributed.world_size),
        num_workers=workers,
        collate_fn=collate_items,
        pin_memory=pin_memory,
        generator=generator,
        persistent_workers=False,
    )


def _takes_keypoints(model: nn.Module) -> bool:
    """A model with ``uses_keypoints`` (possibly inside a DistributedDataParallel wrapper)."""
    return bool(getattr(getattr(model, "module", model), "uses_keypoints", False))


def train_step(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    *,
    scaler: torch.amp.GradScaler | None = None,
    amp: bool = False,
    grad_clip: float | None = None,
    distributed: Distributed = SINGLE_PROCESS,
) -> tuple[Tensor, dict[str, float]]:
    """One optimiser step on ``batch`` (already on the model's device): forward, loss, backward, step.

    With ``distributed``, ``batch`` is this process's share: the loss is computed on the outputs gathered from
    every process and the model's gradients are summed over them before the step (:mod:`reidkit.distributed`).

    Returns:
        ``(loss, terms)``: the scalar total loss (already back-propagated) and the unweighted terms.

    Raises:
        FloatingPointError: the loss is not finite (nothing is updated).
    """
    with autocast(batch.images.device, amp):
        output = (
            model(batch.images, keypoints=batch.keypoints) if _takes_keypoints(model) else model(batch.images)
        )
    loss, terms = criterion(*gather_step(distributed, output, batch))
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss became {loss.item()}")
    optimizer.zero_grad(set_to_none=True)
    # the model's gradients come from the local share only: summed over the processes; the criterion's own
    # parameters (centres, pair head) already got the gradient of the whole gathered batch on every process
    if scaler is not None:
        scaler.scale(loss).backward()
        distributed.sum_gradients(model.parameters())
        if grad_clip:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        distributed.sum_gradients(model.parameters())
        if grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
    return loss, terms


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    batches: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    state: Progress,
    steps_per_epoch: int,
    lr_at: Callable[[float], float],
    scaler: torch.amp.GradScaler | None = None,
    amp: bool = False,
    channels_last: bool = False,
    grad_clip: float | None = None,
    log: Callable[[dict], None] | None = None,
    log_every: int = 20,
    max_steps: int | None = None,
    progress: bool = False,
    distributed: Distributed = SINGLE_PROCESS,
) -> dict[str, float]:
    """Run the remaining batches of ``state.epoch``; updates ``state`` after every step.

    Returns:
        Mean of every logged loss term over the batches run, and ``images_per_s`` (of all processes of a
        distributed run: this one's times the world size).
    """
    from tqdm import tqdm

    model.train()
    criterion.train()
    sums: dict[str, float] = {}
    count = images = 0
    start = time.perf_counter()
    bar = tqdm(
        total=steps_per_epoch, initial=state.batch, desc=f"epoch {state.epoch + 1}", disable=not progress
    )
    for batch in batches:
        if max_steps is not None and state.global_step >= max_steps:
            break
        factor = lr_at(state.epoch + state.batch / steps_per_epoch)
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
        batch = batch.to(device, non_blocking=True)
        if channels_last and device.type == "cuda" and batch.images.dim() == 4:
            batch = replace(batch, images=batch.images.contiguous(memory_format=torch.channels_last))
        try:
            loss, terms = train_step(
                model,
                criterion,
                optimizer,
                batch,
                scaler=scaler,
                amp=amp,
                grad_clip=grad_clip,
                distributed=distributed,
            )
        except FloatingPointError as error:
            raise FloatingPointError(f"{error} at epoch {state.epoch + 1}, batch {state.batch}") from None
        state.batch += 1
        state.global_step += 1
        count += 1
        images += batch.num_frames * distributed.world_size
        terms = {"loss": float(loss.detach()), **terms}
        for key, value in terms.items():
            sums[key] = sums.get(key, 0.0) + value
        bar.update(1)
        bar.set_postfix(loss=f"{terms['loss']:.3f}")
        if log is not None and (state.global_step % log_every == 0):
            log({"kind": "step", "epoch": state.epoch + 1, "step": state.global_step, "lr": factor, **terms})
    bar.close()
    elapsed = time.perf_counter() - start
    summary = {key: value / max(count, 1) for key, value in sums.items()}
    summary["images_per_s"] = images / elapsed if elapsed > 0 else 0.0
    return summary


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------------------------- fit
@dataclass(frozen=True)
class FitOptions:
    """How :func:`fit` trains: length, evaluation, checkpoints, logging and resuming.

    Attributes:
        out_dir: the run folder (``checkpoint.pt``, ``log.jsonl``, ``tensorboard/``).
        epochs: epochs in all (a resumed run counts the ones already done); 0 saves the untrained model.
        workers: data-loading processes.
        amp: mixed precision on CUDA (bfloat16 where supported, else float16 with a gradient scaler).
        cpu_amp: bfloat16 autocast when training on the CPU (the loss, the optimiser and the weights stay
            float32; fast on CPUs with AMX or AVX512-BF16, see :func:`reidkit.precision.cpu_has_bf16`).
        channels_last: channels-last memory format (CUDA only).
        grad_clip: clip the gradient norm to this value; None: no clipping.
        evaluate: ``evaluate(model) -> metrics dict``; called every ``eval_every`` epochs and after the last.
        eval_every: epochs between evaluations; 0: only after the last epoch.
        eval_before: also evaluate the untrained model (the checkpoint's ``before``).
        checkpoint_every: epochs between checkpoints (one is always written after the last epoch).
        log_every: optimiser steps between ``step`` entries of the log.
        tensorboard: mirror the log to TensorBoard under ``out_dir/tensorboard``.
        resume: a checkpoint written by :func:`fit` for the same model: training continues at the exact
            batch it stopped before.
        max_steps: stop (with a checkpoint) after this many optimiser steps in total.
        progress: show progress bars.
        distributed: this process's place in a ``torchrun`` run (started, see :mod:`reidkit.distributed`):
            it trains on its share of every batch; only rank 0 logs, checkpoints and evaluates.
        sync_bn: convert batch-norm layers to SyncBatchNorm (distributed CUDA runs only).
    """

    out_dir: str | Path
    epochs: int
    workers: int = 0
    amp: bool = False
    cpu_amp: bool = False
    channels_last: bool = False
    grad_clip: float | None = None
    evaluate: Callable[[nn.Module], dict] | None = None
    eval_every: int = 0
    eval_before: bool = False
    checkpoint_every: int = 1
    log_every: int = 20
    tensorboard: bool = False
    resume: str | Path | None = None
    max_steps: int | None = None
    progress: bool = False
    distributed: Distributed = SINGLE_PROCESS
    sync_bn: bool = False

    def __post_init__(self) -> None:
        minimum = {"epochs": 0, "workers": 0, "eval_every": 0, "checkpoint_every": 1, "log_every": 1}
        for name, low in [*minimum.items(), *([("max_steps", 0)] if self.max_steps is not None else [])]:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"FitOptions.{name}: expected an integer >= {low}, got {value!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"FitOptions.grad_clip: expected None or a number > 0, got {self.grad_clip!r}")


def _resume(run: TrainingRun, path: str | Path, scaler: torch.amp.GradScaler | None) -> Checkpoint:
    """Load checkpoint ``path`` into the run's model, criterion, optimiser, ``scaler`` and the RNGs.

    Read on the CPU (RNG states must stay there); ``load_state_dict`` moves tensors to their device.

    Raises:
        CheckpointError: the file is not a checkpoint of this model, or holds no training state.
    """
    saved = checkpoints.load(path, map_location="cpu")
    if saved.spec != run.spec:
        names = [
            f.name for f in fields(ModelSpec) if getattr(saved.spec, f.name) != getattr(run.spec, f.name)
        ]
        differences = ", ".join(f"{n} {getattr(saved.spec, n)!r} vs {getattr(run.spec, n)!r}" for n in names)
        raise CheckpointError(
            f"{saved.source} was trained with model {saved.spec.name!r}, but this run builds another "
            f"({differences}); cannot resume it (to start from its weights, initialise the model from it)"
        )
    if saved.training is None:
        raise CheckpointError(
            f"{saved.source} holds no training state (optimizer, position, RNG state): it is a checkpoint "
            "for evaluation only; cannot resume from it"
        )
    checkpoints.load_weights(run.model, saved.weights, source=saved.source)
    try:
        run.criterion.load_state_dict(dict(saved.criterion_state))
        run.optimizer.load_state_dict(dict(saved.training.optimizer))
    except (RuntimeError, ValueError, KeyError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"{saved.source}: its training state does not fit this run ({first})") from None
    if scaler is not None and saved.training.scaler:
        scaler.load_state_dict(dict(saved.training.scaler))
    _set_rng_state(dict(saved.training.rng))
    return saved


def _snapshot(
    run: TrainingRun,
    state: Progress,
    scaler: torch.amp.GradScaler | None,
    result: Mapping[str, Any],
) -> Checkpoint:
    """The run as a checkpoint, with everything needed to resume it at ``state``."""
    return Checkpoint(
        spec=run.spec,
        preprocess=run.preprocess,
        weights=run.model.state_dict(),
        loss_terms=tuple(run.loss_terms),
        seed=run.seed,
        criterion_state=run.criterion.state_dict(),
        data=run.data,
        config=run.config,
        training=TrainingState(
            optimizer=run.optimizer.state_dict(),
            epoch=state.epoch,
            batch=state.batch,
            global_step=state.global_step,
            scaler=scaler.state_dict() if scaler is not None else None,
            rng=_rng_state(),
        ),
        metrics=dict(result["metrics"]),
        before=dict(result["before"]),
    )


def _fit_epoch(
    run: TrainingRun,
    options: FitOptions,
    state: Progress,
    scaler: torch.amp.GradScaler | None,
    log: JsonLog | NullLog,
    generator: torch.Generator,
) -> tuple[dict[str, float], int]:
    """The rest of epoch ``state.epoch`` (from batch ``state.batch``): its summary and its length in batches."""
    device = torch.device(run.device)
    run.sampler.set_epoch(state.epoch, start_batch=state.batch)
    steps_per_epoch = len(run.sampler.batches(state.epoch))
    loader = train_loader(
        run.dataset,
        run.sampler,
        workers=options.workers,
        pin_memory=device.type == "cuda",
        generator=generator,
        distributed=options.distributed,
    )
    summary = train_one_epoch(
        run.model,
        run.criterion,
        loader,
        run.optimizer,
        device=device,
        state=state,
        steps_per_epoch=steps_per_epoch,
        lr_at=run.lr_at,
        scaler=scaler,
        amp=options.cpu_amp if device.type == "cpu" else options.amp,
        channels_last=options.channels_last,
        grad_clip=options.grad_clip,
        log=log,
        log_every=options.log_every,
        max_steps=options.max_steps,
        progress=options.progress and options.distributed.is_main,
        distributed=options.distributed,
    )
    return summary, steps_per_epoch


def _start_replicas(
    run: TrainingRun, distributed: Distributed, state: Progress, log: JsonLog | NullLog
) -> None:
    """A distributed run: every process starts from rank 0's weights; the log says how the batch is shared."""
    if not distributed.enabled:
        return
    distributed.broadcast_module(run.model)
    distributed.broadcast_module(run.criterion)
    batch = len(run.sampler.batches(state.epoch)[0])
    log(
        {
            "kind": "distributed",
            "step": state.global_step,
            "world_size": distributed.world_size,
            "backend": torch.distributed.get_backend(),
            "batch_per_process": batch // distributed.world_size,
            "effective_batch": batch,
            "lr_scale": 1.0,  # the outputs are gathered: the global batch is the configured P x K
        }
    )


def fit(run: TrainingRun, options: FitOptions) -> dict[str, Any]:
    """Train ``run.model`` for ``options.epochs`` epochs, evaluating and checkpointing along the way.

    Writes ``options.out_dir/checkpoint.pt`` (a :class:`~reidkit.checkpoint.Checkpoint` with training state)
    and ``log.jsonl`` (rank 0 of a distributed run; the other processes return empty metrics).

    Returns:
        ``{"state": {epoch, batch, global_step}, "metrics": last evaluation or {}, "before": untrained
        metrics or {}}``.

    Raises:
        CheckpointError: ``options.resume`` is not a checkpoint of this model with training state.
        ConfigError: ``options.sync_bn`` outside a distributed CUDA run.
    """
    distributed = options.distributed
    out_dir = Path(options.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(run.device)
    model = run.model
    model.to(device)
    run.criterion.to(device)
    if options.channels_last and device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    if options.sync_bn:
        if not (distributed.enabled and device.type == "cuda"):
            raise ConfigError("train.sync_bn: SyncBatchNorm needs a distributed run on CUDA (torchrun, NCCL)")
        nn.SyncBatchNorm.convert_sync_batchnorm(model)  # in place below the top module; same parameters
    if options.cpu_amp and device.type == "cpu" and not cpu_has_bf16():
        warnings.warn(
            "cpu_amp: this CPU has no native bfloat16 (AVX512-BF16 or AMX): autocast is emulated and slower "
            "than float32",
            stacklevel=2,
        )
    use_scaler = options.amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None
    state = Progress()
    tensorboard = out_dir / "tensorboard" if options.tensorboard else None
    log = JsonLog(out_dir / LOG_NAME, tensorboard) if distributed.is_main else NullLog()
    result: dict[str, Any] = {"metrics": {}, "before": {}}
    if options.resume is not None:
        saved = _resume(run, options.resume, scaler)
        assert saved.training is not None  # _resume refuses a checkpoint without it
        state = Progress(saved.training.epoch, saved.training.batch, saved.training.global_step)
        result = {"metrics": dict(saved.metrics), "before": dict(saved.before)}
        log.truncate_after(state.global_step)
    elif distributed.is_main:
        (out_dir / LOG_NAME).unlink(missing_ok=True)
    _start_replicas(run, distributed, state, log)

    def save() -> None:
        if distributed.is_main:
            checkpoints.save(out_dir / CHECKPOINT_NAME, _snapshot(run, state, scaler, result))
        distributed.barrier()

    def run_eval(epoch: int) -> dict:
        metrics = {}
        if options.evaluate is not None and distributed.is_main:
            metrics = options.evaluate(model)
        if metrics:
            log({"kind": "eval", "epoch": epoch, "step": state.global_step, **metrics})
        distributed.barrier()
        return metrics

    if options.eval_before and options.resume is None and options.evaluate is not None:
        result["before"] = run_eval(0)
    loader_generator = torch.Generator()  # the DataLoader must not draw from the global RNG
    loader_generator.manual_seed(run.sampler.seed)
    while state.epoch < options.epochs:
        summary, steps_per_epoch = _fit_epoch(run, options, state, scaler, log, loader_generator)
        if state.batch < steps_per_epoch:  # stopped early by max_steps
            save()
            break
        epoch_done = state.epoch + 1
        log({"kind": "epoch", "epoch": epoch_done, "step": state.global_step, **summary})
        state.epoch, state.batch = epoch_done, 0
        last = epoch_done == options.epochs
        periodic = options.eval_every and epoch_done % options.eval_every == 0
        if periodic or (last and options.evaluate is not None):
            result["metrics"] = run_eval(epoch_done)
        if last or epoch_done % options.checkpoint_every == 0:
            save()
    if options.epochs == 0:
        # an untrained model: still evaluated and saved, so it can be compared and exported
        result["metrics"] = run_eval(0)
        save()
    result["state"] = asdict(state)
    return result
