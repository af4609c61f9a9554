"""The edges found by running normcore beside code nobody here wrote (issue 11): each test is the
failing case of the report, and fails on the code before its fix.

The cases that need timm, mmcv or PyTorch's ``module_db`` are in tests/test_interop.py; checkpoint
layouts in tests/test_normcore_checkpoint.py; TorchScript / export in tests/test_normcore_export.py.
"""

from __future__ import annotations

import io
import subprocess
import sys
import warnings

import pytest
import torch
import torchvision
from conftest import randomize_
from torch import nn
from torch.testing import assert_close

import normcore as nc


# --------------------------------------------------------------------------------------------------
# 1. WS with a zero or constant filter
# --------------------------------------------------------------------------------------------------
def _official_ws(w: torch.Tensor, unbiased: bool) -> torch.Tensor:
    """The official formulas (WS README, PyTorch and TensorFlow), differentiated by autograd."""
    mean = w.mean(dim=(1, 2, 3), keepdim=True)
    std = (w - mean).flatten(1).std(dim=1, correction=1 if unbiased else 0).view(-1, 1, 1, 1)
    return (w - mean) / (std + 1e-5)


@pytest.mark.parametrize("variant, unbiased", [("official", True), ("official_tf", False)])
@pytest.mark.parametrize("fill", ["zeros", "constant"])
def test_ws_constant_filter_has_the_official_finite_gradient(variant, unbiased, fill):
    conv = nc.WSConv2d(3, 4, 3, padding=1, variant=variant)
    with torch.no_grad():
        conv.weight[:2] = 0.0 if fill == "zeros" else 0.7  # two constant filters beside two ordinary ones
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    g = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(1))
    conv(x).backward(g)
    w = conv.weight.detach().clone().requires_grad_()
    torch.nn.functional.conv2d(x, _official_ws(w, unbiased), conv.bias.detach(), padding=1).backward(g)
    assert torch.isfinite(conv.weight.grad).all()
    assert_close(conv.weight.grad, w.grad, atol=1e-3, rtol=1e-4)  # gradients of order 1e5 (1/eps)
    torch.optim.SGD(conv.parameters(), lr=1e-6).step()
    assert torch.isfinite(conv.weight).all()


def test_ws_all_zero_weight_trains_without_nan():
    conv = nc.WSConv2d(3, 4, 3)
    torch.nn.init.zeros_(conv.weight)
    conv(torch.randn(2, 3, 5, 5)).sum().backward()
    assert torch.isfinite(conv.weight.grad).all()


# --------------------------------------------------------------------------------------------------
# 2. WS eval cache filled under torch.inference_mode()
# --------------------------------------------------------------------------------------------------
def test_ws_cache_from_inference_mode_does_not_reach_autograd():
    conv = nc.WSConv2d(3, 4, 3).eval().requires_grad_(False)  # a frozen model, as for saliency maps
    x = torch.randn(1, 3, 8, 8)
    with torch.inference_mode():
        expected = conv(x)
    saliency_input = x.clone().requires_grad_()
    out = conv(saliency_input)
    out.sum().backward()
    assert saliency_input.grad is not None
    assert_close(out.detach(), expected)
    with torch.inference_mode():  # and back: inference mode works with either cache
        assert_close(conv(x), expected)


# --------------------------------------------------------------------------------------------------
# 3. freeze_norms on a BN without running statistics
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [nn.BatchNorm2d, nc.BatchNorm])
def test_freeze_norms_keeps_a_bn_without_running_statistics(cls):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), cls(4, track_running_stats=False))
    randomize_(model[1])
    x = torch.randn(2, 3, 6, 6)
    before = model(x)
    frozen = nc.freeze_norms(model)
    assert isinstance(frozen[1], cls)  # nothing to freeze its statistics to: it stays a batch-statistics BN
    assert not any(p.requires_grad for p in frozen[1].parameters())
    assert_close(frozen.train()(x), before)
    with pytest.raises(ValueError, match="no running statistics"):
        nc.FrozenBatchNorm.from_batchnorm(model[1])


