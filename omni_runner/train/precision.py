"""Numeric precision on the resolved device: which autocast dtype, and whether gradients need a scaler.

On CPU the loop runs in fp32: CPU autocast is slow for small matrices and the exact-resume
guarantee is stated for CPU. On CUDA, `auto` picks bf16 where the GPU supports it, else fp16;
fp16 needs a GradScaler because its small gradients underflow to zero.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Precision:
    name: str  # bf16 | fp16 | fp32
    device_type: str  # cpu | cuda
    note: str | None = None  # why the recipe's choice was changed, when it was

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.autocast_dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Enabled only for fp16; a disabled scaler is a no-op that still saves/loads state."""
        return torch.amp.GradScaler(self.device_type, enabled=self.name == "fp16")


def resolve_precision(requested: str, device: torch.device) -> Precision:
    if device.type != "cuda":
        note = None if requested in ("auto", "fp32") else f"training.precision {requested} ignored on CPU: using fp32"
        return Precision("fp32", device.type, note)
    if requested == "auto":
        return Precision("bf16" if torch.cuda.is_bf16_supported() else "fp16", "cuda")
    if requested == "bf16" and not torch.cuda.is_bf16_supported():
        return Precision("fp16", "cuda", "this GPU has no bf16 support: using fp16 with loss scaling")
    return Precision(requested, "cuda")
