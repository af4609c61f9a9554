r"""The two feed-forward stylization generators of the IN paper (Ulyanov, Vedaldi & Lempitsky 2016, §3,
Fig. 5), as the official code builds them (DmitryUlyanov/texture_nets, ``models/johnson.lua`` and
``models/pyramid.lua``; the IN paper trains both, first with BN and then with IN everywhere).

* :func:`johnson_generator`: the residual generator of Johnson et al. 2016 as re-implemented in
  ``johnson.lua``: 9x9 conv, two stride-2 3x3 convs, residual blocks, two stride-2 transposed convs, 3x3
  conv to RGB.
* :func:`texture_net_generator`: the multi-scale ("pyramid") generator of Ulyanov et al. 2016 (Texture
  Networks): the input image average-pooled to K scales (optionally with noise channels), a conv block
  per scale, and from coarse to fine: upsample x2, normalize both inputs, concatenate, conv block.

Common to both, as the official code: reflection padding in every spatial conv (the IN paper blames
zero padding for border artefacts), convolutions with biases even before a norm, ReLU, a linear RGB
output (no tanh), and PyTorch's default conv initialisation (the Torch7 default it reproduces). Norms
come from the registry (``"in"``: :class:`normcore.InstanceNorm`, affine; ``"bn"``: BatchNorm). One
difference: the official ``InstanceNormalization.lua`` initialises gamma uniform(0, 1); here gamma starts
at 1 (normcore's default), like every other norm of this library.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from normcore.models.common import make_norm_layer
from normcore.registry import NormSpec

__all__ = ["JohnsonGenerator", "TextureNetGenerator", "johnson_generator", "texture_net_generator"]


def _scaled(channels: int, width_mult: float) -> int:
    if width_mult <= 0:
        raise ValueError(f"width_mult must be positive, got {width_mult}")
    return max(1, round(channels * width_mult))


def _reflect_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Conv2d:
    """A conv with reflection padding of (k-1)/2, the official ``pad(...)`` + ``SpatialConvolution``."""
    return nn.Conv2d(
        in_channels, out_channels, kernel_size, stride=stride, padding=(kernel_size - 1) // 2, padding_mode="reflect"
    )


def _conv_block(
    in_channels: int, out_channels: int, kernel_size: int, norm: Callable[[int], nn.Module], stride: int = 1
) -> list[nn.Module]:
    return [_reflect_conv(in_channels, out_channels, kernel_size, stride), norm(out_channels), nn.ReLU()]


def _check_divisible(x: torch.Tensor, factor: int, name: str) -> None:
    if x.dim() != 4 or x.shape[-2] % factor or x.shape[-1] % factor:
        raise ValueError(
            f"{name} expects images (N, C, H, W) with H and W divisible by {factor}, got {tuple(x.shape)}; "
            f"crop or resize the input (e.g. to 256x256)"
        )


# --------------------------------------------------------------------------------------------------
# Johnson et al. residual generator
# --------------------------------------------------------------------------------------------------
class ResidualBlock(nn.Module):
    """``x + N(conv(relu(N(conv(x)))))`` with 3x3 reflection-padded convs (``johnson.lua`` ``res_block``;
    no ReLU after the sum, as the official code)."""

    def __init__(self, channels: int, norm: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_block(channels, channels, 3, norm), _reflect_conv(channels, channels, 3), norm(channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class JohnsonGenerator(nn.Sequential):
    """Build it with :func:`johnson_generator`; output shape == input shape for H, W divisible by 4."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_divisible(x, 4, "johnson_generator")
        return super().forward(x)


def johnson_generator(
    *,
    norm: NormSpec = "in",
    channels: Sequence[int] = (32, 64, 128),
    num_residual: int = 5,
    width_mult: float = 1.0,
    in_channels: int = 3,
    out_channels: int = 3,
    norm_kwargs: Mapping[str, Any] | None = None,
) -> JohnsonGenerator:
    """The Johnson-style residual generator of ``texture_nets/models/johnson.lua`` (IN paper §3, Fig. 4-5):

    ``conv9x9(3->c1) N ReLU, conv3x3/2(c1->c2) N ReLU, conv3x3/2(c2->c3) N ReLU, num_residual x ResBlock(c3),
    convT3x3/2(c3->c2) N ReLU, convT3x3/2(c2->c1) N ReLU, conv3x3(c1->3)``, with reflection padding; the
    transposed convs use padding 1 and output padding 1 (Torch's ``SpatialFullConvolution(.., 2, 2, 1, 1,
    1, 1)``), so the output has the input's size when H and W are divisible by 4.

    Args:
        norm: ``"in"`` (the IN paper), ``"bn"`` (its baseline) or any registry norm.
        channels: (c1, c2, c3); the official (32, 64, 128).
        num_residual: residual blocks (official 5).
        width_mult: scales every width (rounded, at least 1) for CPU-scale runs.

    The official ``TVLoss`` module at the end is an identity in the forward pass that adds a
    total-variation gradient; here the TV term belongs to the loss, not the model.
    """
    if len(channels) != 3:
        raise ValueError(f"johnson_generator: channels must be (c1, c2, c3), got {tuple(channels)}")
    c1, c2, c3 = (_scaled(c, width_mult) for c in channels)
    n = make_norm_layer(norm, norm_kwargs)

    def up(cin: int, cout: int) -> list[nn.Module]:
        return [nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1), n(cout), nn.ReLU()]

    return JohnsonGenerator(
        *_conv_block(in_channels, c1, 9, n),
        *_conv_block(c1, c2, 3, n, stride=2),
        *_conv_block(c2, c3, 3, n, stride=2),
        *(ResidualBlock(c3, n) for _ in range(num_residual)),
        *up(c3, c2),
        *up(c2, c1),
        _reflect_conv(c1, out_channels, 3),
    )


