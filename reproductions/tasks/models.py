"""``build_model(model_cfg)``: the papers' classification networks from ``normcore.models``, with the
engine's BN options applied.

``model_cfg`` is the ``model`` section of a config::

    model:
      arch: resnet50          # resnet18/34/50/101, resnext50_32x4d, resnext101_32x4d, bn_inception, nin,
                              # small_resnet
      norm: gn                # any normcore.build_norm name (bn, sync_bn, frozen_bn, ln, in, gn, bcn, none)
      norm_kwargs: {num_groups: 32}
      conv: conv              # or ws
      conv_kwargs: {}
      num_classes: 1000
      kwargs: {}              # other keyword arguments of the architecture (dropout, width, ...)
      activation: relu        # or sigmoid: every nn.ReLU module becomes nn.Sigmoid (BN paper, BN-x5-Sigmoid)
      inception_kwargs: {}    # bn_inception only: first_conv (plain | separable), depth_multiplier, lrn
                              # (the BN paper's appendix stem; reproductions.tasks.classification.inception)

``sync_bn=True`` turns ``bn`` into ``sync_bn`` (statistics over all processes; a single process falls
back to per-process BN with a warning). ``virtual_devices=D`` passes ``virtual_devices=D`` to every
``bn``/``bcn`` layer, so one process normalizes each of D slices of its batch separately, as D GPUs
with per-GPU BN do; the running statistics follow slice 0 (``virtual_running_stats="first"``), which is
what DDP keeps, so a simulated run and a real one end with the same buffers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

import normcore
import normcore.models

__all__ = ["ACTIVATIONS", "ARCHITECTURES", "build_model", "norm_info_or_none", "norm_name", "replace_activations"]

ARCHITECTURES = (*normcore.models.TORCHVISION_RESNETS, "bn_inception", "nin", "small_resnet")
ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


def replace_activations(model: nn.Module, name: str) -> int:
    """Replace every ``nn.ReLU`` module of ``model`` by the named activation, in place; returns how many.
    Raises if the model has none (its ReLUs would be functional calls this cannot reach)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"model.activation={name!r}; choose one of {', '.join(ACTIVATIONS)}")
    if name == "relu":
        return 0
    targets = [n for n, m in model.named_modules() if type(m) is nn.ReLU]
    if not targets:
        raise ValueError(f"model.activation={name!r}: {type(model).__name__} has no nn.ReLU modules to replace")
    for mod_name in targets:
        parent, _, child = mod_name.rpartition(".")
        model.get_submodule(parent).add_module(child, ACTIVATIONS[name]())
    return len(targets)


def norm_name(norm: Any) -> str | None:
    """The registry's canonical name for a norm spec (``"BatchNorm"`` and ``"batch_norm"`` -> ``"bn"``), as
    :func:`normcore.norm_info` gives it; ``None`` for callables and unknown names."""
    info = norm_info_or_none(norm, {})
    return info.name if info is not None else None


def norm_info_or_none(norm: Any, norm_kwargs: Mapping[str, Any]) -> normcore.NormInfo | None:
    """:func:`normcore.norm_info` of a config's ``norm`` and ``norm_kwargs``; ``None`` for callables and
    unknown names (building the model reports those)."""
    try:
        return normcore.norm_info(norm, **dict(norm_kwargs))
    except (KeyError, TypeError, ValueError):
        return None


def build_model(
    model_cfg: Mapping[str, Any],
    *,
    sync_bn: bool = False,
    virtual_devices: int = 1,
) -> nn.Module:
    """Build the configured network (see the module docstring). Errors name the config key to fix."""
    cfg = dict(model_cfg)
    arch = cfg.get("arch")
    factory = getattr(normcore.models, str(arch), None) if arch in ARCHITECTURES else None
    if factory is None:
        available = [a for a in ARCHITECTURES if hasattr(normcore.models, a)]
        raise ValueError(f"model.arch={arch!r} is not available; choose one of {', '.join(available)}")
    norm = cfg.get("norm", "bn")
    norm_kwargs = dict(cfg.get("norm_kwargs") or {})
    info = norm_info_or_none(norm, norm_kwargs)
    name = info.name if info is not None else None
    if sync_bn:
        if virtual_devices > 1:
            raise ValueError("--sync-bn and --virtual-devices exclude each other: SyncBN normalizes over all devices")
        if name != "bn":
            raise ValueError(f"--sync-bn applies to norm 'bn', but model.norm is {norm!r}")
        norm = "sync_bn"
    if virtual_devices > 1:
        if info is None or not info.uses_batch_statistics:
            raise ValueError(
                f"--virtual-devices applies to norms that use batch statistics (bn, bcn), but model.norm is "
                f"{norm!r}; it has no per-device statistics to simulate (leave --virtual-devices at 1)"
            )
        norm_kwargs["virtual_devices"] = virtual_devices
        # DDP (broadcast_buffers=True) ends with rank 0's running statistics: keep slice 0's.
        norm_kwargs.setdefault("virtual_running_stats", "first")
    kwargs: dict[str, Any] = dict(cfg.get("kwargs") or {})
    kwargs.update(norm=norm, norm_kwargs=norm_kwargs or None, num_classes=int(cfg.get("num_classes", 1000)))
    if cfg.get("conv") not in (None, "conv") or cfg.get("conv_kwargs"):
        kwargs.update(conv=cfg.get("conv") or "conv", conv_kwargs=cfg.get("conv_kwargs") or None)
    if "zero_init_residual" in cfg and arch.startswith(("resnet", "resnext", "small_resnet")):
        kwargs["zero_init_residual"] = bool(cfg["zero_init_residual"])
    try:
        model = factory(**kwargs)
    except TypeError as err:
        raise TypeError(f"model.arch={arch!r}: {err} (check model.kwargs / model.norm_kwargs)") from err
    inception_kwargs = dict(cfg.get("inception_kwargs") or {})
    if inception_kwargs:
        from reproductions.tasks.classification.inception import apply_inception_options

        apply_inception_options(model, **inception_kwargs)
    replace_activations(model, str(cfg.get("activation") or "relu"))
    return model
