r"""Pieces of feed-forward stylization (Johnson et al. 2016; Ulyanov et al. 2016, the IN paper's setting)
that do not depend on the scale: the perceptual losses, the loss network, and resizing an image.

Losses (Gatys et al. 2016; Johnson et al. 2016, §3.2), with :math:`\phi_l(x)` the ``(N, C_l, H_l, W_l)``
features of layer l of the loss network:

* Gram matrix, normalized by the number of values: :math:`G_l(x) = \phi_l(x)\phi_l(x)^\top / (C_l H_l W_l)`
  (:func:`gram_matrix`);
* style loss: :math:`L_s(\hat y, s) = \sum_{l \in S} \lVert G_l(\hat y) - G_l(s) \rVert_F^2`, averaged over
  the batch (:func:`style_loss`, ``reduction="sum"``, what the CPU experiment uses); texture_nets
  (``src/texture_loss.lua``) applies ``nn.MSECriterion``, the **mean** over the :math:`C_l^2` Gram entries
  (``reduction="mean"``), which is :math:`C_l^2` times smaller (4,096 to 262,144 on VGG-19's style layers);
* content loss: :math:`L_c(\hat y, y) = \sum_{l \in C} \lVert \phi_l(\hat y) - \phi_l(y) \rVert_2^2 / (C_l H_l W_l)`,
  averaged over the batch (:func:`content_loss`);
* total variation: :math:`TV(x) = \mathrm{mean}((x_{i+1,j} - x_{i,j})^2) + \mathrm{mean}((x_{i,j+1} - x_{i,j})^2)`
  (:func:`total_variation`).

The official IN code (``DmitryUlyanov/texture_nets:train.lua``) uses VGG-19 with style layers relu1_1,
relu2_1, relu3_1, relu4_1 and content layer relu4_2 (:data:`STYLE_LAYERS`, :data:`CONTENT_LAYERS`).
:func:`vgg19_loss_network` builds it from torchvision's ImageNet weights **only if they are already in the
torch hub cache** (nothing is downloaded). :func:`random_loss_network` is the documented fallback: a VGG-like
network with random, fixed weights whose layers carry the same names. Random-weight convolutional networks
are known to give usable texture and style statistics: Ustyuzhaninov, Brendel, Gatys & Bethge, "What does
it take to generate natural textures?" (ICLR 2017; arXiv 1606.00021) synthesize textures from Gram
matrices of random multi-scale filters, and He, Wang & Hopcroft, "A Powerful Generative Model Using Random
Weights for the Deep Image Representation" (NeurIPS 2016; arXiv 1606.04801) do style transfer with a
random-weight VGG. :func:`loss_network` picks VGG-19 when available and says which it used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reproductions.tasks.imagenet_stats import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "CAFFE_MEAN_BGR",
    "CONTENT_LAYERS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INPUT_FORMATS",
    "STYLE_LAYERS",
    "STYLE_REDUCTIONS",
    "VGG19_LAYERS",
    "LossNetwork",
    "content_loss",
    "gram_matrix",
    "loss_network",
    "random_loss_network",
    "resize_short_side",
    "style_loss",
    "total_variation",
    "vgg19_loss_network",
    "vgg19_weights_path",
]

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
CONTENT_LAYERS = ("relu4_2",)
VGG19_LAYERS = {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 20, "relu4_2": 22}
"""Index of each named ReLU in ``torchvision.models.vgg19().features``."""
STYLE_REDUCTIONS = ("sum", "mean")
"""How :func:`style_loss` reduces the squared Gram differences of a layer: ``sum`` (Frobenius norm squared)
or ``mean`` over the C x C entries (texture_nets' ``nn.MSECriterion``)."""
INPUT_FORMATS = ("torchvision", "caffe")
"""What :class:`LossNetwork` feeds its body: ``torchvision`` = RGB in [0, 1] normalized by mean and std
(torchvision's VGG weights); ``caffe`` = BGR x 255 minus the mean pixel, no std (the Caffe VGG-19 that
texture_nets loads, ``src/utils.lua`` preprocess)."""
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
"""The Caffe VGG models' mean pixel, BGR, on the 0-255 scale."""


# --------------------------------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------------------------------
def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    r"""Gram matrices of ``(N, C, H, W)`` features, :math:`G = F F^\top / (C H W)` with F the ``(C, HW)``
    matrix of one image: shape ``(N, C, C)``."""
    if features.dim() != 4:
        raise ValueError(f"gram_matrix expects (N, C, H, W) features, got shape {tuple(features.shape)}")
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def style_loss(
    features: Mapping[str, torch.Tensor],
    target_grams: Mapping[str, torch.Tensor],
    layers: Sequence[str] = STYLE_LAYERS,
    *,
    reduction: str = "sum",
) -> torch.Tensor:
    r""":math:`\sum_l \lVert G_l(\hat y) - G_l(s) \rVert_F^2` (``reduction="sum"``) or
    :math:`\sum_l \mathrm{mean}((G_l(\hat y) - G_l(s))^2)` over the :math:`C_l^2` entries (``"mean"``,
    texture_nets), averaged over the batch. ``target_grams[l]`` is ``(1, C, C)`` (one style image,
    broadcast) or ``(N, C, C)``."""
    if reduction not in STYLE_REDUCTIONS:
        raise ValueError(f"style loss reduction={reduction!r}; choose one of {', '.join(STYLE_REDUCTIONS)}")
    total = 0.0
    for layer in layers:
        diff = gram_matrix(features[layer]) - target_grams[layer]
        per_image = diff.square().sum(dim=(1, 2)) if reduction == "sum" else diff.square().mean(dim=(1, 2))
        total = total + per_image.mean()
    return total  # type: ignore[return-value]


def content_loss(
    features: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], layers: Sequence[str] = CONTENT_LAYERS
) -> torch.Tensor:
    r""":math:`\sum_l \lVert \phi_l(\hat y) - \phi_l(y) \rVert_2^2 / (C_l H_l W_l)`, averaged over the batch
    (the mean squared feature difference)."""
    total = 0.0
    for layer in layers:
        total = total + F.mse_loss(features[layer], target[layer])
    return total  # type: ignore[return-value]


