"""Precision and layout: float16/bfloat16 inputs, autocast, inputs with a large mean (the cancellation
cases of field notes §1), float32 statistics under ``model.half()``, and channels_last in/out, for
every normcore layer (the ``norm_case`` / ``conv_case`` fixtures of conftest.py)."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from conftest import CONV_LAYERS, NORM_LAYERS
from torch import nn
from torch.testing import assert_close

import normcore as nc

LOW = [torch.float16, torch.bfloat16]
# Low-precision tolerance against the float32 computation of the same (already rounded) input.
# float16: PyTorch's own GroupNorm half test uses atol = rtol = 5e-3 (field notes §4). bfloat16 keeps 8
# significant bits (unit roundoff u = 2^-8 = 3.9e-3): rounding the output alone costs up to u*|y|, so
# outputs up to |y| ~ 4 differ by up to 1.6e-2 (measured 1.56e-2); atol = rtol = 2e-2 is ~5u.
LOW_TOL = {torch.float16: {"atol": 5e-3, "rtol": 5e-3}, torch.bfloat16: {"atol": 2e-2, "rtol": 2e-2}}
BN_FAMILY = {"bn", "bn_virtual", "sync_bn"}
NUM_C = 8


def _x(shape=(4, NUM_C, 6, 6), mean=0.0, std=1.0, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=gen, dtype=torch.float64) * std + mean).to(dtype)


@pytest.fixture(autouse=True)
def _quiet_sync_bn():
    """SyncBatchNorm warns (once) that no process group exists; that warning is tested in
    test_normcore_sync.py."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="SyncBatchNorm: no torch.distributed process group")
        yield


# --------------------------------------------------------------------------------------------------
# float16 / bfloat16 / autocast
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("dtype", LOW, ids=["fp16", "bf16"])
def test_low_precision_input_keeps_dtype_and_matches_float32(norm_case, dtype, mode):
    """Float32 layer, low-precision input: output in the input dtype, finite, and close to the float32
    computation of the same input values (statistics are float32 inside)."""
    _, make = norm_case
    layer = getattr(make(NUM_C), mode)()
    ref = copy.deepcopy(layer)
    x = _x(mean=1.0, std=2.0, dtype=dtype)
    y = layer(x)
    assert y.dtype == dtype
    assert torch.isfinite(y).all()
    assert_close(y.float(), ref(x.float()), **LOW_TOL[dtype])


@pytest.mark.parametrize("dtype", LOW, ids=["fp16", "bf16"])
def test_low_precision_conv_layers(conv_case, dtype):
    """WS / NormProp convs cast to the dtype (as nn.Conv2d needs) keep it, and agree with the float32
    layer on the same values to the dtype's tolerance relative to the output scale (the reparametrized
    weight is computed in float32, then rounded)."""
    _, make = conv_case
    torch.manual_seed(0)
    layer = make(NUM_C, NUM_C)
    ref = copy.deepcopy(layer)
    layer = layer.to(dtype)
    x = _x(dtype=dtype)
    y = layer(x)
    assert y.dtype == dtype and torch.isfinite(y).all()
    expected = ref(x.float())
    scale = expected.abs().max()
    assert_close(y.float() / scale, expected / scale, **LOW_TOL[dtype])


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32_in", "bf16_in"])
def test_autocast_bfloat16_output_follows_the_input(norm_case, dtype, mode):
    """Under torch.autocast("cpu", bfloat16) (which runs some norms in float32) every norm returns the
    input's dtype, with finite values close to the same layer outside autocast."""
    _, make = norm_case
    layer = getattr(make(NUM_C), mode)()
    ref = copy.deepcopy(layer)
    x = _x(mean=1.0, dtype=dtype)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == dtype
    assert_close(y.float(), ref(x).float(), **LOW_TOL[torch.bfloat16])


