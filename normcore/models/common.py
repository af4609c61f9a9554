"""Pieces every normcore architecture shares: norm and conv choice, initialisation, zero-init of the last
gamma of a residual block.

A model takes ``norm`` (a :data:`normcore.registry.NormSpec`: a registered name, a config dict, a
callable ``num_channels -> Module`` or ``None``) plus ``norm_kwargs``, and ``conv`` (``"conv"``, ``"ws"``
or a config dict) plus ``conv_kwargs``. Models are built with plain convolutions; a non-plain conv choice
is applied afterwards with :func:`normcore.convert_convs`, which replaces only the convolutions that feed
a normalization layer (WS paper §3), so every model applies WS by the same rule.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from normcore.convert import convert_convs, find_convs_feeding_norms, is_norm
from normcore.registry import NormSpec, build_conv, norm_layer

__all__ = [
    "ConvNormAct",
    "ConvSpec",
    "apply_conv_choice",
    "init_conv_he",
    "make_norm_layer",
    "reset_norm_affine",
    "zero_init_last_gamma",
    "zero_init_residual_norms",
]

ConvSpec = str | Mapping[str, Any] | None
"""A conv choice: ``"conv"`` (plain), ``"ws"`` (weight standardization), another registered conv name,
or a config dict ``{"name": "ws", "variant": "bcn"}``. ``None`` means plain."""


def make_norm_layer(norm: NormSpec, norm_kwargs: Mapping[str, Any] | None = None) -> Callable[[int], nn.Module]:
    """``num_channels -> Module`` for ``norm`` with ``norm_kwargs`` (what torchvision's ``norm_layer=``
    expects). Unknown names fail here, before any layer is built."""
    return norm_layer(norm, **dict(norm_kwargs or {}))


class ConvNormAct(nn.Sequential):
    """``conv -> norm -> act`` with named children ``conv``, ``norm``, ``act`` (``act`` omitted when
    ``act=None``). The conv has a bias only when no norm follows it (``norm`` builds ``nn.Identity``),
    since a norm's beta makes a bias before it redundant (BN paper §3.2). :meth:`preactivation` returns
    the input of the nonlinearity."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        norm: Callable[[int], nn.Module],
        stride: int = 1,
        padding: int = 0,
        act: Callable[[], nn.Module] | None = nn.ReLU,
        conv: Callable[..., nn.Module] = nn.Conv2d,
    ) -> None:
        norm_module = norm(out_channels)
        layers = OrderedDict[str, nn.Module](
            {
                "conv": conv(
                    in_channels,
                    out_channels,
                    kernel_size,
                    stride=stride,
                    padding=padding,
                    bias=isinstance(norm_module, nn.Identity),
                ),
                "norm": norm_module,
            }
        )
        if act is not None:
            layers["act"] = act()
        super().__init__(layers)

    def preactivation(self, x: torch.Tensor) -> torch.Tensor:
        """``norm(conv(x))``: what the nonlinearity receives."""
        return self.norm(self.conv(x))

    def activate(self, u: torch.Tensor) -> torch.Tensor:
        """The nonlinearity applied to a pre-activation (identity when built with ``act=None``)."""
        return self.act(u) if "act" in self._modules else u


def _is_plain_conv_choice(conv: ConvSpec, conv_kwargs: Mapping[str, Any]) -> bool:
    probe = build_conv(conv, 1, 1, 1, **conv_kwargs)
    return type(probe) is nn.Conv2d


