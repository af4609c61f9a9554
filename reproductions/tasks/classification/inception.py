"""The BN paper's own BN-Inception details that :func:`normcore.models.bn_inception` leaves out, as options
applied to a built model (config key ``model.inception_kwargs``, see :func:`apply_inception_options`).

* **Separable first convolution.** Appendix of arXiv 1502.03167: the network uses "separable convolution
  with depth multiplier 8 on the first convolutional layer". The 7x7/2 conv from 3 to 64 channels becomes
  a depthwise 7x7/2 conv (each input channel gives ``depth_multiplier`` maps: 3 -> 24) followed by a 1x1
  pointwise conv to 64 channels, with no nonlinearity between (a separable conv is one layer; the norm and
  ReLU after it stay).
* **Local response normalization.** §4.2.1 lists "Remove Local Response Normalization" among the changes
  that make BN-x5/x30 train faster, so the Inception and BN-Baseline networks keep GoogLeNet's two LRN
  layers: after the first max pooling and after the 3x3 conv of the stem (GoogLeNet's Caffe model: 5
  channels, alpha 1e-4, beta 0.75, k 1).

Both default to off (normcore's network as it is); the BN paper configs switch them on per row.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

__all__ = ["FIRST_CONVS", "LRN_SETTINGS", "apply_inception_options"]

FIRST_CONVS = ("plain", "separable")
LRN_SETTINGS = {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 1.0}
"""GoogLeNet's LRN (Caffe ``local_size 5, alpha 0.0001, beta 0.75``); PyTorch's ``alpha`` is Caffe's (both
divide it by the window size)."""


def _separable(conv: nn.Conv2d, depth_multiplier: int) -> nn.Sequential:
    """Depthwise ``k x k`` conv (same stride and padding as ``conv``, ``depth_multiplier`` maps per input
    channel) then a 1x1 pointwise conv to ``conv.out_channels`` (with ``conv``'s bias setting); He
    (fan-out) initialization, as the rest of the network."""
    mid = conv.in_channels * depth_multiplier
    depthwise = nn.Conv2d(
        conv.in_channels, mid, conv.kernel_size, stride=conv.stride, padding=conv.padding, groups=conv.in_channels,
        bias=False,
    )  # fmt: skip
    pointwise = nn.Conv2d(mid, conv.out_channels, 1, bias=conv.bias is not None)
    for layer in (depthwise, pointwise):
        nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    return nn.Sequential(OrderedDict(depthwise=depthwise, pointwise=pointwise))


def apply_inception_options(
    model: nn.Module, *, first_conv: str = "plain", depth_multiplier: int = 8, lrn: bool = False
) -> nn.Module:
    """Apply the module docstring's options to a :class:`normcore.models.BNInception`, in place; returns it.

    Args:
        first_conv: ``"plain"`` (normcore's 7x7 conv) or ``"separable"`` (the BN paper's appendix).
        depth_multiplier: maps per input channel of the separable conv's depthwise part (the paper: 8).
        lrn: insert GoogLeNet's two LRN layers into the stem (the paper's Inception and BN-Baseline).
    """
    features = getattr(model, "features", None)
    if not isinstance(features, nn.Sequential) or not hasattr(features, "conv1") or not hasattr(features, "pool2"):
        raise ValueError("model.inception_kwargs applies to model.arch: bn_inception only")
    if first_conv not in FIRST_CONVS:
        raise ValueError(f"model.inception_kwargs.first_conv={first_conv!r}; choose one of {', '.join(FIRST_CONVS)}")
    if first_conv == "separable":
        if int(depth_multiplier) < 1:
            raise ValueError(f"model.inception_kwargs.depth_multiplier must be >= 1, got {depth_multiplier}")
        features.conv1.conv = _separable(features.conv1.conv, int(depth_multiplier))
    if lrn:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for name, layer in features.named_children():
            layers[name] = layer
            if name in ("pool1", "conv2"):
                layers[f"lrn_{name}"] = nn.LocalResponseNorm(**LRN_SETTINGS)
        model.features = nn.Sequential(layers)
    return model