# --------------------------------------------------------------------------------------------------
# Ulyanov et al. multi-scale generator
# --------------------------------------------------------------------------------------------------
class TextureNetGenerator(nn.Module):
    """The multi-scale generator; build it with :func:`texture_net_generator`."""

    def __init__(
        self,
        *,
        scales: int,
        channels_per_scale: int,
        in_channels: int,
        out_channels: int,
        noise_channels: int,
        norm: Callable[[int], nn.Module],
    ) -> None:
        super().__init__()
        if scales < 1:
            raise ValueError(f"texture_net_generator: scales must be >= 1, got {scales}")
        if noise_channels < 0:
            raise ValueError(f"texture_net_generator: noise_channels must be >= 0, got {noise_channels}")
        self.scales = scales
        self.noise_channels = noise_channels
        c = channels_per_scale

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(*_conv_block(cin, cout, 3, norm), *_conv_block(cout, cout, 3, norm),
                                 *_conv_block(cout, cout, 1, norm))  # fmt: skip

        # scale k = 0 is the coarsest (input average-pooled by 2^(scales-1)), k = scales-1 the full size
        self.inputs = nn.ModuleList(block(in_channels + noise_channels, c) for _ in range(scales))
        self.join_norms_coarse = nn.ModuleList(norm(c * k) for k in range(1, scales))
        self.join_norms_fine = nn.ModuleList(norm(c) for _ in range(1, scales))
        self.joins = nn.ModuleList(block(c * (k + 1), c * (k + 1)) for k in range(1, scales))
        self.to_rgb = nn.Conv2d(c * scales, out_channels, 1)

    def _scale_input(self, x: torch.Tensor, k: int) -> torch.Tensor:
        ratio = 2 ** (self.scales - 1 - k)
        x_k = F.avg_pool2d(x, ratio) if ratio > 1 else x
        if self.noise_channels:
            noise = torch.rand(x_k.shape[0], self.noise_channels, *x_k.shape[2:], device=x.device, dtype=x.dtype)
            x_k = torch.cat([x_k, noise], dim=1)
        return x_k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_divisible(x, 2 ** (self.scales - 1), "texture_net_generator")
        out = self.inputs[0](self._scale_input(x, 0))
        for k in range(1, self.scales):
            coarse = F.interpolate(out, scale_factor=2, mode="nearest")
            fine = self.inputs[k](self._scale_input(x, k))
            joined = torch.cat([self.join_norms_coarse[k - 1](coarse), self.join_norms_fine[k - 1](fine)], dim=1)
            out = self.joins[k - 1](joined)
        return self.to_rgb(out)


def texture_net_generator(
    *,
    norm: NormSpec = "in",
    scales: int = 6,
    channels_per_scale: int = 8,
    width_mult: float = 1.0,
    noise_channels: int = 0,
    in_channels: int = 3,
    out_channels: int = 3,
    norm_kwargs: Mapping[str, Any] | None = None,
) -> TextureNetGenerator:
    """The multi-scale ("pyramid") generator of Ulyanov et al. 2016 as ``texture_nets/models/pyramid.lua``
    builds it (the official default ``-model pyramid``; IN paper §3, Fig. 5 left):

    * scale k = 0..K-1 (K = ``scales``, official 6: pooling ratios 32, 16, 8, 4, 2, 1) sees the input
      average-pooled by 2^(K-1-k), plus ``noise_channels`` channels of uniform noise when asked, through
      a block ``conv3x3 N ReLU, conv3x3 N ReLU, conv1x1 N ReLU`` of ``channels_per_scale`` (c, official 8)
      channels;
    * from coarse to fine, the running result is upsampled x2 (nearest), both it and the new scale's
      features are normalized ("norm before merging", one norm each), concatenated (c*k + c channels)
      and passed through the same kind of block at c*(k+1) channels;
    * a 1x1 conv maps the c*K channels to RGB.

    The output has the input's shape when H and W are divisible by 2^(K-1) (32 for the official K = 6).
    ``width_mult`` scales c for CPU-scale runs. With the official code in stylization mode the network
    sees only the image; in texture mode its input is replaced by noise (pass noise as ``x``), and the
    Texture Networks paper also concatenates noise to the image (``noise_channels``).
    """
    return TextureNetGenerator(
        scales=scales,
        channels_per_scale=_scaled(channels_per_scale, width_mult),
        in_channels=in_channels,
        out_channels=out_channels,
        noise_channels=noise_channels,
        norm=make_norm_layer(norm, norm_kwargs),
    )
