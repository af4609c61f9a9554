"""Parity of normcore's layers with their torch.nn / torchvision counterparts.

Tolerance: 1e-5 (absolute and relative) in float32 wherever normcore and torch run different code;
``torch.equal`` (bit-exact) wherever normcore promises the same kernel on the same data (virtual-device
BN per slice, FrozenBatchNorm vs ``BatchNorm2d.eval()``).
"""

from __future__ import annotations

import collections

import pytest
import torch
import torch.nn.functional as F
import torchvision
from conftest import randomize_
from torch import nn
from torch.testing import assert_close

import normcore as nc

TOL = {"atol": 1e-5, "rtol": 1e-5}
BN_REF = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}
BN_SHAPES = [(16, 6), (8, 6, 5), (4, 6, 5, 4), (4, 6, 3, 4, 2)]


def _batches(shape, gen, steps=4):
    """Batches whose statistics differ from step to step (mean and scale drift)."""
    return [torch.randn(shape, generator=gen) * (1.0 + 0.5 * s) + s for s in range(steps)]


def _run_pair(ours: nn.Module, ref: nn.Module, x: torch.Tensor, gen: torch.Generator) -> None:
    """Forward and backward through both layers; outputs, input grads and parameter grads must agree."""
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = ours(x1), ref(x2)
    assert_close(y1, y2, **TOL)
    g = torch.randn(y1.shape, generator=gen)
    y1.backward(g)
    y2.backward(g)
    assert_close(x1.grad, x2.grad, **TOL)
    for (name, p1), (_, p2) in zip(ours.named_parameters(), ref.named_parameters()):
        assert_close(p1.grad, p2.grad, **TOL, msg=f"grad of {name}")


# --------------------------------------------------------------------------------------------------
# BatchNorm
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("track", [True, False], ids=["track", "no_track"])
@pytest.mark.parametrize("momentum", [0.1, None], ids=["momentum0.1", "cumulative"])
@pytest.mark.parametrize("shape", BN_SHAPES, ids=lambda s: f"{len(s)}d")
def test_batchnorm_matches_torch(shape, momentum, track, affine, gen):
    """Training outputs and gradients, running statistics after several steps (incl. momentum=None,
    the cumulative average), and eval outputs equal nn.BatchNorm{1,2,3}d."""
    ref = BN_REF[len(shape)](6, momentum=momentum, affine=affine, track_running_stats=track)
    randomize_(ref)
    ours = nc.BatchNorm(6, momentum=momentum, affine=affine, track_running_stats=track)
    ours.load_state_dict(ref.state_dict())
    for x in _batches(shape, gen):
        _run_pair(ours, ref, x, gen)
        ours.zero_grad()
        ref.zero_grad()
    if track:
        assert_close(ours.running_mean, ref.running_mean, **TOL)
        assert_close(ours.running_var, ref.running_var, **TOL)
        assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == 4
    ours.eval()
    ref.eval()
    x = torch.randn(shape, generator=gen)
    assert_close(ours(x), ref(x), **TOL)


def test_batchnorm_formula_biased_batch_variance_unbiased_running_variance(gen):
    """BN Alg. 1 normalizes with the biased batch variance; §3.1's running estimate is unbiased."""
    x = torch.randn(5, 3, 4, generator=gen) * 2 + 1  # m = 20 values per channel
    bn = nc.BatchNorm(3, momentum=1.0, affine=False)
    y = bn(x)
    mean = x.mean(dim=(0, 2), keepdim=True)
    var_biased = x.var(dim=(0, 2), unbiased=False, keepdim=True)
    assert_close(y, (x - mean) / torch.sqrt(var_biased + 1e-5), **TOL)
    assert_close(bn.running_mean, mean.flatten(), **TOL)
    assert_close(bn.running_var, x.var(dim=(0, 2), unbiased=True), **TOL)


def test_batchnorm_correction_1_normalizes_with_the_unbiased_variance(gen):
    """correction=1 (the BN the LN paper compares against at small batch, LN §6.6) normalizes with
    m/(m-1) * sigma_B^2 in training; running statistics and eval are those of the default BN."""
    x = torch.randn(4, 6, generator=gen) * 3 + 1  # m = 4 values per channel
    bn, ref = randomize_(nc.BatchNorm(6, correction=1)), nc.BatchNorm(6)
    ref.load_state_dict(bn.state_dict())
    y = bn(x)
    ref(x)
    expected = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=True) + bn.eps) * bn.weight + bn.bias
    assert_close(y, expected, **TOL)
    plain = nc.BatchNorm(6, correction=1, affine=False)(x)  # variance (m-1)/m = 3/4 before the affine
    assert_close(plain.var(0, unbiased=False), torch.full((6,), 0.75), atol=1e-4, rtol=0)
    assert_close(bn.running_mean, ref.running_mean, **TOL)
    assert_close(bn.running_var, ref.running_var, **TOL)
    z = torch.randn(7, 6, generator=gen)
    assert_close(bn.eval()(z), ref.eval()(z), **TOL)
    with pytest.raises(ValueError, match="only one value per channel"):
        nc.BatchNorm(3, correction=1)(torch.randn(1, 3))
    with pytest.raises(ValueError, match="correction must be 0"):
        nc.BatchNorm(3, correction=2)


