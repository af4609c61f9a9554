r"""Normalization Propagation (Arpit, Zhou, Kota & Govindaraju, ICML 2016, arXiv 1603.01431).

NormProp normalizes with *parametric* estimates instead of batch statistics (§3):

1. the input data is standardized once with global dataset statistics (:class:`NormPropInputNorm`);
2. each pre-activation divides by the L2 norm of its weight row, so that with an (approximately)
   identity input covariance it has unit variance, then scales and shifts:
   :math:`u_i = \gamma_i W_i^T x / \lVert W_i \rVert_2 + \beta_i` (:class:`NormPropLinear`,
   :class:`NormPropConv2d`; for a conv, a row is one filter over ``C_in * kH * kW``);
3. after a ReLU, the closed-form moments of a rectified standard normal re-normalize the activation:
   :math:`(\max(0, u) - \sqrt{1/(2\pi)}) / \sqrt{\frac12(1 - \frac1\pi)}` (:class:`NormPropReLU`).

No batch statistics are used, so it trains at batch size 1 and is the same in train and eval mode.

``gamma`` starts at :data:`GAMMA_INIT` :math:`= \sqrt{1 - 1/\pi} \approx 1/1.21`, the value the paper's
experiments are reported to use (1/1.21; the body was not available to us to check the text, see
papers/normprop/). It is derivable from the ReLU re-normalization of step 3: the Jacobian of one block
:math:`h = (\max(0, \gamma W x/\lVert W\rVert + \beta) - \mu_r)/\sigma_r` with respect to a unit-covariance
input has :math:`E[(J J^T)_{ii}] = \gamma_i^2 P(u_i > 0) / \sigma_r^2 = \gamma_i^2 / (1 - 1/\pi)` at
:math:`\beta = 0`, which is 1 (no growth or decay of gradients through depth) at
:math:`\gamma_i = \sqrt{1 - 1/\pi} = 0.8257 = 1/1.2111`. ``gamma_init=1.0`` gives the plain start.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from normcore import functional as Fn
from normcore._validation import NotScriptable, check_float

GAMMA_INIT: float = math.sqrt(1.0 - 1.0 / math.pi)
r"""NormProp's initial :math:`\gamma`, :math:`\sqrt{1 - 1/\pi} = 0.8257 \approx 1/1.21`: the value that makes
the expected squared Jacobian of a NormProp layer + re-normalized ReLU equal to 1 (module docstring)."""

__all__ = ["GAMMA_INIT", "NormPropConv2d", "NormPropInputNorm", "NormPropLinear", "NormPropReLU"]


def _init_rows(weight: torch.Tensor) -> None:
    """Gaussian rows with expected unit norm (the scale is divided out in forward anyway; a unit
    scale keeps the gradient of W/||W|| at the size of a plain layer's)."""
    fan_in = weight[0].numel()
    nn.init.normal_(weight, 0.0, 1.0 / math.sqrt(fan_in))


class NormPropLinear(NotScriptable, nn.Linear):
    r"""Fully connected NormProp layer (NormProp, method section):
    :math:`u_i = \gamma_i \frac{W_i^T x}{\lVert W_i \rVert_2} + \beta_i`.

    ``weight`` keeps its raw scale (row norms are divided out in ``forward``); ``gamma`` starts at
    ``gamma_init`` (:data:`GAMMA_INIT`, 1/1.21), ``bias`` is :math:`\beta` (starts at 0). Reference formula:
    :func:`normcore.reference.normprop_linear`.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        gamma_init: float = GAMMA_INIT,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.gamma = nn.Parameter(torch.full((out_features,), float(gamma_init), device=device, dtype=dtype))
        _init_rows(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_float(x, type(self).__name__)
        return Fn.normprop_linear(x, self.weight, self.gamma, self.bias)


class NormPropConv2d(NotScriptable, nn.Conv2d):
    r"""Convolutional NormProp layer (NormProp, method section): each filter :math:`W_i` (over
    ``C_in/groups * kH * kW``) is divided by its L2 norm and scaled by :math:`\gamma_i`;
    ``bias`` is :math:`\beta_i`. Same arguments as ``nn.Conv2d`` plus ``gamma_init``. Reference formula:
    :func:`normcore.reference.normprop_conv_weight`."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        gamma_init: float = GAMMA_INIT,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            device=device,
            dtype=dtype,
        )
        self.gamma = nn.Parameter(torch.full((out_channels,), float(gamma_init), device=device, dtype=dtype))
        _init_rows(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_float(x, type(self).__name__)
        return self._conv_forward(x, Fn.normprop_weight(self.weight, self.gamma), self.bias)


class NormPropReLU(NotScriptable, nn.Module):
    r"""ReLU followed by NormProp's closed-form re-normalization (NormProp, method section):
    :math:`(\max(0,u) - \sqrt{1/(2\pi)}) / \sqrt{\frac12(1-\frac1\pi)}`. Reference formula:
    :func:`normcore.reference.normprop_relu`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return Fn.normprop_relu(x)


class NormPropInputNorm(NotScriptable, nn.Module):
    r"""Standardize the network input with global dataset statistics, :math:`(x - \mu) / \sigma`
    (NormProp method: "normalize the input data ... zero mean and unit variance"), the one place where
    NormProp looks at data. Build it from training data with :meth:`from_data`.

    Args:
        mean, std: tensors broadcastable against one input sample, e.g. ``(C, 1, 1)`` for
            per-channel image statistics or ``(F,)`` per feature.
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, eps: float = 1e-8) -> None:
        super().__init__()
        if (std < 0).any():
            raise ValueError("NormPropInputNorm: std must be non-negative")
        self.register_buffer("mean", mean.detach().clone().float())
        self.register_buffer("std", std.detach().clone().float())
        self.eps = eps

    @classmethod
    def from_data(cls, data: torch.Tensor, per_channel: bool = True) -> NormPropInputNorm:
        """Statistics of a training set ``(N, C, *)``: per channel (over samples and positions) if
        ``per_channel``, else per input dimension (over samples)."""
        check_float(data, cls.__name__)
        if per_channel and data.dim() > 2:
            dims = (0, *range(2, data.dim()))
            shape = (data.shape[1],) + (1,) * (data.dim() - 2)
        else:
            dims, shape = (0,), tuple(data.shape[1:])
        mean, var = Fn.moments(data, dims, keepdim=False)
        return cls(mean.reshape(shape), var.sqrt().reshape(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_float(x, type(self).__name__)
        return ((x - self.mean) / (self.std + self.eps)).to(x.dtype)

    def extra_repr(self) -> str:
        return f"shape={tuple(self.mean.shape)}"
