r"""Batch normalization modules: :class:`BatchNorm` (any rank, virtual devices),
:class:`FrozenBatchNorm` (BN\*, the GN paper's frozen baseline) and :class:`SyncBatchNorm`.

Ioffe & Szegedy 2015, "Batch Normalization: Accelerating Deep Network Training by Reducing Internal
Covariate Shift", Algorithm 1 (training) and Algorithm 2 / §3.1 (inference with population
statistics, unbiased variance).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from normcore import functional as Fn
from normcore._validation import (
    LOW_PRECISION,
    NotScriptable,
    check_batch_stats_size,
    check_channels,
    check_float,
    check_rank,
    check_virtual_devices,
)

__all__ = ["BatchNorm", "FrozenBatchNorm", "FrozenBatchNorm2d", "SyncBatchNorm"]


def _keep_stats_fp32(module: nn.Module, names: tuple[str, ...] = ("running_mean", "running_var")) -> None:
    """Running statistics stay float32 under ``model.half()``/``.bfloat16()``: a float16
    ``running_var`` overflows past 65504 (NVIDIA/apex#144)."""
    for name in names:
        buf = getattr(module, name, None)
        if buf is not None and buf.dtype in LOW_PRECISION:
            setattr(module, name, buf.float())


def _batch_norm_forward(
    bn: _BatchNorm, x: torch.Tensor, virtual_devices: int, virtual_running_stats: str, correction: int = 0
):
    """The forward shared by :class:`BatchNorm` and :class:`SyncBatchNorm`'s single-process path:
    the running-average factor logic of ``torch.nn.BatchNorm2d``, with normcore's checks."""
    name = type(bn).__name__
    check_float(x, name)
    check_rank(x, name, 2, layout="(N, C, *)")
    check_channels(x, name, bn.num_features)
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        # momentum=None: cumulative moving average, factor 1/t (as torch.nn.BatchNorm2d).
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    use_batch_stats = bn.training or (bn.running_mean is None and bn.running_var is None)
    if use_batch_stats:
        check_virtual_devices(x, name, virtual_devices)
        check_batch_stats_size(x, name, virtual_devices)
    update_running = not bn.training or bn.track_running_stats
    return Fn.batch_norm(
        x,
        bn.running_mean if update_running else None,
        bn.running_var if update_running else None,
        bn.weight,
        bn.bias,
        training=use_batch_stats,
        momentum=factor,
        eps=bn.eps,
        correction=correction,
        virtual_devices=virtual_devices if use_batch_stats else 1,
        virtual_running_stats=virtual_running_stats,  # type: ignore[arg-type]
    )


class BatchNorm(NotScriptable, _BatchNorm):
    r"""Batch normalization over ``(N, C, *)`` input of any rank (BN paper, Algorithm 1):

    .. math:: y = \gamma \frac{x - \mu_B}{\sqrt{\sigma_B^2 + \epsilon}} + \beta

    Numerically identical to ``torch.nn.BatchNorm1d/2d/3d`` (native kernel): biased batch variance
    to normalize, **unbiased** variance in the running estimate, ``momentum=None`` for a cumulative
    average, ``track_running_stats=False`` to always use batch statistics. Running statistics stay
    float32 under ``model.half()``. State-dict keys are those of ``nn.BatchNorm2d``, so torchvision
    checkpoints load unchanged (and old ones without ``num_batches_tracked`` are migrated).

    Args:
        num_channels: C.
        eps: added to the variance inside the square root (BN Alg. 1). Default 1e-5.
        momentum: running-average factor; ``None`` = cumulative average.
        affine: learn per-channel :math:`\gamma, \beta`.
        track_running_stats: keep running estimates for eval mode.
        virtual_devices: D > 1 normalizes each of D equal slices of the batch with its own
            statistics, as D GPUs with unsynchronized BN do (GN paper §4.1; WS paper micro-batch
            training). The batch must be a multiple of D.
        virtual_running_stats: with D > 1, ``"mean"`` averages the D per-slice running-stat updates;
            ``"first"`` keeps slice 0's (what DDP with ``broadcast_buffers=True`` keeps).
        correction: the variance that normalizes in training: 0 (default) the biased batch variance
            of BN Algorithm 1 (native kernel); 1 the unbiased one, the BN the LN paper compares
            against at small batch (LN §6.6). Eval mode and running statistics are unaffected.
        bias: with ``affine``, learn :math:`\beta` too (default); ``bias=False`` keeps only
            :math:`\gamma`, as ``nn.BatchNorm2d(..., bias=False)``.

    Reference formula: :func:`normcore.reference.batch_norm_train` / ``batch_norm_eval`` /
    ``running_stats_update``.
    """

    def __init__(
        self,
        num_channels: int,
        *,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        correction: int = 0,
        virtual_devices: int = 1,
        virtual_running_stats: str = "mean",
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(num_channels, eps, momentum, affine, track_running_stats, device, dtype, bias=bias)
        if virtual_devices < 1:
            raise ValueError(f"BatchNorm: virtual_devices must be >= 1, got {virtual_devices}")
        if virtual_running_stats not in ("mean", "first"):
            raise ValueError(
                f"BatchNorm: virtual_running_stats must be 'mean' or 'first', got {virtual_running_stats!r}"
            )
        if correction not in (0, 1):
            raise ValueError(f"BatchNorm: correction must be 0 (biased, BN paper) or 1 (unbiased), got {correction}")
        self.virtual_devices = virtual_devices
        self.virtual_running_stats = virtual_running_stats
        self.correction = correction
        _keep_stats_fp32(self)

    @property
    def num_channels(self) -> int:
        return self.num_features

    def _check_input_dim(self, input: torch.Tensor) -> None:
        check_rank(input, type(self).__name__, 2, layout="(N, C, *)")

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        out = super()._apply(fn, recurse)
        _keep_stats_fp32(self)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _batch_norm_forward(self, x, self.virtual_devices, self.virtual_running_stats, self.correction)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.correction:
            s += f", correction={self.correction}"
        if self.virtual_devices > 1:
            s += f", virtual_devices={self.virtual_devices}, virtual_running_stats={self.virtual_running_stats!r}"
        return s


class FrozenBatchNorm(NotScriptable, nn.Module):
    r"""Batch normalization with fixed statistics and affine parameters (the GN paper's BN\*, §4.2:
    "BN is frozen ... it becomes a linear layer"):

    .. math:: y = \gamma \frac{x - \mu_{run}}{\sqrt{\sigma^2_{run} + \epsilon}} + \beta

    All four tensors are buffers, so nothing trains and ``model.train()`` changes nothing. The output
    is **bit-identical** to ``nn.BatchNorm2d(...).eval()`` with the same state (it calls the same
    native kernel), unlike torchvision's ``FrozenBatchNorm2d``, which multiplies by a precomputed
    scale. ``eps`` defaults to 1e-5; ``eps=0`` reproduces torchvision's pre-0.6 behaviour
    (pytorch/vision#2169) and warns, since a zero variance then gives inf/NaN.

    A fresh layer is the identity: ``running_var`` starts at ``1 - eps``, as detectron2's
    ``FrozenBatchNorm2d`` (torchvision's starts at 1, which scales by :math:`1/\sqrt{1 + \epsilon}`).
    A frozen layer is a fixed linear map, and one whose statistics were never loaded should not
    change its input; loaded statistics overwrite the buffer, so the bit-identity with
    ``BatchNorm2d.eval()`` holds for every loaded state.

    Caffe2/Detectron checkpoints store a frozen BN as an affine channel, ``weight`` and ``bias`` only
    (detectron2 loads them the same way): when both running statistics are absent from an entry,
    loading fills them with mean 0 and variance ``1 - eps``, so the layer computes exactly
    :math:`y = \gamma x + \beta`, Caffe2's ``AffineChannel``.

    Reference formula: :func:`normcore.reference.batch_norm_eval`.
    """

    def __init__(self, num_channels: int, *, eps: float = 1e-5, device: Any = None) -> None:
        super().__init__()
        if eps == 0:
            warnings.warn(
                "FrozenBatchNorm(eps=0) is the legacy torchvision behaviour; a running_var of 0 "
                "(e.g. float16 underflow) then gives inf/NaN. Use eps=1e-5 unless you load legacy weights.",
                stacklevel=2,
            )
        self.num_features = num_channels
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_channels, device=device))
        self.register_buffer("bias", torch.zeros(num_channels, device=device))
        self.register_buffer("running_mean", torch.zeros(num_channels, device=device))
        self.register_buffer("running_var", torch.full((num_channels,), 1.0 - eps, device=device))

    @property
    def num_channels(self) -> int:
        return self.num_features

    @classmethod
    def from_batchnorm(cls, bn: nn.Module) -> FrozenBatchNorm:
        """A frozen copy of a (trained) batch-norm layer: its affine parameters and running stats.
        ``bn`` must have running statistics (a BN with ``track_running_stats=False`` normalizes with
        batch statistics even in eval mode, so there is nothing to freeze them to)."""
        if getattr(bn, "running_mean", None) is None or getattr(bn, "running_var", None) is None:
            raise ValueError(
                f"FrozenBatchNorm.from_batchnorm: {type(bn).__name__} has no running statistics "
                f"(track_running_stats=False), so it has nothing to freeze to; it always normalizes with the "
                f"current batch. Keep it and stop its affine training (normcore.freeze_norms does), or train "
                f"it with track_running_stats=True."
            )
        frozen = cls(bn.num_features, eps=bn.eps, device=bn.running_mean.device)
        with torch.no_grad():
            if getattr(bn, "weight", None) is not None:
                frozen.weight.copy_(bn.weight)
            if getattr(bn, "bias", None) is not None:
                frozen.bias.copy_(bn.bias)
            if bn.running_mean is not None:
                frozen.running_mean.copy_(bn.running_mean)
                frozen.running_var.copy_(bn.running_var)
        return frozen

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected, errors):
        # A BatchNorm checkpoint has num_batches_tracked, which a frozen layer does not need.
        state_dict.pop(prefix + "num_batches_tracked", None)
        stats = (prefix + "running_mean", prefix + "running_var")
        if prefix + "weight" in state_dict and not any(k in state_dict for k in stats):
            # Caffe2 AffineChannel (weight and bias only): the statistics of the identity normalization.
            state_dict[stats[0]] = torch.zeros_like(self.running_mean)
            state_dict[stats[1]] = torch.full_like(self.running_var, 1.0 - self.eps)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected, errors)

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        out = super()._apply(fn, recurse)
        _keep_stats_fp32(self)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        name = type(self).__name__
        check_float(x, name)
        check_rank(x, name, 2, layout="(N, C, *)")
        check_channels(x, name, self.num_features)
        return Fn.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, training=False, eps=self.eps
        )

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


