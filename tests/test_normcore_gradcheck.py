"""float64 ``torch.autograd.gradcheck`` of every normcore op that is not a single native kernel.

Native kernels (``F.batch_norm``, ``F.group_norm``, ``F.layer_norm``) are PyTorch's to check; here
are the compositions normcore writes itself: weight standardization (each variant, and the WS convs
as modules), BCN's channel stage and the full layer, EstBN, virtual-device BN, and NormProp. The
SyncBatchNorm gathered path is checked in ``test_normcore_sync.py`` (it needs a process group).
Inputs are small and random, so no ReLU input sits within gradcheck's step (1e-6) of its kink.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import randomize_
from torch import nn
from torch.autograd import gradcheck
from torch.func import functional_call

import normcore as nc
from normcore import functional as Fn


def _rand(*shape, gen, requires_grad=True):
    return torch.randn(*shape, generator=gen, dtype=torch.float64).requires_grad_(requires_grad)


def _module_gradcheck(module: nn.Module, x: torch.Tensor, fresh_buffers: bool = False) -> None:
    """gradcheck of ``module`` w.r.t. its input and every parameter, in fast mode (random projections
    of the Jacobian: a few evaluations instead of two per input element; the functional ops are also
    checked element by element above). With ``fresh_buffers`` each call gets copies of the buffers, so
    state updated in forward (running estimates) cannot leak from one evaluation into the next."""
    names = [n for n, _ in module.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for _, p in module.named_parameters())
    buffers = {n: b.detach().clone() for n, b in module.named_buffers()}

    def f(x, *ps):
        state = dict(zip(names, ps))
        if fresh_buffers:
            state.update({n: b.clone() for n, b in buffers.items()})
        return functional_call(module, state, (x,))

    assert gradcheck(f, (x, *params), fast_mode=True)


# --------------------------------------------------------------------------------------------------
# Weight standardization
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", sorted(Fn.WS_VARIANTS))
@pytest.mark.parametrize("shape", [(4, 3, 3), (4, 2, 3, 3), (3, 2, 2, 2, 2)], ids=["1d", "2d", "3d"])
def test_weight_standardize_gradcheck(variant, shape, gen):
    # Weights at a realistic scale, where the eps placement matters (field notes §2.1).
    w = (_rand(*shape, gen=gen, requires_grad=False) * 0.1).requires_grad_()
    assert gradcheck(lambda w: Fn.weight_standardize(w, variant), (w,))


@pytest.mark.parametrize(
    ("variant", "dim"), [*((v, 2) for v in sorted(Fn.WS_VARIANTS)), ("official", 1), ("official", 3)]
)
def test_ws_conv_module_gradcheck(variant, dim, gen):
    conv = nc.build_conv("ws", 4, 6, 3, dim=dim, padding=1, groups=2, variant=variant).double()
    x = _rand(2, 4, *([3] * dim), gen=gen)
    _module_gradcheck(conv, x)


# --------------------------------------------------------------------------------------------------
# Batch-Channel Normalization and EstBN
# --------------------------------------------------------------------------------------------------
def test_bcn_channel_stage_gradcheck(gen):
    x = _rand(2, 6, 2, 2, gen=gen)
    gw = (1 + 0.3 * _rand(1, 3, 1, gen=gen, requires_grad=False)).requires_grad_()
    gb = _rand(1, 3, 1, gen=gen)
    assert gradcheck(lambda x, w, b: Fn.channel_norm(x, 3, w, b), (x, gw, gb))


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_bcn_layer_gradcheck(mode, gen):
    bcn = randomize_(nc.BatchChannelNorm(6, 3)).double()
    getattr(bcn, mode)()
    _module_gradcheck(bcn, _rand(4, 6, 3, 2, gen=gen), fresh_buffers=True)


def test_bcn_estimate_layer_gradcheck(gen):
    """estimate=True normalizes with running estimates that are updated under no_grad (official EstBN),
    so the differentiable function is the normalization with the estimates held fixed: eval mode, and
    training at moving speed 0 (same estimates in every evaluation)."""
    bcn = randomize_(nc.BatchChannelNorm(6, 3, estimate=True)).double()
    _module_gradcheck(bcn.eval(), _rand(4, 6, 3, 2, gen=gen), fresh_buffers=True)
    bcn.train().bn.set_moving_speed(0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # speed 0 warns once in training; that warning is tested elsewhere
        _module_gradcheck(bcn, _rand(4, 6, 3, 2, gen=gen), fresh_buffers=True)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_estimated_batchnorm_gradcheck(mode, gen):
    est = randomize_(nc.EstimatedBatchNorm(5)).double()
    getattr(est, mode)()
    if mode == "train":
        est.set_moving_speed(0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _module_gradcheck(est, _rand(3, 5, 2, 2, gen=gen), fresh_buffers=True)


@pytest.mark.parametrize("mode", ["mean", "first"])
def test_virtual_device_batchnorm_gradcheck(mode, gen):
    bn = randomize_(nc.BatchNorm(4, virtual_devices=3, virtual_running_stats=mode)).double()
    _module_gradcheck(bn, _rand(6, 4, 3, gen=gen), fresh_buffers=True)


# --------------------------------------------------------------------------------------------------
# NormProp
# --------------------------------------------------------------------------------------------------
def test_unbiased_batchnorm_gradcheck(gen):
    bn = randomize_(nc.BatchNorm(4, correction=1, virtual_devices=2)).double()
    _module_gradcheck(bn, _rand(4, 4, 3, gen=gen), fresh_buffers=True)


def test_normprop_linear_gradcheck(gen):
    x, w = _rand(3, 5, gen=gen), _rand(4, 5, gen=gen)
    gamma, beta = (1 + 0.3 * _rand(4, gen=gen, requires_grad=False)).requires_grad_(), _rand(4, gen=gen)
    assert gradcheck(Fn.normprop_linear, (x, w, gamma, beta))
    _module_gradcheck(nc.NormPropLinear(5, 4).double(), x)


def test_normprop_conv_gradcheck(gen):
    x, w = _rand(1, 2, 3, 3, gen=gen), _rand(4, 2, 3, 3, gen=gen)
    gamma, beta = (1 + 0.3 * _rand(4, gen=gen, requires_grad=False)).requires_grad_(), _rand(4, gen=gen)
    assert gradcheck(lambda *a: Fn.normprop_conv2d(*a, padding=1), (x, w, gamma, beta))
    _module_gradcheck(nc.NormPropConv2d(2, 4, 3, padding=1).double(), x)


def test_normprop_relu_gradcheck(gen):
    x = _rand(4, 6, gen=gen)
    assert (x.abs() > 1e-3).all()  # away from the kink, where the derivative is defined
    assert gradcheck(Fn.normprop_relu, (x,))
