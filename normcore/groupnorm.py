r"""Group normalization and layer normalization for feature maps (Wu & He 2018, §3.1)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from normcore import functional as Fn
from normcore._validation import (
    NotScriptable,
    check_channels,
    check_float,
    check_group_values,
    check_rank,
    resolve_groups,
)

__all__ = ["GroupNorm", "LayerNorm"]


def _check_group_input(x: torch.Tensor, layer: str, num_channels: int, num_groups: int) -> None:
    check_float(x, layer)
    check_rank(x, layer, 2, layout="(N, C, *)")
    check_channels(x, layer, num_channels)
    check_group_values(x, layer, num_channels, num_groups)


class GroupNorm(NotScriptable, nn.GroupNorm):
    r"""Group normalization (GN paper §3.1, Eq. 1-4): for sample n and group g of C/G channels,

    .. math:: y = \gamma_c \frac{x - \mu_{n,g}}{\sqrt{\sigma_{n,g}^2 + \epsilon}} + \beta_c

    with the biased variance over the group's channels and all spatial positions, and a per-channel
    affine. Native ``F.group_norm``; a subclass of ``torch.nn.GroupNorm`` (same state-dict keys).

    Args:
        num_channels: C.
        num_groups: G (default 32, the paper's default, §4.1). C must be divisible by G; the error
            lists the valid values.
        group_size: channels per group, instead of ``num_groups`` (GN paper Table 3, bottom row). Give
            one or the other.
        eps: 1e-5 (the paper's code, Fig. 3).
        affine: learn per-channel :math:`\gamma, \beta`.
        bias: with ``affine``, learn :math:`\beta` too (default), as ``nn.GroupNorm(..., bias=False)``.

    Reference formula: :func:`normcore.reference.group_norm` (Eq. 1-3 with the set :math:`S_i`).
    """

    def __init__(
        self,
        num_channels: int,
        num_groups: int | None = None,
        *,
        group_size: int | None = None,
        eps: float = 1e-5,
        affine: bool = True,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        groups = resolve_groups(num_channels, num_groups, group_size, type(self).__name__)
        super().__init__(groups, num_channels, eps, affine, device, dtype, bias=bias)

    @property
    def group_size(self) -> int:
        return self.num_channels // self.num_groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_group_input(x, type(self).__name__, self.num_channels, self.num_groups)
        return Fn.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)


class LayerNorm(NotScriptable, nn.GroupNorm):
    r"""Layer normalization for ``(N, C, *)`` input, as the GN paper defines LN for conv nets
    (GN §3.1, Fig. 2; LN paper §3 applied to all of a sample's C·H·W values):

    .. math:: y = \gamma_c \frac{x - \mu_n}{\sqrt{\sigma_n^2 + \epsilon}} + \beta_c

    with one mean and biased variance per sample over every non-batch dimension and a **per-channel**
    affine. This is ``GroupNorm(num_groups=1)`` (native kernel), what ``build_norm("ln", C)`` returns,
    and *not* ``torch.nn.LayerNorm([C, H, W])``, whose affine is per element, nor a ConvNeXt-style
    "LayerNorm2d" over C alone. For the LN paper's own form over the last dimension of ``(N, T, F)``
    use :class:`normcore.FeatureLayerNorm`; on ``(N, F)`` input the two agree.
    ``bias=False`` keeps only the gain. Reference formula: :func:`normcore.reference.layer_norm`.
    """

    def __init__(
        self,
        num_channels: int,
        *,
        eps: float = 1e-5,
        affine: bool = True,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(1, num_channels, eps, affine, device, dtype, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_group_input(x, type(self).__name__, self.num_channels, 1)
        return Fn.layer_norm(x, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}, affine={self.affine}"
