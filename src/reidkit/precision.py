"""Mixed precision: the autocast context of a training forward pass, and whether this CPU has native bf16."""

from __future__ import annotations

import functools

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
    """Whether this CPU computes bfloat16 natively (oneDNN: AVX512-BF16 or AMX), so that CPU autocast pays off."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@functools.cache
def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles for bfloat16 (the ``amx_bf16`` flag of /proc/cpuinfo; False elsewhere).

    With AMX a bfloat16 matrix product runs many times faster than float32; with AVX512-BF16 alone it measured
    about 3x here (AMD EPYC), which the bfloat16 neighbour search of re-ranking does not recover.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as stream:
            for line in stream:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split(":", 1)[1].split()
    except OSError:
        pass
    return False
