r"""A Network-in-Network conv net (Lin, Chen & Yan, ICLR 2014, §3-4; the CIFAR-10 model of its Caffe model
zoo entry), the architecture family of the NormProp paper's experiments (summaries of the paper describe
a Network-in-Network-like conv net on CIFAR-10/100 and SVHN; its exact layers are not public, see
papers/normprop/).

Layers (C = ``width``, 192 in NIN; the 160 and 96 of block 1 scale with it):

=====  ======================================================  ================================
block  mlpconv layers                                          then
=====  ======================================================  ================================
1      5x5 conv C, 1x1 conv 160/192·C, 1x1 conv 96/192·C       max pool 3x3/2, dropout
2      5x5 conv C, 1x1 conv C, 1x1 conv C                      avg pool 3x3/2, dropout
3      3x3 conv C, 1x1 conv C, 1x1 conv num_classes            global average pool -> logits
=====  ======================================================  ================================

Pooling uses Caffe's ceil mode (32 -> 16 -> 8). Per layer, ``norm`` picks:

* ``"normprop"``: :class:`normcore.NormPropConv2d` (unit-norm filters times gamma, plus beta, which is the
  conv bias) and :class:`normcore.NormPropReLU`; the network starts with a :class:`normcore.NormPropInputNorm`
  that the caller fits on the training data (:meth:`NIN.fit_input_norm`; identity until then);
* ``"bn"`` (or any registry norm): a bias-free conv, the norm, ReLU;
* ``None``: conv with bias, ReLU (the original NIN).

NormProp at init, measured (N(0, 1) input 32x32, batch 32, seed 0; ``NIN.preactivations``): block 1's
pre-activations have mean 0.00 and std 0.98-1.00 away from the zero-padded border, as NormProp's closed
forms predict for conv + ReLU. Max pooling is outside those closed forms (it raises the mean and changes
the variance of its input), so block 2 starts off-normalized (std 1.9-2.1, 2.1-2.4 away from the border)
and block 3 at std 1.6-1.9; our sources for the NormProp paper do not say how it treats pooling
(papers/normprop/), so no correction is applied.

The last 1x1 conv (the class maps) has a bias and no norm or ReLU with every ``norm`` (NormProp keeps
its normalized conv there). Differences from NIN: no ReLU on the class maps (NIN's Caffe model has one);
``dropout`` defaults to 0 (NIN: 0.5; a secondary summary of the NormProp paper says it finds dropout
unnecessary with NormProp).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import torch
from torch import nn

from normcore.models.common import ConvNormAct, init_conv_he, make_norm_layer, reset_norm_affine
from normcore.normprop import GAMMA_INIT, NormPropConv2d, NormPropInputNorm, NormPropReLU
from normcore.registry import NormSpec, canonical_name

__all__ = ["NIN", "nin"]


class NIN(nn.Module):
    """Build it with :func:`nin`. ``features`` holds, in order, the input norm, the conv units
    (:class:`~normcore.models.common.ConvNormAct`, named ``conv1, cccp1, ...`` as in NIN's Caffe model),
    pooling and dropout."""

    def __init__(self, features: nn.Sequential) -> None:
        super().__init__()
        self.features = features

    def fit_input_norm(self, data: torch.Tensor) -> NIN:
        """Set the NormProp input standardization from training images ``(N, C, H, W)`` (per-channel mean
        and std, NormProp §3). Only for ``norm="normprop"``."""
        if not isinstance(self.features.input_norm, NormPropInputNorm):
            raise TypeError("fit_input_norm applies to nin(norm='normprop'); other variants take raw input")
        fitted = NormPropInputNorm.from_data(data)
        self.features.input_norm.load_state_dict(fitted.state_dict())
        return self

    def preactivations(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each conv unit's pre-activation (the input of its ReLU; for the last unit, the class maps before
        global pooling), keyed by unit name, for one forward pass of ``x``. For NormProp these should be
        close to zero mean and unit variance (NormProp §3)."""
        found = {}
        for name, module in self.features.named_children():
            if isinstance(module, ConvNormAct):
                u = module.preactivation(x)
                found[name] = u
                x = module.activate(u)
            else:
                x = module(x)
        return found

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


def nin(
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    norm: NormSpec = "normprop",
    width: int = 192,
    dropout: float = 0.0,
    norm_kwargs: Mapping[str, Any] | None = None,
) -> NIN:
    """A NIN-style CIFAR network with NormProp, a registry norm, or no norm (see the module docstring).

    Args:
        num_classes: channels of the last 1x1 conv = logits after global average pooling.
        in_channels: image channels.
        norm: ``"normprop"``, ``"bn"`` (or another registry norm / config / callable), or ``None``.
        width: C, the width of the mlpconv layers (NIN: 192); smaller for CPU-scale runs.
        dropout: after the first two pooling layers.
        norm_kwargs: passed to every registry norm; with NormProp only ``{"gamma_init": g}``, the initial
            gamma of every NormProp conv (default :data:`normcore.normprop.GAMMA_INIT`, the paper's 1/1.21;
            ``1.0`` makes block 1 start exactly N(0, 1)).

    Init: NormProp layers as :class:`normcore.NormPropConv2d` (Gaussian filters, gamma ``gamma_init``, beta 0); the
    others He normal (fan_out), gamma 1, beta 0 (NIN's Caffe model used N(0, 0.05^2)).
    """
    if width < 2:
        raise ValueError(f"nin: width must be >= 2, got {width}")
    normprop = isinstance(norm, str) and canonical_name(norm) == "normprop"
    if normprop and set(norm_kwargs or {}) - {"gamma_init"}:
        raise ValueError(
            f"nin(norm='normprop') takes no norm_kwargs other than gamma_init (NormProp has no norm layer to "
            f"configure), got {sorted(norm_kwargs or {})}"
        )
    act: Callable[[], nn.Module] = NormPropReLU if normprop else nn.ReLU
    gamma_init = float((norm_kwargs or {}).get("gamma_init", GAMMA_INIT))
    conv: Callable[..., nn.Module] = partial(NormPropConv2d, gamma_init=gamma_init) if normprop else nn.Conv2d
    # NormProp has no norm module: ConvNormAct then keeps the conv bias, which is NormProp's beta
    norm_layer = make_norm_layer(None) if normprop else make_norm_layer(norm, norm_kwargs)
    c1, c2 = max(1, round(width * 160 / 192)), max(1, round(width * 96 / 192))

    def unit(cin: int, cout: int, k: int, last: bool = False) -> ConvNormAct:
        if last:  # the class maps: no norm (as the MLP head), no ReLU; NormProp keeps its normalized conv
            return ConvNormAct(cin, cout, k, norm=make_norm_layer(None), act=None, conv=conv)
        return ConvNormAct(cin, cout, k, padding=k // 2, norm=norm_layer, act=act, conv=conv)

    identity_stats = (torch.zeros(in_channels, 1, 1), torch.ones(in_channels, 1, 1))
    layers = OrderedDict[str, nn.Module](
        {
            "input_norm": NormPropInputNorm(*identity_stats) if normprop else nn.Identity(),
            "conv1": unit(in_channels, width, 5),
            "cccp1": unit(width, c1, 1),
            "cccp2": unit(c1, c2, 1),
            "pool1": nn.MaxPool2d(3, stride=2, ceil_mode=True),
            "drop1": nn.Dropout(dropout),
            "conv2": unit(c2, width, 5),
            "cccp3": unit(width, width, 1),
            "cccp4": unit(width, width, 1),
            "pool2": nn.AvgPool2d(3, stride=2, ceil_mode=True),
            "drop2": nn.Dropout(dropout),
            "conv3": unit(width, width, 3),
            "cccp5": unit(width, width, 1),
            "cccp6": unit(width, num_classes, 1, last=True),
        }
    )
    model = NIN(nn.Sequential(layers))
    if not normprop:
        init_conv_he(model)
        reset_norm_affine(model)
    return model
