r"""ResNets with any normalization layer and conv choice.

* :func:`resnet18`, :func:`resnet34`, :func:`resnet50`, :func:`resnet101`: the ImageNet ResNets of
  He et al. 2016 (§3.4, Table 1) as torchvision builds them (v1.5: the stride of a bottleneck sits on
  its 3x3 conv), with ``norm_layer=`` taken from the normcore registry; the GN paper's ImageNet models
  (GN §4.1) and the WS paper's ImageNet models. State-dict keys equal torchvision's for ``norm="bn"`` and any
  conv choice, so torchvision checkpoints load.
* :func:`resnext50_32x4d`, :func:`resnext101_32x4d`: the ResNeXts of Xie et al. 2017 (§3.3, Table 1: the
  3x3 conv of every bottleneck split into 32 groups of width 4 in the first stage) built by the same
  torchvision constructor (``groups=32, width_per_group=4``); the WS paper's X-50 and X-101 ImageNet and COCO
  models. torchvision ships ``resnext50_32x4d`` but not the 101-layer 32x4d (only 32x8d and 64x4d).
* :func:`small_resnet`: the CIFAR ResNet of He et al. 2016 (§4.2): 6n+2 layers, three stages of n
  basic blocks with widths w/2w/4w, for the CPU-scale experiments on small images (14x14 and 28x28 Fashion-MNIST).

Initialisation (all models): He normal, ``fan_out`` mode, for every conv; gamma 1 and beta 0 for every
norm; with ``zero_init_residual`` the gamma of the last norm of every residual block is 0, so each block
starts as the identity, as the GN paper trains (§4.1). See :func:`normcore.models.zero_init_last_gamma`
for what gamma is for each norm.

**norm="none"** replaces every norm by ``nn.Identity``. In the torchvision ResNets nothing else changes:
their convolutions have no bias (the norm's beta is their shift), so the network has no additive term
except the classifier's. There is no gamma to zero, so ``zero_init_residual`` does nothing and the blocks
are *not* the identity at init: with He init each residual branch adds about as much variance as its
input carries, and we measure the mean square of the activations to grow about 2x per block (0.85-1.0x
at the first block of a stage, whose shortcut is a projection) and 1.9e4x from the first to the last
block of ResNet-50 (N(0, 1) input, 128x128). Training it at depth needs more (e.g. Fixup, Zhang et al.
2019), which is not provided: it is the "no normalization" baseline, meaningful for shallow nets. In
:func:`small_resnet`, built here, a conv followed by no norm gets a bias.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet as tv_resnet

from normcore.models.common import (
    ConvSpec,
    apply_conv_choice,
    init_conv_he,
    make_norm_layer,
    reset_norm_affine,
    zero_init_residual_norms,
)
from normcore.registry import NormSpec

TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnext50_32x4d", "resnext101_32x4d")
"""The builders of this module that make torchvision's ResNet class (its state-dict keys, its checkpoints)."""

__all__ = ["TORCHVISION_RESNETS", "SmallResNet", "residual_last_norms", "small_resnet", *TORCHVISION_RESNETS]