def test_batchnorm_momentum_none_is_the_cumulative_average(gen):
    """momentum=None: after k batches the running mean/var are the plain averages of the k batch
    means / unbiased variances (factor 1/t at step t)."""
    bn = nc.BatchNorm(3, momentum=None, affine=False)
    batches = _batches((6, 3, 2), gen, steps=5)
    for x in batches:
        bn(x)
    means = torch.stack([x.mean(dim=(0, 2)) for x in batches])
    varis = torch.stack([x.var(dim=(0, 2), unbiased=True) for x in batches])
    assert_close(bn.running_mean, means.mean(0), **TOL)
    assert_close(bn.running_var, varis.mean(0), **TOL)


# --------------------------------------------------------------------------------------------------
# Virtual devices
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("momentum", [0.1, None], ids=["momentum0.1", "cumulative"])
@pytest.mark.parametrize("mode", ["mean", "first"])
def test_virtual_device_batchnorm_equals_bn_on_each_slice(mode, momentum, gen):
    """virtual_devices=D: the output is bit-identical to D separate BNs each run on its slice; the
    input gradient too. Running stats: "mean" = the average of the D per-slice updates (over several
    steps, since the update is affine in the old value), "first" = slice 0's, bit-exact."""
    d = 4
    ours = nc.BatchNorm(6, momentum=momentum, virtual_devices=d, virtual_running_stats=mode)
    randomize_(ours)
    refs = [nn.BatchNorm2d(6, momentum=momentum) for _ in range(d)]
    for r in refs:
        r.load_state_dict(ours.state_dict())
    for x in _batches((8, 6, 3, 3), gen, steps=3):
        x1 = x.clone().requires_grad_()
        slices = [s.clone().requires_grad_() for s in x.chunk(d)]
        y = ours(x1)
        y_ref = torch.cat([r(s) for r, s in zip(refs, slices)])
        assert torch.equal(y, y_ref)
        g = torch.randn(y.shape, generator=gen)
        y.backward(g)
        y_ref.backward(g)
        assert torch.equal(x1.grad, torch.cat([s.grad for s in slices]))
    if mode == "first":
        assert torch.equal(ours.running_mean, refs[0].running_mean)
        assert torch.equal(ours.running_var, refs[0].running_var)
    else:
        assert_close(ours.running_mean, torch.stack([r.running_mean for r in refs]).mean(0), atol=1e-6, rtol=1e-6)
        assert_close(ours.running_var, torch.stack([r.running_var for r in refs]).mean(0), atol=1e-6, rtol=1e-6)
    assert int(ours.num_batches_tracked) == 3
    ours.eval()
    x = torch.randn(8, 6, 3, 3, generator=gen)
    assert torch.equal(ours(x), F.batch_norm(x, ours.running_mean, ours.running_var, ours.weight, ours.bias))


def test_virtual_devices_one_is_plain_batchnorm(gen):
    x = torch.randn(8, 6, 3, 3, generator=gen)
    a, b = nc.BatchNorm(6, virtual_devices=1), nn.BatchNorm2d(6)
    assert torch.equal(a(x), b(x))
    assert torch.equal(a.running_var, b.running_var)


# --------------------------------------------------------------------------------------------------
# FrozenBatchNorm
# --------------------------------------------------------------------------------------------------
def _random_bn_state(c: int, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "weight": torch.randn(c, generator=gen),
        "bias": torch.randn(c, generator=gen),
        "running_mean": torch.randn(c, generator=gen),
        "running_var": torch.rand(c, generator=gen) + 0.01,
        "num_batches_tracked": torch.tensor(seed, dtype=torch.long),
    }


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
def test_frozen_batchnorm_is_bit_identical_to_batchnorm_eval(channels_last):
    """torchvision's TestFrozenBNT pattern: 10 random states, loaded into both layers from the same BN
    state dict (num_batches_tracked included); the outputs must be equal to the bit."""
    for seed in range(10):
        state = _random_bn_state(7, seed)
        ref = nn.BatchNorm2d(7).eval()
        ref.load_state_dict(state)
        frozen = nc.FrozenBatchNorm(7)
        frozen.load_state_dict(state)
        x = torch.randn(3, 7, 5, 4, generator=torch.Generator().manual_seed(100 + seed))
        if channels_last:
            x = x.to(memory_format=torch.channels_last)
        assert torch.equal(frozen(x), ref(x)), f"state {seed}"
        assert torch.equal(nc.FrozenBatchNorm.from_batchnorm(ref)(x), ref(x))


