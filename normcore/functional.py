r"""Stateless forms of every normcore method: the one place where each formula lives.

Conventions, shared by every function here:

* Tensors are channels-first, ``(N, C, *)``. A channels_last input gives a channels_last output.
* Statistics are accumulated in float32 when the input is float16/bfloat16 (float64 stays float64),
  with two-pass / Welford reductions, never :math:`E[x^2] - E[x]^2`; the output has the input's
  dtype, also under ``torch.autocast``, which runs some norms in float32.
* Where a native PyTorch kernel computes exactly the same quantity, it is used (``F.batch_norm``,
  ``F.group_norm``, ``F.layer_norm``); the docstrings say which.

References (section numbers refer to the arXiv versions cited in ``papers/``):
BN: Ioffe & Szegedy 2015 (1502.03167); LN: Ba, Kiros & Hinton 2016 (1607.06450); IN: Ulyanov,
Vedaldi & Lempitsky 2016 (1607.08022); GN: Wu & He 2018 (1803.08494); WS/BCN: Qiao et al. 2019
(1903.10520); NormProp: Arpit et al. 2016 (1603.01431).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from normcore._validation import LOW_PRECISION

__all__ = [
    "RELU_MEAN",
    "RELU_STD",
    "RELU_VAR",
    "WS_VARIANTS",
    "WSFormula",
    "batch_channel_norm",
    "batch_norm",
    "channel_norm",
    "estimated_batch_norm",
    "feature_layer_norm",
    "group_norm",
    "instance_norm",
    "layer_norm",
    "moments",
    "normprop_conv2d",
    "normprop_linear",
    "normprop_relu",
    "normprop_weight",
    "relu_moments",
    "weight_standardize",
]


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def _as_input_dtype(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Return ``out`` in ``x``'s dtype (autocast runs group/layer norm in float32)."""
    return out if out.dtype == x.dtype else out.to(x.dtype)


def _channels_last_format(x: torch.Tensor) -> torch.memory_format | None:
    """``torch.channels_last`` / ``torch.channels_last_3d`` if ``x`` is stored in that layout (and not
    also plainly contiguous, as tensors with C = 1 or one spatial position are), else ``None``."""
    if x.is_contiguous():
        return None
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    if x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.channels_last_3d
    return None


