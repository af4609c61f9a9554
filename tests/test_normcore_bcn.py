"""Batch-Channel Normalization and Estimated BN (Qiao et al., arXiv 1903.10520 v2, §5) against the
official code written out below (joe-siyuan-qiao/Batch-Channel-Normalization, README.md ``BCNorm``
and ``EstBN``), to 1e-5 in float32; the deliberate deviations (channels_last, EstBN's moving speed)
are tested as such."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import randomize_
from torch import nn
from torch.testing import assert_close

import normcore as nc

TOL = {"atol": 1e-5, "rtol": 1e-5}


# --------------------------------------------------------------------------------------------------
# the official layers, written out (same parameter and buffer names, so state dicts are shared)
# --------------------------------------------------------------------------------------------------
class OfficialEstBN(nn.Module):
    """Official ``EstBN``: running estimates updated under no_grad (variance centred on the running mean
    *before* its update, biased), then normalization with the updated estimates, in train and eval."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        self.register_buffer("estbn_moving_speed", torch.zeros(1))

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        ms = self.estbn_moving_speed.item()
        if self.training:
            with torch.no_grad():
                flat = inp.transpose(0, 1).contiguous().view(self.num_features, -1)
                batch_mean = flat.mean(dim=1)
                centred = flat - self.running_mean.view(-1, 1)
                batch_var = torch.mean(centred * centred, dim=1)
                self.running_mean.mul_(1 - ms).add_(ms * batch_mean)
                self.running_var.mul_(1 - ms).add_(ms * batch_var)
        out = inp - self.running_mean.view(1, -1, 1, 1)
        out = out / torch.sqrt(self.running_var + 1e-5).view(1, -1, 1, 1)
        return self.weight.view(1, -1, 1, 1) * out + self.bias.view(1, -1, 1, 1)


class OfficialBCN(nn.Module):
    """Official ``BCNorm``: BN (or EstBN), then ``torch.batch_norm`` on the ``(1, N*G, -1)`` view with
    batch statistics, then the per-group affine of shape ``(1, G, 1)``."""

    def __init__(self, num_channels: int, num_groups: int, eps: float, estimate: bool = False) -> None:
        super().__init__()
        self.num_groups = num_groups
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, num_groups, 1))
        self.bias = nn.Parameter(torch.zeros(1, num_groups, 1))
        self.bn = OfficialEstBN(num_channels) if estimate else nn.BatchNorm2d(num_channels)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        out = self.bn(inp)
        out = out.view(1, inp.size(0) * self.num_groups, -1)
        out = torch.batch_norm(out, None, None, None, None, True, 0, self.eps, True)
        out = out.view(inp.size(0), self.num_groups, -1)
        out = self.weight * out + self.bias
        return out.view_as(inp)


def _steps(ours: nn.Module, ref: nn.Module, gen: torch.Generator, steps: int = 3, shape=(4, 8, 5, 5)):
    """Train-mode steps on drifting batches: outputs and all gradients agree at every step."""
    for s in range(steps):
        x = torch.randn(shape, generator=gen) * (1 + s) + 2 * s
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        y1, y2 = ours(x1), ref(x2)
        assert_close(y1, y2, **TOL)
        g = torch.randn(shape, generator=gen)
        y1.backward(g)
        y2.backward(g)
        assert_close(x1.grad, x2.grad, **TOL)
        for (name, p1), (_, p2) in zip(ours.named_parameters(), ref.named_parameters()):
            assert_close(p1.grad, p2.grad, **TOL, msg=name)


# --------------------------------------------------------------------------------------------------
# BCN
# --------------------------------------------------------------------------------------------------
def _train_then_eval(ours: nn.Module, ref: nn.Module, gen: torch.Generator, steps: int = 3) -> None:
    """Training steps, then equal running statistics, then an eval step."""
    _steps(ours, ref, gen, steps=steps)
    for name, buf in ours.named_buffers():
        if "running" in name:
            assert_close(buf, ref.get_buffer(name), **TOL, msg=name)
    ours.eval()
    ref.eval()
    _steps(ours, ref, gen, steps=1)


@pytest.mark.parametrize(("estimate", "eps"), [(False, 1e-5), (False, 1e-3), (True, 1e-5)])
def test_bcn_matches_the_official_formula(estimate, eps, gen):
    ours = randomize_(nc.BatchChannelNorm(8, 4, eps=eps, estimate=estimate, moving_speed=0.2))
    ref = OfficialBCN(8, 4, eps, estimate=estimate)
    # Same layout: bn.*, weight/bias (1, G, 1); with estimate=True it brings estbn_moving_speed = 0.2 along.
    ref.load_state_dict(ours.state_dict())
    _train_then_eval(ours, ref, gen)


def test_official_checkpoint_loads_strictly():
    official = randomize_(OfficialBCN(8, 4, 1e-5))
    ours = nc.BatchChannelNorm(8, 4)
    ours.load_state_dict(official.state_dict())
    assert ours.weight.shape == (1, 4, 1)
    assert torch.equal(ours.bn.running_var, official.bn.running_var)


