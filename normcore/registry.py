"""Name -> layer registry for normalization layers and convolutions.

Activation norms and convolutions are separate choices, as in mmcv's ``norm_cfg``/``conv_cfg``:
GN+WS is ``norm="gn"`` with ``conv="ws"``. Names are case-insensitive and ignore ``_``, ``-`` and
spaces (``"GroupNorm"``, ``"group_norm"`` and ``"gn"`` are the same); each has aliases.

>>> import normcore
>>> normcore.build_norm("gn", 64, num_groups=16)
GroupNorm(16, 64, eps=1e-05, affine=True, bias=True)
>>> import torchvision
>>> model = torchvision.models.resnet50(norm_layer=normcore.norm_layer("gn"))
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from normcore.batchnorm import BatchNorm, FrozenBatchNorm, SyncBatchNorm
from normcore.bcn import BatchChannelNorm, EstimatedBatchNorm
from normcore.groupnorm import GroupNorm, LayerNorm
from normcore.instancenorm import InstanceNorm
from normcore.layernorm import FeatureLayerNorm
from normcore.normprop import NormPropConv2d
from normcore.ws import WSConv1d, WSConv2d, WSConv3d

__all__ = [
    "NormInfo",
    "NormSpec",
    "available_convs",
    "available_norms",
    "build_conv",
    "build_norm",
    "canonical_name",
    "conv_layer",
    "module_uses_batch_statistics",
    "norm_info",
    "norm_layer",
    "register_conv",
    "register_norm",
]

NormSpec = str | Mapping[str, Any] | Callable[..., nn.Module] | None
"""What ``build_norm`` accepts: a name, a config dict ``{"name": "gn", "num_groups": 16}`` (``"type"``
also works, as in mmcv), a class or callable ``num_channels -> Module``, or ``None`` (no norm)."""


def canonical_name(name: str) -> str:
    """The lookup key of a registry name: lower case, without ``_``, ``-`` and spaces."""
    return "".join(ch for ch in name.lower() if ch not in "_- ")


@dataclass(frozen=True)
class NormInfo:
    """What a training loop needs to know about a norm, so that nothing outside the registry re-derives
    it from names (:func:`norm_info`)."""

    name: str
    """Canonical registry name (``"bn"``, ``"gn"``, ``"bcn"``, ...)."""
    uses_batch_statistics: bool
    """Normalizes with the statistics of the current (per-device) batch in training: ``bn``,
    ``sync_bn``, and ``bcn`` unless ``estimate=True``. These take ``virtual_devices``."""
    batch_dependent: bool
    """A training step depends on how the batch is split into micro-batches: ``bn``, ``sync_bn``,
    ``bcn`` (also with ``estimate=True``, whose estimated BN updates from each micro-batch, WS paper
    §5) and ``est_bn``."""


BatchFlag = bool | Callable[[Mapping[str, Any]], bool]
"""A :class:`NormInfo` flag of a registered norm: a constant, or a function of the layer's kwargs."""


@dataclass(frozen=True)
class _Entry:
    name: str
    factory: Callable[..., nn.Module]
    aliases: tuple[str, ...]
    summary: str
    uses_batch_statistics: BatchFlag = False
    batch_dependent: BatchFlag = False

    def info(self, kwargs: Mapping[str, Any]) -> NormInfo:
        def flag(f: BatchFlag) -> bool:
            return bool(f(kwargs)) if callable(f) else f

        return NormInfo(self.name, flag(self.uses_batch_statistics), flag(self.batch_dependent))


_FOREIGN_NAMES: dict[str, str] = {
    "layernorm2d": "timm's LayerNorm2d (and ConvNeXt's) normalizes each position over the channels only; "
    "normcore has no such layer. normcore 'ln' normalizes over all of (C, H, W) (GN paper's LN, timm's "
    "'groupnorm1'); 'feature_ln' over the last dimension (LN paper, timm's 'layernorm')",
    "layernorm3d": "timm's LayerNorm3d normalizes each position over the channels only; normcore has no such "
    "layer ('ln' normalizes over all of (C, *), 'feature_ln' over the last dimension)",
    "rmsnorm": "RMSNorm is none of the six papers' methods; use torch.nn.RMSNorm",
    "rmsnorm2d": "RMSNorm is none of the six papers' methods; use torch.nn.RMSNorm on permuted input",
    "simplenorm": "timm's SimpleNorm (RMSNorm without mean) is none of the six papers' methods",
    "simplenorm2d": "timm's SimpleNorm2d is none of the six papers' methods",
}
"""Names other libraries use for norms that normcore does not have or names differently: the registry
answers them with what they mean and the nearest normcore name, instead of a bare "unknown"."""