def test_frozen_batchnorm_stays_frozen_after_model_train(gen):
    """model.train() does not unfreeze it: an SGD step changes the conv but no statistic or affine
    tensor of the frozen layer, which has no parameters at all; gradients still reach the input."""
    frozen = nc.FrozenBatchNorm(4)
    frozen.load_state_dict(_random_bn_state(4, 3))
    model = nn.Sequential(nn.Conv2d(3, 4, 3), frozen)
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    model.train()
    assert list(frozen.parameters()) == []
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(2, 3, 6, 6, generator=gen, requires_grad=True)
    model(x).square().sum().backward()
    opt.step()
    assert x.grad is not None and x.grad.abs().sum() > 0
    after = frozen.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_frozen_batchnorm_loads_torchvision_frozen_state_and_agrees(gen):
    """torchvision's FrozenBatchNorm2d state dict (no num_batches_tracked) loads strictly; outputs
    agree to float32 rounding (torchvision multiplies by a precomputed scale, so not bit-exact)."""
    tv = torchvision.ops.misc.FrozenBatchNorm2d(5)
    tv.load_state_dict({k: v for k, v in _random_bn_state(5, 1).items() if k != "num_batches_tracked"})
    ours = nc.FrozenBatchNorm(5)
    ours.load_state_dict(tv.state_dict())
    x = torch.randn(2, 5, 3, 3, generator=gen)
    assert_close(ours(x), tv(x), atol=1e-6, rtol=1e-6)
    tv.load_state_dict(ours.state_dict())


def test_frozen_batchnorm_eps_zero_warns():
    with pytest.warns(UserWarning, match="eps=0"):
        nc.FrozenBatchNorm(3, eps=0)


# --------------------------------------------------------------------------------------------------
# BatchNorm state dicts
# --------------------------------------------------------------------------------------------------
def test_batchnorm_state_dict_round_trips_with_torch_and_torchvision(gen):
    """A normcore BN state dict loads strictly into nn.BatchNorm2d and back; a torchvision ResNet built
    with normcore BN loads the stock ResNet's state dict and computes the same eval output."""
    ours = randomize_(nc.BatchNorm(6))
    ref = nn.BatchNorm2d(6)
    ref.load_state_dict(ours.state_dict())
    back = nc.BatchNorm(6)
    back.load_state_dict(ref.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), back.state_dict().values()))

    torch.manual_seed(0)
    stock = torchvision.models.resnet18()
    for m in stock.modules():
        if isinstance(m, nn.BatchNorm2d):
            randomize_(m, seed=m.num_features)
    model = torchvision.models.resnet18(norm_layer=nc.norm_layer("bn"))
    model.load_state_dict(stock.state_dict())
    x = torch.randn(1, 3, 32, 32, generator=gen)
    assert torch.equal(model.eval()(x), stock.eval()(x))


@pytest.mark.parametrize("momentum", [0.1, None], ids=["momentum0.1", "cumulative"])
def test_old_batchnorm_checkpoint_without_num_batches_tracked_loads(momentum):
    """Checkpoints from before PyTorch 0.4.1 (state-dict version < 2) have no num_batches_tracked; they
    load strictly and the counter starts at 0 (pytorch/pytorch#8430)."""
    state = collections.OrderedDict((k, v) for k, v in _random_bn_state(4, 2).items() if k != "num_batches_tracked")
    state._metadata = collections.OrderedDict({"": {"version": 1}})  # type: ignore[attr-defined]
    bn = nc.BatchNorm(4, momentum=momentum)
    bn.load_state_dict(state)
    assert int(bn.num_batches_tracked) == 0
    assert torch.equal(bn.running_var, state["running_var"])
    state_no_metadata = dict(state)  # a plain dict, as an old pickle gives
    bn2 = nc.BatchNorm(4)
    bn2.load_state_dict(state_no_metadata)
    assert int(bn2.num_batches_tracked) == 0


