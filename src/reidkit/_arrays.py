"""Turning caller input (numpy arrays, torch tensors, lists) into checked numpy arrays."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor


def as_numpy(values: Any, name: str, *, ndim: int, what: str = "array") -> np.ndarray:
    """``values`` as a numpy array (a tensor is detached and copied to the CPU) with ``ndim`` axes.

    Raises:
        ValueError: another number of axes; the message names ``name`` and what was expected.
    """
    if isinstance(values, Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D {what}, got shape {array.shape}")
    return array
