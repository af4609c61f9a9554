"""Optimizers and parameter groups: weight decay on every weight, or not on normalization parameters
and biases.

The GN paper (§4.1) applies weight decay 1e-4 "to all weight layers, including γ and β"; its COCO
fine-tuning uses 0 on γ and β, and torchvision's recipes expose the same choice as
``--norm-weight-decay``. :func:`param_groups` makes up to three groups: normalization parameters
(those of modules for which :func:`normcore.is_norm` is true, plus any parameter a module registers
under a name listed in ``norm_param_names``), biases of other layers, and the rest.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

import normcore

__all__ = ["OPTIMIZERS", "build_optimizer", "param_groups"]

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")


def param_groups(
    model: nn.Module,
    weight_decay: float,
    *,
    norm_weight_decay: float | None = None,
    bias_weight_decay: float | None = None,
    extra_norm_types: Iterable[type] = (),
) -> list[dict[str, Any]]:
    """Parameter groups for an optimizer. ``norm_weight_decay`` / ``bias_weight_decay`` of ``None``
    mean "same as ``weight_decay``". Each group carries a ``"name"`` (``"norm"``, ``"bias"``,
    ``"other"``); empty groups are dropped; frozen parameters are left out."""
    extra = tuple(extra_norm_types)
    norm_ids: set[int] = set()
    for module in model.modules():
        if normcore.is_norm(module) or (extra and isinstance(module, extra)):
            norm_ids.update(id(p) for p in module.parameters())
    groups: dict[str, list[nn.Parameter]] = {"norm": [], "bias": [], "other": []}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if id(param) in norm_ids:
            groups["norm"].append(param)
        elif name.endswith(".bias") or name == "bias":
            groups["bias"].append(param)
        else:
            groups["other"].append(param)
    decay = {
        "norm": weight_decay if norm_weight_decay is None else norm_weight_decay,
        "bias": weight_decay if bias_weight_decay is None else bias_weight_decay,
        "other": weight_decay,
    }
    return [{"name": k, "params": v, "weight_decay": decay[k]} for k, v in groups.items() if v]


def build_optimizer(
    model: nn.Module,
    *,
    name: str = "sgd",
    lr: float,
    weight_decay: float = 0.0,
    norm_weight_decay: float | None = None,
    bias_weight_decay: float | None = None,
    momentum: float = 0.9,
    nesterov: bool = False,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    alpha: float = 0.99,
) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov), Adam, AdamW or RMSprop over :func:`param_groups`."""
    groups = param_groups(model, weight_decay, norm_weight_decay=norm_weight_decay, bias_weight_decay=bias_weight_decay)
    key = name.lower()
    if key == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)
    if key == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=tuple(betas), eps=eps)
    if key == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps)
    if key == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, momentum=momentum, alpha=alpha, eps=eps)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
