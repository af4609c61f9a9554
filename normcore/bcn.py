r"""Batch-Channel Normalization and Estimated Batch Normalization (Qiao et al., "Micro-Batch Training
with Batch-Channel Normalization and Weight Standardization", arXiv 1903.10520 v2, §5; official code:
joe-siyuan-qiao/Batch-Channel-Normalization, ``README.md`` ``BCNorm`` and ``EstBN``).

Deviations from the official code, all deliberate and tested:

* The channel stage is the native ``F.group_norm`` with the per-group affine expanded to channels,
  instead of ``torch.batch_norm`` on a ``(1, N*G, -1)`` view: same formula (agreement to 1e-6 in
  float32), and it works on channels_last input, where the official ``.view`` raises.
* ``EstBN``'s ``estbn_moving_speed`` buffer starts at 0 in the official code and nothing in the
  released scripts sets it, so the estimates never move. Here it starts at ``moving_speed=0.1`` (the
  BN momentum) and a speed of 0 in training warns once. The buffer keeps its official name, so
  official checkpoints load (and bring their own speed).
* ``EstBN``'s normalization is the native eval-mode ``F.batch_norm`` with the running estimates
  (the official code writes the same formula out elementwise); eps stays 1e-5 inside the root.
* Every argument is wired: ``momentum`` reaches the BN stage (the official ``PBCNorm`` ignored it),
  and the BN stage accepts ``virtual_devices``.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from normcore import functional as Fn
from normcore._validation import (
    NotScriptable,
    check_channels,
    check_float,
    check_group_values,
    check_rank,
    resolve_groups,
)
from normcore.batchnorm import BatchNorm, _keep_stats_fp32

__all__ = ["BatchChannelNorm", "EstimatedBatchNorm"]


class EstimatedBatchNorm(NotScriptable, _BatchNorm):
    r"""Estimated batch normalization (the official ``EstBN``): normalizes with running estimates of
    the mean and variance in training *and* eval,

    .. math:: y = \gamma \frac{x - \hat\mu}{\sqrt{\hat\sigma^2 + \epsilon}} + \beta,

    updating them in training (no gradient flows through them) with moving speed s:
    :math:`\hat\mu \leftarrow (1-s)\hat\mu + s\mu_B`,
    :math:`\hat\sigma^2 \leftarrow (1-s)\hat\sigma^2 + s E_B[(x - \hat\mu_{old})^2]` (biased, centred on
    the estimate before its update, as the official code). See the module docstring for the moving-speed
    default. Change the speed with :meth:`set_moving_speed` (e.g. from a schedule).
    Reference formula: :func:`normcore.reference.estimated_batch_norm`.

    A subclass of ``torch.nn.modules.batchnorm._BatchNorm`` (same state-dict keys as the official
    ``EstBN``), so other libraries' ``isinstance`` checks (mmcv's ``is_norm``, mmengine's
    ``norm_decay_mult``) see a batch norm; ``momentum`` is ``None``: the speed is the
    ``estbn_moving_speed`` buffer. Note that ``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` converts
    every ``_BatchNorm``, this one included, into a plain SyncBatchNorm; normcore's own conversions
    do not touch it.
    """

    def __init__(
        self,
        num_channels: int,
        *,
        eps: float = 1e-5,
        moving_speed: float = 0.1,
        affine: bool = True,
        device: Any = None,
    ) -> None:
        super().__init__(num_channels, eps, None, affine, True, device)
        self.register_buffer("estbn_moving_speed", torch.full((1,), float(moving_speed), device=device))
        self._speed_checked = False

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        out = super()._apply(fn, recurse)
        _keep_stats_fp32(self, ("running_mean", "running_var", "estbn_moving_speed"))
        return out

    @property
    def num_channels(self) -> int:
        return self.num_features

    def set_moving_speed(self, speed: float) -> None:
        """Set the speed s of the running estimates (0 freezes them)."""
        self.estbn_moving_speed.fill_(float(speed))
        self._speed_checked = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        name = type(self).__name__
        check_float(x, name)
        check_rank(x, name, 2, layout="(N, C, *)")
        check_channels(x, name, self.num_features)
        if self.training:
            if not self._speed_checked:
                self._speed_checked = True
                if float(self.estbn_moving_speed) == 0.0:
                    warnings.warn(
                        "EstimatedBatchNorm is training with estbn_moving_speed=0: its running estimates "
                        "never move (the official EstBN's initial value). Call set_moving_speed(...).",
                        stacklevel=2,
                    )
            self.num_batches_tracked.add_(1)
        return Fn.estimated_batch_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            training=self.training,
            moving_speed=self.estbn_moving_speed,
            eps=self.eps,
        )

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, moving_speed={float(self.estbn_moving_speed):g}"


class BatchChannelNorm(NotScriptable, nn.GroupNorm):
    r"""Batch-Channel Normalization (WS/BCN paper §5; official ``BCNorm``): a batch-normalization stage
    with per-channel affine, then a channel stage that normalizes each sample's groups of C/G channels
    and applies a **per-group** affine (official parameter shape ``(1, G, 1)``):

    .. math:: \dot x = \gamma^{bn}_c \frac{x - \mu_{B,c}}{\sqrt{\sigma_{B,c}^2 + \epsilon_{bn}}} + \beta^{bn}_c,
              \qquad y = \gamma_g \frac{\dot x - \mu_{n,g}}{\sqrt{\sigma_{n,g}^2 + \epsilon}} + \beta_g

    Args:
        num_channels: C.
        num_groups: G for the channel stage (default 32, the official scripts); or ``group_size``.
        eps: the channel stage's eps (the official constructor argument), default 1e-5.
        bn_eps: the BN stage's eps (``nn.BatchNorm2d``'s 1e-5 in the official code).
        estimate: use :class:`EstimatedBatchNorm` for the batch stage (the official ``estimate=True``).
        momentum: BN-stage running-average factor (``estimate=False``).
        moving_speed: EstBN's speed (``estimate=True``).
        affine: learn the per-group affine (the official code always does).
        virtual_devices, virtual_running_stats: per-slice batch statistics in the BN stage, see
            :class:`normcore.BatchNorm`.

    State-dict layout is the official README's (``bn.*``, ``weight``/``bias`` of shape ``(1, G, 1)``).
    The official ImageNet models (``rn50_bcn_ws.pth``, ...) and the DeepLab ``PBCNorm`` name the batch
    stage ``pbn``: those keys load into ``bn`` (see :func:`normcore.load_checkpoint_into` for the
    ``module.`` prefix and ``state_dict`` wrapper of the official files).

    A subclass of ``torch.nn.GroupNorm`` (the official ImageNet code calls this layer ``GN``), so
    other libraries' ``isinstance`` checks (mmcv's ``is_norm``, mmengine's ``norm_decay_mult``) see a
    norm; its ``weight``/``bias`` are per group, not per channel. Reference formula:
    :func:`normcore.reference.batch_channel_norm`.
    """

    def __init__(
        self,
        num_channels: int,
        num_groups: int | None = None,
        *,
        group_size: int | None = None,
        eps: float = 1e-5,
        bn_eps: float = 1e-5,
        estimate: bool = False,
        momentum: float | None = 0.1,
        moving_speed: float = 0.1,
        affine: bool = True,
        virtual_devices: int = 1,
        virtual_running_stats: str = "mean",
        device: Any = None,
    ) -> None:
        groups = resolve_groups(num_channels, num_groups, group_size, type(self).__name__)
        super().__init__(groups, num_channels, eps, affine, device)
        self.estimate = estimate
        if estimate:
            if virtual_devices != 1:
                raise ValueError(
                    "BatchChannelNorm(estimate=True) normalizes with running estimates, so virtual_devices "
                    "has no effect on it; leave virtual_devices=1."
                )
            self.bn: nn.Module = EstimatedBatchNorm(num_channels, eps=bn_eps, moving_speed=moving_speed, device=device)
        else:
            self.bn = BatchNorm(
                num_channels,
                eps=bn_eps,
                momentum=momentum,
                virtual_devices=virtual_devices,
                virtual_running_stats=virtual_running_stats,
                device=device,
            )
        if affine:  # per group, (1, G, 1), as the official code
            self.weight = nn.Parameter(torch.ones(1, self.num_groups, 1, device=device))
            self.bias = nn.Parameter(torch.zeros(1, self.num_groups, 1, device=device))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected, errors):
        official = prefix + "pbn."  # the official ImageNet models' and DeepLab PBCNorm's batch stage
        for key in [k for k in state_dict if k.startswith(official)]:
            state_dict[prefix + "bn." + key[len(official) :]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected, errors)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        name = type(self).__name__
        check_float(x, name)
        check_rank(x, name, 2, layout="(N, C, *)")
        check_channels(x, name, self.num_channels)
        check_group_values(x, f"{name} (channel stage)", self.num_channels, self.num_groups)
        out = self.bn(x)
        return Fn.channel_norm(out, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_channels}, num_groups={self.num_groups}, eps={self.eps}, estimate={self.estimate}"
