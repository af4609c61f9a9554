r"""Numerical machinery behind :mod:`normcore.functional`: dtype and memory-format plumbing, the guards
that keep the native kernels exact for inputs with a large mean, and the hand-derived WS backward.

None of this changes a formula; each function computes what its caller in ``functional.py`` states,
with fewer rounding errors or fewer passes. Measured with torch 2.14 on CPU, float32, mean 1e4 and
std 1 (see the docstrings of :func:`normcore.functional.batch_norm` and ``group_norm``):

* the contiguous BN and GN kernels accumulate in float32 and are off by up to 2.4e-3; their returned
  statistics are checked (:func:`large_mean`) and a set with :math:`|\mu| / \sigma >` :data:`SHIFT_RATIO`
  is renormalized from ``x - shift``, which the normalization ignores ("shifted data" variance);
* the channels-last CPU kernels sum naively (BN) or use :math:`E[x^2] - E[x]^2` (GN), so they are
  checked at a lower ratio (BN) or always shifted (GN);
* on CUDA, under ``torch.compile`` or autocast nothing is checked (:func:`checks_statistics`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from normcore._validation import LOW_PRECISION

if TYPE_CHECKING:
    from normcore.functional import WSFormula

__all__ = [
    "SHIFT_RATIO",
    "affine_in",
    "as_input_dtype",
    "batch_norm_guarded",
    "channels_last_format",
    "fp32",
    "group_norm_guarded",
    "instance_norm_guarded",
    "standardize_weight",
]


# --------------------------------------------------------------------------------------------------
# dtype and memory format
# --------------------------------------------------------------------------------------------------
def as_input_dtype(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Return ``out`` in ``x``'s dtype (autocast runs group/layer norm in float32)."""
    return out if out.dtype == x.dtype else out.to(x.dtype)


def channels_last_format(x: torch.Tensor) -> torch.memory_format | None:
    """``torch.channels_last`` / ``torch.channels_last_3d`` if ``x`` is stored in that layout (and not
    also plainly contiguous, as tensors with C = 1 or one spatial position are), else ``None``."""
    if x.is_contiguous():
        return None
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    if x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.channels_last_3d
    return None


def affine_in(x: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor | None:
    """Affine parameters for the native GN/LN kernels: same dtype as the input, as the kernels need."""
    if t is None or t.dtype == x.dtype or torch.is_autocast_enabled(x.device.type):
        return t
    return t.to(x.dtype)


def fp32(t: torch.Tensor | None) -> torch.Tensor | None:
    """Low-precision parameters as float32 (the native BN kernels take fp32 params with fp16 input)."""
    if t is None or t.dtype not in LOW_PRECISION:
        return t
    return t.float()


# --------------------------------------------------------------------------------------------------
# the large-mean check
# --------------------------------------------------------------------------------------------------
SHIFT_RATIO = 1e3
r"""Above this :math:`|\mu| / \sigma` of a normalized set, float32 statistics lose more than ~1e-4 of the
output (values near :math:`\mu` are held only to :math:`\mu \cdot 6 \cdot 10^{-8}`), and normcore
recomputes them on the input minus a constant the normalization ignores (the "shifted data"
variance algorithm: :func:`_group_shift`, :func:`_batch_norm_shifted`)."""


def _first_position(x: torch.Tensor) -> torch.Tensor:
    """``x`` at its first spatial position, ``(N, C)``, without gradient."""
    return x[(slice(None), slice(None)) + (0,) * (x.dim() - 2)].detach()


def checks_statistics(x: torch.Tensor) -> bool:
    """Whether normcore checks a native kernel's statistics for a large mean (CPU, eager, not
    autocast, non-empty): on CUDA the check would synchronize, under ``torch.compile`` it would
    break the graph."""
    return (
        x.device.type == "cpu"
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
        and x.numel() > 0
    )


def large_mean(mean: torch.Tensor, rstd: torch.Tensor, threshold: float = SHIFT_RATIO) -> bool:
    r"""Whether some normalized set has :math:`|\mu| / \sigma >` ``threshold``."""
    ratio = mean.detach() * rstd.detach()  # (no autograd graph for the check)
    return torch.linalg.vector_norm(ratio, math.inf).item() > threshold


# --------------------------------------------------------------------------------------------------
# batch norm
# --------------------------------------------------------------------------------------------------
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
    """Training-mode native BN whose statistics are checked for a large mean.

    The contiguous kernel's statistics are accurate, so its running estimates are kept and only the
    output is recomputed. The channels-last kernel sums naively (mean off by ~1e-6 of itself, which
    also inflates the variance): it is checked at a ratio ten times lower, so that a variance inflated
    by that error cannot hide a large mean, and its running estimates are recomputed from the shifted
    input too."""
    channels_last = channels_last_format(x) is not None
    backup = None
    if channels_last and running_mean is not None and running_var is not None:
        backup = running_mean.clone(), running_var.clone()
    out, mean, invstd = torch.native_batch_norm(x, weight, bias, running_mean, running_var, True, momentum, eps)
    if not large_mean(mean, invstd, SHIFT_RATIO / 10 if channels_last else SHIFT_RATIO):
        return out
    if backup is None:
        return _batch_norm_shifted(x, None, None, weight, bias, momentum, eps)
    with torch.no_grad():
        running_mean.copy_(backup[0])  # type: ignore[union-attr]
        running_var.copy_(backup[1])  # type: ignore[union-attr]
    return _batch_norm_shifted(x, running_mean, running_var, weight, bias, momentum, eps)


def batch_norm_guarded(
    x: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    training: bool,
    momentum: float,
    eps: float,
) -> torch.Tensor:
    """``F.batch_norm`` with the large-mean check in training on CPU (see the module docstring)."""
    if not (training and checks_statistics(x) and x.numel() > x.shape[1]):
        return F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)
    return _batch_norm_checked(x, running_mean, running_var, weight, bias, momentum, eps)


