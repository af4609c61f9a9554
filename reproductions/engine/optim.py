"""Optimizers and parameter groups: weight decay on every weight, or not on normalization parameters
and biases.

The GN paper (§4.1) applies weight decay 1e-4 "to all weight layers, including γ and β"; its COCO
fine-tuning uses 0 on γ and β, and torchvision's recipes expose the same choice as
``--norm-weight-decay``. :func:`param_groups` makes up to three groups: normalization parameters
(those of modules for which :func:`normcore.is_norm` is true, plus parameters of ``extra_norm_types``),
biases of other layers, and the rest.

Two detection conventions are options here. Detectron (``detectron/modeling/optimizer.py``) and
maskrcnn-benchmark (``solver/build.py``) give biases twice the learning rate and no weight decay
(``bias_lr_factor=2``, ``bias_weight_decay=0``). maskrcnn-benchmark picks biases by name (``"bias" in
key``), so a norm's β follows the bias rule and γ the ordinary one (``norm_bias_rule="bias"``); the
default ``"norm"`` keeps γ and β together in the norm group.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

import normcore

__all__ = ["NORM_BIAS_RULES", "OPTIMIZERS", "build_optimizer", "param_groups"]

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
NORM_BIAS_RULES = ("norm", "bias")
"""Which group a normalization layer's β joins: the norm group (with γ) or the bias group."""


def param_groups(
    model: nn.Module,
    weight_decay: float,
    *,
    norm_weight_decay: float | None = None,
    bias_weight_decay: float | None = None,
    bias_lr_factor: float = 1.0,
    norm_bias_rule: str = "norm",
    extra_norm_types: Iterable[type] = (),
) -> list[dict[str, Any]]:
    """Parameter groups for an optimizer. ``norm_weight_decay`` / ``bias_weight_decay`` of ``None``
    mean "same as ``weight_decay``". Each group carries a ``"name"`` (``"norm"``, ``"bias"``,
    ``"other"``) and an ``"lr_factor"`` (``bias_lr_factor`` for biases, 1 otherwise) that
    :func:`build_optimizer` multiplies into the group's learning rate; ``norm_bias_rule="bias"`` puts
    every norm's β in the bias group (module docstring). Empty groups are dropped; frozen parameters are
    left out."""
    if norm_bias_rule not in NORM_BIAS_RULES:
        raise ValueError(f"optim.norm_bias_rule={norm_bias_rule!r}; choose one of {', '.join(NORM_BIAS_RULES)}")
    extra = tuple(extra_norm_types)
    norm_ids: set[int] = set()
    for module in model.modules():
        if normcore.is_norm(module) or (extra and isinstance(module, extra)):
            norm_ids.update(
                id(p)
                for n, p in module.named_parameters()
                if not (norm_bias_rule == "bias" and n.rpartition(".")[2] == "bias")
            )
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
    factor = {"norm": 1.0, "bias": float(bias_lr_factor), "other": 1.0}
    return [{"name": k, "params": v, "weight_decay": decay[k], "lr_factor": factor[k]} for k, v in groups.items() if v]


def build_optimizer(
    model: nn.Module,
    *,
    name: str = "sgd",
    lr: float,
    weight_decay: float = 0.0,
    norm_weight_decay: float | None = None,
    bias_weight_decay: float | None = None,
    bias_lr_factor: float = 1.0,
    norm_bias_rule: str = "norm",
    momentum: float = 0.9,
    nesterov: bool = False,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    alpha: float = 0.99,
) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov), Adam, AdamW or RMSprop over :func:`param_groups`; each group's
    learning rate is ``lr`` times its ``lr_factor`` (schedules then scale every group alike)."""
    groups = param_groups(
        model,
        weight_decay,
        norm_weight_decay=norm_weight_decay,
        bias_weight_decay=bias_weight_decay,
        bias_lr_factor=bias_lr_factor,
        norm_bias_rule=norm_bias_rule,
    )
    for group in groups:
        group["lr"] = lr * group["lr_factor"]
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
