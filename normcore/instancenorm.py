r"""Instance normalization (Ulyanov, Vedaldi & Lempitsky 2016, "Instance Normalization: The Missing
Ingredient for Fast Stylization", §2: the instance-normalization equation)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import nn

from normcore import functional as Fn
from normcore._validation import check_channels, check_float, check_rank
from normcore.batchnorm import _keep_stats_fp32

__all__ = ["InstanceNorm"]


class InstanceNorm(nn.Module):
    r"""Instance normalization over ``(N, C, *spatial)``: for image t and channel i (IN §2),

    .. math:: y_{tijk} = \gamma_i \frac{x_{tijk} - \mu_{ti}}{\sqrt{\sigma_{ti}^2 + \epsilon}} + \beta_i

    with the biased variance over the spatial positions of one image and channel; the same in
    training and at test time (IN §2: "apply the instance normalization also at test time").

    Args:
        num_channels: C.
        eps: 1e-5 (the official ``texture_nets`` InstanceNormalization.lua).
        affine: per-channel :math:`\gamma, \beta`. Default **True**, as the official code (torch's
            ``nn.InstanceNorm2d`` defaults to False).
        track_running_stats: default **False**, stated explicitly: per-sample statistics in train and
            eval, which is the IN paper's method. ``True`` keeps running averages and uses them in eval,
            which makes eval-mode IN a BatchNorm (pytorch/pytorch#58843); provided for old checkpoints.
        momentum: running-average factor when ``track_running_stats=True``.

    Checkpoints saved before PyTorch 0.4 carry ``running_mean``/``running_var`` even without
    tracking; loading one drops those keys with a warning instead of failing.
    """

    def __init__(
        self,
        num_channels: int,
        *,
        eps: float = 1e-5,
        affine: bool = True,
        track_running_stats: bool = False,
        momentum: float = 0.1,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        self.num_features = num_channels
        self.eps = eps
        self.affine = affine
        self.track_running_stats = track_running_stats
        self.momentum = momentum
        if affine:
            self.weight = nn.Parameter(torch.ones(num_channels, device=device, dtype=dtype))
            self.bias = nn.Parameter(torch.zeros(num_channels, device=device, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_channels, device=device))
            self.register_buffer("running_var", torch.ones(num_channels, device=device))
            # Unused by the formula; kept so state dicts match nn.InstanceNorm2d's keys (which counts nothing either).
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    @property
    def num_channels(self) -> int:
        return self.num_features

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        out = super()._apply(fn, recurse)
        _keep_stats_fp32(self)
        return out

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected, errors):
        if not self.track_running_stats:
            stale = [
                prefix + k for k in ("running_mean", "running_var", "num_batches_tracked") if prefix + k in state_dict
            ]
            for key in stale:
                state_dict.pop(key)
            if stale:
                warnings.warn(
                    f"InstanceNorm(track_running_stats=False) ignored {stale} from the checkpoint (saved "
                    f"by PyTorch < 0.4 or with tracking on). Build the layer with track_running_stats=True "
                    f"if you need them.",
                    stacklevel=2,
                )
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected, errors)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        name = type(self).__name__
        check_float(x, name)
        check_rank(x, name, 3, layout="(N, C, *spatial)")
        check_channels(x, name, self.num_features)
        use_input_stats = self.training or not self.track_running_stats
        if use_input_stats and math.prod(x.shape[2:]) <= 1:
            raise ValueError(
                f"{name} got input of shape {tuple(x.shape)}: one spatial position per channel, so every "
                f"instance normalizes to 0 (pytorch/pytorch#45687). Apply it before global pooling, or use "
                f"LayerNorm/GroupNorm with fewer groups."
            )
        return Fn.instance_norm(
            x,
            self.weight,
            self.bias,
            self.eps,
            running_mean=self.running_mean,
            running_var=self.running_var,
            use_input_stats=use_input_stats,
            momentum=self.momentum,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, affine={self.affine}, track_running_stats={self.track_running_stats}"
        )
