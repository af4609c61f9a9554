r"""BN-Inception: the Inception variant of the BN paper (Ioffe & Szegedy 2015, §4.2 and the architecture
table of its appendix): GoogLeNet (Szegedy et al. 2014) with each 5x5 conv replaced by two 3x3
convs (up to 128 filters), BN before every nonlinearity, and stride-2 Inception modules (3c, 4e) whose
pooling branch passes through.

Layer table (224x224 input). The filter counts are the BN paper's appendix table as we recall it,
checked against two third-party implementations that agree on every count: tensorpack
``examples/Inception/inception-bn.py`` and the PyTorch port of yjxiong's Caffe BN-Inception (read in
the copy at artmerinov/holoassist-challenge ``src/archs/bn_inception.py``; module output depths 256, 320,
576, 576, 576, 608, 608, 1056, 1024, 1024). We could not open the paper's table itself from here. No
code is taken from either implementation.

Stem: conv 7x7/2 (64), max pool 3x3/2, conv 1x1 (64), conv 3x3 (192), max pool 3x3/2. Then:

=====  ====  ======  ====  ==========  ========  ===========  ======  =====
stage  1x1   3x3red  3x3   d3x3red     d3x3      pool         proj    out
=====  ====  ======  ====  ==========  ========  ===========  ======  =====
3a     64    64      64    64          96        avg          32      256
3b     64    64      96    64          96        avg          64      320
3c     --    128     160/2 64          96/2      max/2        pass    576
4a     224   64      96    96          128       avg          128     576
4b     192   96      128   96          128       avg          128     576
4c     160   128     160   128         160       avg          128     608
4d     96    128     192   160         192       avg          128     608
4e     --    128     192/2 192         256/2     max/2        pass    1056
5a     352   192     320   160         224       avg          128     1024
5b     352   192     320   192         224       max          128     1024
=====  ====  ======  ====  ==========  ========  ===========  ======  =====

Head: global average pool, dropout, fully connected. ("/2": stride 2; "pass": the pooled input is
concatenated unchanged.) A third-party reimplementation
notes that the paper's printed output depths disagree with its filter counts in places
(Keith-Dao/PyTorch-Models ``CNN/InceptionV2/README.md``); like both implementations above, we follow the
filter counts.

**Parameter count.** This table gives 11,285,224 parameters with 1000 classes (BN affine included, no
conv biases); the paper states 13.6 million (§4.2). We did not find the source of the 17% difference
(we do not know whether the paper counts auxiliary classifiers: GoogLeNet's two, 3.2 M each, would
overshoot to 17.7 M, one would give 14.5 M). The test pins our count and its distance from 13.6 M.

Further differences from the paper: pooling windows use Caffe's ceil mode (224 -> 112 -> 56 -> 28 -> 14
-> 7); no auxiliary classifiers; the init is He normal (fan_out) for
convs, gamma 1 / beta 0 (the paper does not state its init).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
from torch import nn

from normcore.models.common import (
    ConvNormAct,
    ConvSpec,
    apply_conv_choice,
    init_conv_he,
    make_norm_layer,
    reset_norm_affine,
)
from normcore.registry import NormSpec

__all__ = ["BN_INCEPTION_TABLE", "BNInception", "InceptionModule", "InceptionSpec", "bn_inception"]


class InceptionSpec(NamedTuple):
    """One row of the appendix table; ``n1x1 == 0`` marks a stride-2 module (no 1x1 branch, the pooled
    input passes through when ``proj == 0``)."""

    n1x1: int
    n3x3_reduce: int
    n3x3: int
    double_reduce: int
    double_3x3: int
    pool: str
    proj: int


BN_INCEPTION_TABLE: dict[str, InceptionSpec] = {
    "3a": InceptionSpec(64, 64, 64, 64, 96, "avg", 32),
    "3b": InceptionSpec(64, 64, 96, 64, 96, "avg", 64),
    "3c": InceptionSpec(0, 128, 160, 64, 96, "max", 0),
    "4a": InceptionSpec(224, 64, 96, 96, 128, "avg", 128),
    "4b": InceptionSpec(192, 96, 128, 96, 128, "avg", 128),
    "4c": InceptionSpec(160, 128, 160, 128, 160, "avg", 128),
    "4d": InceptionSpec(96, 128, 192, 160, 192, "avg", 128),
    "4e": InceptionSpec(0, 128, 192, 192, 256, "max", 0),
    "5a": InceptionSpec(352, 192, 320, 160, 224, "avg", 128),
    "5b": InceptionSpec(352, 192, 320, 192, 224, "max", 128),
}


class InceptionModule(nn.Module):
    """Four branches concatenated along channels: 1x1; 1x1 -> 3x3; 1x1 -> 3x3 -> 3x3 (the factorised
    5x5); 3x3 pool -> 1x1 projection. A stride-2 module drops the 1x1 branch, strides the last conv of
    the two conv branches and the pool, and passes the pooled input through."""

    def __init__(self, in_channels: int, spec: InceptionSpec, norm: Callable[[int], nn.Module]) -> None:
        super().__init__()
        stride = 2 if spec.n1x1 == 0 else 1
        self.branch1x1 = ConvNormAct(in_channels, spec.n1x1, 1, norm=norm) if spec.n1x1 else None
        self.branch3x3 = nn.Sequential(
            ConvNormAct(in_channels, spec.n3x3_reduce, 1, norm=norm),
            ConvNormAct(spec.n3x3_reduce, spec.n3x3, 3, stride=stride, padding=1, norm=norm),
        )
        self.branch_double = nn.Sequential(
            ConvNormAct(in_channels, spec.double_reduce, 1, norm=norm),
            ConvNormAct(spec.double_reduce, spec.double_3x3, 3, padding=1, norm=norm),
            ConvNormAct(spec.double_3x3, spec.double_3x3, 3, stride=stride, padding=1, norm=norm),
        )
        if spec.pool not in ("avg", "max"):
            raise ValueError(f"InceptionModule: pool must be 'avg' or 'max', got {spec.pool!r}")
        pool_cls = nn.AvgPool2d if spec.pool == "avg" else nn.MaxPool2d
        # stride 1: 'same' pooling; stride 2: Caffe's unpadded ceil-mode window (28 -> 14, like the convs)
        pool = pool_cls(3, stride=stride, padding=1 if stride == 1 else 0, ceil_mode=True)
        proj = [ConvNormAct(in_channels, spec.proj, 1, norm=norm)] if spec.proj else []
        self.branch_pool = nn.Sequential(pool, *proj)
        self.out_channels = spec.n1x1 + spec.n3x3 + spec.double_3x3 + (spec.proj or in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch3x3(x), self.branch_double(x), self.branch_pool(x)]
        if self.branch1x1 is not None:
            branches.insert(0, self.branch1x1(x))
        return torch.cat(branches, dim=1)


class BNInception(nn.Module):
    """Build it with :func:`bn_inception`."""

    def __init__(self, num_classes: int, in_channels: int, dropout: float, norm: Callable[[int], nn.Module]) -> None:
        super().__init__()
        layers = OrderedDict[str, nn.Module](
            conv1=ConvNormAct(in_channels, 64, 7, stride=2, padding=3, norm=norm),
            pool1=nn.MaxPool2d(3, stride=2, ceil_mode=True),
            conv2_reduce=ConvNormAct(64, 64, 1, norm=norm),
            conv2=ConvNormAct(64, 192, 3, padding=1, norm=norm),
            pool2=nn.MaxPool2d(3, stride=2, ceil_mode=True),
        )
        channels = 192
        for name, spec in BN_INCEPTION_TABLE.items():
            module = InceptionModule(channels, spec, norm)
            layers[f"inception_{name}"] = module
            channels = module.out_channels
        self.features = nn.Sequential(layers)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).mean(dim=(2, 3))
        return self.fc(self.dropout(x))


def bn_inception(
    *,
    norm: NormSpec = "bn",
    num_classes: int = 1000,
    dropout: float = 0.4,
    conv: ConvSpec = "conv",
    in_channels: int = 3,
    norm_kwargs: Mapping[str, Any] | None = None,
    conv_kwargs: Mapping[str, Any] | None = None,
) -> BNInception:
    """BN-Inception (BN paper §4.2, appendix table; see the module docstring for the table, its source
    and the differences from the paper).

    Args:
        norm: ``"bn"`` (the paper), ``"none"``/``None`` (the paper's "Inception" baseline, convs with
            biases), or any registry norm.
        num_classes: classifier outputs.
        dropout: before the classifier (GoogLeNet's 0.4; the BN-x5/x30 models of §4.2.1 remove it: 0).
        conv: ``"conv"`` or ``"ws"`` (applied to every conv feeding a norm), or a conv config.
        in_channels: image channels.
        norm_kwargs, conv_kwargs: passed to every norm / converted conv.
    """
    model = BNInception(num_classes, in_channels, dropout, make_norm_layer(norm, norm_kwargs))
    apply_conv_choice(model, conv, conv_kwargs)
    init_conv_he(model)
    reset_norm_affine(model)
    return model