FrozenBatchNorm2d = FrozenBatchNorm
"""Alias with torchvision's name; accepts any rank."""


class _AllGather(torch.autograd.Function):
    """Differentiable all-gather with public collectives only: forward gathers every rank's tensor;
    backward sums, over ranks, the gradients each rank computed for rank r's slice (``all_reduce``)
    and returns rank r's row."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        ctx.rank = dist.get_rank(group)
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, x.contiguous(), group=group)
        return torch.stack(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad[ctx.rank], None


class SyncBatchNorm(BatchNorm):
    r"""Batch normalization with statistics over the whole distributed batch (all ranks of
    ``process_group``, default the world).

    Per-rank mean, biased variance and count are all-gathered (differentiably, public collectives only)
    and combined exactly with Chan et al.'s parallel formula,
    :math:`\mu = \sum_r n_r\mu_r / n`, :math:`\sigma^2 = \sum_r n_r(\sigma_r^2 + (\mu_r - \mu)^2) / n`,
    so empty or uneven per-rank batches are weighted by their counts; then
    :math:`y = \gamma (x - \mu)/\sqrt{\sigma^2 + \epsilon} + \beta` and the running estimates get the
    unbiased :math:`\sigma^2 n/(n-1)`. The same code runs on CPU (gloo) and GPU (NCCL); unlike
    ``torch.nn.SyncBatchNorm`` it is not refused by DDP on CPU modules.

    Without an initialised process group (a single-process run of a SyncBN config) it behaves as
    :class:`BatchNorm` and warns once instead of crashing (pytorch/pytorch#63662). In eval mode it uses
    the running statistics like any BN. State-dict keys are ``nn.BatchNorm2d``'s. Reference formula:
    :func:`normcore.reference.batch_norm_train` over the batch of all ranks.
    """

    _warned_no_group = False

    def __init__(
        self,
        num_channels: int,
        *,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group: Any = None,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(
            num_channels,
            eps=eps,
            momentum=momentum,
            affine=affine,
            track_running_stats=track_running_stats,
            bias=bias,
            device=device,
            dtype=dtype,
        )
        self.process_group = process_group

    def _world_size(self) -> int:
        if not (dist.is_available() and dist.is_initialized()):
            return 0
        return dist.get_world_size(self.process_group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        world = self._world_size() if self.training else 1
        if world > 1:
            check_float(x, type(self).__name__)
            check_rank(x, type(self).__name__, 2, layout="(N, C, *)")
            check_channels(x, type(self).__name__, self.num_features)
            return self._gathered_forward(x)
        if self.training and world == 0 and not SyncBatchNorm._warned_no_group:
            SyncBatchNorm._warned_no_group = True
            warnings.warn(
                "SyncBatchNorm: no torch.distributed process group is initialised, so statistics are "
                "computed over this process's batch only (plain BatchNorm). Launch with torchrun to "
                "synchronise, or convert with normcore.convert_norms(model, 'bn').",
                stacklevel=2,
            )
        return _batch_norm_forward(self, x, 1, "mean")

    def _gathered_forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.num_features
        dims = [0, *range(2, x.dim())]
        xf = x.float() if x.dtype in LOW_PRECISION else x
        n_local = x.numel() // c
        if n_local > 0:
            mean, var = Fn.moments(xf, dims, keepdim=False)
        else:
            mean = xf.sum(dim=dims)  # zeros that keep the graph connected
            var = mean
        count = torch.full((1,), float(n_local), dtype=mean.dtype, device=x.device)
        gathered = _AllGather.apply(torch.cat([mean, var, count]), self.process_group)
        means, vars_, counts = gathered[:, :c], gathered[:, c : 2 * c], gathered[:, 2 * c :]
        total = counts.sum()
        n_total = int(total.item())
        check_batch_stats_size(
            x, type(self).__name__, values_per_channel=n_total, where=f" over all {gathered.shape[0]} ranks"
        )
        g_mean = (means * counts).sum(0) / total
        g_var = ((vars_ + (means - g_mean).square()) * counts).sum(0) / total
        view = (1, c) + (1,) * (x.dim() - 2)
        out = (xf - g_mean.view(view)) * torch.rsqrt(g_var.view(view) + self.eps)
        if self.weight is not None:
            out = out * self.weight.to(xf.dtype).view(view)
        if self.bias is not None:
            out = out + self.bias.to(xf.dtype).view(view)
        if self.track_running_stats and self.running_mean is not None:
            self.num_batches_tracked.add_(1)
            m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            if n_total == 0:  # every rank's batch is empty: nothing to estimate (nn.BatchNorm2d counts it too)
                return out.to(x.dtype)
            with torch.no_grad():
                self.running_mean.mul_(1 - m).add_(m * g_mean.detach())
                unbiased = g_var.detach() * (total / (total - 1))
                self.running_var.mul_(1 - m).add_(m * unbiased)
        return out.to(x.dtype)
