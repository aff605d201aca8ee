"""Mixed precision: the autocast context of a training forward pass, and whether this CPU has native bf16."""

from __future__ import annotations

import torch


def autocast(device: torch.device, amp: bool):
    """Mixed precision for the forward pass: CUDA bf16 where supported, else fp16; CPU bf16."""
    if amp and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    if amp and device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), so that CPU autocast pays off."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