# --------------------------------------------------------------------------------------------------
# group / instance norm
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


def group_norm_guarded(
    x: torch.Tensor, num_groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
) -> torch.Tensor:
    """``F.group_norm`` in the input's dtype and memory format, with the large-mean guards: CPU
    channels-last input is always shifted first; contiguous CPU input has its statistics checked;
    CUDA channels-last output (returned NCHW by the kernel, pytorch/pytorch#111824) is converted back."""
    w, b = affine_in(x, weight), affine_in(x, bias)
    fmt = channels_last_format(x)
    if fmt is not None and x.device.type == "cpu":
        return as_input_dtype(F.group_norm(x - _group_shift(x, num_groups), num_groups, w, b, eps), x)
    if fmt is not None:
        return group_norm_guarded(x.contiguous(), num_groups, weight, bias, eps).contiguous(memory_format=fmt)
    if not checks_statistics(x):
        return as_input_dtype(F.group_norm(x, num_groups, w, b, eps), x)
    n, c = x.shape[:2]
    out, mean, rstd = torch.native_group_norm(x, w, b, n, c, math.prod(x.shape[2:]), num_groups, eps)
    if large_mean(mean, rstd):
        out = F.group_norm(x - _group_shift(x, num_groups), num_groups, w, b, eps)
    return as_input_dtype(out, x)


def instance_norm_guarded(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    use_input_stats: bool,
    momentum: float,
) -> torch.Tensor:
    """``F.instance_norm`` with running statistics, on CPU of ``x`` minus its first position per
    instance (IN ignores the constant; the running mean gets it back): the kernel behind it is
    contiguous BN's, see :func:`batch_norm_guarded`. Keeps channels_last."""
    shift = None
    if use_input_stats and checks_statistics(x):
        shift = _first_position(x)
        x = x - shift.view(shift.shape + (1,) * (x.dim() - 2))
    shifted_mean = running_mean if shift is None or running_mean is None else running_mean.clone()  # see BN's
    out = F.instance_norm(x, shifted_mean, running_var, fp32(weight), fp32(bias), use_input_stats, momentum, eps)
    if shift is not None and running_mean is not None and shifted_mean is not None:
        with torch.no_grad():  # each instance's mean moved by its shift; the variances did not
            running_mean.copy_(shifted_mean + momentum * shift.mean(dim=0).to(running_mean.dtype))
    fmt = channels_last_format(x)
    return out if fmt is None else out.contiguous(memory_format=fmt)


# --------------------------------------------------------------------------------------------------
# weight standardization
# --------------------------------------------------------------------------------------------------
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

    A constant filter (eps outside, so t = 0) has :math:`\hat W = 0`: the second term is 0 there, as
    autograd's derivative of ``std`` at 0 makes it in the official code (not 0/0 = NaN).

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
        root = torch.where(root > 0, root, 1.0)  # a constant filter: sum(g * out) is 0 there
        coef = (g * out).sum(dim=dims, keepdim=True) / (n * root)
        grad = (g - g.mean(dim=dims, keepdim=True)) / denom
        return grad.sub_(out * coef), None, None


def standardize_weight(w: torch.Tensor, formula: WSFormula, eps: float) -> torch.Tensor:
    """The standardized weight: through :class:`_WeightStandardize` in eager mode when a gradient is
    needed; under ``torch.compile`` (and ``torch.jit.trace``) the plain formula is traced instead and
    autograd differentiates it
    (the compiler fuses its small kernels; torch 2.11's dynamo failed on the custom Function inside a
    ResNet with an AssertionError in ``handle_saved_tensors_wiring``)."""
    traced = torch.compiler.is_compiling() or torch.jit.is_tracing()
    if torch.is_grad_enabled() and w.requires_grad and not traced:
        return _WeightStandardize.apply(w, formula, eps)[0]
    return _standardize(w, formula, eps)[0]