def apply_conv_choice(model: nn.Module, conv: ConvSpec, conv_kwargs: Mapping[str, Any] | None = None) -> list[str]:
    """Replace the convolutions of ``model`` that feed a normalization layer by ``conv`` (in place), as
    :func:`normcore.convert_convs`; nothing happens for a plain conv choice. Returns the replaced names.

    Raises ``ValueError`` when a non-plain conv is asked for but no convolution feeds a norm (e.g.
    ``conv="ws"`` with ``norm="none"``): the WS paper standardizes only convs followed by a norm (§3),
    so the request would silently change nothing.
    """
    conv_kwargs = dict(conv_kwargs or {})
    if _is_plain_conv_choice(conv, conv_kwargs):
        return []
    targets = find_convs_feeding_norms(model)
    if not targets:
        raise ValueError(
            f"conv={conv!r}: no convolution of this {type(model).__name__} feeds a normalization layer, so "
            f"nothing would be replaced (WS is applied only to convs followed by a norm, WS paper §3). "
            f"Pick a norm (e.g. norm='gn'), or use conv='conv'."
        )
    convert_convs(model, conv, **conv_kwargs)  # type: ignore[arg-type]
    return targets


def init_conv_he(model: nn.Module) -> None:
    r"""He (MSRA) initialisation of every convolution (He et al. 2015, "Delving deep into rectifiers",
    §2.2), in the ``fan_out`` mode of fb.resnet.torch and torchvision:
    :math:`W \sim \mathcal N(0, 2 / (k^2 C_{out}))`; conv biases 0. WS convs count as convolutions
    (their raw weight is initialised; the standardized one is scale-free anyway)."""
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def reset_norm_affine(model: nn.Module) -> None:
    """Set every normalization layer's gamma to 1 and beta to 0 (parameters or, for
    :class:`normcore.FrozenBatchNorm`, buffers). Running statistics are left alone."""
    for module in model.modules():
        if not is_norm(module):
            continue
        with torch.no_grad():
            weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
            if isinstance(weight, torch.Tensor):
                weight.fill_(1.0)
            if isinstance(bias, torch.Tensor):
                bias.zero_()


def zero_init_last_gamma(norm_module: nn.Module) -> bool:
    r"""Set the scale gamma of ``norm_module`` to 0, so that a residual branch ending in it outputs its
    beta (0 at init) and the block starts as the identity (GN paper §4.1: "gamma = 0 for the last
    normalization layer of each residual block"; also Goyal et al. 2017).

    What "gamma" is, per norm:

    * BN, GN, LN, IN, feature LN: the per-channel ``weight`` parameter.
    * :class:`normcore.BatchChannelNorm`: its per-group ``weight`` of shape ``(1, G, 1)`` (the channel
      stage's affine, applied last), as the official BCN ImageNet code zero-inits ``bn3.weight``; the
      inner BN stage's gamma stays 1.
    * :class:`normcore.FrozenBatchNorm`: the ``weight`` buffer.
    * ``nn.Identity`` (norm ``"none"``) or a norm built with ``affine=False``: there is no gamma; nothing
      is changed and ``False`` is returned.

    Returns ``True`` if a gamma was zeroed.
    """
    weight = getattr(norm_module, "weight", None)
    if isinstance(norm_module, nn.Identity) or not isinstance(weight, torch.Tensor):
        return False
    with torch.no_grad():
        weight.zero_()
    return True


def zero_init_residual_norms(last_norms: Iterable[tuple[str, nn.Module]]) -> int:
    """Apply :func:`zero_init_last_gamma` to each ``(block_name, last_norm)``; warn once if a real norm
    (not ``nn.Identity``) had no gamma to zero. Returns how many gammas were zeroed."""
    zeroed, missing = 0, []
    for name, norm in last_norms:
        if zero_init_last_gamma(norm):
            zeroed += 1
        elif not isinstance(norm, nn.Identity):
            missing.append(f"{name} ({type(norm).__name__})")
    if missing:
        warnings.warn(
            f"zero_init_residual=True, but the last norm of {len(missing)} residual block(s) has no affine "
            f"weight to zero (first: {missing[0]}), so those blocks are not the identity at init. Build the "
            f"norm with affine=True, or pass zero_init_residual=False to silence this.",
            stacklevel=3,
        )
    return zeroed