def residual_last_norms(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``(block_name, norm)`` for the last norm of every residual branch: ``bn2`` of torchvision's
    ``BasicBlock``, ``bn3`` of its ``Bottleneck``, ``norm2`` of :class:`BasicBlockA`."""
    for name, module in model.named_modules():
        if isinstance(module, tv_resnet.Bottleneck):
            yield name, module.bn3
        elif isinstance(module, tv_resnet.BasicBlock):
            yield name, module.bn2
        elif isinstance(module, BasicBlockA):
            yield name, module.norm2


def _finish(
    model: nn.Module,
    conv: ConvSpec,
    conv_kwargs: Mapping[str, Any] | None,
    zero_init_residual: bool,
    *,
    he_init: bool = True,
) -> nn.Module:
    """Conv choice, then the shared initialisation (He convs unless already done, gamma 1 / beta 0, zero
    last gammas)."""
    apply_conv_choice(model, conv, conv_kwargs)
    if he_init:
        init_conv_he(model)
    reset_norm_affine(model)
    if zero_init_residual:
        zero_init_residual_norms(residual_last_norms(model))
    return model


class _NormSlot(nn.Identity):
    """Stands in for a norm while torchvision builds the ResNet; :func:`_fill_norm_slots` replaces it.

    torchvision's constructor initialises every ``nn.GroupNorm`` it finds with ``constant_(m.weight, 1)``,
    which fails for a norm without affine (normcore's GroupNorm/LayerNorm subclass ``nn.GroupNorm``), and
    its zero-init reads ``bn3.weight``, which ``nn.Identity`` lacks. Building the norms afterwards, in the
    same places, gives the same module tree and leaves the initialisation to :func:`_finish`."""

    def __init__(self, num_channels: int) -> None:
        super().__init__()
        self.num_channels = num_channels


def _fill_norm_slots(model: nn.Module, norm: Callable[[int], nn.Module]) -> None:
    for name, module in list(model.named_modules()):
        if isinstance(module, _NormSlot):
            parent, _, child = name.rpartition(".")
            model.get_submodule(parent).add_module(child, norm(module.num_channels))


def _torchvision_resnet(
    block: type[nn.Module],
    layers: list[int],
    *,
    norm: NormSpec,
    conv: ConvSpec,
    num_classes: int,
    zero_init_residual: bool,
    norm_kwargs: Mapping[str, Any] | None,
    conv_kwargs: Mapping[str, Any] | None,
    in_channels: int,
    groups: int = 1,
    width_per_group: int = 64,
) -> tv_resnet.ResNet:
    model = tv_resnet.ResNet(
        block,  # type: ignore[arg-type]
        layers,
        num_classes=num_classes,
        zero_init_residual=False,
        groups=groups,
        width_per_group=width_per_group,
        norm_layer=_NormSlot,
    )
    _fill_norm_slots(model, make_norm_layer(norm, norm_kwargs))
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        init_conv_he(model.conv1)
    # torchvision's constructor already gave every conv He normal (fan_out) init, the same as init_conv_he
    return _finish(model, conv, conv_kwargs, zero_init_residual, he_init=False)  # type: ignore[return-value]


_RESNET_DOC = """{title} built by torchvision with ``norm_layer`` from the normcore registry.

    Args:
        norm: a registered norm name (``"bn"``, ``"gn"``, ``"ln"``, ``"in"``, ``"bcn"``, ``"frozen_bn"``,
            ``"none"``, ...), a config dict, a callable ``num_channels -> Module``, or ``None``.
        conv: ``"conv"`` or ``"ws"`` (or a conv config); a non-plain choice replaces the convs that feed
            a norm (all {n_convs} convs here; the classifier stays plain), WS paper §3.
        num_classes: classifier outputs.
        zero_init_residual: gamma = 0 in the last norm of every block (GN paper §4.1). Default True,
            unlike torchvision's False.
        norm_kwargs, conv_kwargs: passed to every norm / WS conv (e.g. ``{{"num_groups": 16}}``,
            ``{{"variant": "bcn"}}``).
        in_channels: input channels (a new ``conv1`` when not 3).

    Differences from the paper: torchvision's v1.5 bottleneck (stride on the 3x3 conv, as fb.resnet.torch
    and the GN paper's code); He ``fan_out`` init; the classifier keeps torchvision's default init.
    See the module docstring for ``norm="none"``.
    """


def _resnet_builder(
    name: str,
    title: str,
    block: type[nn.Module],
    layers: list[int],
    n_convs: int,
    *,
    groups: int = 1,
    width_per_group: int = 64,
) -> Callable[..., tv_resnet.ResNet]:
    """The public builder ``name``: torchvision's ``ResNet(block, layers, groups=, width_per_group=)`` with
    the normcore keyword API. ResNeXt (Xie et al. 2017, §3.3) is a ResNet whose bottleneck 3x3 conv has
    ``groups`` groups of ``width_per_group`` channels each in the first stage (doubling per stage)."""

    def build(
        *,
        norm: NormSpec = "bn",
        conv: ConvSpec = "conv",
        num_classes: int = 1000,
        zero_init_residual: bool = True,
        norm_kwargs: Mapping[str, Any] | None = None,
        conv_kwargs: Mapping[str, Any] | None = None,
        in_channels: int = 3,
    ) -> tv_resnet.ResNet:
        return _torchvision_resnet(
            block,
            layers,
            norm=norm,
            conv=conv,
            num_classes=num_classes,
            zero_init_residual=zero_init_residual,
            norm_kwargs=norm_kwargs,
            conv_kwargs=conv_kwargs,
            in_channels=in_channels,
            groups=groups,
            width_per_group=width_per_group,
        )

    build.__name__ = build.__qualname__ = name
    build.__doc__ = _RESNET_DOC.format(title=title, n_convs=n_convs)
    return build


resnet18 = _resnet_builder("resnet18", "ResNet-18 (He et al. 2016, Table 1)", tv_resnet.BasicBlock, [2, 2, 2, 2], 20)
resnet34 = _resnet_builder("resnet34", "ResNet-34 (He et al. 2016, Table 1)", tv_resnet.BasicBlock, [3, 4, 6, 3], 36)
resnet50 = _resnet_builder("resnet50", "ResNet-50 (He et al. 2016, Table 1)", tv_resnet.Bottleneck, [3, 4, 6, 3], 53)
resnet101 = _resnet_builder(
    "resnet101", "ResNet-101 (He et al. 2016, Table 1)", tv_resnet.Bottleneck, [3, 4, 23, 3], 104
)
_RESNEXT_TITLE = (
    "ResNeXt-{depth} (32x4d) (Xie et al. 2017, §3.3 and Table 1; the WS paper's X-{depth}): ResNet-{depth}'s\n"
    "    bottlenecks with inner width 32 x 4 = 128 in res2 (ResNet-{depth}: 64; doubling per stage) and the 3x3 conv\n"
    "    split into 32 groups,"
)


def _resnext_32x4d(depth: int, layers: list[int], n_convs: int) -> Callable[..., tv_resnet.ResNet]:
    title = _RESNEXT_TITLE.format(depth=depth)
    name = f"resnext{depth}_32x4d"
    return _resnet_builder(name, title, tv_resnet.Bottleneck, layers, n_convs, groups=32, width_per_group=4)


resnext50_32x4d = _resnext_32x4d(50, [3, 4, 6, 3], 53)
resnext101_32x4d = _resnext_32x4d(101, [3, 4, 23, 3], 104)


# --------------------------------------------------------------------------------------------------
# CIFAR-style ResNet
# --------------------------------------------------------------------------------------------------
class BasicBlockA(nn.Module):
    r"""The CIFAR basic block with the parameter-free shortcut of He et al. 2016 (§4.2, option A):
    :math:`y = \mathrm{relu}(x' + N_2(W_2 * \mathrm{relu}(N_1(W_1 * x))))`, where :math:`x'` is ``x``
    itself, or, when the block halves the resolution and doubles the width, ``x`` subsampled with stride
    2 and zero-padded to the new width (option A: "extra zero entries padded for increasing dimensions")."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: Callable[[int], nn.Module]) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"BasicBlockA widens or keeps the width, got {in_channels} -> {out_channels}")
        self.stride = stride
        self.pad_channels = out_channels - in_channels
        norm1, norm2 = norm(out_channels), norm(out_channels)
        bias = isinstance(norm1, nn.Identity)  # a conv followed by no norm keeps its bias
        # registration order conv, norm, conv, norm: convert_convs pairs convs with norms by it
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias)
        self.norm1 = norm1
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias)
        self.norm2 = norm2

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad_channels:
            x = F.pad(x, (0, 0, 0, 0, 0, self.pad_channels))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """CIFAR ResNet (He et al. 2016, §4.2); build it with :func:`small_resnet`."""

    def __init__(
        self,
        depth: int,
        width: int,
        num_classes: int,
        in_channels: int,
        norm: Callable[[int], nn.Module],
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"small_resnet: depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, 110), got {depth}")
        if width < 1:
            raise ValueError(f"small_resnet: width must be positive, got {width}")
        blocks_per_stage = (depth - 2) // 6
        norm1 = norm(width)
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=isinstance(norm1, nn.Identity))
        self.norm1 = norm1
        stages, channels = [], width
        for stage, stage_width in enumerate((width, 2 * width, 4 * width)):
            blocks = []
            for i in range(blocks_per_stage):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlockA(channels, stage_width, stride, norm))
                channels = stage_width
            stages.append(nn.Sequential(*blocks))
        self.stage1, self.stage2, self.stage3 = stages
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm1(self.conv1(x)))
        x = self.stage3(self.stage2(self.stage1(x)))
        return self.fc(x.mean(dim=(2, 3)))