def total_variation(x: torch.Tensor) -> torch.Tensor:
    r"""Squared total variation of ``(N, C, H, W)`` images: mean squared difference of vertical neighbours
    plus that of horizontal neighbours."""
    return (x[..., 1:, :] - x[..., :-1, :]).square().mean() + (x[..., :, 1:] - x[..., :, :-1]).square().mean()


# --------------------------------------------------------------------------------------------------
# loss networks
# --------------------------------------------------------------------------------------------------
class LossNetwork(nn.Module):
    """A frozen feature extractor: ``forward(x)`` returns ``{layer name: features}`` for the named layers.

    ``x`` is an RGB image batch in [0, 1]. With ``input_format="torchvision"`` (default) it is normalized
    with ``mean``/``std`` first (ImageNet's for torchvision's VGG-19); with ``"caffe"`` it becomes BGR x 255
    minus :data:`CAFFE_MEAN_BGR` (the Caffe VGG-19 of texture_nets; its weights expect that scale).
    ``description`` says what the network is (recorded in results files)."""

    def __init__(
        self,
        body: nn.Sequential,
        layers: Mapping[str, int],
        description: dict[str, Any],
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        *,
        input_format: str = "torchvision",
    ) -> None:
        super().__init__()
        if input_format not in INPUT_FORMATS:
            raise ValueError(f"input_format={input_format!r}; choose one of {', '.join(INPUT_FORMATS)}")
        self.input_format = input_format
        last = max(layers.values())
        self.body = body[: last + 1]
        self.layers = dict(layers)
        self.description = description
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        for p in self.parameters():
            p.requires_grad_(False)
        for m in self.body.modules():
            if isinstance(m, nn.ReLU):
                m.inplace = False  # the features we return must not be overwritten by the next layer
        self.eval()

    def train(self, mode: bool = True) -> LossNetwork:  # frozen: always eval
        return super().train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"LossNetwork expects RGB images (N, 3, H, W) in [0, 1], got {tuple(x.shape)}")
        wanted = {i: name for name, i in self.layers.items()}
        out: dict[str, torch.Tensor] = {}
        if self.input_format == "caffe":
            h = x.flip(1) * 255.0 - x.new_tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)
        else:
            h = (x - self.mean) / self.std
        for i, module in enumerate(self.body):
            h = module(h)
            if i in wanted:
                out[wanted[i]] = h
        return out


def vgg19_weights_path() -> Path | None:
    """torchvision's VGG-19 ImageNet weights if they are already in the torch hub cache, else None
    (never downloads)."""
    from torchvision.models import VGG19_Weights

    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(VGG19_Weights.IMAGENET1K_V1.url).name
    return path if path.is_file() else None