def test_autocast_feature_layernorm_and_convs_follow_torch():
    x = _x((4, 5, NUM_C))
    fln = nc.FeatureLayerNorm(NUM_C)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fln(x).dtype == torch.float32
        assert fln(x.bfloat16()).dtype == torch.bfloat16
        plain = nn.Conv2d(NUM_C, NUM_C, 3)(_x())
        for make in CONV_LAYERS.values():
            assert make(NUM_C, NUM_C)(_x()).dtype == plain.dtype == torch.bfloat16


# --------------------------------------------------------------------------------------------------
# large means: the one-pass E[x^2] - E[x]^2 cancellation
# --------------------------------------------------------------------------------------------------
def _normalization_groups(name: str, y: torch.Tensor) -> torch.Tensor:
    """Rows = the sets of values each layer normalizes together (in float64)."""
    n, c = y.shape[:2]
    y = y.double()
    if name in ("bn", "sync_bn", "frozen_bn", "est_bn"):
        return y.transpose(0, 1).reshape(c, -1)
    if name == "bn_virtual":  # 2 virtual devices
        return y.reshape(2, n // 2, c, -1).transpose(1, 2).reshape(2 * c, -1)
    if name in ("gn", "bcn", "bcn_estimate"):  # 4 groups
        return y.reshape(n * 4, -1)
    if name == "ln":
        return y.reshape(n, -1)
    return y.reshape(n * c, -1)  # instance norms


def _fit_statistics(name: str, layer: nn.Module, x: torch.Tensor) -> None:
    """Layers that normalize with stored statistics get those of this batch: FrozenBN directly, EstBN
    by two steps at moving speed 1 (the second centres the variance on the right mean)."""
    if name == "frozen_bn":
        with torch.no_grad():
            layer.running_mean.copy_(x.double().mean(dim=(0, 2, 3)))
            layer.running_var.copy_(x.double().var(dim=(0, 2, 3), unbiased=False))
    est = layer if name == "est_bn" else getattr(layer, "bn", None) if name == "bcn_estimate" else None
    if est is not None:
        est.set_moving_speed(1.0)
        est(x)
        est(x)


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("mean", [1e4, 2000.0], ids=["mean1e4", "mean2000"])
@pytest.mark.parametrize("name", sorted(NORM_LAYERS))
def test_large_mean_inputs_normalize_in_float32(name, mean, channels_last):
    """Input N(mean, 1) in float32 (layers at their initial affine): each normalized set has mean 0
    and std 1 within 1e-3 (the issue's bound). A one-pass variance would give garbage here (field notes:
    mean 2000 -> variance 30822); PyTorch 2.14's own CPU kernels miss the bound on the mean (contiguous
    BN 8.6e-4 at 1e4 and up to 2.4e-3 for GN, channels-last BN 1.3e-2, channels-last GN ~1e3: measured),
    which normcore.functional's shifted recomputation fixes (measured after it: below 1e-6).

    Exception, inherent to float32: layers that normalize with *stored* statistics (FrozenBN, EstBN) hold
    the mean 1e4 in a float32 buffer whose spacing is ulp = 9.8e-4, and the eval kernel folds the
    normalization into x * a + (beta - mean * a), rounding twice more at that magnitude; their bound is
    2 ulp (measured 1.4e-3 for EstBN, 8.7e-4 for FrozenBN). Their std is within 1e-3 like the rest.
    Batch-statistics layers also get running estimates that agree with the float64 ones."""
    x = _x((4, 16, 8, 8), mean=mean)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    layer = NORM_LAYERS[name](16)
    _fit_statistics(name, layer, x)
    rows = _normalization_groups(name, layer(x))
    stored_statistics = name in ("frozen_bn", "est_bn")
    ulp = torch.finfo(torch.float32).eps * 2 ** torch.tensor(mean).log2().floor().item()
    assert rows.mean(dim=1).abs().max().item() < (2 * ulp if stored_statistics else 1e-3)
    assert (rows.std(dim=1, unbiased=False) - 1).abs().max().item() < 1e-3
    if name in BN_FAMILY:
        fresh = NORM_LAYERS[name](16)
        fresh(x)
        x64 = x.double().chunk(fresh.virtual_devices) if name == "bn_virtual" else [x.double()]
        batch_mean = torch.stack([s.mean(dim=(0, 2, 3)) for s in x64]).mean(0)
        batch_var = torch.stack([s.var(dim=(0, 2, 3)) for s in x64]).mean(0)
        assert_close(fresh.running_mean.double(), 0.1 * batch_mean, atol=2 * 0.1 * ulp, rtol=0)
        assert_close(fresh.running_var.double(), 0.9 + 0.1 * batch_var, atol=1e-4, rtol=0)


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("name", ["bn", "bn_virtual", "gn", "ln", "in", "in_tracked", "bcn"])
def test_large_mean_outputs_and_gradients_match_float64(name, channels_last):
    """The shifted recomputation that keeps mean-1e4 inputs exact (normcore.functional.SHIFT_RATIO) is
    differentiable like the native kernel: output and input gradient equal the float64 computation of
    the same layer to 1e-4 (float32 kernels without the shift: output off by up to 1.3e-2)."""
    x = _x((4, 16, 8, 8), mean=1e4)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    layer = NORM_LAYERS[name](16)
    twin = copy.deepcopy(layer).double()
    xf, xd = x.clone().requires_grad_(), x.double().requires_grad_()
    g = _x((4, 16, 8, 8), seed=1)
    yf, yd = layer(xf), twin(xd)
    yf.backward(g)
    yd.backward(g.double())
    assert_close(yf.double(), yd.detach(), atol=1e-4, rtol=0)
    assert_close(xf.grad.double(), xd.grad, atol=1e-4, rtol=0)
    if getattr(layer, "running_mean", None) is not None:
        assert_close(layer.running_mean.double(), twin.running_mean, atol=1e-3, rtol=0)


def test_consecutive_large_integers_normalize():
    """[40000, 40001, 40002, 40003]: a one-pass variance gives NaN (apache/tvm#19643); the exact
    result is (x - 40001.5) / sqrt(1.25 + eps) = [-1.342, -0.447, 0.447, 1.342] for every layer that
    normalizes these four values.

    Tolerance 4e-3 = ulp(35777) in float32: the native batch- and group-norm kernels fold the
    normalization and affine into y = x * a + b with a = gamma / std, and x * a = 35777 is held only
    to that ulp (measured: BN, GN, LN, IN off by 6.4e-4; the layer-norm kernel behind FeatureLayerNorm
    by 5e-8). A one-pass variance gives NaN or values off by orders of magnitude, far outside it."""
    v = torch.tensor([40000.0, 40001.0, 40002.0, 40003.0])
    expected = (v.double() - 40001.5) / (1.25 + 1e-5) ** 0.5
    cases = {
        "feature_ln": (nc.FeatureLayerNorm(4), v.view(1, 4)),
        "ln": (nc.LayerNorm(4), v.view(1, 4)),
        "gn": (nc.GroupNorm(1, 1), v.view(1, 1, 4)),
        "in": (nc.InstanceNorm(1), v.view(1, 1, 4)),
        "bn": (nc.BatchNorm(1), v.view(4, 1)),
        "gn_channels_last": (nc.GroupNorm(4, 1), v.view(1, 4, 1, 1).expand(1, 4, 2, 2).contiguous()),
    }
    for name, (layer, x) in cases.items():
        if name == "gn_channels_last":
            x = x.to(memory_format=torch.channels_last)
            y = layer(x)[0, :, 0, 0]
        else:
            y = layer(x).flatten()
        assert_close(y.double(), expected, atol=4e-3, rtol=0, msg=name)


@pytest.mark.parametrize("name", sorted(NORM_LAYERS))
def test_float16_values_whose_squares_overflow(name):
    """float16 input around 300 (squares > 65504 overflow in float16) normalizes finite and close to
    float32: statistics are accumulated in float32 (ROCm/aiter#4780, keras-team/keras#22586)."""
    x = _x((4, 16, 6, 6), mean=300.0, std=10.0, dtype=torch.float16)
    layer = NORM_LAYERS[name](16)
    _fit_statistics(name, layer, x.float())
    ref = copy.deepcopy(layer)
    y = layer(x)
    assert y.dtype == torch.float16 and torch.isfinite(y).all()
    assert_close(y.float(), ref(x.float()), **LOW_TOL[torch.float16])


@pytest.mark.parametrize("name", ["bn", "gn", "ln", "in", "bcn"])
def test_float16_constant_input_gives_the_bias_not_nan(name):
    """A constant group has variance 0 and eps = 1e-5 is below float16's smallest normal number
    (6.1e-5); with float32 statistics the result is exactly the bias, not NaN."""
    layer = NORM_LAYERS[name](16)
    nn.init.constant_(layer.bias, 0.25)
    y = layer(torch.full((4, 16, 3, 3), 7.0, dtype=torch.float16))
    assert torch.equal(y, torch.full_like(y, 0.25))


# --------------------------------------------------------------------------------------------------
# model.half() keeps statistics in float32
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", LOW, ids=["half", "bfloat16"])
def test_model_half_keeps_running_statistics_float32(norm_case, dtype):
    """Running statistics stay float32 (a float16 running_var overflows past 65504, NVIDIA/apex#144);
    the layer then trains on low-precision input and keeps updating them in float32."""
    _, make = norm_case
    layer = make(NUM_C).to(dtype)
    stats = {k: v for k, v in layer.state_dict().items() if "running" in k or "moving_speed" in k}
    assert all(v.dtype == torch.float32 for v in stats.values()), {k: v.dtype for k, v in stats.items()}
    y = layer.train()(_x(mean=2.0, dtype=dtype))
    assert y.dtype == dtype and torch.isfinite(y).all()
    assert all(v.dtype == torch.float32 for k, v in layer.state_dict().items() if k in stats)


# --------------------------------------------------------------------------------------------------
# channels_last
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_channels_last_in_channels_last_out(norm_case, mode):
    """Same values as the contiguous computation (to float32 rounding: the kernels sum in another
    order), for the output and the input gradient, and the output stays channels_last."""
    _, make = norm_case
    layer = getattr(make(NUM_C), mode)()
    twin = copy.deepcopy(layer)
    x = _x(mean=0.5, std=2.0)
    xl = x.to(memory_format=torch.channels_last).requires_grad_()
    xc = x.clone().requires_grad_()
    y_last, y_cont = layer(xl), twin(xc)
    assert y_last.is_contiguous(memory_format=torch.channels_last)
    assert_close(y_last, y_cont, atol=1e-5, rtol=1e-5)
    g = _x(seed=1)
    y_last.backward(g.to(memory_format=torch.channels_last))
    y_cont.backward(g)
    assert_close(xl.grad, xc.grad, atol=1e-5, rtol=1e-5)


def test_channels_last_conv_layers(conv_case):
    _, make = conv_case
    torch.manual_seed(0)
    conv = make(NUM_C, NUM_C)
    x = _x()
    y = conv(x.to(memory_format=torch.channels_last))
    assert y.is_contiguous(memory_format=torch.channels_last)
    expected = conv(x)
    assert_close(y / expected.abs().max(), expected / expected.abs().max(), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["gn", "ln", "in", "bn", "bcn"])
def test_channels_last_3d(name):
    layer = NORM_LAYERS[name](NUM_C)
    x = _x((2, NUM_C, 3, 4, 5), mean=1.0)
    y = layer(x.to(memory_format=torch.channels_last_3d))
    assert y.is_contiguous(memory_format=torch.channels_last_3d)
    assert_close(y, copy.deepcopy(layer)(x), atol=1e-5, rtol=1e-5)
