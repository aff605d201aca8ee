"""Optimiser and learning-rate schedule builders of a training run, from plain arguments (no config).

:func:`lr_factor` is the schedule (linear warm-up, then multistep / cosine / constant), :func:`build_optimizer`
the SGD / Adam / AdamW over a model's parameter groups (:func:`model_parameter_groups`: per-module LR factors,
frozen modules) and a criterion's learnable state. :mod:`reidkit.recipe` calls them with the config's values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from reidkit.errors import ConfigError

__all__ = ["build_optimizer", "lr_factor", "model_parameter_groups"]


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
            raise ConfigError(f"lr_factors[{prefix!r}]: expected a number >= 0, got {factor!r}")
        if not any(_prefix_matches(name, prefix) for name in names):
            tops = sorted({name.split(".")[0] for name in names})
            raise ConfigError(
                f"lr_factors: {prefix!r} matches no parameter of the model (top-level modules: {tops})"
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
        raise ConfigError("lr_factors: every parameter of the model is frozen; nothing would train")
    return [{"params": params, "lr": lr * factor} for factor, params in by_factor.items()]


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