def vgg19_loss_network() -> LossNetwork:
    """VGG-19 (torchvision ImageNet weights) with the official IN-code layers; raises
    ``FileNotFoundError`` if the weights are not cached locally."""
    import torchvision

    path = vgg19_weights_path()
    if path is None:
        raise FileNotFoundError(
            f"VGG-19 weights are not in {Path(torch.hub.get_dir()) / 'checkpoints'}; download them once with "
            f"torchvision.models.vgg19(weights='IMAGENET1K_V1') on a machine with network access, then copy the "
            f"file there. Nothing is downloaded at run time."
        )
    model = torchvision.models.vgg19()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    description = {
        "name": "vgg19",
        "weights": f"torchvision VGG19_Weights.IMAGENET1K_V1 ({path.name})",
        "style_layers": list(STYLE_LAYERS),
        "content_layers": list(CONTENT_LAYERS),
    }
    return LossNetwork(model.features, VGG19_LAYERS, description)


def random_loss_network(widths: Sequence[int] = (16, 32, 64, 128), seed: int = 0) -> LossNetwork:
    r"""A VGG-like network with random, fixed weights, for when VGG-19's weights are not available:

    ``conv1_1 relu1_1 | avgpool | conv2_1 relu2_1 | avgpool | conv3_1 relu3_1 | avgpool | conv4_1 relu4_1
    conv4_2 relu4_2``, all convs 3x3 with zero padding 1, widths ``widths`` (conv4_2 keeps the width of
    conv4_1), so the four style layers see the image at scales 1, 1/2, 1/4, 1/8. Weights are He-normal
    (:math:`\mathcal N(0, 2/(9 C_{in}))`), biases 0, drawn from a generator seeded with ``seed``; 2x2 average
    pooling (Gatys et al. 2016 prefer it to max pooling for synthesis). Inputs are normalized with
    ImageNet's mean and std, as for VGG-19."""
    if len(widths) != 4 or min(widths) < 1:
        raise ValueError(f"random_loss_network needs four positive widths, got {tuple(widths)}")
    generator = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    names: dict[str, int] = {}
    c_in = 3
    for block, width in enumerate(widths, start=1):
        if block > 1:
            layers.append(nn.AvgPool2d(2))
        for j in (1, 2) if block == 4 else (1,):
            conv = nn.Conv2d(c_in, width, 3, padding=1)
            with torch.no_grad():
                conv.weight.normal_(0.0, (2.0 / (9 * c_in)) ** 0.5, generator=generator)
                conv.bias.zero_()
            layers += [conv, nn.ReLU()]
            names[f"relu{block}_{j}"] = len(layers) - 1
            c_in = width
    description = {
        "name": "random_vgg_like",
        "weights": f"random, He-normal, seed {seed}, fixed",
        "architecture": "conv3x3 relu1_1 | avgpool2 | conv3x3 relu2_1 | avgpool2 | conv3x3 relu3_1 | avgpool2 | "
        "conv3x3 relu4_1, conv3x3 relu4_2",
        "widths": list(widths),
        "style_layers": list(STYLE_LAYERS),
        "content_layers": list(CONTENT_LAYERS),
        "references": [
            "Ustyuzhaninov et al., What does it take to generate natural textures?, ICLR 2017 (arXiv 1606.00021)",
            "He, Wang & Hopcroft, A Powerful Generative Model Using Random Weights for the Deep Image "
            "Representation, NeurIPS 2016 (arXiv 1606.04801)",
        ],
    }
    return LossNetwork(nn.Sequential(*layers), names, description)


def loss_network(
    prefer_vgg19: bool = True, random_widths: Sequence[int] = (16, 32, 64, 128), seed: int = 0
) -> LossNetwork:
    """VGG-19 when ``prefer_vgg19`` and its weights are cached locally, else :func:`random_loss_network`.
    ``.description["name"]`` says which."""
    if prefer_vgg19 and vgg19_weights_path() is not None:
        return vgg19_loss_network()
    net = random_loss_network(random_widths, seed)
    net.description["why"] = (
        "VGG-19 ImageNet weights not found in the torch hub cache (nothing is downloaded)"
        if prefer_vgg19
        else "random network requested"
    )
    return net


# --------------------------------------------------------------------------------------------------
# images (the CPU experiment's photographs and crops: reproductions/smallscale/photographs.py)
# --------------------------------------------------------------------------------------------------
def resize_short_side(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a ``(3, H, W)`` image (antialiased bilinear) so that its shorter side is ``size``."""
    h, w = image.shape[-2:]
    scale = size / min(h, w)
    out = F.interpolate(
        image[None], size=(round(h * scale), round(w * scale)), mode="bilinear", align_corners=False, antialias=True
    )
    return out[0].clamp(0, 1)
