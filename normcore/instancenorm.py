r"""Instance normalization (Ulyanov, Vedaldi & Lempitsky 2016, "Instance Normalization: The Missing
Ingredient for Fast Stylization", §2: the instance-normalization equation)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch.nn.modules.instancenorm import _InstanceNorm

from normcore import functional as Fn
from normcore._validation import NotScriptable, check_channels, check_float, check_rank
from normcore.batchnorm import _keep_stats_fp32

__all__ = ["InstanceNorm"]


class InstanceNorm(NotScriptable, _InstanceNorm):
    r"""Instance normalization over ``(N, C, *spatial)``: for image t and channel i (IN §2),

    .. math:: y_{tijk} = \gamma_i \frac{x_{tijk} - \mu_{ti}}{\sqrt{\sigma_{ti}^2 + \epsilon}} + \beta_i

    with the biased variance over the spatial positions of one image and channel; the same in
    training and at test time (IN §2: "apply the instance normalization also at test time").
    Reference formula: :func:`normcore.reference.instance_norm`.

    Args:
        num_channels: C.
        eps: 1e-5 (the official ``texture_nets`` InstanceNormalization.lua).
        affine: per-channel :math:`\gamma, \beta`. Default **True**, as the official code (torch's
            ``nn.InstanceNorm2d`` defaults to False).
        track_running_stats: default **False**, stated explicitly: per-sample statistics in train and
            eval, which is the IN paper's method. ``True`` keeps running averages and uses them in eval,
            which makes eval-mode IN a BatchNorm (pytorch/pytorch#58843); provided for old checkpoints.
        momentum: running-average factor when ``track_running_stats=True``.
        spatial_dims: the number of spatial dimensions (1, 2, 3, as ``nn.InstanceNorm{1,2,3}d``). With
            it, an input of ``spatial_dims + 1`` dimensions is one unbatched sample ``(C, *spatial)``, as
            the native modules accept. Without it (default) every input is batched, ``(N, C, *spatial)``
            of any rank, and a 3-D input is ``(N, C, L)``; a 3-D input that could also be an unbatched
            image (``x.shape[0] == x.shape[1] == C``) warns once, since the two readings differ.
        bias: with ``affine``, learn :math:`\beta` too (default).

    A subclass of ``torch.nn.modules.instancenorm._InstanceNorm``, so ``isinstance`` checks of other
    libraries (mmcv's ``is_norm``, mmengine's ``norm_decay_mult``) see an instance norm. Checkpoints
    saved before PyTorch 0.4 carry ``running_mean``/``running_var`` even without tracking; loading one
    drops those keys with a warning instead of failing.
    """

    _warned_ambiguous = False

    def __init__(
        self,
        num_channels: int,
        *,
        eps: float = 1e-5,
        affine: bool = True,
        track_running_stats: bool = False,
        momentum: float = 0.1,
        spatial_dims: int | None = None,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        if spatial_dims is not None and spatial_dims not in (1, 2, 3):
            raise ValueError(f"InstanceNorm: spatial_dims must be 1, 2, 3 or None (any rank), got {spatial_dims}")
        super().__init__(num_channels, eps, momentum, affine, track_running_stats, device, dtype, bias=bias)
        self.spatial_dims = spatial_dims
        if track_running_stats:
            for name in ("running_mean", "running_var"):  # float32 whatever dtype the parameters have
                setattr(self, name, getattr(self, name).float())

    @property
    def num_channels(self) -> int:
        return self.num_features

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        out = super()._apply(fn, recurse)
        _keep_stats_fp32(self)
        return out

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected, errors):
        if not self.track_running_stats:
            stale = [
                prefix + k for k in ("running_mean", "running_var", "num_batches_tracked") if prefix + k in state_dict
            ]
            for key in stale:
                state_dict.pop(key)
            if stale:
                warnings.warn(
                    f"InstanceNorm(track_running_stats=False) ignored {stale} from the checkpoint (saved "
                    f"by PyTorch < 0.4 or with tracking on). Build the layer with track_running_stats=True "
                    f"if you need them.",
                    stacklevel=2,
                )
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected, errors)

    def _get_no_batch_dim(self) -> int:  # (torch's _InstanceNorm asks its subclasses)
        return -1 if self.spatial_dims is None else self.spatial_dims + 1

    def _check_input_dim(self, input: torch.Tensor) -> None:
        check_rank(input, type(self).__name__, 2, layout="(N, C, *spatial)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        name = type(self).__name__
        check_float(x, name)
        if x.dim() == self._get_no_batch_dim():
            return self.forward(x.unsqueeze(0)).squeeze(0)
        if self.spatial_dims is None:
            check_rank(x, name, 3, layout="(N, C, *spatial)")
        else:
            n = self.spatial_dims
            check_rank(x, name, n + 1, n + 2, layout=f"(N, C, *spatial) or unbatched (C, *spatial), {n} spatial dims")
        check_channels(x, name, self.num_features)
        if self.spatial_dims is None and x.dim() == 3 and x.shape[0] == x.shape[1] > 1 and not self._warned_ambiguous:
            InstanceNorm._warned_ambiguous = True
            warnings.warn(
                f"{name} got a 3-D input of shape {tuple(x.shape)}, read as a batch (N, C, L). If it is one "
                f"unbatched image (C, H, W), build the layer with spatial_dims=2 (the native InstanceNorm2d "
                f"reads 3-D input that way), or add the batch dimension with x.unsqueeze(0).",
                stacklevel=2,
            )
        use_input_stats = self.training or not self.track_running_stats
        if use_input_stats and math.prod(x.shape[2:]) <= 1:
            raise ValueError(
                f"{name} got input of shape {tuple(x.shape)}: one spatial position per channel, so every "
                f"instance normalizes to 0 (pytorch/pytorch#45687). Apply it before global pooling, or use "
                f"LayerNorm/GroupNorm with fewer groups."
            )
        return Fn.instance_norm(
            x,
            self.weight,
            self.bias,
            self.eps,
            running_mean=self.running_mean,
            running_var=self.running_var,
            use_input_stats=use_input_stats,
            momentum=self.momentum,
        )

    def extra_repr(self) -> str:
        dims = "" if self.spatial_dims is None else f", spatial_dims={self.spatial_dims}"
        return (
            f"{self.num_features}, eps={self.eps}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats}{dims}"
        )