def small_resnet(
    depth: int = 20,
    width: int = 16,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    norm: NormSpec = "bn",
    conv: ConvSpec = "conv",
    zero_init_residual: bool = True,
    norm_kwargs: Mapping[str, Any] | None = None,
    conv_kwargs: Mapping[str, Any] | None = None,
) -> SmallResNet:
    """The CIFAR ResNet of He et al. 2016 (§4.2): a 3x3 conv of ``width`` channels, then three stages of
    n = (depth - 2) / 6 basic blocks at widths w, 2w, 4w (the first block of stages 2 and 3 halves the
    resolution), global average pooling and a linear classifier; 6n+2 weighted layers.

    Same norm/conv choice and initialisation as :func:`resnet50`. Widths must suit the norm: GroupNorm's
    default 32 groups need multiples of 32 channels, so with the paper's width 16 pass
    ``norm_kwargs={"num_groups": 8}`` (or ``{"group_size": ...}``); otherwise the registry's error lists
    the valid group counts. InstanceNorm needs more than one position in the last stage (input >= 8x8 at
    the stride of 4).

    With ``norm="none"`` the convolutions get biases (nothing else would shift them); see the module
    docstring for what "none" means at init.

    Differences from the paper: width and input channels are free (the paper: w=16, RGB 32x32); the
    shortcut is option A as in the paper; He ``fan_out`` init (the paper cites He et al. 2015 init
    without the mode); the last gamma of each block is 0 by default (not in the paper).
    """
    model = SmallResNet(depth, width, num_classes, in_channels, make_norm_layer(norm, norm_kwargs))
    return _finish(model, conv, conv_kwargs, zero_init_residual)  # type: ignore[return-value]