def test_channel_stage_is_group_norm_with_the_group_affine_expanded(gen):
    x = torch.randn(3, 8, 4, 4, generator=gen) * 2 + 1
    gw, gb = 1 + 0.3 * torch.randn(1, 4, 1, generator=gen), torch.randn(1, 4, 1, generator=gen)
    gn = nn.GroupNorm(4, 8)
    with torch.no_grad():
        gn.weight.copy_(gw.flatten().repeat_interleave(2))
        gn.bias.copy_(gb.flatten().repeat_interleave(2))
    assert torch.equal(nc.functional.channel_norm(x, 4, gw, gb), gn(x))


def test_bcn_works_on_channels_last_where_the_official_view_fails(gen):
    x = (torch.randn(4, 8, 5, 5, generator=gen) * 2).to(memory_format=torch.channels_last)
    ours = randomize_(nc.BatchChannelNorm(8, 4))
    ref = OfficialBCN(8, 4, 1e-5)
    ref.load_state_dict(ours.state_dict())
    with pytest.raises(RuntimeError, match="view"):
        ref(x)
    y = ours(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert_close(y, ref(x.contiguous()), **TOL)


def test_bcn_with_virtual_devices_is_official_bcn_on_each_slice(gen):
    """The channel stage is per sample, so BCN over D virtual devices = the official layer run on
    each slice with its own BN statistics."""
    ours = randomize_(nc.BatchChannelNorm(8, 4, virtual_devices=2))
    refs = [OfficialBCN(8, 4, 1e-5) for _ in range(2)]
    for r in refs:
        r.load_state_dict(ours.state_dict())
    x = torch.randn(6, 8, 3, 3, generator=gen) * 3 - 1
    assert_close(ours(x), torch.cat([r(s) for r, s in zip(refs, x.chunk(2))]), **TOL)


def test_bcn_momentum_reaches_the_batch_stage(gen):
    """Every argument is wired (the official PBCNorm ignored ``momentum``)."""
    ours, ref = nc.BatchChannelNorm(8, 4, momentum=0.5), nn.BatchNorm2d(8, momentum=0.5)
    x = torch.randn(4, 8, 3, 3, generator=gen) + 3
    ours(x)
    ref(x)
    assert_close(ours.bn.running_mean, ref.running_mean, **TOL)


def test_bcn_estimate_rejects_virtual_devices():
    with pytest.raises(ValueError, match="virtual_devices has no effect"):
        nc.BatchChannelNorm(8, 4, estimate=True, virtual_devices=2)


# --------------------------------------------------------------------------------------------------
# EstBN
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("speed", [0.1, 0.7])
def test_estimated_batchnorm_matches_the_official_forward(speed, gen):
    ours = randomize_(nc.EstimatedBatchNorm(8, moving_speed=speed))
    ref = OfficialEstBN(8)
    ref.load_state_dict(ours.state_dict())
    _train_then_eval(ours, ref, gen, steps=4)


def test_estimated_batchnorm_moves_at_the_stated_speed_with_pre_update_centring(gen):
    est = randomize_(nc.EstimatedBatchNorm(4, moving_speed=0.3))
    m0, v0 = est.running_mean.clone(), est.running_var.clone()
    x = torch.randn(6, 4, 3, 3, generator=gen) * 2 + 5
    est(x)
    dims = (0, 2, 3)
    expected_mean = 0.7 * m0 + 0.3 * x.mean(dim=dims)
    expected_var = 0.7 * v0 + 0.3 * (x - m0.view(1, -1, 1, 1)).square().mean(dim=dims)
    assert_close(est.running_mean, expected_mean, **TOL)
    assert_close(est.running_var, expected_var, **TOL)


def test_estimated_batchnorm_normalizes_with_the_estimates_and_no_gradient_through_them(gen):
    """In training the output uses the updated running estimates, which carry no gradient, so
    dy/dx = gamma / sqrt(var_est + eps) elementwise."""
    est = randomize_(nc.EstimatedBatchNorm(4, moving_speed=0.5))
    x = (torch.randn(3, 4, 2, 2, generator=gen) + 1).requires_grad_()
    y = est(x)
    view = (1, -1, 1, 1)
    scale = est.weight.detach() / torch.sqrt(est.running_var + 1e-5)
    assert_close(y, (x.detach() - est.running_mean.view(view)) * scale.view(view) + est.bias.detach().view(view))
    g = torch.randn(y.shape, generator=gen)
    y.backward(g)
    assert_close(x.grad, g * scale.view(view), **TOL)


def test_estimated_batchnorm_is_static_at_speed_zero_and_warns_once():
    est = randomize_(nc.EstimatedBatchNorm(4, moving_speed=0.0))
    before = {k: v.clone() for k, v in est.state_dict().items() if k.startswith("running")}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            est(torch.randn(5, 4, 3, 3) * 4 + 2)
        est.eval()(torch.randn(5, 4, 3, 3))
    assert [str(w.message) for w in caught if "estbn_moving_speed=0" in str(w.message)] != []
    assert len(caught) == 1
    assert all(torch.equal(before[k], est.state_dict()[k]) for k in before)
    est.train()
    est.set_moving_speed(0.5)
    est(torch.randn(5, 4, 3, 3) + 3)
    assert not torch.equal(before["running_mean"], est.running_mean)


def test_estimated_batchnorm_default_speed_is_not_the_official_zero():
    """The official buffer starts at 0 (estimates never move); normcore starts at 0.1 (module docstring)."""
    assert float(nc.EstimatedBatchNorm(4).estbn_moving_speed) == pytest.approx(0.1)
    assert float(OfficialEstBN(4).estbn_moving_speed) == 0.0
