"""normcore: reference implementations of the normalization methods of six papers.

Batch Normalization (Ioffe & Szegedy 2015), Layer Normalization (Ba et al. 2016), Instance
Normalization (Ulyanov et al. 2016), Group Normalization (Wu & He 2018), Weight Standardization and
Batch-Channel Normalization (Qiao et al. 2019), Normalization Propagation (Arpit et al. 2016).

Every layer takes channels-first input ``(N, C, *)`` and follows one constructor contract,
``Norm(num_channels, *, eps, affine, ...)``; :mod:`normcore.functional` holds the formulas,
:mod:`normcore.reference` the same methods as the papers write them (float64, no native kernels).
``normcore.models`` (the papers' architectures, needs torchvision) and ``normcore.reference`` are
imported on first use, so ``import normcore`` stays light.
"""

import importlib
from typing import Any

from normcore import functional
from normcore.batchnorm import BatchNorm, FrozenBatchNorm, FrozenBatchNorm2d, SyncBatchNorm
from normcore.bcn import BatchChannelNorm, EstimatedBatchNorm
from normcore.checkpoint import LoadReport, load_checkpoint_into
from normcore.convert import (
    convert_convs,
    convert_norms,
    find_convs_feeding_norms,
    fold_weight_standardization,
    freeze_norms,
    is_norm,
    revert_sync_batchnorm,
)
from normcore.functional import relu_moments
from normcore.groupnorm import GroupNorm, LayerNorm
from normcore.instancenorm import InstanceNorm
from normcore.layernorm import FeatureLayerNorm
from normcore.normprop import NormPropConv2d, NormPropInputNorm, NormPropLinear, NormPropReLU
from normcore.registry import (
    NormInfo,
    available_convs,
    available_norms,
    build_conv,
    build_norm,
    conv_aliases,
    conv_layer,
    module_uses_batch_statistics,
    norm_aliases,
    norm_info,
    norm_layer,
    register_conv,
    register_norm,
)
from normcore.ws import WSConv1d, WSConv2d, WSConv3d

__version__ = "0.1.0"

__all__ = [
    "BatchChannelNorm",
    "BatchNorm",
    "EstimatedBatchNorm",
    "FeatureLayerNorm",
    "FrozenBatchNorm",
    "FrozenBatchNorm2d",
    "GroupNorm",
    "InstanceNorm",
    "LayerNorm",
    "LoadReport",
    "NormInfo",
    "NormPropConv2d",
    "NormPropInputNorm",
    "NormPropLinear",
    "NormPropReLU",
    "SyncBatchNorm",
    "WSConv1d",
    "WSConv2d",
    "WSConv3d",
    "available_convs",
    "available_norms",
    "build_conv",
    "build_norm",
    "conv_aliases",
    "conv_layer",
    "convert_convs",
    "convert_norms",
    "find_convs_feeding_norms",
    "fold_weight_standardization",
    "freeze_norms",
    "functional",
    "is_norm",
    "load_checkpoint_into",
    "models",
    "module_uses_batch_statistics",
    "norm_aliases",
    "norm_info",
    "norm_layer",
    "reference",
    "register_conv",
    "register_norm",
    "relu_moments",
    "revert_sync_batchnorm",
]

_LAZY = ("models", "reference", "integrations")


def __getattr__(name: str) -> Any:
    """``normcore.models``, ``normcore.reference`` and ``normcore.integrations`` on first access."""
    if name in _LAZY:
        return importlib.import_module(f"normcore.{name}")
    raise AttributeError(f"module 'normcore' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