def _affine_in(x: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor | None:
    """Affine parameters for the native GN/LN kernels: same dtype as the input, as the kernels need."""
    if t is None or t.dtype == x.dtype or torch.is_autocast_enabled(x.device.type):
        return t
    return t.to(x.dtype)


def _fp32(t: torch.Tensor | None) -> torch.Tensor | None:
    """Low-precision parameters as float32 (the native BN kernels take fp32 params with fp16 input)."""
    if t is None or t.dtype not in LOW_PRECISION:
        return t
    return t.float()


def moments(
    x: torch.Tensor, dims: int | tuple[int, ...], *, correction: int = 0, keepdim: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Mean and variance of ``x`` over ``dims``: :math:`\mu = E[x]`, :math:`\sigma^2 = E[(x-\mu)^2]`.

    ``correction=0`` gives the biased variance used to normalize (BN §3, GN §3.1), ``correction=1``
    the unbiased one. Accumulated in float32 for float16/bfloat16 input, by ``torch.var_mean``
    (a two-pass/Welford reduction: no cancellation for inputs with a large mean).
    """
    xf = x.float() if x.dtype in LOW_PRECISION else x
    var, mean = torch.var_mean(xf, dim=dims, correction=correction, keepdim=keepdim)
    return mean, var


SHIFT_RATIO = 1e3
r"""Above this :math:`|\mu| / \sigma` of a normalized set, float32 statistics lose more than ~1e-4 of the
output (values near :math:`\mu` are held only to :math:`\mu \cdot 6 \cdot 10^{-8}`), and normcore
recomputes them on the input minus a constant the normalization ignores (the "shifted data"
variance algorithm: :func:`_group_shift`, :func:`_batch_norm_shifted`)."""


def _first_position(x: torch.Tensor) -> torch.Tensor:
    """``x`` at its first spatial position, ``(N, C)``, without gradient."""
    return x[(slice(None), slice(None)) + (0,) * (x.dim() - 2)].detach()


def _checks_statistics(x: torch.Tensor) -> bool:
    """Whether normcore checks a native kernel's statistics for a large mean (CPU, eager, not
    autocast, non-empty): on CUDA the check would synchronize, under ``torch.compile`` it would
    break the graph."""
    return (
        x.device.type == "cpu"
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
        and x.numel() > 0
    )


def _large_mean(mean: torch.Tensor, rstd: torch.Tensor, threshold: float = SHIFT_RATIO) -> bool:
    r"""Whether some normalized set has :math:`|\mu| / \sigma >` ``threshold``."""
    ratio = mean.detach() * rstd.detach()  # (no autograd graph for the check)
    return torch.linalg.vector_norm(ratio, math.inf).item() > threshold


# --------------------------------------------------------------------------------------------------
# Batch Normalization (Ioffe & Szegedy 2015, Algorithm 1 and §3.1)
# --------------------------------------------------------------------------------------------------
VirtualStats = Literal["mean", "first"]


def _batch_norm_corrected(
    x: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    momentum: float,
    eps: float,
    correction: int,
) -> torch.Tensor:
    """Training-mode BN normalizing with the variance of the given ``correction`` (not a native kernel)."""
    dims = (0, *range(2, x.dim()))
    m = x.numel() // max(x.shape[1], 1)
    mean, var = moments(x, dims, correction=correction, keepdim=False)
    if running_mean is not None and running_var is not None:
        with torch.no_grad():  # the running variance is the unbiased one whatever the correction
            running_mean.lerp_(mean.detach().to(running_mean.dtype), momentum)
            unbiased = var.detach() * ((m - correction) / (m - 1))
            running_var.lerp_(unbiased.to(running_var.dtype), momentum)
    view = (1, -1) + (1,) * (x.dim() - 2)
    xf = x.float() if x.dtype in LOW_PRECISION else x
    out = (xf - mean.view(view)) * torch.rsqrt(var.view(view) + eps)
    if weight is not None:
        out = out * weight.view(view)
    if bias is not None:
        out = out + bias.view(view)
    return out.to(x.dtype)


def _batch_norm_shifted(
    x: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    momentum: float,
    eps: float,
) -> torch.Tensor:
    """Training-mode BN of ``x - shift`` with ``shift`` = sample 0 at the first position, per channel
    (constant, no gradient): the output and gradient are those of ``x`` (BN is invariant to a per-channel
    constant), the running mean gets the shift back (the variance does not change)."""
    shift = _first_position(x)[0]
    view = (1, -1) + (1,) * (x.dim() - 2)
    # the kernel updates a copy of the running mean: autograd saves the tensor it is given, which the
    # shift correction below must not modify in place
    shifted_mean = None if running_mean is None else running_mean.clone()
    out = F.batch_norm(x - shift.view(view), shifted_mean, running_var, weight, bias, True, momentum, eps)
    if running_mean is not None and shifted_mean is not None:
        with torch.no_grad():
            running_mean.copy_(shifted_mean + momentum * shift.to(running_mean.dtype))
    return out


def _batch_norm_checked(
    x: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    momentum: float,
    eps: float,
) -> torch.Tensor:
    """Training-mode native BN whose statistics are checked for a large mean (see :func:`batch_norm`).

    The contiguous kernel's statistics are accurate, so its running estimates are kept and only the
    output is recomputed. The channels-last kernel sums naively (mean off by ~1e-6 of itself, which
    also inflates the variance): it is checked at a ratio ten times lower, so that a variance inflated
    by that error cannot hide a large mean, and its running estimates are recomputed from the shifted
    input too."""
    channels_last = _channels_last_format(x) is not None
    backup = None
    if channels_last and running_mean is not None and running_var is not None:
        backup = running_mean.clone(), running_var.clone()
    out, mean, invstd = torch.native_batch_norm(x, weight, bias, running_mean, running_var, True, momentum, eps)
    if not _large_mean(mean, invstd, SHIFT_RATIO / 10 if channels_last else SHIFT_RATIO):
        return out
    if backup is None:
        return _batch_norm_shifted(x, None, None, weight, bias, momentum, eps)
    with torch.no_grad():
        running_mean.copy_(backup[0])  # type: ignore[union-attr]
        running_var.copy_(backup[1])  # type: ignore[union-attr]
    return _batch_norm_shifted(x, running_mean, running_var, weight, bias, momentum, eps)


def batch_norm(
    x: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    *,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
    correction: int = 0,
    virtual_devices: int = 1,
    virtual_running_stats: VirtualStats = "mean",
) -> torch.Tensor:
    r"""Batch normalization, BN paper Algorithm 1:

    .. math:: y = \gamma \frac{x - \mu_B}{\sqrt{\sigma_B^2 + \epsilon}} + \beta

    with :math:`\mu_B, \sigma_B^2` the mean and **biased** variance over the batch and all spatial
    positions of each channel. In training the running estimates are updated with the **unbiased**
    batch variance (BN §3.1: :math:`Var[x] = \frac{m}{m-1} E_B[\sigma_B^2]`) as an exponential moving
    average, ``running = (1 - momentum) * running + momentum * batch``: exactly
    ``torch.nn.BatchNorm2d`` (native ``F.batch_norm``), with the numerical guards of
    :func:`group_norm` on CPU (measured with torch 2.14, float32, mean 1e4 and std 1): the contiguous
    kernel's statistics are checked and a batch with :math:`|\mu| / \sigma >` :data:`SHIFT_RATIO` is
    renormalized from ``x - shift`` (BN is invariant to a per-channel constant; output mean off by
    8.6e-4 without it, 1e-7 with it); channels-last input, whose kernel accumulates the per-channel sums
    naively (off by 1.3e-2), is checked the same way (:func:`_batch_norm_checked`).

    ``correction`` is the variance used to normalize in training: 0 (default) the biased
    :math:`\sigma_B^2` of BN Algorithm 1 (native kernel); 1 the unbiased
    :math:`\frac{m}{m-1}\sigma_B^2`, the BN the LN paper compares against at small batch (LN §6.6);
    it only changes training-mode outputs (not a native kernel).

    ``virtual_devices=D`` splits the batch into D equal slices and normalizes each with its own
    statistics, as D data-parallel GPUs with unsynchronized BN do (the GN paper's §4.1 setting and the
    WS paper's micro-batch setting); the output equals running BN on each slice separately. The
    running statistics then follow ``virtual_running_stats``: ``"mean"`` (default) averages the D
    per-slice updates, ``"first"`` keeps slice 0's, which is what ``DistributedDataParallel`` with
    ``broadcast_buffers=True`` ends with (rank 0's buffers are broadcast every step).
    """
    weight, bias = _fp32(weight), _fp32(bias)

    def one(s: torch.Tensor, rm: torch.Tensor | None, rv: torch.Tensor | None) -> torch.Tensor:
        if training and correction != 0:
            return _batch_norm_corrected(s, rm, rv, weight, bias, momentum, eps, correction)
        if not (training and _checks_statistics(s) and s.numel() > s.shape[1]):
            return F.batch_norm(s, rm, rv, weight, bias, training, momentum, eps)
        return _batch_norm_checked(s, rm, rv, weight, bias, momentum, eps)

    if not training or virtual_devices == 1:
        return one(x, running_mean, running_var)
    slices = x.chunk(virtual_devices, dim=0)
    if running_mean is None or running_var is None:
        outs = [one(s, None, None) for s in slices]
    elif virtual_running_stats == "first":
        outs = [one(slices[0], running_mean, running_var)] + [one(s, None, None) for s in slices[1:]]
    elif virtual_running_stats == "mean":
        means = [running_mean.clone() for _ in slices]
        varis = [running_var.clone() for _ in slices]
        outs = [one(s, m, v) for s, m, v in zip(slices, means, varis)]
        with torch.no_grad():
            running_mean.copy_(torch.stack(means).mean(0))
            running_var.copy_(torch.stack(varis).mean(0))
    else:
        raise ValueError(f"virtual_running_stats must be 'mean' or 'first', got {virtual_running_stats!r}")
    return torch.cat(outs, dim=0)


# --------------------------------------------------------------------------------------------------
# Layer / Instance / Group Normalization
# --------------------------------------------------------------------------------------------------
def _group_shift(x: torch.Tensor, num_groups: int) -> torch.Tensor:
    """A per-(sample, group) constant close to each group's mean: the mean over the group's channels at
    the first spatial position, broadcastable against ``x`` and without gradient.

    Group normalization is invariant to adding a constant to a whole group, so
    ``group_norm(x - shift) == group_norm(x)`` exactly and the gradient is unchanged (the shift is
    constant), while the statistics of ``x - shift`` are of values within a few standard deviations
    of 0: float32 sums and E[x^2] - E[x]^2 both stay accurate (the "shifted data" variance algorithm)."""
    n, c = x.shape[:2]
    groups = _first_position(x).reshape(n, num_groups, c // num_groups).mean(dim=2)
    return groups.repeat_interleave(c // num_groups, dim=1).reshape((n, c) + (1,) * (x.dim() - 2))


def group_norm(
    x: torch.Tensor,
    num_groups: int,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    r"""Group normalization, GN paper §3.1, Eq. (1)-(3) with :math:`S_i = \{k : k_N = i_N,
    \lfloor k_C / (C/G) \rfloor = \lfloor i_C / (C/G) \rfloor\}`:

    .. math:: y = \gamma_c \frac{x - \mu_{n,g}}{\sqrt{\sigma_{n,g}^2 + \epsilon}} + \beta_c

    biased variance, per-channel affine (Eq. 4). Native group-norm kernel, with two numerical guards
    that keep the output exact for inputs whose mean is large against their spread (measured with
    torch 2.14, float32, mean 1e4 and std 1):

    * the contiguous kernel's float32 accumulation is off by up to 2.4e-3 there; the kernel returns
      each group's mean and 1/std, and when any :math:`|\mu| / \sigma` exceeds :data:`SHIFT_RATIO` the
      group is renormalized from ``x - shift`` (:func:`_group_shift`), which group normalization does
      not change; ordinary inputs pay only the check, one small reduction and a host read (CPU eager
      only, see :func:`_checks_statistics`);
    * the CPU channels-last kernel computes the variance as :math:`E[x^2] - E[x]^2` (off by ~1e3 there),
      so channels-last CPU input is always shifted first (one elementwise pass, output channels-last);
      on CUDA the channels-last kernel returns NCHW (pytorch/pytorch#111824), so the output is converted
      back to channels-last.
    """
    w, b = _affine_in(x, weight), _affine_in(x, bias)
    fmt = _channels_last_format(x)
    if fmt is not None and x.device.type == "cpu":
        return _as_input_dtype(F.group_norm(x - _group_shift(x, num_groups), num_groups, w, b, eps), x)
    if fmt is not None:
        return group_norm(x.contiguous(), num_groups, weight, bias, eps).contiguous(memory_format=fmt)
    if not _checks_statistics(x):
        return _as_input_dtype(F.group_norm(x, num_groups, w, b, eps), x)
    n, c = x.shape[:2]
    out, mean, rstd = torch.native_group_norm(x, w, b, n, c, math.prod(x.shape[2:]), num_groups, eps)
    if _large_mean(mean, rstd):
        out = F.group_norm(x - _group_shift(x, num_groups), num_groups, w, b, eps)
    return _as_input_dtype(out, x)


def layer_norm(
    x: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None, eps: float = 1e-5
) -> torch.Tensor:
    r"""Layer normalization for ``(N, C, *)`` feature maps, as the GN paper defines LN for conv nets
    (GN §3.1, Fig. 2): statistics over all of :math:`(C, *)` of one sample, per-channel affine.

    This is group normalization with one group (GN §3.1: "GN becomes LN if we set G = 1"); native
    ``F.group_norm(x, 1, ...)``. On ``(N, F)`` input it equals :func:`feature_layer_norm`.
    """
    return group_norm(x, 1, weight, bias, eps)


def feature_layer_norm(
    x: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None, eps: float = 1e-5
) -> torch.Tensor:
    r"""Layer normalization in the LN paper's form (LN §3, Eq. 3-4), over the **last** dimension, the
    H hidden units of a layer, e.g. ``(N, F)`` or ``(N, T, F)``:

    .. math:: \mu = \frac{1}{H}\sum_i a_i,\quad \sigma = \sqrt{\frac{1}{H}\sum_i (a_i-\mu)^2 + \epsilon},
              \quad h = g \odot \frac{a - \mu}{\sigma} + b

    eps = 1e-5 inside the square root as in the official code (``ryankiros/layer-norm:layers.py``);
    the paper's Eq. 4 writes no eps. Native ``F.layer_norm``.
    """
    out = F.layer_norm(x, (x.shape[-1],), _affine_in(x, weight), _affine_in(x, bias), eps)
    return _as_input_dtype(out, x)


def instance_norm(
    x: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
    *,
    running_mean: torch.Tensor | None = None,
    running_var: torch.Tensor | None = None,
    use_input_stats: bool = True,
    momentum: float = 0.1,
) -> torch.Tensor:
    r"""Instance normalization, IN paper §2: for image t and channel i,

    .. math:: y_{tijk} = \frac{x_{tijk} - \mu_{ti}}{\sqrt{\sigma_{ti}^2 + \epsilon}}

    with mean and biased variance over the spatial positions of one image and one channel, then a
    per-channel affine. Without running statistics this is ``F.group_norm(x, C, ...)`` (native, keeps
    channels_last); with them, ``F.instance_norm``, on CPU of ``x`` minus its first position per
    instance (IN ignores the constant; the running mean gets it back), which keeps inputs with a
    large mean exact as in :func:`batch_norm`.
    """
    if (running_mean is None and use_input_stats) or x.numel() == 0:
        # (torch.instance_norm with running statistics raises IndexError on an empty batch; there is
        # nothing to normalize or to count, and the group-norm kernel returns the empty output.)
        return group_norm(x, x.shape[1], weight, bias, eps)
    shift = None
    if use_input_stats and _checks_statistics(x):  # the kernel behind it is contiguous BN's: see batch_norm
        shift = _first_position(x)
        x = x - shift.view(shift.shape + (1,) * (x.dim() - 2))
    shifted_mean = running_mean if shift is None or running_mean is None else running_mean.clone()  # see BN's
    out = F.instance_norm(x, shifted_mean, running_var, _fp32(weight), _fp32(bias), use_input_stats, momentum, eps)
    if shift is not None and running_mean is not None and shifted_mean is not None:
        with torch.no_grad():  # each instance's mean moved by its shift; the variances did not
            running_mean.copy_(shifted_mean + momentum * shift.mean(dim=0).to(running_mean.dtype))
    fmt = _channels_last_format(x)
    return out if fmt is None else out.contiguous(memory_format=fmt)


# --------------------------------------------------------------------------------------------------
# Weight Standardization (Qiao et al. 2019, §3; official code in joe-siyuan-qiao/WeightStandardization)
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WSFormula:
    """One weight-standardization formula: where eps sits and which variance is used."""

    unbiased: bool
    eps_inside_sqrt: bool
    eps: float
    source: str

    def describe(self) -> str:
        var = "unbiased" if self.unbiased else "biased"
        if self.eps_inside_sqrt:
            return f"(W - mean) / sqrt(var_{var} + {self.eps:g})"
        return f"(W - mean) / (std_{var} + {self.eps:g})"


WS_VARIANTS: dict[str, WSFormula] = {
    "official": WSFormula(
        unbiased=True,
        eps_inside_sqrt=False,
        eps=1e-5,
        source="WS paper's PyTorch code: joe-siyuan-qiao/WeightStandardization README, "
        "pytorch-classification models/layers.py, maskrcnn-benchmark layers/misc.py",
    ),
    "official_tf": WSFormula(
        unbiased=False,
        eps_inside_sqrt=False,
        eps=1e-5,
        source="WS paper's TensorFlow snippet (tf.keras.backend.std); google-research/vision_transformer",
    ),
    "bcn": WSFormula(
        unbiased=True,
        eps_inside_sqrt=True,
        eps=1e-5,
        source="joe-siyuan-qiao/Batch-Channel-Normalization imagenet/models/layers.py; mmcv ConvAWS2d",
    ),
    "biased": WSFormula(
        unbiased=False,
        eps_inside_sqrt=True,
        eps=1e-5,
        source="timm StdConv2d (eps 1e-6), BiT (eps 1e-10), composer (eps 1e-10)",
    ),
}


def ws_formula(variant: str) -> WSFormula:
    """Look up a WS variant by name, with a clear error listing the names."""
    try:
        return WS_VARIANTS[variant]
    except KeyError:
        raise ValueError(
            f"unknown weight-standardization variant {variant!r}; choose one of {sorted(WS_VARIANTS)}"
        ) from None


def _standardize(w: torch.Tensor, formula: WSFormula, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The WS forward, op for op the official code: returns the standardized weight, the per-filter
    divisor d (std + eps, or sqrt(var + eps)) and the per-filter root t (std, or d itself)."""
    mean = w
    for d in range(1, w.dim()):
        mean = mean.mean(dim=d, keepdim=True)
    centred = w - mean
    flat = centred.reshape(centred.shape[0], -1)
    view = (-1,) + (1,) * (w.dim() - 1)
    correction = 1 if formula.unbiased else 0
    if formula.eps_inside_sqrt:
        root = (flat.var(dim=1, correction=correction) + eps).sqrt().view(view)
        denom = root
    else:
        root = flat.std(dim=1, correction=correction).view(view)
        denom = root + eps
    return centred / denom, denom, root


class _WeightStandardize(torch.autograd.Function):
    r"""Weight standardization with a hand-derived backward (same forward ops, so the same values).

    With :math:`\hat W = (W - \mu)/d` per filter of n weights, :math:`d = t + \epsilon` (eps outside)
    or :math:`d = t = \sqrt{v + \epsilon}` (inside), and :math:`v` the variance with correction c:

    .. math:: \frac{\partial L}{\partial W} = \frac{g - \bar g}{d}
              - \hat W \, \frac{\sum_j g_j \hat W_j}{(n - c)\, t}

    Four passes over the weight instead of the ~ten that autograd takes through the composite ops
    (profiled on CPU: WS forward+backward 1.5-1.9x faster). When a graph of the backward itself is
    requested (``create_graph=True``, e.g. a gradient penalty), the backward differentiates the plain
    formula instead, so higher derivatives stay exact.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(w: torch.Tensor, formula: WSFormula, eps: float):  # type: ignore[override]
        return _standardize(w, formula, eps)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        w, formula, eps = inputs
        out, denom, root = output
        ctx.mark_non_differentiable(denom, root)
        ctx.save_for_backward(w, out, denom, root)
        ctx.formula, ctx.eps = formula, eps

    @staticmethod
    def backward(ctx, g: torch.Tensor, *_):  # type: ignore[override]
        w, out, denom, root = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: keep the higher-order graph exact
            with torch.enable_grad():
                plain = _standardize(w, ctx.formula, ctx.eps)[0]
            return torch.autograd.grad(plain, w, g, create_graph=True)[0], None, None
        dims = tuple(range(1, w.dim()))
        n = out[0].numel() - (1 if ctx.formula.unbiased else 0)
        coef = (g * out).sum(dim=dims, keepdim=True) / (n * root)
        grad = (g - g.mean(dim=dims, keepdim=True)) / denom
        return grad.sub_(out * coef), None, None


def weight_standardize(weight: torch.Tensor, variant: str = "official", eps: float | None = None) -> torch.Tensor:
    r"""Standardize each output filter of a conv weight ``(C_out, C_in/groups, *kernel)`` (WS §3):

    .. math:: \hat W_{i,j} = \frac{W_{i,j} - \mu_i}{\sigma_i + \epsilon}  \quad (\text{"official"})

    over the :math:`I = C_{in} \cdot \prod k` weights of filter i. ``variant`` picks the formula
    (:data:`WS_VARIANTS`): ``"official"`` = unbiased std, eps outside the root (the paper's PyTorch
    code; the paper's Eq. 4 text differs, see issue joe-siyuan-qiao/WeightStandardization#1);
    ``"official_tf"`` = biased std, eps outside; ``"bcn"`` = unbiased variance, eps inside;
    ``"biased"`` = biased variance, eps inside. ``eps`` overrides the variant's default (1e-5).

    The computation follows the official code step by step (nested means over the non-output
    dimensions, then the std of the centred weight), so ``"official"`` is bit-exact to it; the
    gradient comes from the closed form in :class:`_WeightStandardize` in eager mode; under
    ``torch.compile`` the plain formula is traced instead and autograd differentiates it (the compiler
    fuses its small kernels; torch 2.11's dynamo failed on the custom Function inside a ResNet with an
    AssertionError in ``handle_saved_tensors_wiring``). Low precision weights are standardized in
    float32 and returned in their own dtype.
    """
    formula = ws_formula(variant)
    eps = formula.eps if eps is None else eps
    w = weight.float() if weight.dtype in LOW_PRECISION else weight
    if torch.is_grad_enabled() and w.requires_grad and not torch.compiler.is_compiling():
        out = _WeightStandardize.apply(w, formula, eps)[0]
    else:
        out = _standardize(w, formula, eps)[0]
    return out if out.dtype == weight.dtype else out.to(weight.dtype)


# --------------------------------------------------------------------------------------------------
# Batch-Channel Normalization (Qiao et al. 2019, §5; official code joe-siyuan-qiao/Batch-Channel-Normalization)
# --------------------------------------------------------------------------------------------------
def channel_norm(
    x: torch.Tensor,
    num_groups: int,
    group_weight: torch.Tensor | None = None,
    group_bias: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    r"""BCN's channel stage: per-sample group normalization with a **per-group** affine
    (official ``BCNorm``: ``weight``/``bias`` of shape ``(1, G, 1)``):

    .. math:: y = \gamma_g \frac{x - \mu_{n,g}}{\sqrt{\sigma_{n,g}^2 + \epsilon}} + \beta_g

    The official code computes it as ``torch.batch_norm`` on a ``(1, N*G, -1)`` view; here the
    per-group affine is expanded to channels and fused into the native ``F.group_norm`` (same
    formula, and it also accepts channels_last input, where the official ``.view`` fails).
    """
    c = x.shape[1]
    w = None if group_weight is None else group_weight.reshape(num_groups).repeat_interleave(c // num_groups)
    b = None if group_bias is None else group_bias.reshape(num_groups).repeat_interleave(c // num_groups)
    return group_norm(x, num_groups, w, b, eps)


def estimated_batch_norm(
    x: torch.Tensor,
    running_mean: torch.Tensor,
    running_var: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    *,
    training: bool = True,
    moving_speed: float = 0.1,
    eps: float = 1e-5,
) -> torch.Tensor:
    r"""Estimated batch normalization (official ``EstBN``, BCN repository README): normalizes with
    the **running** estimates in training and in eval,

    .. math:: y = \gamma \frac{x - \hat\mu}{\sqrt{\hat\sigma^2 + \epsilon}} + \beta,

    after updating them (training only, without gradient) with speed :math:`s`:
    :math:`\hat\mu \leftarrow (1-s)\hat\mu + s\,\mu_B` and
    :math:`\hat\sigma^2 \leftarrow (1-s)\hat\sigma^2 + s\,E_B[(x - \hat\mu_{old})^2]`: the variance is
    centred on the running mean *before* its update, and biased, as in the official code.
    The normalization is the native eval-mode ``F.batch_norm``. An empty batch leaves the estimates
    unchanged (its batch mean would be NaN).
    """
    if training and x.numel() > 0:
        with torch.no_grad():
            dims = [0, *range(2, x.dim())]
            xf = x.float() if x.dtype in LOW_PRECISION else x
            view = (1, -1) + (1,) * (x.dim() - 2)
            batch_mean = xf.mean(dim=dims)
            batch_var = (xf - running_mean.view(view)).square().mean(dim=dims)
            running_mean.mul_(1 - moving_speed).add_(moving_speed * batch_mean)
            running_var.mul_(1 - moving_speed).add_(moving_speed * batch_var)
    return F.batch_norm(x, running_mean, running_var, _fp32(weight), _fp32(bias), False, 0.0, eps)


def batch_channel_norm(
    x: torch.Tensor,
    num_groups: int,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    bn_weight: torch.Tensor | None,
    bn_bias: torch.Tensor | None,
    group_weight: torch.Tensor | None,
    group_bias: torch.Tensor | None,
    *,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
    bn_eps: float = 1e-5,
    virtual_devices: int = 1,
) -> torch.Tensor:
    r"""Batch-Channel Normalization (WS/BCN paper §5, official ``BCNorm``): batch normalization with a
    per-channel affine, then the channel stage :func:`channel_norm` with a per-group affine.
    ``eps`` is the channel stage's (the official constructor argument), ``bn_eps`` the BN stage's
    (``nn.BatchNorm2d``'s 1e-5 in the official code).
    """
    out = batch_norm(
        x,
        running_mean,
        running_var,
        bn_weight,
        bn_bias,
        training=training,
        momentum=momentum,
        eps=bn_eps,
        virtual_devices=virtual_devices,
    )
    return channel_norm(out, num_groups, group_weight, group_bias, eps)


# --------------------------------------------------------------------------------------------------
# Normalization Propagation (Arpit et al. 2016, §3-4)
# --------------------------------------------------------------------------------------------------
RELU_MEAN: float = 1.0 / math.sqrt(2.0 * math.pi)
"""E[max(0, z)] for z ~ N(0, 1): sqrt(1 / (2 pi)) = 0.398942..."""
RELU_VAR: float = 0.5 * (1.0 - 1.0 / math.pi)
"""Var[max(0, z)] for z ~ N(0, 1): (1/2)(1 - 1/pi) = 0.340845..."""
RELU_STD: float = math.sqrt(RELU_VAR)


def relu_moments() -> tuple[float, float]:
    r"""Closed-form mean and variance of a ReLU of a standard normal (NormProp method; derived in papers/normprop):
    :math:`E[\max(0,z)] = 1/\sqrt{2\pi}`, :math:`Var[\max(0,z)] = \frac12(1 - \frac1\pi)`."""
    return RELU_MEAN, RELU_VAR


def normprop_relu(x: torch.Tensor) -> torch.Tensor:
    r"""ReLU followed by NormProp's closed-form re-normalization (NormProp method; derived in papers/normprop):

    .. math:: \frac{\max(0, u) - \sqrt{1/(2\pi)}}{\sqrt{\frac12 (1 - \frac1\pi)}}

    so that a standard-normal pre-activation gives a zero-mean, unit-variance output.
    """
    return (F.relu(x) - RELU_MEAN) / RELU_STD


def normprop_weight(weight: torch.Tensor, gamma: torch.Tensor | None = None, eps: float = 0.0) -> torch.Tensor:
    r"""Rows of ``weight`` scaled to unit L2 norm and by ``gamma`` (NormProp, method section):
    :math:`\gamma_i W_i / \lVert W_i \rVert_2`, the norm over every dimension but the first (for a conv,
    over ``C_in * kH * kW``). ``eps`` (default 0, as the paper) guards an all-zero row. Computed in
    float32 for low-precision weights."""
    w = weight.float() if weight.dtype in LOW_PRECISION else weight
    norm = w.reshape(w.shape[0], -1).norm(dim=1)
    scale = 1.0 / (norm + eps) if gamma is None else gamma.reshape(-1).to(w.dtype) / (norm + eps)
    out = w * scale.view((-1,) + (1,) * (w.dim() - 1))
    return out if out.dtype == weight.dtype else out.to(weight.dtype)


def normprop_linear(
    x: torch.Tensor, weight: torch.Tensor, gamma: torch.Tensor | None, beta: torch.Tensor | None
) -> torch.Tensor:
    r"""NormProp fully connected pre-activation (NormProp, method section):
    :math:`u_i = \gamma_i \frac{W_i^T x}{\lVert W_i \rVert_2} + \beta_i`."""
    return F.linear(x, normprop_weight(weight, gamma), beta)


def normprop_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    gamma: torch.Tensor | None,
    beta: torch.Tensor | None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | str = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
) -> torch.Tensor:
    r"""NormProp convolution (NormProp, method section): every filter is a row :math:`W_i` of the im2col weight
    matrix, scaled to unit norm and by :math:`\gamma_i`; :math:`\beta_i` is the conv bias."""
    return F.conv2d(x, normprop_weight(weight, gamma), beta, stride, padding, dilation, groups)
