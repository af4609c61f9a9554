r"""The six papers' methods written as their equations: plain float64 torch, no native kernels, no
numerical guards. Slow and obvious on purpose: the tests compare every normcore layer against these
(tests/test_normcore_reference.py), besides the native modules.

Every function takes tensors of any float dtype, computes in float64 and returns float64. Inputs are
channels first, ``(N, C, *)``. Nothing is modified in place: functions that update running estimates
return the new ones.

Papers (arXiv): BN 1502.03167, LN 1607.06450, IN 1607.08022, GN 1803.08494, WS/BCN 1903.10520,
NormProp 1603.01431. Official code: joe-siyuan-qiao/WeightStandardization,
joe-siyuan-qiao/Batch-Channel-Normalization.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "batch_channel_norm",
    "batch_norm_eval",
    "batch_norm_train",
    "estimated_batch_norm",
    "feature_layer_norm",
    "group_norm",
    "instance_norm",
    "layer_norm",
    "normprop_conv_weight",
    "normprop_linear",
    "normprop_relu",
    "running_stats_update",
    "weight_standardize",
]

Tensor = torch.Tensor


def _f64(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.double()


def _per_channel(t: Tensor, ndim: int) -> Tensor:
    """A per-channel vector ``(C,)`` shaped to broadcast against ``(N, C, *)`` of ``ndim`` dims."""
    return t.reshape((1, -1) + (1,) * (ndim - 2))


def _affine(y: Tensor, gamma: Tensor | None, beta: Tensor | None) -> Tensor:
    r""":math:`\gamma y + \beta` with per-channel ``gamma``/``beta`` (either may be absent)."""
    if gamma is not None:
        y = _per_channel(_f64(gamma), y.dim()) * y
    if beta is not None:
        y = y + _per_channel(_f64(beta), y.dim())
    return y


def _batch_dims(x: Tensor) -> list[int]:
    """The dims BN averages over: the batch and every spatial position, all but the channel."""
    return [0, *range(2, x.dim())]


# --------------------------------------------------------------------------------------------------
# Batch Normalization: BN paper, Algorithm 1 (training) and Algorithm 2 / §3.1 (inference)
# --------------------------------------------------------------------------------------------------
def batch_norm_train(
    x: Tensor, gamma: Tensor | None = None, beta: Tensor | None = None, eps: float = 1e-5, correction: int = 0
) -> Tensor:
    r"""BN Algorithm 1 over the m = N·H·W values of each channel:

    .. math:: \mu_B = \frac1m \sum_i x_i,\quad \sigma_B^2 = \frac1m \sum_i (x_i - \mu_B)^2,\quad
              \hat x_i = \frac{x_i - \mu_B}{\sqrt{\sigma_B^2 + \epsilon}},\quad y_i = \gamma \hat x_i + \beta

    ``correction=1`` divides the variance by m - 1 instead (the BN the LN paper compares against, §6.6).
    """
    x = _f64(x)
    dims = _batch_dims(x)
    m = x.numel() // x.shape[1]
    mu = x.mean(dim=dims, keepdim=True)
    var = ((x - mu) ** 2).sum(dim=dims, keepdim=True) / (m - correction)
    return _affine((x - mu) / torch.sqrt(var + eps), gamma, beta)


def running_stats_update(
    x: Tensor, running_mean: Tensor, running_var: Tensor, momentum: float
) -> tuple[Tensor, Tensor]:
    r"""The running estimates after one training batch (BN §3.1, as ``nn.BatchNorm2d``):
    :math:`\hat\mu \leftarrow (1 - \alpha)\hat\mu + \alpha\mu_B`,
    :math:`\hat\sigma^2 \leftarrow (1 - \alpha)\hat\sigma^2 + \alpha \frac{m}{m-1}\sigma_B^2`
    (the **unbiased** batch variance, BN §3.1: :math:`Var[x] = \frac{m}{m-1} E_B[\sigma_B^2]`)."""
    x = _f64(x)
    dims = _batch_dims(x)
    m = x.numel() // x.shape[1]
    mu = x.mean(dim=dims)
    unbiased = ((x - _per_channel(mu, x.dim())) ** 2).sum(dim=dims) / (m - 1)
    return (1 - momentum) * _f64(running_mean) + momentum * mu, (1 - momentum) * _f64(running_var) + momentum * unbiased


def batch_norm_eval(
    x: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    gamma: Tensor | None = None,
    beta: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    r"""BN at inference (Algorithm 2), also BN\* (frozen BN, GN §4.2):
    :math:`y = \gamma \frac{x - \hat\mu}{\sqrt{\hat\sigma^2 + \epsilon}} + \beta`."""
    x = _f64(x)
    mean, var = _per_channel(_f64(running_mean), x.dim()), _per_channel(_f64(running_var), x.dim())
    return _affine((x - mean) / torch.sqrt(var + eps), gamma, beta)


# --------------------------------------------------------------------------------------------------
# Group, Layer and Instance Normalization: GN paper §3.1, Eq. (1)-(4); LN paper §3; IN paper §2
# --------------------------------------------------------------------------------------------------
def group_norm(
    x: Tensor, num_groups: int, gamma: Tensor | None = None, beta: Tensor | None = None, eps: float = 1e-5
) -> Tensor:
    r"""GN Eq. (1)-(3) with the set written out: for sample n, channel i belongs to group
    :math:`k = \lfloor i / (C/G) \rfloor`, and

    .. math:: S_i = \{j : j_N = i_N,\ \lfloor j_C / (C/G) \rfloor = \lfloor i_C / (C/G) \rfloor\},\quad
              \mu_i = \frac{1}{m}\sum_{j \in S_i} x_j,\quad
              \sigma_i^2 = \frac{1}{m}\sum_{j \in S_i} (x_j - \mu_i)^2,\quad
              y_i = \gamma_{i_C} \frac{x_i - \mu_i}{\sqrt{\sigma_i^2 + \epsilon}} + \beta_{i_C}

    (biased variance, per-channel affine, Eq. 4)."""
    x = _f64(x)
    n, c = x.shape[:2]
    group_of = torch.arange(c) // (c // num_groups)  # k = floor(i_C / (C/G))
    y = torch.empty_like(x)
    for sample in range(n):
        for k in range(num_groups):
            s_i = x[sample, group_of == k]  # the set S_i: this sample's channels of group k, all positions
            mu = s_i.sum() / s_i.numel()
            var = ((s_i - mu) ** 2).sum() / s_i.numel()
            y[sample, group_of == k] = (s_i - mu) / torch.sqrt(var + eps)
    return _affine(y, gamma, beta)


def layer_norm(x: Tensor, gamma: Tensor | None = None, beta: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    r"""LN for conv feature maps as the GN paper defines it (§3.1: "GN becomes LN if we set G = 1"):
    statistics over all of :math:`(C, *)` of one sample, per-channel affine."""
    return group_norm(x, 1, gamma, beta, eps)


def feature_layer_norm(
    x: Tensor,
    gain: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
    normalized_shape: tuple[int, ...] | None = None,
) -> Tensor:
    r"""LN paper §3, Eq. (3)-(4), over the H hidden units of the last dimension (or the trailing
    ``normalized_shape``):

    .. math:: \mu = \frac1H \sum_i a_i,\quad \sigma = \sqrt{\frac1H \sum_i (a_i - \mu)^2 + \epsilon},\quad
              h = g \odot \frac{a - \mu}{\sigma} + b

    (eps inside the root as the official code; the paper writes none); elementwise gain and bias."""
    x = _f64(x)
    k = 1 if normalized_shape is None else len(normalized_shape)
    dims = list(range(x.dim() - k, x.dim()))
    h = math.prod(x.shape[x.dim() - k :])
    mu = x.sum(dim=dims, keepdim=True) / h
    sigma = torch.sqrt(((x - mu) ** 2).sum(dim=dims, keepdim=True) / h + eps)
    out = (x - mu) / sigma
    if gain is not None:
        out = _f64(gain) * out
    if bias is not None:
        out = out + _f64(bias)
    return out


def instance_norm(x: Tensor, gamma: Tensor | None = None, beta: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    r"""IN §2: for image t and channel i, over the spatial positions (j, k) of that image and channel,

    .. math:: \mu_{ti} = \frac{1}{HW}\sum_{j,k} x_{tijk},\quad
              \sigma_{ti}^2 = \frac{1}{HW}\sum_{j,k} (x_{tijk} - \mu_{ti})^2,\quad
              y_{tijk} = \gamma_i \frac{x_{tijk} - \mu_{ti}}{\sqrt{\sigma_{ti}^2 + \epsilon}} + \beta_i"""
    x = _f64(x)
    dims = list(range(2, x.dim()))
    hw = math.prod(x.shape[2:])
    mu = x.sum(dim=dims, keepdim=True) / hw
    var = ((x - mu) ** 2).sum(dim=dims, keepdim=True) / hw
    return _affine((x - mu) / torch.sqrt(var + eps), gamma, beta)


# --------------------------------------------------------------------------------------------------
# Weight Standardization: WS §3 as the official code computes it
# --------------------------------------------------------------------------------------------------
def weight_standardize(weight: Tensor, variant: str = "official", eps: float | None = None) -> Tensor:
    r"""Each output filter :math:`W_i` (its :math:`n = C_{in} \prod k` weights) standardized:

    * ``"official"`` (the WS README's PyTorch code): :math:`(W_i - \mu_i) / (s_i + \epsilon)`, with
      :math:`s_i = \sqrt{\frac{1}{n-1}\sum_j (W_{ij} - \mu_i)^2}` (unbiased std), eps = 1e-5;
    * ``"official_tf"`` (the README's TensorFlow snippet): the same with the biased std (1/n);
    * ``"bcn"`` (BCN repository ImageNet code, mmcv ConvAWS2d): :math:`(W_i - \mu_i) / \sqrt{v_i + \epsilon}`
      with the unbiased variance :math:`v_i`;
    * ``"biased"`` (timm StdConv2d, BiT): :math:`(W_i - \mu_i) / \sqrt{v_i + \epsilon}`, biased :math:`v_i`.
    """
    unbiased, inside = {
        "official": (True, False),
        "official_tf": (False, False),
        "bcn": (True, True),
        "biased": (False, True),
    }[variant]
    eps = 1e-5 if eps is None else eps
    w = _f64(weight)
    flat = w.reshape(w.shape[0], -1)
    n = flat.shape[1]
    mu = flat.sum(dim=1, keepdim=True) / n
    v = ((flat - mu) ** 2).sum(dim=1, keepdim=True) / (n - 1 if unbiased else n)
    divisor = torch.sqrt(v + eps) if inside else torch.sqrt(v) + eps
    return ((flat - mu) / divisor).reshape(w.shape)


# --------------------------------------------------------------------------------------------------
# Batch-Channel Normalization and Estimated BN: WS/BCN paper §5, as the official BCNorm / EstBN
# --------------------------------------------------------------------------------------------------
def batch_channel_norm(
    x: Tensor,
    num_groups: int,
    *,
    training: bool,
    running_mean: Tensor | None = None,
    running_var: Tensor | None = None,
    bn_gamma: Tensor | None = None,
    bn_beta: Tensor | None = None,
    group_gamma: Tensor | None = None,
    group_beta: Tensor | None = None,
    eps: float = 1e-5,
    bn_eps: float = 1e-5,
) -> Tensor:
    r"""The official ``BCNorm``: BN (batch statistics in training, running ones in eval; per-channel
    affine), then per-sample group normalization of the result with a **per-group** affine
    :math:`\gamma_k, \beta_k` (parameter shape ``(1, G, 1)`` in the official code):

    .. math:: \dot x = \mathrm{BN}(x),\qquad y_i = \gamma_k \frac{\dot x_i - \mu_{S_i}}{\sqrt{\sigma_{S_i}^2
              + \epsilon}} + \beta_k,\quad k = \lfloor i_C / (C/G) \rfloor"""
    if training:
        bn = batch_norm_train(x, bn_gamma, bn_beta, bn_eps)
    else:
        bn = batch_norm_eval(x, running_mean, running_var, bn_gamma, bn_beta, bn_eps)  # type: ignore[arg-type]
    y = group_norm(bn, num_groups, eps=eps)
    group_of = torch.arange(x.shape[1]) // (x.shape[1] // num_groups)
    if group_gamma is not None:
        y = _per_channel(_f64(group_gamma).reshape(-1)[group_of], y.dim()) * y
    if group_beta is not None:
        y = y + _per_channel(_f64(group_beta).reshape(-1)[group_of], y.dim())
    return y


def estimated_batch_norm(
    x: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    gamma: Tensor | None = None,
    beta: Tensor | None = None,
    *,
    training: bool,
    speed: float,
    eps: float = 1e-5,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""The official ``EstBN``: in training, first update the estimates with speed s,
    :math:`\hat\mu' = (1-s)\hat\mu + s\,\mu_B` and
    :math:`\hat\sigma'^2 = (1-s)\hat\sigma^2 + s\,\frac1m\sum_i (x_i - \hat\mu)^2` (biased, centred on the
    estimate **before** its update); then, in training and eval,
    :math:`y = \gamma (x - \hat\mu') / \sqrt{\hat\sigma'^2 + \epsilon} + \beta`.
    Returns ``(y, new_running_mean, new_running_var)``."""
    x, mean, var = _f64(x), _f64(running_mean), _f64(running_var)
    if training and x.numel() > 0:
        dims = _batch_dims(x)
        m = x.numel() // x.shape[1]
        batch_mean = x.sum(dim=dims) / m
        batch_var = ((x - _per_channel(mean, x.dim())) ** 2).sum(dim=dims) / m
        mean, var = (1 - speed) * mean + speed * batch_mean, (1 - speed) * var + speed * batch_var
    return batch_norm_eval(x, mean, var, gamma, beta, eps), mean, var


# --------------------------------------------------------------------------------------------------
# Normalization Propagation: NormProp §3-4
# --------------------------------------------------------------------------------------------------
def normprop_linear(x: Tensor, weight: Tensor, gamma: Tensor | None, beta: Tensor | None) -> Tensor:
    r"""A NormProp layer's pre-activation: :math:`u_i = \gamma_i \frac{W_i^T x}{\lVert W_i \rVert_2} + \beta_i`."""
    x, w = _f64(x), _f64(weight)
    norms = torch.sqrt((w**2).sum(dim=1))
    u = (x @ w.T) / norms
    if gamma is not None:
        u = _f64(gamma) * u
    return u if beta is None else u + _f64(beta)


def normprop_conv_weight(weight: Tensor, gamma: Tensor | None) -> Tensor:
    r"""A NormProp conv's effective filters: each filter :math:`W_i` (over :math:`C_{in} \prod k`)
    divided by its L2 norm and scaled by :math:`\gamma_i`; the conv then adds :math:`\beta_i`."""
    w = _f64(weight)
    norms = torch.sqrt((w.reshape(w.shape[0], -1) ** 2).sum(dim=1)).reshape((-1,) + (1,) * (w.dim() - 1))
    scale = 1.0 if gamma is None else _f64(gamma).reshape(norms.shape)
    return scale * w / norms


def normprop_relu(x: Tensor) -> Tensor:
    r"""ReLU re-normalized with the closed-form moments of a rectified standard normal (NormProp §3):

    .. math:: \frac{\max(0, u) - \sqrt{1/(2\pi)}}{\sqrt{\frac12 (1 - \frac1\pi)}}"""
    x = _f64(x)
    return (torch.clamp(x, min=0.0) - math.sqrt(1 / (2 * math.pi))) / math.sqrt(0.5 * (1 - 1 / math.pi))