class _Registry:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.entries: dict[str, _Entry] = {}
        self.lookup: dict[str, str] = {}

    def add(self, entry: _Entry, force: bool) -> None:
        name, aliases = entry.name, entry.aliases
        keys = [canonical_name(name), *(canonical_name(a) for a in aliases)]
        for key in keys:
            owner = self.lookup.get(key)
            if owner is not None and not force:
                raise KeyError(
                    f"{self.kind} name {key!r} is already registered for {owner!r}; pass force=True to replace it"
                )
        self.entries.pop(name, None)
        for key in [k for k, owner in self.lookup.items() if owner == name]:
            del self.lookup[key]  # a replaced entry's old aliases must not point at the new factory
        self.entries[name] = entry
        for key in keys:
            self.lookup[key] = name

    def get(self, name: str) -> _Entry:
        key = canonical_name(name)
        if key not in self.lookup:
            foreign = _FOREIGN_NAMES.get(key, "") if self.kind == "norm" else ""
            close = dict.fromkeys(self.lookup[c] for c in difflib.get_close_matches(key, list(self.lookup), n=6))
            hint = f" {foreign}." if foreign else ""
            if close and not foreign:
                hint = f" Did you mean {', '.join(repr(c) for c in list(close)[:3])}?"
            aliases = "; ".join(f"{e.name}: {', '.join(e.aliases)}" for e in self.entries.values() if e.aliases)
            raise KeyError(
                f"unknown {self.kind} {name!r}.{hint} Available: {', '.join(sorted(self.entries))}. "
                f"Aliases ({aliases}). Register your own with normcore.register_{self.kind}()."
            )
        return self.entries[self.lookup[key]]


_NORMS = _Registry("norm")
_CONVS = _Registry("conv")


def _call(entry: _Entry, kind: str, args: tuple, kwargs: dict) -> nn.Module:
    try:
        return entry.factory(*args, **kwargs)
    except TypeError as err:
        try:
            sig = f"{inspect.signature(entry.factory)}"
        except (TypeError, ValueError):
            sig = "(see its docstring)"
        raise TypeError(f"build_{kind}({entry.name!r}, ...): {err}. {entry.name!r} accepts {sig}") from err


