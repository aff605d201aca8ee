"""Training loop, learning-rate schedule and checkpoints.

A plain ``train_one_epoch`` and a ``fit`` that calls it; no trainer class. A checkpoint holds the model
weights, everything needed to rebuild the model (``model_spec``: keyword arguments of ``build_model``), the
preprocessing (input size, mean/std), the resolved config and a format version; a training checkpoint
also holds the optimiser, AMP scaler, RNG state and the exact position (epoch, batch) so ``resume``
continues as if never stopped.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from reidkit import __version__
from reidkit._io import atomic_write, atomic_write_text
from reidkit.data.image_dataset import ImageDataset
from reidkit.data.sampler import PKSampler, SeededBatches, UnlabelledMixSampler
from reidkit.errors import CheckpointError, ConfigError

FORMAT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "log.jsonl"


# --------------------------------------------------------------------------------------------- schedule
def lr_factor(
    epoch: float,
    *,
    schedule: str = "multistep",
    total_epochs: int,
    warmup_epochs: float = 0.0,
    warmup_factor: float = 0.01,
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
    min_factor: float = 0.0,
) -> float:
    """Learning-rate multiplier at a fractional epoch: linear warm-up, then multistep / cosine / constant."""
    if epoch < warmup_epochs:
        alpha = epoch / warmup_epochs
        warm = warmup_factor * (1.0 - alpha) + alpha
    else:
        warm = 1.0
    if schedule == "multistep":
        return warm * gamma ** sum(epoch >= m for m in milestones)
    if schedule == "cosine":
        span = max(total_epochs - warmup_epochs, 1e-8)
        progress = min(max(epoch - warmup_epochs, 0.0) / span, 1.0)
        return warm * (min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress)))
    if schedule == "constant":
        return warm
    raise ValueError(f"unknown schedule {schedule!r}; choose from multistep, cosine, constant")


def _prefix_matches(name: str, prefix: str) -> bool:
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


def model_parameter_groups(
    model: nn.Module, lr: float, lr_factors: Mapping[str, float] | None = None
) -> list[dict]:
    """The model's trainable parameters, grouped by learning-rate factor.

    ``lr_factors`` maps parameter-name prefixes (module paths such as ``"trunk"`` or ``"rpp.part_classifier"``;
    ``""`` matches every parameter) to a multiplier of ``lr``; the longest matching prefix decides, parameters
    that match none get factor 1. A factor of 0 freezes the parameters (``requires_grad = False``, left out of
    the optimiser; their BatchNorm statistics still update in training mode). E.g. ``{"trunk": 0.1}``: the
    pretrained trunk learns 10x slower than the new layers (PCB); ``{"": 0, "rpp": 1}``: only the refined part
    pooling trains (PCB's RPP stage).

    Raises:
        ConfigError: a prefix that matches no parameter (likely a typo), or a negative factor.
    """
    factors = dict(lr_factors or {})
    names = [name for name, _ in model.named_parameters()]
    for prefix, factor in factors.items():
        if not isinstance(factor, (int, float)) or factor < 0:
            raise ConfigError(f"optim.lr_factors[{prefix!r}]: expected a number >= 0, got {factor!r}")
        if not any(_prefix_matches(name, prefix) for name in names):
            tops = sorted({name.split(".")[0] for name in names})
            raise ConfigError(
                f"optim.lr_factors: {prefix!r} matches no parameter of the model (top-level modules: {tops})"
            )
    by_factor: dict[float, list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        matching = [prefix for prefix in factors if _prefix_matches(name, prefix)]
        factor = float(factors[max(matching, key=len)]) if matching else 1.0
        if factor == 0.0:
            parameter.requires_grad_(False)
        elif parameter.requires_grad:
            by_factor.setdefault(factor, []).append(parameter)
    if not by_factor:
        raise ConfigError("optim.lr_factors: every parameter of the model is frozen; nothing would train")
    return [{"params": params, "lr": lr * factor} for factor, params in by_factor.items()]


def init_from_checkpoint(model: nn.Module, path: str | Path) -> dict[str, list[str]]:
    """Initialise ``model`` from the weights of another reidkit checkpoint (fine-tuning, staged training).

    Every weight whose name and shape match is copied; the model's other weights keep their initialisation
    (e.g. a refined-pooling layer added after the checkpoint, or classifiers sized for other identities).

    Returns:
        ``{"loaded": [...], "missing": [...] (not in the file), "mismatched": [...] (other shape)}``.

    Raises:
        CheckpointError: the file is not a readable reidkit checkpoint, or no weight of it fits the model.
    """
    source = load_checkpoint(path)["model"]
    own = model.state_dict()
    report: dict[str, list[str]] = {"loaded": [], "missing": [], "mismatched": []}
    update = {}
    for key, value in own.items():
        if key not in source:
            report["missing"].append(key)
        elif source[key].shape != value.shape:
            report["mismatched"].append(key)
        else:
            update[key] = source[key]
            report["loaded"].append(key)
    if not any(key in update for key, _ in model.named_parameters()):
        raise CheckpointError(
            f"model.init {path}: no weight of the checkpoint fits this model "
            f"({len(report['mismatched'])} names with another shape, {len(report['missing'])} missing)"
        )
    model.load_state_dict(update, strict=False)
    return report


def build_optimizer(
    model: nn.Module,
    criterion: nn.Module | None,
    *,
    name: str = "adam",
    lr: float = 3.5e-4,
    weight_decay: float = 5e-4,
    momentum: float = 0.9,
    nesterov: bool = False,
    criterion_lr: float | None = None,
    lr_factors: Mapping[str, float] | None = None,
) -> torch.optim.Optimizer:
    """SGD / Adam / AdamW over the model's parameters and the criterion's learnable state (if any).

    ``lr_factors``: per-module learning-rate multipliers and frozen modules, see :func:`model_parameter_groups`.
    """
    groups = model_parameter_groups(model, lr, lr_factors)
    extra = [p for p in criterion.parameters() if p.requires_grad] if criterion is not None else []
    if extra:
        groups.append({"params": extra, "lr": criterion_lr if criterion_lr is not None else lr})
    for group in groups:
        group["initial_lr"] = group["lr"]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose from sgd, adam, adamw")


# ------------------------------------------------------------------------------------------ checkpoints
@dataclass
class TrainState:
    """Where training stands: ``epoch`` is the epoch in progress (0-based); ``batch`` the next batch in it."""

    epoch: int = 0
    batch: int = 0
    global_step: int = 0


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """Write a checkpoint dict atomically (a crash mid-write leaves the previous checkpoint intact)."""
    payload = {"format_version": FORMAT_VERSION, "reidkit_version": __version__, **payload}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write(path, lambda stream: stream.write(buffer.getvalue()))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read and validate a checkpoint, with an error that names the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:  # torch raises many types for a corrupt file
        raise CheckpointError(
            f"checkpoint {path} cannot be read (corrupt or not a torch file): {error}"
        ) from None
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(f"{path} is not a reidkit checkpoint (no format_version)")
    if payload["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {payload['format_version']}; "
            f"this reidkit reads version {FORMAT_VERSION}"
        )
    for key in ("model", "model_spec", "preprocess"):
        if key not in payload:
            raise CheckpointError(f"checkpoint {path} lacks {key!r}")
    return payload


def build_model_from_spec(spec: dict) -> nn.Module:
    """Rebuild a model from a checkpoint's ``model_spec`` (weights are loaded separately)."""
    from reidkit.models import build_model

    spec = dict(spec)
    spec["pretrained"] = None  # the checkpoint's weights replace any initialisation
    name = spec.pop("name")
    params = spec.pop("params", {}) or {}
    return build_model(name, **spec, **params)


def load_weights(model: nn.Module, state_dict: dict, *, source: str) -> None:
    """Load weights strictly, turning a mismatch into an error that says which model the file holds."""
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise CheckpointError(f"{source} does not hold weights for this model ({first})") from None


def load_criterion(path: str | Path, model: nn.Module, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the loss criterion a checkpoint was trained with, with its learnable state (e.g. pair head).

    The terms come from ``checkpoint["config"]["loss"]["terms"]``, the number of classes from the model spec and
    the feature size from ``model.feature_dim``; ``checkpoint["criterion"]`` is loaded into it.

    Raises:
        CheckpointError: the checkpoint holds no config or no criterion state, or they do not fit.
    """
    from reidkit.errors import ConfigError
    from reidkit.losses.criterion import build_criterion

    payload = load_checkpoint(path, map_location=map_location)
    config = payload.get("config") or {}
    terms = (config.get("loss") or {}).get("terms")
    if not terms or "criterion" not in payload:
        raise CheckpointError(f"checkpoint {path} holds no loss config or criterion state")
    feat_dim = int(getattr(model, "feature_dim", getattr(model, "embedding_dim", 0)))
    seed = (config.get("train") or {}).get("seed", 0)
    try:
        criterion = build_criterion(
            terms, num_classes=payload["model_spec"]["num_classes"], feat_dim=feat_dim, seed=seed
        )
        criterion.load_state_dict(payload["criterion"])
    except (ConfigError, RuntimeError) as error:
        first = str(error).splitlines()[0]
        raise CheckpointError(f"checkpoint {path}: cannot rebuild its loss criterion ({first})") from None
    return criterion.eval()


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model stored in a checkpoint, in eval mode.

    Returns:
        (model, checkpoint dict without the heavy optimiser state) — ``checkpoint["preprocess"]`` holds
        height, width, mean, std; ``checkpoint["config"]`` the resolved config.
    """
    payload = load_checkpoint(path, map_location=map_location)
    model = build_model_from_spec(payload["model_spec"])
    load_weights(model, payload["model"], source=f"checkpoint {path}")
    model.eval()
    info = {k: v for k, v in payload.items() if k not in ("model", "optimizer", "criterion", "scaler", "rng")}
    return model, info


# ------------------------------------------------------------------------------------------- the loop
def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, enabled=False)


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    batches: Any,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    state: TrainState,
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
) -> dict[str, float]:
    """Run the remaining batches of ``state.epoch``; updates ``state`` after every step.

    Returns:
        Mean of every logged loss term over the batches run, and ``images_per_s``.
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
        images_batch, pids = batch[0], batch[1]
        # an ImageDataset with attribute labels adds a 4th item: {attribute name: [B] codes}
        attribute_labels = batch[3] if len(batch) > 3 else None
        if max_steps is not None and state.global_step >= max_steps:
            break
        factor = lr_at(state.epoch + state.batch / steps_per_epoch)
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
        images_batch = images_batch.to(device, non_blocking=True)
        if channels_last and device.type == "cuda":
            images_batch = images_batch.contiguous(memory_format=torch.channels_last)
        pids = pids.to(device, non_blocking=True)
        with _autocast(device, amp):
            output = model(images_batch)
        if attribute_labels is not None:
            attribute_labels = {
                name: labels.to(device, non_blocking=True) for name, labels in attribute_labels.items()
            }
            loss, terms = criterion(output, pids, attribute_labels=attribute_labels)
        else:
            loss, terms = criterion(output, pids)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss became {loss.item()} at epoch {state.epoch + 1}, batch {state.batch}"
            )
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            if grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
        state.batch += 1
        state.global_step += 1
        count += 1
        images += len(pids)
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


class _JsonLog:
    """Append-only JSON-lines log, optionally mirrored to TensorBoard."""

    def __init__(self, path: Path, tensorboard_dir: Path | None) -> None:
        self.path = path
        self.writer = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as error:
                raise ImportError("TensorBoard logging needs: pip install reidkit[tensorboard]") from error
            self.writer = SummaryWriter(str(tensorboard_dir))

    def truncate_after(self, global_step: int) -> None:
        """Drop entries written after ``global_step`` (a resumed run writes them again)."""
        if not self.path.exists():
            return
        kept = [
            line
            for line in self.path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= global_step
        ]
        atomic_write_text(self.path, "".join(line + "\n" for line in kept))

    def __call__(self, entry: dict) -> None:
        entry = {"time": round(time.time(), 3), **entry}
        with open(self.path, "a") as stream:
            stream.write(json.dumps(entry) + "\n")
        if self.writer is not None:
            step = entry.get("step", 0)
            for key, value in entry.items():
                if isinstance(value, (int, float)) and key not in ("step", "time", "epoch"):
                    self.writer.add_scalar(f"{entry.get('kind', 'log')}/{key}", value, step)
            self.writer.flush()


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CheckpointError(f"device {name!r} requested but CUDA is not available")
    return device


def fit(
    *,
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    dataset: ImageDataset,
    sampler: PKSampler | UnlabelledMixSampler,
    out_dir: str | Path,
    epochs: int,
    lr_at: Callable[[float], float],
    checkpoint_info: dict,
    device: torch.device | str = "cpu",
    workers: int = 0,
    amp: bool = False,
    channels_last: bool = False,
    grad_clip: float | None = None,
    evaluate: Callable[[nn.Module], dict] | None = None,
    eval_every: int = 0,
    eval_before: bool = False,
    checkpoint_every: int = 1,
    log_every: int = 20,
    tensorboard: bool = False,
    resume: str | Path | None = None,
    max_steps: int | None = None,
    progress: bool = False,
) -> dict:
    """Train ``model`` for ``epochs`` epochs, evaluating and checkpointing along the way.

    Args:
        checkpoint_info: stored in every checkpoint: ``model_spec`` (build_model keyword arguments),
            ``preprocess`` (height, width, mean, std), ``config`` (the resolved config dict).
        lr_at: learning-rate multiplier as a function of the fractional epoch.
        evaluate: ``evaluate(model) -> metrics dict``; called every ``eval_every`` epochs and at the end.
        resume: a checkpoint written by ``fit``; training continues at the exact batch it stopped before.
        max_steps: stop (with a checkpoint) after this many optimiser steps in total.

    Returns:
        ``{"state": TrainState as dict, "metrics": last evaluation or {}, "before": untrained metrics or {}}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    model.to(device)
    criterion.to(device)
    if channels_last and device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    use_scaler = amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None
    state = TrainState()
    log = _JsonLog(out_dir / LOG_NAME, out_dir / "tensorboard" if tensorboard else None)
    result: dict[str, Any] = {"metrics": {}, "before": {}}

    if resume is not None:
        payload = load_checkpoint(resume, map_location=device)
        if payload["model_spec"] != checkpoint_info["model_spec"]:
            raise CheckpointError(
                f"checkpoint {resume} was trained with model {payload['model_spec']}, "
                f"but this run builds {checkpoint_info['model_spec']}"
            )
        if "optimizer" not in payload or "state" not in payload:
            raise CheckpointError(f"checkpoint {resume} holds no training state (optimizer); cannot resume")
        load_weights(model, payload["model"], source=f"checkpoint {resume}")
        criterion.load_state_dict(payload.get("criterion", {}))
        optimizer.load_state_dict(payload["optimizer"])
        if scaler is not None and payload.get("scaler"):
            scaler.load_state_dict(payload["scaler"])
        state = TrainState(**payload["state"])
        _set_rng_state(payload["rng"])
        result["metrics"] = payload.get("metrics", {})
        result["before"] = payload.get("before", {})
        log.truncate_after(state.global_step)
    else:
        (out_dir / LOG_NAME).unlink(missing_ok=True)

    def checkpoint() -> None:
        payload = {
            **checkpoint_info,
            "model": model.state_dict(),
            "criterion": criterion.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "state": asdict(state),
            "rng": _rng_state(),
            "metrics": result["metrics"],
            "before": result["before"],
        }
        save_checkpoint(out_dir / CHECKPOINT_NAME, payload)

    def run_eval(epoch: int) -> dict:
        metrics = evaluate(model) if evaluate is not None else {}
        if metrics:
            log({"kind": "eval", "epoch": epoch, "step": state.global_step, **metrics})
        return metrics

    if eval_before and resume is None and evaluate is not None:
        result["before"] = run_eval(0)

    loader_generator = torch.Generator()  # the DataLoader must not draw from the global RNG
    loader_generator.manual_seed(sampler.seed)
    while state.epoch < epochs:
        sampler.set_epoch(state.epoch, start_batch=state.batch)
        steps_per_epoch = len(sampler.batches(state.epoch))
        loader = DataLoader(
            dataset,
            batch_sampler=SeededBatches(sampler),
            num_workers=workers,
            pin_memory=device.type == "cuda",
            generator=loader_generator,
            persistent_workers=False,
        )
        summary = train_one_epoch(
            model,
            criterion,
            loader,
            optimizer,
            device=device,
            state=state,
            steps_per_epoch=steps_per_epoch,
            lr_at=lr_at,
            scaler=scaler,
            amp=amp,
            channels_last=channels_last,
            grad_clip=grad_clip,
            log=log,
            log_every=log_every,
            max_steps=max_steps,
            progress=progress,
        )
        if state.batch < steps_per_epoch:  # stopped early by max_steps
            checkpoint()
            break
        epoch_done = state.epoch + 1
        log({"kind": "epoch", "epoch": epoch_done, "step": state.global_step, **summary})
        state.epoch, state.batch = epoch_done, 0
        last = epoch_done == epochs
        if (eval_every and epoch_done % eval_every == 0) or (last and evaluate is not None):
            result["metrics"] = run_eval(epoch_done)
        if last or epoch_done % checkpoint_every == 0:
            checkpoint()
    if epochs == 0:  # an untrained model: still evaluated and saved, so it can be compared and exported
        result["metrics"] = run_eval(0)
        checkpoint()
    result["state"] = asdict(state)
    return result
