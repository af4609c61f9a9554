r"""Layer normalization in the LN paper's form, over the hidden units of a layer (Ba et al. 2016, §3)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from normcore import functional as Fn
from normcore._validation import NotScriptable, check_channels, check_float, check_rank

__all__ = ["FeatureLayerNorm"]


class FeatureLayerNorm(NotScriptable, nn.Module):
    r"""Layer normalization over the **last** dimension, the LN paper's form (LN §3, Eq. 4) for MLPs and
    recurrent nets, on ``(N, F)`` or ``(N, T, F)`` input:

    .. math:: h = g \odot \frac{a - \mu}{\sqrt{\sigma^2 + \epsilon}} + b, \quad
              \mu = \frac1H \sum_i a_i, \quad \sigma^2 = \frac1H \sum_i (a_i - \mu)^2

    (biased variance; gains g = 1 and biases b = 0 at init, LN §6; eps = 1e-5 inside the root, as the
    official code ``ryankiros/layer-norm:layers.py``). Native ``F.layer_norm``. Used by the LN-LSTM
    (:class:`normcore.models.LNLSTMCell`). For conv feature maps ``(N, C, H, W)`` use
    :class:`normcore.LayerNorm` (the GN paper's LN); on ``(N, F)`` input the two agree.

    ``num_features`` may be a shape, as ``nn.LayerNorm``'s ``normalized_shape``: the statistics are then
    over those last dimensions, with a per-element affine of that shape. ``bias=False`` keeps only
    the gain. Reference formula: :func:`normcore.reference.feature_layer_norm`.
    """

    def __init__(
        self,
        num_features: int | Sequence[int],
        *,
        eps: float = 1e-5,
        affine: bool = True,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        shape = (num_features,) if isinstance(num_features, int) else tuple(int(d) for d in num_features)
        if not shape or math.prod(shape) < 2:
            raise ValueError(
                f"FeatureLayerNorm({num_features}): normalizing over fewer than 2 features maps every input to "
                f"the bias. Use at least 2 features, or no normalization."
            )
        self.normalized_shape = shape
        self.num_features = shape[-1] if len(shape) == 1 else math.prod(shape)
        self.eps = eps
        self.affine = affine
        weight = nn.Parameter(torch.ones(shape, device=device, dtype=dtype)) if affine else None
        self.register_parameter("weight", weight)
        self.register_parameter("bias", nn.Parameter(torch.zeros_like(weight)) if affine and bias else None)

    @property
    def num_channels(self) -> int:
        return self.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        name = type(self).__name__
        check_float(x, name)
        check_rank(x, name, len(self.normalized_shape), layout="(..., *normalized_shape): features last")
        if len(self.normalized_shape) == 1:
            check_channels(x, name, self.num_features, features_last=True)
        elif tuple(x.shape[-len(self.normalized_shape) :]) != self.normalized_shape:
            raise ValueError(
                f"{name} normalizes over the last dimensions {self.normalized_shape}, got input of shape "
                f"{tuple(x.shape)}. Features come last: (..., {', '.join(map(str, self.normalized_shape))})."
            )
        return Fn.feature_layer_norm(x, self.weight, self.bias, self.eps, normalized_shape=self.normalized_shape)

    def extra_repr(self) -> str:
        shape = self.num_features if len(self.normalized_shape) == 1 else self.normalized_shape
        return f"{shape}, eps={self.eps}, affine={self.affine}"
