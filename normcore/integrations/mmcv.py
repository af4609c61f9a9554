"""Register normcore's layers into mmengine's ``MODELS`` registry, the one mmcv's ``build_norm_layer`` and
``build_conv_layer`` (and so mmdetection and mmsegmentation) look layer types up in.

>>> from normcore.integrations.mmcv import register_mmcv
>>> names = register_mmcv()                      # {"NCGN": GroupNorm, "NCWS": WSConv2d, ...}
>>> from mmcv.cnn import ConvModule
>>> block = ConvModule(64, 64, 3, padding=1, conv_cfg=dict(type="NCWS"), norm_cfg=dict(type="NCGN", num_groups=32))

The names carry a prefix (default ``NC``) so they never shadow mmcv's own ``GN``, ``BN`` or ``ConvWS``.
mmcv calls a norm type as ``Type(num_features, eps=1e-5, **cfg)``, which is normcore's constructor
contract (``Norm(num_channels, *, eps, ...)``), and a conv type with ``nn.Conv2d``'s arguments, which
:class:`normcore.WSConv2d` takes (plus ``variant`` and ``eps``). mmcv's ``ConvWS2d`` computes the official
WS formula, normcore's ``variant="official"`` (the default), so ``NCWS`` and ``ConvWS`` give the same
outputs.

Requires ``mmengine`` (0.10.x) and ``mmcv-lite`` (2.x, no compiled ops); both install as pure Python on
current PyTorch, unlike ``mmcv`` with ops (see the project README).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from normcore.batchnorm import BatchNorm, FrozenBatchNorm, SyncBatchNorm
from normcore.bcn import BatchChannelNorm, EstimatedBatchNorm
from normcore.groupnorm import GroupNorm, LayerNorm
from normcore.instancenorm import InstanceNorm
from normcore.ws import WSConv1d, WSConv2d, WSConv3d

__all__ = ["MMCV_NAMES", "register_mmcv"]

MMCV_NAMES: dict[str, type[nn.Module]] = {
    "BN": BatchNorm,
    "FrozenBN": FrozenBatchNorm,
    "SyncBN": SyncBatchNorm,
    "GN": GroupNorm,
    "LN": LayerNorm,
    "IN": InstanceNorm,
    "BCN": BatchChannelNorm,
    "EstBN": EstimatedBatchNorm,
    "WS": WSConv2d,
    "WS1d": WSConv1d,
    "WS3d": WSConv3d,
}
"""The registered names (after the prefix) and the normcore classes they build."""


def register_mmcv(prefix: str = "NC", *, registry: Any = None, force: bool = False) -> dict[str, type[nn.Module]]:
    """Register every class of :data:`MMCV_NAMES` as ``prefix + name`` into ``registry`` (default
    ``mmengine.registry.MODELS``). Registering twice is harmless (the same classes); a name taken by
    another class raises mmengine's ``KeyError`` unless ``force``. Returns ``{registered name: class}``."""
    try:
        from mmengine.registry import MODELS
    except ImportError as err:
        raise ImportError(
            "normcore.integrations.mmcv needs mmengine and mmcv-lite: pip install 'mmengine==0.10.7' 'mmcv-lite==2.2.0'"
        ) from err
    registry = MODELS if registry is None else registry
    out = {}
    for name, cls in MMCV_NAMES.items():
        full = f"{prefix}{name}"
        if registry.get(full) is not cls:
            registry.register_module(name=full, module=cls, force=force)
        out[full] = cls
    return out
