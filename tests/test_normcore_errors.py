"""Bad input gets an error that says what is wrong and what to do; nothing falls back silently (the
one documented exception, SyncBatchNorm without a process group, is tested in test_normcore_sync.py)."""

from __future__ import annotations

import warnings

import pytest
import torch

import normcore as nc

BATCH_FIXES = ["at least 2 samples", "drop_last=True", "GroupNorm 'gn'", "BatchChannelNorm 'bcn'", "eval mode"]


def _message(excinfo) -> str:
    return str(excinfo.value)


@pytest.mark.parametrize(
    "build",
    [
        lambda: nc.GroupNorm(60),
        lambda: nc.GroupNorm(60, 8),
        lambda: nc.build_norm("gn", 60),
        lambda: nc.BatchChannelNorm(60),
    ],
    ids=["gn_default_32", "gn_8", "registry", "bcn"],
)
def test_channels_not_divisible_by_groups_lists_the_valid_counts(build):
    with pytest.raises(ValueError) as err:
        build()
    msg = _message(err)
    assert "not divisible" in msg
    assert "[1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60]" in msg
    assert "group_size" in msg


def test_group_size_must_divide_and_excludes_num_groups():
    with pytest.raises(ValueError, match=r"group_size=5 does not divide num_channels=64.*\[1, 2, 4, 8, 16, 32, 64\]"):
        nc.GroupNorm(64, group_size=5)
    with pytest.raises(ValueError, match=r"num_groups .* or group_size .* not both"):
        nc.GroupNorm(64, 16, group_size=4)
    assert nc.GroupNorm(64, group_size=8).num_groups == 8  # "group size 8" = 8 channels per group


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (lambda: nc.BatchNorm(4), (1, 4)),
        (lambda: nc.BatchNorm(4), (1, 4, 1, 1)),
        (lambda: nc.BatchChannelNorm(4, 1), (1, 4, 1, 1)),
        (lambda: nc.SyncBatchNorm(4), (1, 4)),
    ],
    ids=["bn_flat", "bn_pooled", "bcn", "sync_bn"],
)
def test_batchnorm_with_one_value_per_channel_names_the_fixes(layer, shape):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = layer()
        with pytest.raises(ValueError) as err:
            module(torch.randn(shape))
    msg = _message(err)
    assert "only one value per channel" in msg and str(shape) in msg
    for fix in BATCH_FIXES:
        assert fix in msg, fix
    module.eval()(torch.randn(shape))  # the suggested fix works


def test_one_value_per_channel_per_virtual_device():
    with pytest.raises(ValueError, match=r"per virtual device \(2 devices\)"):
        nc.BatchNorm(4, virtual_devices=2)(torch.randn(2, 4))


def test_virtual_devices_must_divide_the_batch():
    bn = nc.BatchNorm(4, virtual_devices=4)
    with pytest.raises(ValueError, match=r"batch of 6 samples.*4 equal slices.*multiple of 4.*drop_last"):
        bn(torch.randn(6, 4, 2, 2))
    bn.eval()(torch.randn(6, 4, 2, 2))  # eval uses running statistics: no split needed


def test_bad_virtual_device_arguments():
    with pytest.raises(ValueError, match="virtual_devices must be >= 1"):
        nc.BatchNorm(4, virtual_devices=0)
    with pytest.raises(ValueError, match="'mean' or 'first'"):
        nc.BatchNorm(4, virtual_devices=2, virtual_running_stats="last")


def test_unknown_norm_name_lists_names_and_suggests():
    with pytest.raises(KeyError) as err:
        nc.build_norm("groupnrom", 8)
    msg = _message(err)
    assert "Did you mean 'gn'" in msg
    for name in nc.available_norms():
        assert name in msg
    assert "register_norm" in msg
    with pytest.raises(KeyError, match="Available: conv, normprop, ws"):
        nc.build_conv("wx", 3, 4, 3)


