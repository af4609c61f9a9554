"""The same layers on a CUDA device: agreement with the CPU computation, channels_last in and out
(the native CUDA group-norm kernel returns NCHW, pytorch/pytorch#111824), low precision, autocast and
large-mean inputs. Skipped without a GPU (CI has none); run on one with
``pytest tests/test_normcore_cuda.py``."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from conftest import CONV_LAYERS, NORM_LAYERS
from torch.testing import assert_close

from normcore import functional as Fn

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.filterwarnings("ignore:SyncBatchNorm. no torch.distributed process group"),
]
CUDA = torch.device("cuda")
NUM_C = 16


def _x(shape=(4, NUM_C, 7, 7), mean=1.0, std=2.0, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * std + mean


@pytest.fixture(autouse=True)
def _no_tf32():
    """Compare float32 with float32: TF32 convolutions would differ from the CPU by ~1e-3."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_cuda_matches_cpu(norm_case, mode, layout):
    _, make = norm_case
    cpu = getattr(make(NUM_C), mode)()
    gpu = copy.deepcopy(cpu).to(CUDA)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = _x()
    xc = x.clone().requires_grad_()
    xg = x.to(CUDA).contiguous(memory_format=fmt).requires_grad_()
    yc, yg = cpu(xc), gpu(xg)
    assert yg.is_contiguous(memory_format=fmt)
    assert_close(yg.cpu(), yc, atol=1e-5, rtol=1e-5)
    g = _x(seed=1)
    yc.backward(g)
    yg.backward(g.to(CUDA).contiguous(memory_format=fmt))
    assert_close(xg.grad.cpu(), xc.grad, atol=1e-5, rtol=1e-5)
    for (name, a), (_, b) in zip(cpu.state_dict().items(), gpu.state_dict().items()):
        assert_close(b.cpu(), a, atol=1e-5, rtol=1e-5, msg=name)


def test_cuda_conv_layers_match_cpu(conv_case):
    _, make = conv_case
    torch.manual_seed(0)
    cpu = make(NUM_C, NUM_C)
    gpu = copy.deepcopy(cpu).to(CUDA)
    x = _x()
    expected = cpu(x)
    got = gpu(x.to(CUDA).contiguous(memory_format=torch.channels_last))
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert_close(got.cpu() / expected.abs().max(), expected / expected.abs().max(), atol=1e-5, rtol=1e-5)


def test_cuda_official_ws_is_bit_exact():
    w = torch.randn(64, 32, 3, 3, device=CUDA) * 0.05
    mean = w.mean(dim=1, keepdim=True).mean(dim=2, keepdim=True).mean(dim=3, keepdim=True)
    centred = w - mean
    std = centred.view(64, -1).std(dim=1).view(-1, 1, 1, 1) + 1e-5
    assert torch.equal(Fn.weight_standardize(w), centred / std.expand_as(centred))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_cuda_low_precision_and_autocast(norm_case, dtype):
    _, make = norm_case
    layer = make(NUM_C).to(CUDA)
    ref = copy.deepcopy(layer)
    x = _x().to(CUDA, dtype)
    y = layer(x)
    assert y.dtype == dtype and torch.isfinite(y).all()
    tol = 5e-3 if dtype == torch.float16 else 2e-2
    assert_close(y.float(), ref(x.float()), atol=tol, rtol=tol)
    with torch.autocast("cuda", dtype=dtype):
        assert layer(x.float()).dtype == torch.float32
        assert layer(x).dtype == dtype


@pytest.mark.parametrize("name", sorted(NORM_LAYERS))
def test_cuda_large_mean(name):
    """Mean 1e4, std 1 in float32 on the GPU, channels_last: every layer's output has per-channel
    (BN family) or per-sample statistics near 0 and 1 (bounds as in test_normcore_dtypes.py)."""
    layer = NORM_LAYERS[name](NUM_C).to(CUDA)
    x = _x((4, NUM_C, 8, 8), mean=1e4, std=1.0).to(CUDA).contiguous(memory_format=torch.channels_last)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name in ("est_bn", "bcn_estimate"):
            est = layer if name == "est_bn" else layer.bn
            est.set_moving_speed(1.0)
            est(x)
            est(x)
        if name == "frozen_bn":
            layer.running_mean.copy_(x.double().mean(dim=(0, 2, 3)))
            layer.running_var.copy_(x.double().var(dim=(0, 2, 3), unbiased=False))
        y = layer(x).double()
    if name in ("gn", "ln", "in", "in_tracked", "bcn", "bcn_estimate"):
        groups = {"gn": 4, "bcn": 4, "bcn_estimate": 4, "ln": 1}.get(name, NUM_C)
        rows = y.reshape(4 * groups, -1)
    elif name == "bn_virtual":
        rows = y.reshape(2, 2, NUM_C, -1).transpose(1, 2).reshape(2 * NUM_C, -1)
    else:
        rows = y.transpose(0, 1).reshape(NUM_C, -1)
    assert rows.mean(dim=1).abs().max().item() < 2e-3
    assert (rows.std(dim=1, unbiased=False) - 1).abs().max().item() < 1e-3


def test_cuda_ws_eval_cache():
    conv = CONV_LAYERS["ws_official"](NUM_C, NUM_C).to(CUDA).eval()
    with torch.no_grad():
        first = conv.standardized_weight()
        assert conv.standardized_weight() is first
        conv.weight.mul_(2.0).add_(torch.randn_like(conv.weight))
        assert conv.standardized_weight() is not first
