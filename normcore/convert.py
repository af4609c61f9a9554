"""Model surgery on any ``nn.Module`` (torchvision models included).

* :func:`convert_norms` replaces every batch-norm layer (or another family) by a registered norm,
  keeping parameters and buffers wherever names and shapes match, and reports what it could not keep.
* :func:`convert_convs` replaces the convolutions that feed a normalization layer by WS convs (the WS
  paper applies WS only there; head convs and the classifier stay plain).
* :func:`freeze_norms` makes norms non-trainable in a way that survives ``model.train()`` (BN becomes
  :class:`FrozenBatchNorm`, the GN paper's BN\\*).
* :func:`fold_weight_standardization` turns WS convs into plain convs carrying the standardized weight
  (same outputs; for export and inference).
* :func:`revert_sync_batchnorm` turns SyncBatchNorm layers into BatchNorm for single-process runs.
"""

from __future__ import annotations

import fnmatch
import itertools
import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from normcore.batchnorm import FrozenBatchNorm, SyncBatchNorm
from normcore.bcn import BatchChannelNorm, EstimatedBatchNorm
from normcore.instancenorm import InstanceNorm
from normcore.layernorm import FeatureLayerNorm
from normcore.registry import NormSpec, build_conv, build_norm
from normcore.ws import WSConvMixin

__all__ = [
    "convert_convs",
    "convert_norms",
    "find_convs_feeding_norms",
    "fold_weight_standardization",
    "freeze_norms",
    "is_norm",
    "revert_sync_batchnorm",
]


def _torchvision_frozen_bn() -> tuple[type, ...]:
    try:
        from torchvision.ops.misc import FrozenBatchNorm2d as TVFrozen
    except ImportError:  # torchvision is optional for the core library
        return ()
    return (TVFrozen,)


def batch_norm_types() -> tuple[type, ...]:
    """Every batch-norm flavour :func:`convert_norms` replaces by default."""
    return (_BatchNorm, FrozenBatchNorm, EstimatedBatchNorm, *_torchvision_frozen_bn())


