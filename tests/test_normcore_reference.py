"""Every normcore layer against :mod:`normcore.reference`, the papers' equations in plain float64.

Each layer runs in float32 and float64 on several shapes, in training and eval where they differ, with
random affine parameters and running statistics (``conftest.randomize_``). Tolerance: float64 layers
agree with the float64 reference to 1e-10; float32 layers to 2e-5 absolute and relative (the inputs
are O(1), the outputs O(1): a few float32 roundings of the statistics).
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import randomize_
from torch.testing import assert_close

import normcore as nc
from normcore import reference as R

DTYPES = [torch.float32, torch.float64]
SHAPES = [(4, 8), (3, 8, 7), (2, 8, 5, 6), (2, 8, 3, 4, 2)]
SPATIAL_SHAPES = [s for s in SHAPES if len(s) > 2]


def _tol(dtype: torch.dtype) -> dict[str, float]:
    return {"atol": 1e-10, "rtol": 1e-10} if dtype == torch.float64 else {"atol": 2e-5, "rtol": 2e-5}


def _x(shape, dtype, seed=0, mean=0.5):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * 1.5 + mean).to(dtype)


def _check(out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype) -> None:
    assert out.dtype == dtype
    assert_close(out.double(), ref, **_tol(dtype))


def _layer(module: torch.nn.Module, dtype: torch.dtype, seed: int = 0) -> torch.nn.Module:
    return randomize_(module, seed).to(dtype)


# --------------------------------------------------------------------------------------------------
# BN family
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{len(s)}d")
@pytest.mark.parametrize("correction", [0, 1])
def test_batchnorm_train_eval_and_running_stats(shape, dtype, correction):
    bn = _layer(nc.BatchNorm(8, momentum=0.3, correction=correction), dtype)
    mean0, var0 = bn.running_mean.clone(), bn.running_var.clone()
    x = _x(shape, dtype)
    _check(bn.train()(x), R.batch_norm_train(x, bn.weight, bn.bias, bn.eps, correction=correction), dtype)
    new_mean, new_var = R.running_stats_update(x, mean0, var0, 0.3)
    assert_close(bn.running_mean.double(), new_mean, **_tol(dtype))
    assert_close(bn.running_var.double(), new_var, **_tol(dtype))
    x2 = _x(shape, dtype, seed=1)
    _check(bn.eval()(x2), R.batch_norm_eval(x2, bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.eps), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_without_bias_and_virtual_devices(dtype):
    """``bias=False`` keeps gamma only; ``virtual_devices=2`` is the reference on each half."""
    bn = _layer(nc.BatchNorm(8, bias=False), dtype)
    x = _x((4, 8, 3, 3), dtype)
    _check(bn(x), R.batch_norm_train(x, bn.weight, None), dtype)
    virtual = _layer(nc.BatchNorm(8, virtual_devices=2), dtype)
    ref = torch.cat([R.batch_norm_train(h, virtual.weight, virtual.bias) for h in x.chunk(2)])
    _check(virtual(x), ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{len(s)}d")
def test_sync_batchnorm_single_process_and_frozen_bn(shape, dtype):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no process group: SyncBatchNorm is BatchNorm, with a warning
        sync = _layer(nc.SyncBatchNorm(8), dtype)
        x = _x(shape, dtype)
        _check(sync(x), R.batch_norm_train(x, sync.weight, sync.bias), dtype)
    frozen = _layer(nc.FrozenBatchNorm(8), dtype)
    for mode in (True, False):
        frozen.train(mode)
        ref = R.batch_norm_eval(x, frozen.running_mean, frozen.running_var, frozen.weight, frozen.bias, frozen.eps)
        _check(frozen(x), ref, dtype)


# --------------------------------------------------------------------------------------------------
# GN, LN, IN
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{len(s)}d")
@pytest.mark.parametrize("groups", [1, 2, 8])
def test_groupnorm_is_eq_1_to_3_with_the_set_s_i(shape, groups, dtype):
    if len(shape) == 2 and groups == 8:
        pytest.skip("one value per group: normcore raises (pytorch/pytorch#19250), tested in test_normcore_errors")
    gn = _layer(nc.GroupNorm(8, groups), dtype)
    x = _x(shape, dtype, mean=3.0)
    for mode in (True, False):  # no running statistics: the same in both modes
        _check(gn.train(mode)(x), R.group_norm(x, groups, gn.weight, gn.bias, gn.eps), dtype)
    no_bias = _layer(nc.GroupNorm(8, groups, bias=False), dtype)
    _check(no_bias(x), R.group_norm(x, groups, no_bias.weight, None), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{len(s)}d")
def test_layernorm_is_group_norm_with_one_group(shape, dtype):
    ln = _layer(nc.LayerNorm(8), dtype)
    x = _x(shape, dtype)
    _check(ln(x), R.layer_norm(x, ln.weight, ln.bias, ln.eps), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 8), (3, 5, 8), (2, 3, 4, 8)], ids=lambda s: f"{len(s)}d")
def test_feature_layernorm_is_the_ln_paper_eq_4(shape, dtype):
    ln = _layer(nc.FeatureLayerNorm(8), dtype)
    x = _x(shape, dtype)
    _check(ln(x), R.feature_layer_norm(x, ln.weight, ln.bias, ln.eps), dtype)
    multi = _layer(nc.FeatureLayerNorm(shape[-2:], bias=False), dtype)  # nn.LayerNorm's normalized_shape
    _check(multi(x), R.feature_layer_norm(x, multi.weight, None, normalized_shape=shape[-2:]), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SPATIAL_SHAPES, ids=lambda s: f"{len(s)}d")
def test_instancenorm_train_eval_tracked_and_unbatched(shape, dtype):
    x = _x(shape, dtype, mean=2.0)
    inorm = _layer(nc.InstanceNorm(8), dtype)
    for mode in (True, False):
        _check(inorm.train(mode)(x), R.instance_norm(x, inorm.weight, inorm.bias, inorm.eps), dtype)
    tracked = _layer(nc.InstanceNorm(8, track_running_stats=True), dtype)
    _check(tracked.train()(x), R.instance_norm(x, tracked.weight, tracked.bias), dtype)
    ref_eval = R.batch_norm_eval(x, tracked.running_mean, tracked.running_var, tracked.weight, tracked.bias)
    _check(tracked.eval()(x), ref_eval, dtype)  # tracked IN in eval is a BN with the running estimates
    unbatched = _layer(nc.InstanceNorm(8, spatial_dims=len(shape) - 2), dtype)
    _check(unbatched(x[0]), R.instance_norm(x[:1], unbatched.weight, unbatched.bias)[0], dtype)


# --------------------------------------------------------------------------------------------------
# BCN, EstBN
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SPATIAL_SHAPES, ids=lambda s: f"{len(s)}d")
def test_batch_channel_norm_train_and_eval(shape, dtype):
    x = _x(shape, dtype)
    for training in (True, False):
        bcn = _layer(nc.BatchChannelNorm(8, 4), dtype).train(training)
        bn = bcn.bn
        ref = R.batch_channel_norm(
            x, 4, training=training, running_mean=bn.running_mean, running_var=bn.running_var,
            bn_gamma=bn.weight, bn_beta=bn.bias, group_gamma=bcn.weight, group_beta=bcn.bias,
        )  # fmt: skip
        _check(bcn(x), ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SPATIAL_SHAPES, ids=lambda s: f"{len(s)}d")
def test_estimated_batch_norm_and_bcn_with_estimate(shape, dtype):
    est = _layer(nc.EstimatedBatchNorm(8, moving_speed=0.25), dtype)  # a speed exact in float32 (the buffer)
    x = _x(shape, dtype, mean=1.0)
    mean0, var0 = est.running_mean.clone(), est.running_var.clone()
    y_ref, m_ref, v_ref = R.estimated_batch_norm(x, mean0, var0, est.weight, est.bias, training=True, speed=0.25)
    _check(est.train()(x), y_ref, dtype)
    assert_close(est.running_mean.double(), m_ref, **_tol(dtype))
    assert_close(est.running_var.double(), v_ref, **_tol(dtype))
    y_eval, _, _ = R.estimated_batch_norm(x, m_ref, v_ref, est.weight, est.bias, training=False, speed=0.25)
    _check(est.eval()(x), y_eval, dtype)
    bcn = _layer(nc.BatchChannelNorm(8, 2, estimate=True, moving_speed=0.25), dtype).eval()
    stage = R.estimated_batch_norm(
        x, bcn.bn.running_mean, bcn.bn.running_var, bcn.bn.weight, bcn.bn.bias, training=False, speed=0.25
    )[0]
    gamma = bcn.weight.reshape(-1).repeat_interleave(4)
    beta = bcn.bias.reshape(-1).repeat_interleave(4)
    _check(bcn(x), R.group_norm(stage, 2, gamma, beta), dtype)


# --------------------------------------------------------------------------------------------------
# WS, NormProp
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", sorted(nc.functional.WS_VARIANTS))
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_ws_convs_standardize_as_the_reference(variant, dim, dtype):
    cls = {1: nc.WSConv1d, 2: nc.WSConv2d, 3: nc.WSConv3d}[dim]
    torch.manual_seed(0)
    conv = cls(4, 6, 3, padding=1, variant=variant).to(dtype)
    x = _x((2, 4) + (5,) * dim, dtype)
    w_ref = R.weight_standardize(conv.weight, variant)
    conv_fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[dim]
    expected = conv_fn(x.double(), w_ref, conv.bias.double(), padding=1)
    for mode in (True, False):
        _check(conv.train(mode)(x), expected, dtype)
    custom_eps = cls(4, 6, 3, variant=variant, eps=1e-3).to(dtype)
    _check(custom_eps.standardized_weight(), R.weight_standardize(custom_eps.weight, variant, 1e-3), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_normprop_layers_follow_the_reference(dtype):
    torch.manual_seed(0)
    lin = nc.NormPropLinear(6, 5).to(dtype)
    with torch.no_grad():
        lin.gamma.uniform_(0.5, 1.5)
        lin.bias.uniform_(-0.5, 0.5)
    x = _x((4, 6), dtype)
    _check(lin(x), R.normprop_linear(x, lin.weight, lin.gamma, lin.bias), dtype)
    conv = nc.NormPropConv2d(3, 5, 3, padding=1).to(dtype)
    with torch.no_grad():
        conv.gamma.uniform_(0.5, 1.5)
        conv.bias.uniform_(-0.5, 0.5)
    xc = _x((2, 3, 6, 6), dtype)
    expected = F.conv2d(xc.double(), R.normprop_conv_weight(conv.weight, conv.gamma), conv.bias.double(), padding=1)
    _check(conv(xc), expected, dtype)
    _check(nc.NormPropReLU()(x), R.normprop_relu(x), dtype)


def test_reference_is_the_closed_form_on_hand_checked_values():
    """The reference itself on numbers worked out by hand: BN of [1, 2, 3, 4] (mean 2.5, biased
    variance 1.25), the unbiased running variance 5/3, GN's set S_i picking channels {0, 1} and {2, 3},
    the NormProp ReLU constants."""
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(4, 1)
    assert_close(R.batch_norm_train(x, eps=0.0).flatten(), (x.flatten().double() - 2.5) / 1.25**0.5)
    _, var = R.running_stats_update(x, torch.zeros(1), torch.zeros(1), 1.0)
    assert_close(var, torch.tensor([5 / 3], dtype=torch.float64))
    g = torch.tensor([[1.0, 3.0, 10.0, 30.0]])  # groups {1, 3} and {10, 30}: each normalizes to -1, 1
    assert_close(R.group_norm(g, 2, eps=0.0), torch.tensor([[-1.0, 1.0, -1.0, 1.0]], dtype=torch.float64))
    z = torch.randn(400_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = R.normprop_relu(z)
    assert abs(out.mean().item()) < 5e-3 and abs(out.std().item() - 1) < 5e-3
