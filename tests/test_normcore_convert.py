"""Model surgery (normcore.convert) on torchvision models: every norm swapped into ResNet-50, the WS
conv selection, state transfer and its warnings, freezing, and SyncBN reversal."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torchvision
from conftest import randomize_
from torch import nn

import normcore as nc

NORM_CLASS = {
    "bn": nc.BatchNorm,
    "frozen_bn": nc.FrozenBatchNorm,
    "sync_bn": nc.SyncBatchNorm,
    "ln": nc.LayerNorm,
    "in": nc.InstanceNorm,
    "gn": nc.GroupNorm,
    "bcn": nc.BatchChannelNorm,
    "none": nn.Identity,
    "est_bn": nc.EstimatedBatchNorm,
}
RESNET50_NORMS = 53  # bn1, 3 per bottleneck x 16, 4 downsample


@pytest.fixture(scope="module")
def resnet50() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet50()


def _small_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.GroupNorm(2, 8),
        nn.ReLU(),
        nn.Conv2d(8, 4, 1),  # head: feeds no norm
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NORM_CLASS))
def test_resnet50_converted_to_every_norm_trains(resnet50, name):
    """Every BN of a stock ResNet-50 replaced: forward and backward on a 2x3x64x64 batch, finite, with
    a gradient for every trainable tensor. For GN and BCN, the WS paper's pairings, the 53 convs that
    feed the norms also become WS convs (WS before a frozen BN with unit statistics, or before no norm,
    lets activations grow without bound, which is why the paper only standardizes convs feeding a
    normalizing layer)."""
    model = copy.deepcopy(resnet50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sync_bn: no process group (tested in test_normcore_sync.py)
        model = nc.convert_norms(model, name)
        if name in ("gn", "bcn"):
            model = nc.convert_convs(model)
            assert sum(isinstance(m, nc.WSConv2d) for m in model.modules()) == 53
        assert sum(type(m) is NORM_CLASS[name] for m in model.modules()) == RESNET50_NORMS
        assert not any(type(m) is nn.BatchNorm2d for m in model.modules())
        out = model.train()(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 1000) and torch.isfinite(out).all()
    out.logsumexp(dim=1).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


def test_convert_convs_finds_exactly_the_convs_feeding_a_norm(resnet50):
    names = nc.find_convs_feeding_norms(resnet50)
    assert len(names) == 53 and len(set(names)) == 53
    assert {"conv1", "layer1.0.downsample.0", "layer4.2.conv3"} <= set(names)
    model = nc.convert_convs(copy.deepcopy(resnet50))
    assert sum(isinstance(m, nc.WSConv2d) for m in model.modules()) == 53
    assert type(model.fc) is nn.Linear and torch.equal(model.fc.weight, resnet50.fc.weight)
    assert torch.equal(model.conv1.weight, resnet50.conv1.weight)  # weights copied, standardized in forward


def test_convert_convs_leaves_head_convs_and_exclusions_alone():
    net = nc.convert_convs(_small_net())
    assert [type(m).__name__ for m in net if isinstance(m, nn.Conv2d)] == ["WSConv2d", "WSConv2d", "Conv2d"]
    net = nc.convert_convs(_small_net(), exclude=["3"])
    assert type(net[3]) is nn.Conv2d and type(net[0]) is nc.WSConv2d
    every = nc.convert_convs(_small_net(), only_feeding_norms=False, variant="bcn")
    assert all(type(m) is nc.WSConv2d and m.variant == "bcn" for m in every if isinstance(m, nn.Conv2d))


def test_convert_convs_without_fx_uses_module_order():
    """A model torch.fx cannot trace (data-dependent control flow) falls back to registration order."""

    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.norm = nn.BatchNorm2d(4)
            self.head = nn.Conv2d(4, 2, 1)

        def forward(self, x):
            x = self.norm(self.conv(x))
            return self.head(x) if x.sum() > 0 else -self.head(x)

    assert nc.find_convs_feeding_norms(Branchy()) == ["conv"]
    model = nc.convert_convs(Branchy())
    assert type(model.conv) is nc.WSConv2d and type(model.head) is nn.Conv2d
    model(torch.randn(2, 3, 5, 5))


def test_convert_convs_to_normprop():
    net = nc.convert_convs(_small_net(), "normprop")
    assert type(net[0]) is nc.NormPropConv2d and type(net[6]) is nn.Conv2d
    assert net(torch.randn(2, 3, 6, 6)).shape == (2, 4, 6, 6)


def _trained_bn(c: int = 8) -> nn.BatchNorm2d:
    return randomize_(nn.BatchNorm2d(c), seed=c)


@pytest.mark.parametrize("name", ["frozen_bn", "sync_bn", "est_bn", "bn"])
def test_convert_norms_keeps_every_tensor_between_batch_norms(name):
    src = nn.Sequential(nn.Conv2d(3, 8, 1), _trained_bn())
    state = {k: v.clone() for k, v in src[1].state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # BN -> BN flavour: nothing to warn about
        new = nc.convert_norms(src, name)[1]
    assert type(new) is NORM_CLASS[name]
    for key, value in new.state_dict().items():
        if key in state:
            assert torch.equal(value, state[key].to(value.dtype)), key


def test_convert_norms_to_bcn_puts_bn_state_in_the_batch_stage():
    new = nc.convert_norms(nn.Sequential(_trained_bn(64)), "bcn")[0]
    assert type(new) is nc.BatchChannelNorm
    ref = _trained_bn(64)
    for key in ("weight", "bias", "running_mean", "running_var"):
        assert torch.equal(getattr(new.bn, key), getattr(ref, key)), key
    assert torch.equal(new.weight, torch.ones(1, 32, 1))  # the per-group affine starts fresh


@pytest.mark.parametrize("name", ["gn", "ln", "in"])
def test_convert_norms_copies_affine_into_gn_and_warns_for_trained_bn(name, capsys):
    kw = {"num_groups": 2} if name == "gn" else {}
    with pytest.warns(UserWarning, match=r"BN-trained affine parameters into .*ppwwyyxx/GroupNorm-reproduce#2"):
        new = nc.convert_norms(nn.Sequential(_trained_bn(), _trained_bn()), name, verbose=True, **kw)
    assert torch.equal(new[0].weight, _trained_bn().weight)
    assert torch.equal(new[1].bias, _trained_bn().bias)
    out = capsys.readouterr().out
    assert "kept ['weight', 'bias']" in out and "dropped ['running_mean', 'running_var', 'num_batches_tracked']" in out
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an untrained BN (running_var == 1) carries nothing to warn about
        nc.convert_norms(nn.Sequential(nn.BatchNorm2d(8)), name, **kw)


def test_convert_norms_exclude_source_and_root():
    net = nc.convert_norms(_small_net(), "gn", exclude=["1"])
    assert type(net[1]) is nn.BatchNorm2d
    net = nc.convert_norms(_small_net(), "ln", source=(nn.GroupNorm,))
    assert type(net[4]) is nc.LayerNorm and type(net[1]) is nn.BatchNorm2d
    root = nc.convert_norms(nn.BatchNorm2d(4), "frozen_bn")
    assert type(root) is nc.FrozenBatchNorm
    tv_frozen = nn.Sequential(torchvision.ops.misc.FrozenBatchNorm2d(64))
    assert type(nc.convert_norms(tv_frozen, "gn")[0]) is nc.GroupNorm


def test_freeze_norms_survives_model_train():
    """After freeze_norms, model.train() and an optimizer step change the convs but no statistic or
    affine tensor of any norm (BN and BCN's batch stage become FrozenBatchNorm; GN's affine stops
    requiring gradients) (pytorch/pytorch#66073)."""
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        _trained_bn(),
        nn.Conv2d(8, 8, 1),
        randomize_(nc.GroupNorm(8, 2)),
        randomize_(nc.BatchChannelNorm(8, 2)),
    )
    nc.freeze_norms(net)
    assert type(net[1]) is nc.FrozenBatchNorm and type(net[4].bn) is nc.FrozenBatchNorm
    norm_state = {k: v.clone() for k, v in net.state_dict().items() if not k.startswith(("0.", "2."))}
    net.train()
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    conv_before = net[0].weight.clone()
    for _ in range(2):
        net(torch.randn(4, 3, 6, 6) * 3 + 1).square().mean().backward()
        opt.step()
    assert not torch.equal(net[0].weight, conv_before)
    after = net.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in norm_state.items())


