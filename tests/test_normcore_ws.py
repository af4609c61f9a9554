"""Weight Standardization (Qiao et al. 2019, §3): every variant against its formula written out here,
the official PyTorch code bit-exactly, the standardized statistics, WS convs in 1d/2d/3d and grouped,
the eval cache, folding, and the variant tag in checkpoints."""

from __future__ import annotations

import copy
import io
import pickle
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

import normcore as nc
from normcore import functional as Fn

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
WS_CLASS = {1: nc.WSConv1d, 2: nc.WSConv2d, 3: nc.WSConv3d}


# --------------------------------------------------------------------------------------------------
# reference formulas, written out
# --------------------------------------------------------------------------------------------------
def official_ws(weight: torch.Tensor) -> torch.Tensor:
    """The WS paper's PyTorch layer as released (joe-siyuan-qiao/pytorch-classification
    models/layers.py, maskrcnn-benchmark layers/misc.py; the WS README until it switched to
    ``torch.std_mean``): nested means over dims 1, 2, 3, then ``.view(O, -1).std(dim=1) + 1e-5``.
    Written for any rank by nesting over every non-output dim (the 2-D case is the released code)."""
    mean = weight
    for d in range(1, weight.dim()):
        mean = mean.mean(dim=d, keepdim=True)
    centred = weight - mean
    std = centred.view(centred.size(0), -1).std(dim=1).view((-1,) + (1,) * (weight.dim() - 1)) + 1e-5
    return centred / std.expand_as(centred)


def bcn_repo_ws(weight: torch.Tensor) -> torch.Tensor:
    """joe-siyuan-qiao/Batch-Channel-Normalization imagenet/models/layers.py ``Conv2d``: nested means,
    then ``torch.pow(var + 1e-5, 0.5)`` of the unbiased variance."""
    mean = weight.mean(dim=1, keepdim=True).mean(dim=2, keepdim=True).mean(dim=3, keepdim=True)
    centred = weight - mean
    std = torch.pow(centred.view(centred.size(0), -1).var(dim=1) + 1e-5, 0.5).view(-1, 1, 1, 1)
    return centred / std.expand_as(centred)


def formula_ws(weight: torch.Tensor, unbiased: bool, eps_inside: bool, eps: float = 1e-5) -> torch.Tensor:
    """The textbook formula in float64: (W - mean) / (std + eps) or (W - mean) / sqrt(var + eps)."""
    w = weight.double().flatten(1)
    mean = w.mean(dim=1, keepdim=True)
    var = w.var(dim=1, unbiased=unbiased, keepdim=True)
    denom = (var + eps).sqrt() if eps_inside else var.sqrt() + eps
    return ((w - mean) / denom).view_as(weight)


WEIGHT_SHAPES = [(64, 64, 3, 3), (256, 64, 1, 1), (8, 3, 7, 7), (32, 1, 3, 3), (16, 8, 1, 5)]


def _weights(shape, seed, draws=5):
    """Kaiming-scaled weights (as nn.Conv2d initialises them) plus an offset that grows per draw."""
    gen = torch.Generator().manual_seed(seed)
    fan_in = torch.Size(shape[1:]).numel()
    return [torch.randn(shape, generator=gen) / fan_in**0.5 + 0.01 * k for k in range(draws)]


# --------------------------------------------------------------------------------------------------
# formulas
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", WEIGHT_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_official_variant_is_bit_exact_to_the_official_code(shape):
    for w in _weights(shape, seed=sum(shape)):
        assert torch.equal(Fn.weight_standardize(w, "official"), official_ws(w))


@pytest.mark.parametrize("shape", [(8, 4, 3), (8, 4, 3, 3, 3), (6, 2, 1, 1, 1)], ids=["1d", "3d", "3d_1x1"])
def test_official_variant_is_bit_exact_in_1d_and_3d(shape):
    for w in _weights(shape, seed=1):
        assert torch.equal(Fn.weight_standardize(w, "official"), official_ws(w))


