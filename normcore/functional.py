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

from normcore._numerics import (
    SHIFT_RATIO,
    affine_in,
    as_input_dtype,
    batch_norm_guarded,
    fp32,
    group_norm_guarded,
    instance_norm_guarded,
    standardize_weight,
)
from normcore._validation import LOW_PRECISION

__all__ = [
    "RELU_MEAN",
    "RELU_STD",
    "RELU_VAR",
    "SHIFT_RATIO",
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
    weight, bias = fp32(weight), fp32(bias)

    def one(s: torch.Tensor, rm: torch.Tensor | None, rv: torch.Tensor | None) -> torch.Tensor:
        if training and correction != 0:
            return _batch_norm_corrected(s, rm, rv, weight, bias, momentum, eps, correction)
        return batch_norm_guarded(s, rm, rv, weight, bias, training, momentum, eps)

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
      group is renormalized from ``x - shift``, which group normalization does not change
      (:func:`normcore._numerics.group_norm_guarded`); ordinary inputs pay only the check, one small
      reduction and a host read (CPU eager only, see :func:`normcore._numerics.checks_statistics`);
    * the CPU channels-last kernel computes the variance as :math:`E[x^2] - E[x]^2` (off by ~1e3 there),
      so channels-last CPU input is always shifted first (one elementwise pass, output channels-last);
      on CUDA the channels-last kernel returns NCHW (pytorch/pytorch#111824), so the output is converted
      back to channels-last.
    """
    return group_norm_guarded(x, num_groups, weight, bias, eps)


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
    x: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
    *,
    normalized_shape: tuple[int, ...] | None = None,
) -> torch.Tensor:
    r"""Layer normalization in the LN paper's form (LN §3, Eq. 3-4), over the **last** dimension, the
    H hidden units of a layer, e.g. ``(N, F)`` or ``(N, T, F)``:

    .. math:: \mu = \frac{1}{H}\sum_i a_i,\quad \sigma = \sqrt{\frac{1}{H}\sum_i (a_i-\mu)^2 + \epsilon},
              \quad h = g \odot \frac{a - \mu}{\sigma} + b

    eps = 1e-5 inside the square root as in the official code (``ryankiros/layer-norm:layers.py``);
    the paper's Eq. 4 writes no eps. Native ``F.layer_norm``. ``normalized_shape`` (default: the last
    dimension) normalizes over several trailing dimensions, as ``torch.nn.LayerNorm``.
    """
    shape = (x.shape[-1],) if normalized_shape is None else tuple(normalized_shape)
    out = F.layer_norm(x, shape, affine_in(x, weight), affine_in(x, bias), eps)
    return as_input_dtype(out, x)


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
    return instance_norm_guarded(x, weight, bias, eps, running_mean, running_var, use_input_stats, momentum)


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
    gradient comes from the closed form in :class:`normcore._numerics._WeightStandardize` in eager mode; under
    ``torch.compile`` the plain formula is traced instead and autograd differentiates it (the compiler
    fuses its small kernels; torch 2.11's dynamo failed on the custom Function inside a ResNet with an
    AssertionError in ``handle_saved_tensors_wiring``). Low precision weights are standardized in
    float32 and returned in their own dtype.
    """
    formula = ws_formula(variant)
    eps = formula.eps if eps is None else eps
    w = weight.float() if weight.dtype in LOW_PRECISION else weight
    out = standardize_weight(w, formula, eps)
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
    return F.batch_norm(x, running_mean, running_var, fp32(weight), fp32(bias), False, 0.0, eps)


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