def register_norm(
    name: str,
    factory: Callable[..., nn.Module] | None = None,
    *,
    aliases: Iterable[str] = (),
    summary: str = "",
    force: bool = False,
    uses_batch_statistics: BatchFlag = False,
    batch_dependent: BatchFlag | None = None,
):
    """Register a norm ``factory(num_channels, **kw) -> Module`` under ``name`` (and ``aliases``).
    Usable as a decorator: ``@register_norm("my_norm")``. ``uses_batch_statistics`` and
    ``batch_dependent`` (default: the same as ``uses_batch_statistics``) are what :func:`norm_info`
    reports: constants, or functions of the layer's keyword arguments."""

    def deco(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        doc = summary or (f.__doc__ or "").strip().split("\n")[0]
        dependent = uses_batch_statistics if batch_dependent is None else batch_dependent
        _NORMS.add(_Entry(name, f, tuple(aliases), doc, uses_batch_statistics, dependent), force)
        return f

    return deco if factory is None else deco(factory)


def register_conv(
    name: str,
    factory: Callable[..., nn.Module] | None = None,
    *,
    aliases: Iterable[str] = (),
    summary: str = "",
    force: bool = False,
):
    """Register a conv ``factory(in_channels, out_channels, kernel_size, *, dim, **kw) -> Module``."""

    def deco(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _CONVS.add(_Entry(name, f, tuple(aliases), summary or (f.__doc__ or "").strip().split("\n")[0]), force)
        return f

    return deco if factory is None else deco(factory)


def _split_cfg(spec: Mapping[str, Any], kw: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    cfg = dict(spec)
    keys = [k for k in ("name", "type") if k in cfg]
    if len(keys) != 1:
        raise ValueError(f"a norm/conv config needs exactly one of 'name' or 'type', got {spec!r}")
    name = cfg.pop(keys[0])
    return name, {**cfg, **kw}


def build_norm(name_or_cfg: NormSpec, num_channels: int, **kw: Any) -> nn.Module:
    """Build a normalization layer for ``num_channels`` channels.

    ``name_or_cfg`` is a registered name or alias (see :func:`available_norms`), a config dict with
    ``"name"`` (or ``"type"``) plus keyword arguments, a class/callable taking ``num_channels``, or
    ``None`` for no normalization. ``kw`` are passed to the layer and override the config's.
    """
    if name_or_cfg is None:
        name_or_cfg = "none"
    if isinstance(name_or_cfg, Mapping):
        name, kw = _split_cfg(name_or_cfg, kw)
        return build_norm(name, num_channels, **kw)
    if callable(name_or_cfg):
        return name_or_cfg(num_channels, **kw)
    if not isinstance(name_or_cfg, str):
        raise TypeError(f"build_norm expects a name, a config dict, a callable or None; got {name_or_cfg!r}")
    return _call(_NORMS.get(name_or_cfg), "norm", (num_channels,), kw)


def norm_layer(name_or_cfg: NormSpec, **kw: Any) -> Callable[[int], nn.Module]:
    """A ``num_channels -> Module`` callable, what torchvision's ``norm_layer=`` expects:
    ``torchvision.models.resnet50(norm_layer=norm_layer("gn", num_groups=32))``. The name is checked
    now, not at first use."""
    if isinstance(name_or_cfg, str):
        _NORMS.get(name_or_cfg)
    return _NormLayer(name_or_cfg, kw)


class _NormLayer:
    """``num_channels -> Module``; picklable, with a readable repr."""

    def __init__(self, spec: NormSpec, kw: dict[str, Any]) -> None:
        self.spec = spec
        self.kw = kw

    def __call__(self, num_channels: int) -> nn.Module:
        return build_norm(self.spec, num_channels, **self.kw)

    def __repr__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.kw.items())
        return f"norm_layer({self.spec!r}{args})"


def norm_info(spec: NormSpec, **norm_kwargs: Any) -> NormInfo | None:
    """What the norm ``spec`` is, as :class:`NormInfo`: its canonical name and whether it uses batch
    statistics / depends on the batch split, given the layer's ``norm_kwargs`` (``estimate=True`` makes
    BCN's batch stage an estimated BN). ``spec`` is what :func:`build_norm` takes: a name or alias
    (case, ``_`` and ``-`` insensitive), a config dict with ``"name"`` or ``"type"`` (its other keys
    are kwargs, overridden by ``norm_kwargs``), or ``None`` (``"none"``). A callable gives ``None``
    (nothing is known about it: build it and ask :func:`module_uses_batch_statistics`); an unknown name
    raises the registry's ``KeyError``.

    >>> norm_info("BatchChannelNorm", estimate=True)
    NormInfo(name='bcn', uses_batch_statistics=False, batch_dependent=True)
    """
    if spec is None:
        spec = "none"
    if isinstance(spec, Mapping):
        name, norm_kwargs = _split_cfg(spec, norm_kwargs)
        return norm_info(name, **norm_kwargs)
    if isinstance(spec, str):
        return _NORMS.get(spec).info(norm_kwargs)
    if callable(spec):
        return None
    raise TypeError(f"norm_info expects a name, a config dict, a callable or None; got {spec!r}")


def module_uses_batch_statistics(module: nn.Module) -> bool:
    """Whether the built layer ``module`` normalizes with the current batch's statistics when it
    trains (whatever its mode now): every ``torch.nn.modules.batchnorm._BatchNorm`` (torch's
    BatchNorm/SyncBatchNorm, normcore's BatchNorm/SyncBatchNorm, timm's BatchNormAct2d), and a
    :class:`BatchChannelNorm` whose batch stage is one; not :class:`EstimatedBatchNorm` (running
    estimates), frozen BN, or per-sample norms. Only ``module`` itself is looked at, not its children
    (``any(map(module_uses_batch_statistics, model.modules()))`` asks it of a model)."""
    if isinstance(module, BatchChannelNorm):
        return module_uses_batch_statistics(module.bn)
    return isinstance(module, _BatchNorm) and not isinstance(module, EstimatedBatchNorm)


def build_conv(name_or_cfg: str | Mapping[str, Any] | None, *args: Any, dim: int = 2, **kw: Any) -> nn.Module:
    """Build a convolution: ``build_conv("ws", 64, 128, 3, padding=1)``; ``dim`` picks 1d/2d/3d.
    ``None`` means a plain convolution."""
    if name_or_cfg is None:
        name_or_cfg = "conv"
    if isinstance(name_or_cfg, Mapping):
        name, kw = _split_cfg(name_or_cfg, kw)
        return build_conv(name, *args, dim=dim, **kw)
    return _call(_CONVS.get(name_or_cfg), "conv", args, {"dim": dim, **kw})


def conv_layer(name_or_cfg: str | Mapping[str, Any] | None, *, dim: int = 2, **kw: Any) -> Callable[..., nn.Module]:
    """A callable with ``nn.Conv2d``'s signature that builds the named conv (for ``conv_layer=``
    arguments, timm style)."""
    if isinstance(name_or_cfg, str):
        _CONVS.get(name_or_cfg)
    return functools.partial(build_conv, name_or_cfg, dim=dim, **kw)


def available_norms() -> list[str]:
    """Registered norm names (aliases are listed in the README and in the unknown-name error)."""
    return sorted(_NORMS.entries)


def available_convs() -> list[str]:
    """Registered conv names."""
    return sorted(_CONVS.entries)


def norm_aliases() -> dict[str, tuple[str, ...]]:
    """Every registered norm name with its aliases."""
    return {name: e.aliases for name, e in sorted(_NORMS.entries.items())}


def conv_aliases() -> dict[str, tuple[str, ...]]:
    """Every registered conv name with its aliases."""
    return {name: e.aliases for name, e in sorted(_CONVS.entries.items())}


# --------------------------------------------------------------------------------------------------
# built-in entries
# --------------------------------------------------------------------------------------------------
def _identity(num_channels: int) -> nn.Module:
    """No normalization (``nn.Identity``)."""
    return nn.Identity()


def _bcn_uses_batch_statistics(kwargs: Mapping[str, Any]) -> bool:
    return not kwargs.get("estimate", False)


_BN_ALIASES = ("batchnorm", "batch_norm", "bn1d", "bn2d", "bn3d", "batchnorm1d", "batchnorm2d", "batchnorm3d")
register_norm("bn", BatchNorm, aliases=_BN_ALIASES, uses_batch_statistics=True)
register_norm("frozen_bn", FrozenBatchNorm, aliases=("frozenbn", "frozen_batchnorm", "frozenbatchnorm2d", "bn*"))
register_norm(
    "sync_bn", SyncBatchNorm, aliases=("syncbn", "sync_batchnorm", "syncbatchnorm"), uses_batch_statistics=True
)
register_norm("ln", LayerNorm, aliases=("layernorm", "layer_norm", "ln2d", "groupnorm1"))
register_norm("feature_ln", FeatureLayerNorm, aliases=("featurelayernorm", "ln_feature", "seq_ln"))
register_norm("in", InstanceNorm, aliases=("instancenorm", "instance_norm", "in2d"))
register_norm("gn", GroupNorm, aliases=("groupnorm", "group_norm"))
register_norm(
    "bcn",
    BatchChannelNorm,
    aliases=("batchchannelnorm", "batch_channel_norm"),
    uses_batch_statistics=_bcn_uses_batch_statistics,
    batch_dependent=True,
)
register_norm(
    "est_bn",
    EstimatedBatchNorm,
    aliases=("estbn", "estimated_batchnorm", "estimatedbatchnorm"),
    uses_batch_statistics=False,
    batch_dependent=True,
)
register_norm("none", _identity, aliases=("identity", "null", "no_norm"))

_PLAIN = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_WS = {1: WSConv1d, 2: WSConv2d, 3: WSConv3d}


def _pick(table: Mapping[int, type[nn.Module]], dim: int, name: str) -> type[nn.Module]:
    if dim not in table:
        raise ValueError(f"conv {name!r} exists for dim in {sorted(table)}, got dim={dim}")
    return table[dim]


def _plain_conv(*args: Any, dim: int = 2, **kw: Any) -> nn.Module:
    """Plain ``nn.Conv{1,2,3}d``."""
    return _pick(_PLAIN, dim, "conv")(*args, **kw)


def _ws_conv(*args: Any, dim: int = 2, **kw: Any) -> nn.Module:
    """Weight-standardized conv (``WSConv{1,2,3}d``; ``variant=``, ``eps=``)."""
    return _pick(_WS, dim, "ws")(*args, **kw)


def _normprop_conv(*args: Any, dim: int = 2, **kw: Any) -> nn.Module:
    """NormProp conv (unit-norm filters scaled by gamma)."""
    return _pick({2: NormPropConv2d}, dim, "normprop")(*args, **kw)


register_conv("conv", _plain_conv, aliases=("plain", "conv2d", "default"))
register_conv("ws", _ws_conv, aliases=("wsconv", "weight_standardization", "weight_standardized", "std_conv"))
register_conv("normprop", _normprop_conv, aliases=("normprop_conv", "np"))