@pytest.mark.parametrize("shape", WEIGHT_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_bcn_variant_is_bit_exact_to_the_bcn_repository(shape):
    """Bit-exact: ATen evaluates ``pow(t, 0.5)`` with the same sqrt kernel as ``t.sqrt()``."""
    for w in _weights(shape, seed=2):
        assert torch.equal(Fn.weight_standardize(w, "bcn"), bcn_repo_ws(w))


@pytest.mark.parametrize("variant", sorted(Fn.WS_VARIANTS))
@pytest.mark.parametrize("shape", WEIGHT_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_every_variant_matches_its_formula(variant, shape):
    f = Fn.WS_VARIANTS[variant]
    for w in _weights(shape, seed=3, draws=2):
        expected = formula_ws(w, f.unbiased, f.eps_inside_sqrt, f.eps).float()
        assert_close(Fn.weight_standardize(w, variant), expected, atol=1e-5, rtol=1e-5)


def test_official_std_mean_form_agrees_to_rounding():
    """The WS README now writes the layer with ``torch.std_mean`` over dims (1, 2, 3) (one fused
    reduction). Mathematically the same function; it differs from the released nested-mean code only
    by float32 rounding, so normcore keeps the released form bit-exact and this one agrees to 1e-6."""
    for w in _weights((64, 64, 3, 3), seed=4):
        std, mean = torch.std_mean(w, dim=(1, 2, 3), keepdim=True)
        assert_close(Fn.weight_standardize(w, "official"), (w - mean) / (std + 1e-5), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("variant", sorted(Fn.WS_VARIANTS))
@pytest.mark.parametrize("shape", [(16, 8, 3), (64, 32, 3, 3), (8, 4, 3, 3, 3)], ids=["1d", "2d", "3d"])
def test_standardized_weights_have_mean_zero_and_the_variants_unit_std(variant, shape):
    """Per output filter: mean 0, and std 1 measured with the variant's own correction (unbiased or
    biased) once eps is set to 0; with the default eps the std is exactly sigma/(sigma+eps) or
    sigma/sqrt(sigma^2+eps) (the reason the variants are not interchangeable, field notes §2.1)."""
    f = Fn.WS_VARIANTS[variant]
    correction = 1 if f.unbiased else 0
    for w in _weights(shape, seed=5):
        flat = Fn.weight_standardize(w.double(), variant, eps=0.0).flatten(1)
        assert_close(flat.mean(dim=1), torch.zeros(shape[0], dtype=torch.float64), atol=1e-12, rtol=0)
        assert_close(flat.std(dim=1, correction=correction), torch.ones(shape[0], dtype=torch.float64))
        sigma = w.double().flatten(1).std(dim=1, correction=correction)
        predicted = sigma / (sigma**2 + f.eps).sqrt() if f.eps_inside_sqrt else sigma / (sigma + f.eps)
        got = Fn.weight_standardize(w.double(), variant).flatten(1).std(dim=1, correction=correction)
        assert_close(got, predicted)


def test_low_precision_weights_are_standardized_in_float32():
    w = _weights((64, 64, 3, 3), seed=6)[0]
    for dtype in (torch.float16, torch.bfloat16):
        out = Fn.weight_standardize(w.to(dtype))
        assert out.dtype == dtype
        assert torch.equal(out, Fn.weight_standardize(w.to(dtype).float()).to(dtype))


def test_unknown_variant_lists_the_variants():
    with pytest.raises(ValueError, match=r"official.*official_tf"):
        nc.WSConv2d(3, 4, 3, variant="offical")


# --------------------------------------------------------------------------------------------------
# WS convolutions
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("groups", [1, 2, 8], ids=["dense", "grouped", "depthwise"])
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_ws_conv_equals_conv_with_official_weight(dim, groups, gen):
    conv = WS_CLASS[dim](8, 16, 3, padding=1, groups=groups, stride=2, dilation=1)
    x = torch.randn(2, 8, *([6] * dim), generator=gen)
    expected = CONV[dim](x, official_ws(conv.weight), conv.bias, stride=2, padding=1, groups=groups)
    assert torch.equal(conv(x), expected)


def test_weight_gradient_flows_through_the_standardization(gen):
    """WS in forward, inside the graph (joe-siyuan-qiao/WeightStandardization#11): the raw weight's
    gradient is the one through official_ws, not the plain conv's. normcore's closed-form backward
    is checked against autograd through the official code in float64 (to 1e-12 of the gradient's
    scale), and in float32 it is as close to that float64 gradient as autograd's own float32 result
    (both ~2e-7 of the scale; they differ from each other only by rounding)."""
    conv = nc.WSConv2d(4, 6, 3)
    x = torch.randn(2, 4, 5, 5, generator=gen)

    def reference_grad(dtype):
        w = conv.weight.detach().to(dtype).requires_grad_()
        F.conv2d(x.to(dtype), official_ws(w), conv.bias.detach().to(dtype)).square().sum().backward()
        return w.grad

    exact = reference_grad(torch.float64)
    scale = exact.abs().max()
    conv.double()(x.double()).square().sum().backward()
    assert_close(conv.weight.grad, exact, atol=1e-12 * scale, rtol=0)
    conv.weight.grad = None
    conv.float()(x).square().sum().backward()
    ours = (conv.weight.grad.double() - exact).abs().max() / scale
    autograd = (reference_grad(torch.float32).double() - exact).abs().max() / scale
    assert ours < 1e-6 and autograd < 1e-6


def test_ws_double_backward_is_exact(gen):
    """create_graph=True (gradient penalties) differentiates the plain formula: gradgradcheck holds
    for every variant."""
    for variant in Fn.WS_VARIANTS:
        w = (torch.randn(4, 2, 3, 3, generator=gen, dtype=torch.float64) * 0.1).requires_grad_()
        assert torch.autograd.gradgradcheck(lambda w, v=variant: Fn.weight_standardize(w, v), (w,))


# --------------------------------------------------------------------------------------------------
# eval cache
# --------------------------------------------------------------------------------------------------
def test_eval_cache_returns_the_same_tensor_while_weights_are_unchanged(gen):
    conv = nc.WSConv2d(4, 6, 3).eval()
    with torch.no_grad():
        first = conv.standardized_weight()
        assert conv.standardized_weight() is first
        x = torch.randn(1, 4, 5, 5, generator=gen)
        assert torch.equal(conv(x), conv(x))
        assert conv.standardized_weight() is first
        assert torch.equal(first, official_ws(conv.weight))


def test_eval_cache_recomputes_after_an_optimizer_step(gen):
    conv = nc.WSConv2d(4, 6, 3)
    opt = torch.optim.SGD(conv.parameters(), lr=0.5)
    x = torch.randn(2, 4, 5, 5, generator=gen)
    conv.eval()
    with torch.no_grad():
        stale = conv.standardized_weight()
    conv.train()
    conv(x).square().sum().backward()
    opt.step()
    conv.eval()
    with torch.no_grad():
        fresh = conv.standardized_weight()
    assert fresh is not stale
    assert torch.equal(fresh, official_ws(conv.weight.detach()))
    # An optimizer step taken while the module stays in eval mode (no train() call) is seen too.
    with torch.no_grad():
        conv.weight.add_(torch.randn(conv.weight.shape, generator=gen))  # not a constant: WS is shift-invariant
        assert torch.equal(conv.standardized_weight(), official_ws(conv.weight))


def test_eval_cache_recomputes_after_load_state_dict():
    conv = nc.WSConv2d(4, 6, 3).eval()
    other = nc.WSConv2d(4, 6, 3)
    with torch.no_grad():
        conv.standardized_weight()
        conv.load_state_dict(other.state_dict())
        assert torch.equal(conv.standardized_weight(), official_ws(other.weight))


def test_eval_cache_is_never_used_in_training_or_when_gradients_are_needed(gen):
    conv = nc.WSConv2d(4, 6, 3)
    x = torch.randn(1, 4, 5, 5, generator=gen)
    y = conv(x)  # training
    assert conv._ws_cache is None and y.grad_fn is not None
    assert conv.standardized_weight() is not conv.standardized_weight()
    conv.eval()
    y = conv(x)  # eval, grad enabled, weight requires grad: must stay differentiable
    assert conv._ws_cache is None
    y.sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    with torch.no_grad():
        conv(x)
    assert conv._ws_cache is not None
    conv.train()
    assert conv._ws_cache is None


def test_eval_cache_follows_dtype_changes(gen):
    conv = nc.WSConv2d(4, 6, 3).eval()
    with torch.no_grad():
        conv.standardized_weight()
        conv.double()
        w = conv.standardized_weight()
    assert w.dtype == torch.float64
    assert torch.equal(w, official_ws(conv.weight.detach()))


# --------------------------------------------------------------------------------------------------
# folding, checkpoints, copies
# --------------------------------------------------------------------------------------------------
def _ws_block(variant: str = "official") -> nn.Module:
    return nn.Sequential(
        nc.WSConv2d(3, 8, 3, padding=1, variant=variant),
        nc.GroupNorm(8, 4),
        nn.ReLU(),
        nc.WSConv2d(8, 4, 1, variant=variant),
    )


@pytest.mark.parametrize("variant", sorted(Fn.WS_VARIANTS))
def test_fold_weight_standardization_keeps_outputs(variant, gen):
    model = _ws_block(variant).eval()
    x = torch.randn(2, 3, 8, 8, generator=gen)
    with torch.no_grad():
        expected = model(x)
    folded = nc.fold_weight_standardization(copy.deepcopy(model))
    assert not any(isinstance(m, nc.ws.WSConvMixin) for m in folded.modules())
    assert type(folded[0]) is nn.Conv2d and type(folded[3]) is nn.Conv2d
    assert_close(folded(x), expected, atol=1e-5, rtol=1e-5)
    assert not folded[0].training


def test_variant_tag_survives_save_and_weights_only_load():
    model = _ws_block("bcn")
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert state._metadata["0"]["ws_variant"] == "bcn"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same variant: no warning
        _ws_block("bcn").load_state_dict(state)


def test_loading_other_variant_weights_into_a_ws_conv_warns():
    """Another variant's tag warns; untagged weights (a plain conv's, but also timm's StdConv2d and the
    official checkpoints: the same metadata) load silently (issue 11, item 8; tests/test_normcore_edges.py)."""
    with pytest.warns(UserWarning, match="WS variant 'official'"):
        nc.WSConv2d(3, 8, 3, padding=1, variant="biased").load_state_dict(nc.WSConv2d(3, 8, 3).state_dict())


@pytest.mark.parametrize("clone", ["deepcopy", "pickle"])
def test_ws_model_copies_compute_the_same(clone, gen):
    """deepcopy and pickle of a model with WS convs (eval cache filled) give the same outputs and an
    independent cache (the hook-based weight_norm broke deepcopy: pytorch/pytorch#28594)."""
    model = _ws_block().eval()
    x = torch.randn(2, 3, 8, 8, generator=gen)
    with torch.no_grad():
        expected = model(x)
    twin = copy.deepcopy(model) if clone == "deepcopy" else pickle.loads(pickle.dumps(model))
    with torch.no_grad():
        assert torch.equal(twin(x), expected)
        twin[0].weight.mul_(2.0)
        assert not torch.equal(twin(x), expected)
        assert torch.equal(model(x), expected)
    assert list(twin.state_dict()) == list(model.state_dict())