def test_revert_sync_batchnorm_keeps_state():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sync = randomize_(nc.SyncBatchNorm(8))
        torch_sync = randomize_(nn.SyncBatchNorm(8), seed=1)
    net = nc.revert_sync_batchnorm(nn.Sequential(sync, torch_sync))
    assert all(type(m) is nc.BatchNorm for m in net)
    assert torch.equal(net[0].running_var, sync.running_var)
    assert torch.equal(net[1].weight, torch_sync.weight)


def test_models_with_normcore_norms_are_traced_not_guessed():
    """normcore norms check their input, which symbolic tracing cannot run; the tracer keeps them as
    leaves, so the convs feeding them are found from the graph (not from module order)."""
    from torch import nn

    from normcore.convert import _convs_by_trace

    class OutOfOrder(nn.Module):  # registration order hides which conv feeds the norm
        def __init__(self) -> None:
            super().__init__()
            self.norm = nc.GroupNorm(8, 2)
            self.head = nn.Conv2d(8, 8, 1)
            self.body = nn.Conv2d(3, 8, 3)

        def forward(self, x):
            return self.head(self.norm(self.body(x)))

    assert _convs_by_trace(OutOfOrder()) == ["body"]
    assert nc.find_convs_feeding_norms(OutOfOrder()) == ["body"]
    gn_resnet = torchvision.models.resnet18(norm_layer=nc.norm_layer("gn", num_groups=8))
    assert len(_convs_by_trace(gn_resnet)) == 20
