"""Tests of normcore.models: every architecture builds with every meaningful norm/conv choice, runs
forward and backward with the right shapes, and is initialised as its docstring says."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import normcore
from normcore import models as M

NORMS = ["bn", "gn", "ln", "in", "bcn", "none"]
CONVS = ["conv", "ws"]


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _count(model: nn.Module, cls: type) -> int:
    return sum(isinstance(m, cls) for m in model.modules())


def _forward_backward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    return out


# --------------------------------------------------------------------------------------------------
# ResNets
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("norm", NORMS)
def test_resnet18_every_norm_and_conv(norm, conv):
    if norm == "none" and conv == "ws":
        with pytest.raises(ValueError, match="no convolution of this ResNet feeds a normalization layer"):
            M.resnet18(norm=norm, conv=conv)
        return
    model = M.resnet18(norm=norm, conv=conv, num_classes=7)
    out = _forward_backward(model, torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 7)
    assert _count(model, normcore.WSConv2d) == (20 if conv == "ws" else 0)
    assert type(model.fc) is nn.Linear


def test_resnet_norm_kwargs_and_in_channels():
    model = M.resnet18(norm="gn", norm_kwargs={"num_groups": 16}, in_channels=1, num_classes=3)
    assert all(m.num_groups == 16 for m in model.modules() if isinstance(m, nn.GroupNorm))
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3)
    model = M.resnet18(norm="gn", conv={"name": "ws", "variant": "bcn"})
    assert {m.variant for m in model.modules() if isinstance(m, normcore.WSConv2d)} == {"bcn"}
    with pytest.raises(KeyError, match="unknown norm"):
        M.resnet18(norm="group_nrom")


def test_resnet50_ws_conversion_count():
    model = M.resnet50(norm="gn", conv="ws")
    # stem + 3 convs in each of 16 bottlenecks + 4 downsample projections: every conv feeds a norm
    assert _count(model, normcore.WSConv2d) == 1 + 3 * 16 + 4 == _count(model, nn.Conv2d)
    assert _count(model, normcore.GroupNorm) == 1 + 3 * 16 + 4


def test_resnet50_state_dict_matches_torchvision():
    reference = torchvision.models.resnet50()
    for conv in CONVS:
        model = M.resnet50(norm="bn", conv=conv)
        assert list(model.state_dict()) == list(reference.state_dict())
    model = M.resnet50(norm="bn")
    model.load_state_dict(reference.state_dict())  # strict
    reference.eval()
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(model(x), reference(x))


def test_resnet_init_he_and_unit_gamma():
    model = M.resnet50(norm="bn", zero_init_residual=False)
    w = model.layer3[0].conv2.weight  # 3x3, 256 -> 256: fan_out = 9 * 256
    expected = (2 / (9 * 256)) ** 0.5  # He normal, fan_out mode; 590k samples: std estimate within 1%
    assert abs(w.std().item() / expected - 1) < 0.01
    gammas = torch.cat([m.weight for m in model.modules() if isinstance(m, normcore.BatchNorm)])
    assert torch.equal(gammas, torch.ones_like(gammas))


@pytest.mark.parametrize("norm", ["bn", "gn", "ln", "in", "bcn", "frozen_bn"])
def test_zero_init_residual_makes_blocks_identity(norm):
    model = M.resnet18(norm=norm)
    last = dict(M.resnet.residual_last_norms(model))
    assert len(last) == 8
    for module in last.values():
        assert torch.equal(module.weight, torch.zeros_like(module.weight))
    if norm == "bcn":
        # the per-group weight of the channel stage is zeroed; the BN stage's gamma stays 1
        assert last["layer1.0"].weight.shape == (1, 32, 1)
        assert torch.equal(last["layer1.0"].bn.weight, torch.ones(64))
    if norm == "frozen_bn":
        assert "weight" in dict(last["layer1.0"].named_buffers())
    # a block without a projection shortcut is exactly the identity on its (non-negative) input
    x = torch.randn(2, 64, 8, 8).relu()
    torch.testing.assert_close(model.layer1[1](x), x, rtol=0, atol=0)
    model = M.resnet18(norm=norm, zero_init_residual=False)
    assert not any(torch.equal(m.weight, torch.zeros_like(m.weight)) for _, m in M.resnet.residual_last_norms(model))


def test_zero_init_last_gamma_per_norm():
    assert M.zero_init_last_gamma(normcore.BatchChannelNorm(64, 8))
    assert not M.zero_init_last_gamma(nn.Identity())
    assert not M.zero_init_last_gamma(normcore.GroupNorm(64, affine=False))
    frozen = normcore.FrozenBatchNorm(4)
    assert M.zero_init_last_gamma(frozen) and torch.equal(frozen.weight, torch.zeros(4))
    with pytest.warns(UserWarning, match="no affine weight to zero"):
        M.resnet18(norm="gn", norm_kwargs={"affine": False})


def test_resnet_none_is_bias_free_identity_norms():
    model = M.resnet18(norm="none")
    assert _count(model, nn.Identity) == 1 + 2 * 8 + 3
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))


# --------------------------------------------------------------------------------------------------
# CIFAR-style ResNet
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("norm", NORMS)
def test_small_resnet_every_norm_and_conv(norm, conv):
    kwargs = {"norm_kwargs": {"num_groups": 8}} if norm in ("gn", "bcn") else {}
    if norm == "none" and conv == "ws":
        with pytest.raises(ValueError, match="feeds a normalization layer"):
            M.small_resnet(8, norm=norm, conv=conv)
        return
    model = M.small_resnet(14, 16, in_channels=1, norm=norm, conv=conv, **kwargs)
    out = _forward_backward(model, torch.randn(16, 1, 8, 8))
    assert out.shape == (16, 10)
    assert _count(model, normcore.WSConv2d) == (1 + 2 * 6 if conv == "ws" else 0)


def test_small_resnet_shapes_and_errors():
    model = M.small_resnet(20, 16, num_classes=10, in_channels=1)
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) + 1 == 20  # 6n+2 weighted layers
    assert model(torch.randn(4, 1, 28, 28)).shape == (4, 10)
    assert model.stage3[0].conv1.out_channels == 64
    with pytest.raises(ValueError, match="Valid group counts for 16 channels"):
        M.small_resnet(8, 16, norm="gn")
    M.small_resnet(8, 32, norm="gn")  # the default 32 groups fit width 32
    with pytest.raises(ValueError, match="6n\\+2"):
        M.small_resnet(10)


def test_small_resnet_blocks_identity_at_init():
    model = M.small_resnet(8, 16, norm="bn")
    block = model.stage1[0]
    x = torch.randn(4, 16, 8, 8).relu()
    torch.testing.assert_close(block(x), x, rtol=0, atol=0)
    down = model.stage2[0]  # option A: subsample and zero-pad
    out = down(x)
    torch.testing.assert_close(out[:, :16], x[:, :, ::2, ::2], rtol=0, atol=0)
    assert torch.equal(out[:, 16:], torch.zeros_like(out[:, 16:]))
