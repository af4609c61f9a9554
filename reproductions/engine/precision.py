"""Mixed precision and memory format: ``--amp bf16|fp16|none`` and ``--channels-last``.

* ``bf16``: ``torch.autocast(dtype=torch.bfloat16)``; no loss scaling (bf16 has float32's exponent
  range).
* ``fp16``: ``torch.autocast(dtype=torch.float16)`` with a :class:`torch.amp.GradScaler`, whose state
  goes into the checkpoint.
* ``none``: float32.

normcore's norm layers compute their statistics in float32 under autocast either way.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["AMP_CHOICES", "Precision", "to_channels_last"]

AMP_CHOICES = ("none", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Precision:
    """Autocast context and GradScaler for one device and AMP choice."""

    amp: str
    device: torch.device

    def __post_init__(self) -> None:
        if self.amp not in AMP_CHOICES:
            raise ValueError(f"--amp must be one of {', '.join(AMP_CHOICES)}, got {self.amp!r}")
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == "fp16")

    @property
    def dtype(self) -> torch.dtype | None:
        return _DTYPES.get(self.amp)

    def autocast(self) -> contextlib.AbstractContextManager:
        """``torch.autocast`` for the forward pass (a null context for ``none``)."""
        if self.amp == "none":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)


def to_channels_last(model: nn.Module) -> nn.Module:
    """Convert 4-D parameters and buffers to ``torch.channels_last`` (inputs must follow: the engine
    converts each batch with ``x.to(memory_format=torch.channels_last)``)."""
    return model.to(memory_format=torch.channels_last)