@pytest.mark.parametrize(
    ("layer", "shape", "expected"),
    [
        (lambda: nc.BatchNorm(4), (4,), "at least 2 dimensions"),
        (lambda: nc.GroupNorm(4, 2), (4,), "at least 2 dimensions"),
        (lambda: nc.InstanceNorm(4), (2, 4), "at least 3 dimensions"),
        (lambda: nc.FrozenBatchNorm(4), (4,), "at least 2 dimensions"),
        (lambda: nc.EstimatedBatchNorm(4), (4,), "at least 2 dimensions"),
        (lambda: nc.BatchChannelNorm(4, 2), (4,), "at least 2 dimensions"),
        (lambda: nc.FeatureLayerNorm(4), (), "at least 1 dimensions"),
    ],
    ids=["bn", "gn", "in", "frozen_bn", "est_bn", "bcn", "feature_ln"],
)
def test_wrong_rank(layer, shape, expected):
    with pytest.raises(ValueError, match=expected) as err:
        layer()(torch.randn(shape))
    assert "Channels come first" in _message(err)


def test_wrong_channel_count(norm_case):
    _, make = norm_case
    with pytest.raises(ValueError, match=r"built for 8 channels but got 9 at dim 1.*permute"):
        make(8)(torch.randn(4, 9, 3, 3))


def test_wrong_feature_count_names_the_last_dimension():
    with pytest.raises(ValueError, match=r"built for 4 features but got 5 in the last dimension") as err:
        nc.FeatureLayerNorm(4)(torch.randn(2, 5))
    assert "permute" not in _message(err)


@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.bool])
def test_non_float_input(norm_case, dtype):
    _, make = norm_case
    with pytest.raises(TypeError, match=rf"floating-point tensor, got dtype {dtype}.*x.float\(\)"):
        make(4)(torch.ones(2, 4, 3, 3, dtype=dtype))


@pytest.mark.parametrize(
    "layer",
    [lambda: nc.FeatureLayerNorm(4), lambda: nc.NormPropLinear(4, 4), lambda: nc.NormPropInputNorm.from_data],
    ids=["feature_ln", "normprop_linear", "normprop_input"],
)
def test_non_float_input_feature_layers(layer):
    with pytest.raises(TypeError, match="floating-point"):
        layer()(torch.ones(2, 4, dtype=torch.long))


def test_instance_norm_on_one_pixel_explains():
    with pytest.raises(ValueError, match=r"one spatial position per channel.*before global pooling"):
        nc.InstanceNorm(4)(torch.randn(2, 4, 1, 1))
    tracked = nc.InstanceNorm(4, track_running_stats=True).eval()
    tracked(torch.randn(2, 4, 1, 1))  # eval with running statistics is well defined


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (lambda: nc.GroupNorm(4, 4), (2, 4, 1, 1)),
        (lambda: nc.GroupNorm(4, 4), (2, 4)),
        (lambda: nc.LayerNorm(1), (2, 1)),
        (lambda: nc.BatchChannelNorm(4, 4), (8, 4, 1, 1)),
    ],
    ids=["gn_pooled", "gn_flat", "ln_one_channel", "bcn_channel_stage"],
)
def test_one_value_per_group_raises_instead_of_returning_zeros(layer, shape):
    with pytest.raises(ValueError, match=r"each group holds a single value.*pytorch/pytorch#19250.*fewer groups"):
        layer()(torch.randn(shape))


def test_feature_layernorm_over_one_feature_raises():
    with pytest.raises(ValueError, match="fewer than 2 features"):
        nc.FeatureLayerNorm(1)


def test_config_and_spec_errors():
    with pytest.raises(ValueError, match="exactly one of 'name' or 'type'"):
        nc.build_norm({"name": "gn", "type": "bn"}, 8)
    with pytest.raises(ValueError, match="exactly one of 'name' or 'type'"):
        nc.build_norm({"num_groups": 2}, 8)
    with pytest.raises(TypeError, match="a name, a config dict, a callable or None"):
        nc.build_norm(3, 8)
    with pytest.raises(ValueError, match=r"exists for dim in \[1, 2, 3\], got dim=4"):
        nc.build_conv("ws", 3, 4, 3, dim=4)
    with pytest.raises(ValueError, match="must be non-negative"):
        nc.NormPropInputNorm(torch.zeros(3), -torch.ones(3))