# --------------------------------------------------------------------------------------------------
# GroupNorm, LayerNorm, InstanceNorm, FeatureLayerNorm
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("shape", "groups"),
    [((4, 12, 5), 3), ((3, 12, 4, 4), 4), ((3, 12, 4, 4), 12), ((3, 12, 4, 4), 1), ((2, 12, 3, 2, 2), 6)],
)
def test_groupnorm_matches_torch(shape, groups, gen):
    ref = randomize_(nn.GroupNorm(groups, 12))
    ours = nc.GroupNorm(12, groups)
    ours.load_state_dict(ref.state_dict())
    _run_pair(ours, ref, torch.randn(shape, generator=gen) * 3 + 1, gen)
    by_size = nc.GroupNorm(12, group_size=12 // groups)
    by_size.load_state_dict(ref.state_dict())
    assert by_size.num_groups == groups
    x = torch.randn(shape, generator=gen)
    assert torch.equal(by_size(x), ours(x))


@pytest.mark.parametrize("shape", [(3, 6, 5), (3, 6, 4, 5), (2, 6, 3, 4, 2)], ids=lambda s: f"{len(s) - 2}d")
def test_layernorm_is_groupnorm_with_one_group_and_layer_norm_over_chw(shape, gen):
    """GN paper §3.1: LN = GN with G = 1: statistics over (C, *) of each sample, per-channel affine.
    Equals nn.GroupNorm(1, C) and F.layer_norm over (C, *) with the affine expanded per element."""
    ours = randomize_(nc.LayerNorm(6))
    ref = nn.GroupNorm(1, 6)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(shape, generator=gen) * 2 - 1
    _run_pair(ours, ref, x, gen)
    expand = (6,) + (1,) * (len(shape) - 2)
    w = ours.weight.detach().view(expand).expand(shape[1:])
    b = ours.bias.detach().view(expand).expand(shape[1:])
    assert_close(ours(x), F.layer_norm(x, shape[1:], w, b, 1e-5), **TOL)


@pytest.mark.parametrize("shape", [(3, 5, 7), (3, 5, 4, 6), (2, 5, 3, 4, 2)], ids=lambda s: f"{len(s) - 2}d")
def test_instancenorm_matches_torch_affine(shape, gen):
    ref_cls = {3: nn.InstanceNorm1d, 4: nn.InstanceNorm2d, 5: nn.InstanceNorm3d}[len(shape)]
    ref = randomize_(ref_cls(5, affine=True))
    ours = nc.InstanceNorm(5)
    ours.load_state_dict(ref.state_dict())
    for mode in ("train", "eval"):
        getattr(ours, mode)()
        getattr(ref, mode)()
        _run_pair(ours, ref, torch.randn(shape, generator=gen) * 2 + 3, gen)


def test_instancenorm_with_running_stats_matches_torch(gen):
    """track_running_stats=True: training updates running averages like nn.InstanceNorm2d, and eval
    normalizes with them (pytorch/pytorch#58843)."""
    ref = randomize_(nn.InstanceNorm2d(5, affine=True, track_running_stats=True))
    ours = nc.InstanceNorm(5, track_running_stats=True)
    ours.load_state_dict(ref.state_dict())
    for x in _batches((3, 5, 4, 4), gen, steps=3):
        _run_pair(ours, ref, x, gen)
    assert_close(ours.running_mean, ref.running_mean, **TOL)
    assert_close(ours.running_var, ref.running_var, **TOL)
    ours.eval()
    ref.eval()
    _run_pair(ours, ref, torch.randn(3, 5, 4, 4, generator=gen), gen)


def test_groupnorm_with_one_channel_per_group_is_instancenorm(gen):
    x = torch.randn(3, 6, 4, 5, generator=gen)
    gn, inorm = randomize_(nc.GroupNorm(6, 6)), nc.InstanceNorm(6)
    inorm.load_state_dict(gn.state_dict())
    assert torch.equal(gn(x), inorm(x))


@pytest.mark.parametrize("shape", [(4, 10), (3, 5, 10)], ids=["NF", "NTF"])
def test_feature_layernorm_matches_nn_layernorm(shape, gen):
    ref = randomize_(nn.LayerNorm(10))
    ours = nc.FeatureLayerNorm(10)
    ours.load_state_dict(ref.state_dict())
    _run_pair(ours, ref, torch.randn(shape, generator=gen) * 4 + 2, gen)


def test_layernorm_equals_feature_layernorm_on_flat_features(gen):
    """On (N, F) input the GN paper's LN (statistics over all non-batch dims) and the LN paper's (over
    the last dim) are the same function."""
    ln, fln = randomize_(nc.LayerNorm(10)), nc.FeatureLayerNorm(10)
    fln.load_state_dict(ln.state_dict())
    x = torch.randn(7, 10, generator=gen) * 3
    assert_close(ln(x), fln(x), atol=1e-6, rtol=1e-6)