def is_norm(module: nn.Module) -> bool:
    """True for normalization layers of torch, torchvision and normcore."""
    norm_types = (
        *batch_norm_types(),
        nn.GroupNorm,
        nn.LayerNorm,
        _InstanceNorm,
        InstanceNorm,
        FeatureLayerNorm,
        BatchChannelNorm,
    )
    return isinstance(module, norm_types)


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _replace(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    if name == "":
        return new
    parent_name, _, child = name.rpartition(".")
    model.get_submodule(parent_name).add_module(child, new)
    return model


def _place_like(new: nn.Module, old: nn.Module) -> nn.Module:
    ref = next(iter(old.parameters()), None)
    if ref is None:
        ref = next(iter(old.buffers()), None)
    if ref is not None:
        new = new.to(device=ref.device)
        if ref.dtype != torch.float32 and ref.is_floating_point():
            new = new.to(dtype=ref.dtype)
    return new


def _num_channels(module: nn.Module) -> int | None:
    """C of a norm layer: its ``num_features``/``num_channels``, else the length of its per-channel
    tensors (torchvision's FrozenBatchNorm2d stores neither attribute)."""
    for attr in ("num_features", "num_channels"):
        value = getattr(module, attr, None)
        if isinstance(value, int):
            return value
    for attr in ("running_mean", "weight"):
        t = getattr(module, attr, None)
        if isinstance(t, torch.Tensor) and t.dim() == 1:
            return t.shape[0]
    return None


def _apply_tail(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
    """Forward hook: run the submodules a fused norm carried after its normalization (timm's
    ``BatchNormAct2d``: ``drop`` then ``act``), in their registration order."""
    for name in module._normcore_tail:  # type: ignore[attr-defined]
        out = getattr(module, name)(out)
    return out


def _keep_tail(old: nn.Module, new: nn.Module) -> nn.Module:
    """Give ``new`` the child modules of ``old``, a norm layer with a fused tail (timm's ``BatchNormAct2d``
    subclasses ``nn.BatchNorm2d`` and applies ``self.drop`` and ``self.act`` after normalizing), applied
    after ``new`` normalizes. The children keep their names, so state-dict keys stay those of the fused
    layer (``act.*``), and a forward hook applies them. Layers without children are returned as they are."""
    if isinstance(old, BatchChannelNorm):  # its child is its batch stage, not a tail
        return new
    tail = [name for name, _ in old.named_children() if not hasattr(new, name)]
    if not tail:
        return new
    for name in tail:
        new.add_module(name, old.get_submodule(name))
    new._normcore_tail = tuple(tail)  # type: ignore[attr-defined]
    new.register_forward_hook(_apply_tail)
    return new


def _transfer_state(old: nn.Module, new: nn.Module) -> tuple[list[str], list[str]]:
    """Copy tensors from ``old`` into ``new`` where names (directly, or under ``bn.`` for BCN) and shapes
    match. Returns (kept, dropped) key lists. A fused tail's keys (``act.*``) are not the norm's: the
    tail module itself moves over (:func:`_keep_tail`)."""
    target = new.state_dict()
    kept, dropped = [], []
    tail = () if isinstance(old, BatchChannelNorm) else tuple(f"{name}." for name, _ in old.named_children())
    src = {k: v for k, v in old.state_dict().items() if not k.startswith(tail) or not tail}
    for key, value in src.items():
        candidates = [key, f"bn.{key}"]
        dest = next((c for c in candidates if c in target and target[c].shape == value.shape), None)
        if dest is None:
            dropped.append(key)
            continue
        target[dest] = value.to(target[dest].dtype)
        kept.append(key if dest == key else f"{key}->{dest}")
    new.load_state_dict(target)
    return kept, dropped


def convert_norms(
    model: nn.Module,
    name: NormSpec,
    *,
    source: tuple[type, ...] | None = None,
    exclude: Iterable[str] = (),
    verbose: bool = False,
    **kw: Any,
) -> nn.Module:
    """Replace every normalization layer of type ``source`` (default: all batch-norm flavours, incl.
    SyncBatchNorm and torchvision's FrozenBatchNorm2d) by ``build_norm(name, C, **kw)``.

    Parameters and buffers are copied where their names and shapes match (BN -> BN/SyncBN/FrozenBN:
    everything; BN -> GN/LN/IN: the per-channel affine; BN -> BCN: into ``bcn.bn``); the rest keep
    their fresh initialisation, reported with ``verbose=True``. A norm with a fused activation (timm's
    ``BatchNormAct2d``) keeps its ``drop``/``act`` children, applied after the new norm. Copying
    BN-trained affine parameters
    into GN/LN/IN warns: BN-pretrained weights in a GN model give very poor accuracy without
    retraining (ppwwyyxx/GroupNorm-reproduce#2). ``exclude`` takes module-name glob patterns.
    The model is modified in place and returned (a new module if ``model`` itself is a norm).
    """
    source = source or batch_norm_types()
    exclude = tuple(exclude)
    warned = False
    composite = [n for n, m in model.named_modules() if isinstance(m, BatchChannelNorm)]
    for mod_name, module in list(model.named_modules()):
        if not isinstance(module, source) or _matches(mod_name, exclude):
            continue
        if any(mod_name.startswith(f"{c}.") or c == "" for c in composite if c != mod_name):
            continue  # the batch stage inside a BatchChannelNorm is part of that layer
        channels = _num_channels(module)
        if channels is None:
            raise ValueError(f"convert_norms: cannot tell the channel count of {mod_name!r} ({type(module).__name__})")
        new = _place_like(build_norm(name, channels, **kw), module)
        if isinstance(new, nn.Identity):
            kept, dropped = [], list(module.state_dict())
        else:
            kept, dropped = _transfer_state(module, new)
        new = _keep_tail(module, new)
        new.train(module.training)
        trained_bn = isinstance(module, batch_norm_types()) and getattr(module, "running_mean", None) is not None
        changes_kind = not isinstance(new, batch_norm_types()) and not isinstance(new, BatchChannelNorm)
        if trained_bn and changes_kind and kept and not warned and bool((module.running_var != 1).any()):
            warned = True
            warnings.warn(
                f"convert_norms: copied BN-trained affine parameters into {type(new).__name__} "
                f"(first at {mod_name!r}). BN-pretrained weights in a GN/LN/IN model need retraining "
                f"(ppwwyyxx/GroupNorm-reproduce#2).",
                stacklevel=2,
            )
        if verbose:
            print(f"convert_norms: {mod_name or '<root>'}: {type(module).__name__} -> {type(new).__name__}; "
                  f"kept {kept or 'nothing'}; dropped {dropped or 'nothing'}")  # fmt: skip
        model = _replace(model, mod_name, new)
    return model


def revert_sync_batchnorm(model: nn.Module) -> nn.Module:
    """SyncBatchNorm layers -> :class:`normcore.BatchNorm` (state kept), for single-process runs."""
    return convert_norms(model, "bn", source=(nn.SyncBatchNorm, SyncBatchNorm))


# --------------------------------------------------------------------------------------------------
# convolutions
# --------------------------------------------------------------------------------------------------
_PLAIN_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _is_plain_conv(module: nn.Module) -> bool:
    return type(module) in _PLAIN_CONVS


class _NormLeafTracer(torch.fx.Tracer):
    """Traces through everything except normalization layers, whose input checks cannot run on
    symbolic tensors (they are leaves: only their position in the graph matters here)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return is_norm(m) or super().is_leaf_module(m, module_qualified_name)


def _convs_by_trace(model: nn.Module) -> list[str] | None:
    try:
        graph = _NormLeafTracer().trace(model)
    except Exception:
        return None
    gm = torch.fx.GraphModule(model, graph)
    modules = dict(gm.named_modules())
    found = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not _is_plain_conv(modules[node.target]):
            continue
        users = list(node.users)
        if len(users) == 1 and users[0].op == "call_module" and is_norm(modules[users[0].target]):
            found.append(str(node.target))
    return found


def _conv_kwargs(conv: nn.Module) -> dict[str, Any]:
    """The constructor arguments of ``conv`` after the channels and kernel size."""
    return {
        "stride": conv.stride,
        "padding": conv.padding,
        "dilation": conv.dilation,
        "groups": conv.groups,
        "bias": conv.bias is not None,
        "padding_mode": conv.padding_mode,
    }


def _swap_conv(model: nn.Module, name: str, old: nn.Module, new: nn.Module, weight: torch.Tensor) -> nn.Module:
    """Put ``new`` (given ``weight`` and ``old``'s bias, device, dtype and mode) in place of ``old``."""
    new = _place_like(new, old)
    with torch.no_grad():
        new.weight.copy_(weight)
        if old.bias is not None:
            new.bias.copy_(old.bias)
    new.train(old.training)
    return _replace(model, name, new)


def _convs_by_order(model: nn.Module) -> list[str]:
    """Fallback when the model cannot be traced: a conv immediately followed, among its parent's
    children in registration order, by a norm (ResNet ``conv1``/``bn1``, ``Conv2dNormActivation``,
    FPN blocks, ``nn.Sequential(conv, norm, ...)``)."""
    found = []
    for parent_name, parent in model.named_modules():
        children = list(parent.named_children())
        for (name, child), (_, nxt) in itertools.pairwise(children):
            if _is_plain_conv(child) and is_norm(nxt):
                found.append(f"{parent_name}.{name}" if parent_name else name)
    return found


def find_convs_feeding_norms(model: nn.Module) -> list[str]:
    """Names of the plain convolutions whose only consumer is a normalization layer: by tracing the
    model with ``torch.fx`` when possible, else by module order (see :func:`_convs_by_order`)."""
    traced = _convs_by_trace(model)
    return traced if traced is not None else _convs_by_order(model)


def convert_convs(
    model: nn.Module,
    name: str = "ws",
    *,
    only_feeding_norms: bool = True,
    exclude: Iterable[str] = (),
    **kw: Any,
) -> nn.Module:
    """Replace convolutions by ``build_conv(name, ...)`` (default WS), copying weight and bias.

    By default only the convs that feed a normalization layer are replaced, as the WS paper
    prescribes; ``only_feeding_norms=False`` replaces every plain conv. ``exclude`` takes module-name
    glob patterns (e.g. ``"roi_heads.mask_predictor.*"``). Modified in place and returned.
    """
    exclude = tuple(exclude)
    if only_feeding_norms:
        targets = find_convs_feeding_norms(model)
    else:
        targets = [n for n, m in model.named_modules() if _is_plain_conv(m)]
    for mod_name in targets:
        if _matches(mod_name, exclude):
            continue
        old = model.get_submodule(mod_name)
        new = build_conv(name, old.in_channels, old.out_channels, old.kernel_size, dim=len(old.kernel_size),
                         **_conv_kwargs(old), **kw)  # fmt: skip
        model = _swap_conv(model, mod_name, old, new, old.weight)
    return model


def fold_weight_standardization(model: nn.Module) -> nn.Module:
    """Replace each WS conv by a plain conv whose weight is the standardized weight: the same outputs
    (the conv computes on the identical tensor), no WS cost, exportable anywhere."""
    for mod_name, module in list(model.named_modules()):
        if not isinstance(module, WSConvMixin):
            continue
        plain_cls = next(c for c in _PLAIN_CONVS if isinstance(module, c))
        plain = plain_cls(module.in_channels, module.out_channels, module.kernel_size, **_conv_kwargs(module))
        model = _swap_conv(model, mod_name, module, plain, module.standardized_weight())
    return model


def freeze_norms(model: nn.Module) -> nn.Module:
    """Freeze every normalization layer so that it neither trains nor updates statistics, in a way
    ``model.train()`` does not undo (pytorch/pytorch#66073): batch norms with running statistics (also
    inside BCN, and the estimated BN) become :class:`FrozenBatchNorm` (BN\\*), keeping a fused
    activation (timm's ``BatchNormAct2d``: ``drop`` and ``act`` stay, as timm's own freezing keeps them);
    the affine parameters of the others stop requiring gradients. A BN built with
    ``track_running_stats=False`` has no statistics to freeze to (it normalizes with the current batch
    in eval mode too): it stays, with its affine parameters frozen.
    """
    for mod_name, module in list(model.named_modules()):
        is_bn = isinstance(module, (_BatchNorm, EstimatedBatchNorm)) and not isinstance(module, FrozenBatchNorm)
        if is_bn and module.running_mean is not None:
            frozen = _keep_tail(module, _place_like(FrozenBatchNorm.from_batchnorm(module), module))
            model = _replace(model, mod_name, frozen)
    for module in model.modules():
        if is_norm(module):
            for p in module.parameters(recurse=False):
                p.requires_grad_(False)
    return model
