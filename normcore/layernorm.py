r"""Layer normalization in the LN paper's form, over the hidden units of a layer (Ba et al. 2016, §3)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from normcore import functional as Fn
from normcore._validation import check_channels, check_float, check_rank

__all__ = ["FeatureLayerNorm"]


class FeatureLayerNorm(nn.Module):
    r"""Layer normalization over the **last** dimension, the LN paper's form (LN §3, Eq. 4) for MLPs and
    recurrent nets, on ``(N, F)`` or ``(N, T, F)`` input:

    .. math:: h = g \odot \frac{a - \mu}{\sqrt{\sigma^2 + \epsilon}} + b, \quad
              \mu = \frac1H \sum_i a_i, \quad \sigma^2 = \frac1H \sum_i (a_i - \mu)^2

    (biased variance; gains g = 1 and biases b = 0 at init, LN §6; eps = 1e-5 inside the root, as the
    official code ``ryankiros/layer-norm:layers.py``). Native ``F.layer_norm``. Used by the LN-LSTM
    (:class:`normcore.models.LNLSTMCell`). For conv feature maps ``(N, C, H, W)`` use
    :class:`normcore.LayerNorm` (the GN paper's LN); on ``(N, F)`` input the two agree.
    """

    def __init__(
        self,
        num_features: int,
        *,
        eps: float = 1e-5,
        affine: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        if num_features < 2:
            raise ValueError(
                f"FeatureLayerNorm({num_features}): normalizing over fewer than 2 features maps every input to "
                f"the bias. Use at least 2 features, or no normalization."
            )
        self.num_features = num_features
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features, device=device, dtype=dtype))
            self.bias = nn.Parameter(torch.zeros(num_features, device=device, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    @property
    def num_channels(self) -> int:
        return self.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        name = type(self).__name__
        check_float(x, name)
        check_rank(x, name, 1, layout="(..., F): features last")
        check_channels(x, name, self.num_features, features_last=True)
        return Fn.feature_layer_norm(x, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.affine}"