# --------------------------------------------------------------------------------------------------
# 4. normcore.models after a bare `import normcore`
# --------------------------------------------------------------------------------------------------
def test_models_and_reference_after_a_bare_import_normcore():
    code = (
        "import sys, normcore\n"
        "assert 'torchvision' not in sys.modules and 'normcore.models' not in sys.modules\n"
        "net = normcore.models.resnet18(norm='gn', norm_kwargs={'num_groups': 8})\n"
        "assert normcore.reference.group_norm is not None\n"
        "assert 'models' in dir(normcore)\n"
        "print(type(net).__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ResNet"
    with pytest.raises(AttributeError, match="no attribute 'modelz'"):
        nc.modelz  # noqa: B018


# --------------------------------------------------------------------------------------------------
# 6. InstanceNorm on unbatched input
# --------------------------------------------------------------------------------------------------
def test_instancenorm_unbatched_input_with_c_equal_to_h():
    x = torch.randn(4, 4, 6)  # (C, H, W) with C == H
    native = nn.InstanceNorm2d(4, affine=True)
    randomize_(native)
    ours = nc.InstanceNorm(4, spatial_dims=2)
    ours.load_state_dict(native.state_dict())
    assert_close(ours(x), native(x))
    assert_close(nc.InstanceNorm(4, spatial_dims=1)(torch.ones(4, 5) * torch.arange(5.0)).shape, (4, 5))
    with pytest.raises(ValueError, match="2 spatial dims"):
        ours(torch.randn(1, 1, 4, 4, 4))
    nc.InstanceNorm._warned_ambiguous = False
    with pytest.warns(UserWarning, match="read as a batch"):
        nc.InstanceNorm(4)(x)  # without spatial_dims the reading is (N, C, L): said, not silent


# --------------------------------------------------------------------------------------------------
# 8. WS weight loading warns only on evidence, once per load
# --------------------------------------------------------------------------------------------------
def _ws_resnet() -> nn.Module:
    return nc.models.resnet18(norm="gn", norm_kwargs={"num_groups": 8}, conv="ws")


def test_ws_weights_without_metadata_load_silently():
    """The official checkpoints, a ``module.``-stripped copy and a safetensors round trip carry no
    metadata: nothing says their weights were not WS-trained, so no warning (was: one per conv)."""
    source = _ws_resnet()
    stripped = {
        k.removeprefix("module."): v for k, v in {f"module.{k}": v for k, v in source.state_dict().items()}.items()
    }
    target = _ws_resnet()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        target.load_state_dict(stripped)
        safetensors = pytest.importorskip("safetensors.torch")
        blob = safetensors.save({k: v.contiguous() for k, v in source.state_dict().items()})
        target.load_state_dict(safetensors.load(blob))
        buffer = io.BytesIO()
        torch.save(source.state_dict(), buffer)  # torch.save keeps the metadata: WS tags, no warning
        buffer.seek(0)
        target.load_state_dict(torch.load(buffer, weights_only=True))


def test_untagged_weights_load_silently_and_another_variant_warns_once_per_load():
    """A torchvision ResNet's convs, timm's StdConv2d and the official WS code save the same untagged
    metadata: nothing tells WS-trained weights from plain ones, so none warns (was: one warning per conv,
    all false for WS-trained weights). Weights tagged with another normcore variant warn once per load."""
    plain = torchvision.models.resnet18(norm_layer=nc.norm_layer("gn", num_groups=8))
    target = _ws_resnet()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        target.load_state_dict(plain.state_dict())
    other = nc.models.resnet18(norm="gn", norm_kwargs={"num_groups": 8}, conv={"name": "ws", "variant": "bcn"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        target.load_state_dict(other.state_dict())
    ws_warnings = [w for w in caught if "WS variant 'bcn'" in str(w.message)]
    assert len(ws_warnings) == 1, [str(w.message) for w in ws_warnings]
    with pytest.warns(UserWarning, match="WS variant 'bcn'"):  # and again at the next load
        target.load_state_dict(other.state_dict())


# --------------------------------------------------------------------------------------------------
# 9, 10. Frozen BN: Caffe2 affine-only entries, the identity at init
# --------------------------------------------------------------------------------------------------
def test_frozen_bn_loads_weight_and_bias_only_entries_strictly():
    frozen = nc.FrozenBatchNorm(4)
    scale, shift = torch.tensor([1.0, 2.0, 0.5, -1.0]), torch.tensor([0.1, 0.2, 0.3, 0.4])
    frozen.load_state_dict({"weight": scale, "bias": shift})  # strict: Caffe2's AffineChannel
    x = torch.randn(2, 4, 3, 3)
    assert_close(frozen(x), x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1), atol=1e-6, rtol=1e-6)
    with pytest.raises(RuntimeError, match="running_var"):
        nc.FrozenBatchNorm(4).load_state_dict({"weight": scale, "bias": shift, "running_mean": shift})


def test_fresh_frozen_bn_is_the_identity_and_still_bn_eval_for_every_loaded_state():
    x = torch.randn(2, 6, 5, 5)
    assert torch.equal(nc.FrozenBatchNorm(6)(x), x)
    bn = randomize_(nn.BatchNorm2d(6)).eval()
    frozen = nc.FrozenBatchNorm(6)
    frozen.load_state_dict(bn.state_dict())
    assert torch.equal(frozen(x), bn(x))


# --------------------------------------------------------------------------------------------------
# 10. settings PyTorch accepts
# --------------------------------------------------------------------------------------------------
def test_bias_false_and_multi_dimensional_normalized_shape():
    x = torch.randn(4, 6, 5, 5)
    pairs = [
        (nc.BatchNorm(6, bias=False), nn.BatchNorm2d(6, bias=False)),
        (nc.GroupNorm(6, 3, bias=False), nn.GroupNorm(3, 6, bias=False)),
        (nc.InstanceNorm(6, bias=False), nn.InstanceNorm2d(6, affine=True, bias=False)),
        (nc.FeatureLayerNorm((5, 5), bias=False), nn.LayerNorm((5, 5), bias=False)),
        (nc.FeatureLayerNorm((6, 5, 5)), nn.LayerNorm((6, 5, 5))),
    ]
    for ours, native in pairs:
        randomize_(native)
        ours.load_state_dict(native.state_dict())
        assert ours.bias is None or native.bias is not None
        assert_close(ours(x), native(x), atol=1e-5, rtol=1e-5)
