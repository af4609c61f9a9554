"""The name -> layer registry: every name and alias, config dicts, callables, torchvision's
``norm_layer=``, convolutions in 1d/2d/3d, and the errors for unknown names, bad keyword arguments
and duplicate registrations."""

from __future__ import annotations

import copy
import functools
import pickle

import pytest
import torch
import torchvision
from torch import nn

import normcore as nc
from normcore import registry

EXPECTED_CLASS = {
    "bn": nc.BatchNorm,
    "frozen_bn": nc.FrozenBatchNorm,
    "sync_bn": nc.SyncBatchNorm,
    "ln": nc.LayerNorm,
    "feature_ln": nc.FeatureLayerNorm,
    "in": nc.InstanceNorm,
    "gn": nc.GroupNorm,
    "bcn": nc.BatchChannelNorm,
    "est_bn": nc.EstimatedBatchNorm,
    "none": nn.Identity,
}


@pytest.fixture
def restore_registry():
    """Tests that register names leave the global registry as they found it."""
    saved = {r: (dict(r.entries), dict(r.lookup)) for r in (registry._NORMS, registry._CONVS)}
    yield
    for r, (entries, lookup) in saved.items():
        r.entries.clear()
        r.entries.update(entries)
        r.lookup.clear()
        r.lookup.update(lookup)


def _spellings(name: str) -> list[str]:
    """The ways users write a name: as registered, upper case, '-' for '_', no separators, spaced."""
    return [name, name.upper(), name.replace("_", "-"), name.replace("_", ""), name.replace("_", " ").title()]


def test_every_registered_norm_is_tested():
    assert sorted(EXPECTED_CLASS) == nc.available_norms()


@pytest.mark.parametrize("name", sorted(EXPECTED_CLASS))
def test_every_name_and_alias_builds_its_class(name):
    for alias in (name, *nc.norm_aliases()[name]):
        for spelling in _spellings(alias):
            layer = nc.build_norm(spelling, 64)
            assert type(layer) is EXPECTED_CLASS[name], spelling
            if name not in ("none", "feature_ln"):
                assert layer.num_channels == 64


def test_config_dicts_with_name_or_type_and_overrides():
    assert nc.build_norm({"name": "gn", "num_groups": 16}, 64).num_groups == 16
    assert nc.build_norm({"type": "GroupNorm", "group_size": 4}, 64).num_groups == 16
    assert nc.build_norm({"type": "gn", "num_groups": 16}, 64, num_groups=8).num_groups == 8  # kw wins
    bn = nc.build_norm({"name": "bn", "virtual_devices": 4, "momentum": None}, 8)
    assert bn.virtual_devices == 4 and bn.momentum is None
    assert nc.build_norm({"type": "bcn", "estimate": True}, 64).estimate


def test_callables_and_none():
    assert type(nc.build_norm(None, 8)) is nn.Identity
    assert type(nc.build_norm(nn.BatchNorm2d, 8)) is nn.BatchNorm2d
    gn = nc.build_norm(functools.partial(nc.GroupNorm, num_groups=2), 8)
    assert gn.num_groups == 2
    assert nc.build_norm(lambda c: nn.GroupNorm(1, c), 8).num_channels == 8


@pytest.mark.parametrize("name", ["gn", "frozen_bn", "in"])
def test_norm_layer_works_as_torchvision_norm_layer(name):
    """(Every norm, through ResNet-50 forward and backward: test_normcore_convert.py.)"""
    layer = nc.norm_layer(name)
    model = torchvision.models.resnet18(norm_layer=layer)
    norms = [m for m in model.modules() if type(m) is EXPECTED_CLASS[name]]
    assert len(norms) == 20  # resnet18: bn1 + 2 per block x 8 blocks + 3 downsample
    assert not any(isinstance(m, nn.BatchNorm2d) and type(m) is nn.BatchNorm2d for m in model.modules())
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 1000)  # layer4 at 2x2: IN needs > 1 pixel


def test_norm_layer_with_kwargs_is_picklable_and_readable():
    layer = nc.norm_layer("gn", num_groups=8)
    assert repr(layer) == "norm_layer('gn', num_groups=8)"
    clone = pickle.loads(pickle.dumps(layer))
    assert clone(64).num_groups == 8
    assert copy.deepcopy(layer)(16).num_groups == 8
    model = torchvision.models.resnet18(norm_layer=nc.norm_layer({"type": "gn", "num_groups": 16}))
    assert model.bn1.num_groups == 16


def test_norm_layer_checks_the_name_at_once():
    with pytest.raises(KeyError, match="unknown norm 'gm'"):
        nc.norm_layer("gm")


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_build_conv_and_conv_layer_in_every_dimension(dim):
    plain = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dim]
    ws = {1: nc.WSConv1d, 2: nc.WSConv2d, 3: nc.WSConv3d}[dim]
    assert type(nc.build_conv("ws", 3, 8, 3, dim=dim)) is ws
    assert type(nc.build_conv(None, 3, 8, 3, dim=dim)) is plain
    assert type(nc.build_conv("Conv", 3, 8, 3, dim=dim)) is plain
    made = nc.conv_layer("weight-standardization", dim=dim, variant="bcn")(3, 8, 3, padding=1)
    assert type(made) is ws and made.variant == "bcn" and made.padding == (1,) * dim
    x = torch.randn(2, 3, *([5] * dim))
    assert made(x).shape == (2, 8, *([5] * dim))


def test_conv_configs_and_normprop():
    conv = nc.build_conv({"type": "ws", "variant": "biased", "eps": 1e-6}, 3, 8, 3, stride=2)
    assert conv.variant == "biased" and conv.ws_eps == 1e-6 and conv.stride == (2, 2)
    assert type(nc.build_conv("np", 3, 8, 3)) is nc.NormPropConv2d
    assert sorted(nc.conv_aliases()) == nc.available_convs() == ["conv", "normprop", "ws"]


def test_bad_keyword_arguments_name_the_accepted_signature():
    with pytest.raises(TypeError) as err:
        nc.build_norm("gn", 64, groups=8)
    msg = str(err.value)
    assert "unexpected keyword argument 'groups'" in msg
    assert "'gn' accepts (num_channels" in msg and "num_groups" in msg and "group_size" in msg
    with pytest.raises(TypeError, match=r"'ws' accepts \(\*args.*dim"):
        nc.build_conv("ws", 3, 8, 3, varaint="bcn")


def test_register_norm_needs_force_for_duplicates(restore_registry):
    @nc.register_norm("scaled_id", aliases=("sid",))
    def scaled_identity(num_channels: int) -> nn.Module:
        """Identity (a test entry)."""
        return nn.Identity()

    assert type(nc.build_norm("Scaled-ID", 4)) is nn.Identity
    assert "scaled_id" in nc.available_norms()
    for name, aliases in [("scaled_id", ()), ("other", ("sid",)), ("gn", ()), ("mine", ("GroupNorm",))]:
        with pytest.raises(KeyError, match=r"already registered .* force=True"):
            nc.register_norm(name, nc.GroupNorm, aliases=aliases)
    nc.register_norm("gn", functools.partial(nc.GroupNorm, num_groups=4), force=True)
    assert nc.build_norm("gn", 64).num_groups == 4
    with pytest.raises(KeyError, match="unknown norm 'groupnorm'"):
        nc.build_norm("groupnorm", 64)  # the replaced entry's aliases went with it


def test_register_conv_needs_force_for_duplicates(restore_registry):
    with pytest.raises(KeyError, match="already registered"):
        nc.register_conv("ws", nc.WSConv2d)
    nc.register_conv("my_ws", lambda *a, dim=2, **kw: nc.WSConv2d(*a, variant="biased", **kw))
    assert nc.build_conv("myws", 3, 4, 3).variant == "biased"


# --------------------------------------------------------------------------------------------------
# NormInfo: what reproductions need to know about a norm
# --------------------------------------------------------------------------------------------------
EXPECTED_INFO = {  # name: (uses_batch_statistics, batch_dependent)
    "bn": (True, True),
    "sync_bn": (True, True),
    "bcn": (True, True),
    "est_bn": (False, True),
    "frozen_bn": (False, False),
    "ln": (False, False),
    "feature_ln": (False, False),
    "in": (False, False),
    "gn": (False, False),
    "none": (False, False),
}


def test_norm_info_of_every_registered_norm():
    assert set(EXPECTED_INFO) == set(nc.available_norms())
    for name, (uses, dependent) in EXPECTED_INFO.items():
        assert nc.norm_info(name) == nc.NormInfo(name, uses, dependent)
    # BCN's estimated batch stage normalizes with running estimates, but still updates them per micro-batch
    assert nc.norm_info("bcn", estimate=True) == nc.NormInfo("bcn", False, True)


def test_norm_info_takes_what_build_norm_takes():
    assert nc.norm_info("Batch-Channel_Norm", estimate=True).name == "bcn"
    assert nc.norm_info({"type": "BCN", "estimate": True}) == nc.NormInfo("bcn", False, True)
    assert nc.norm_info({"name": "bcn", "estimate": True}, estimate=False).uses_batch_statistics  # kwargs win
    assert nc.norm_info(None) == nc.NormInfo("none", False, False)
    assert nc.norm_info("SyncBN").name == "sync_bn"
    assert nc.norm_info(nn.BatchNorm2d) is None  # a callable: nothing is known
    with pytest.raises(KeyError, match="unknown norm 'bnn'"):
        nc.norm_info("bnn")


def test_registered_norms_declare_their_batch_flags(restore_registry):
    nc.register_norm("my_bn", nc.BatchNorm, uses_batch_statistics=True)
    nc.register_norm("my_est", nc.EstimatedBatchNorm, batch_dependent=True)
    nc.register_norm("my_ln", nc.LayerNorm)
    assert nc.norm_info("my_bn") == nc.NormInfo("my_bn", True, True)
    assert nc.norm_info("my_est") == nc.NormInfo("my_est", False, True)
    assert nc.norm_info("my_ln") == nc.NormInfo("my_ln", False, False)


def test_module_uses_batch_statistics_of_built_layers():
    uses = [nc.BatchNorm(4), nc.SyncBatchNorm(4), nn.BatchNorm2d(4), nn.SyncBatchNorm(4), nc.BatchChannelNorm(4, 2)]
    uses += [nn.BatchNorm1d(4, track_running_stats=False), nc.BatchNorm(4).eval()]  # in training semantics
    per_sample = [nc.EstimatedBatchNorm(4), nc.BatchChannelNorm(4, 2, estimate=True), nc.FrozenBatchNorm(4)]
    per_sample += [nc.GroupNorm(4, 2), nc.LayerNorm(4), nc.InstanceNorm(4), nn.GroupNorm(2, 4), nn.Identity()]
    per_sample += [torchvision.ops.FrozenBatchNorm2d(4)]
    assert all(nc.module_uses_batch_statistics(m) for m in uses)
    assert not any(nc.module_uses_batch_statistics(m) for m in per_sample)
    # the built module agrees with norm_info of the name that built it
    for name in nc.available_norms():
        built = nc.build_norm(name, 4, **({"num_groups": 2} if name in ("gn", "bcn") else {}))
        assert nc.module_uses_batch_statistics(built) == nc.norm_info(name).uses_batch_statistics, name


# --------------------------------------------------------------------------------------------------
# other libraries' names (issue 11, item 10)
# --------------------------------------------------------------------------------------------------
def test_timm_norm_names_are_known_or_explained():
    """timm's ``create_norm_layer`` names: the ones that mean a normcore layer build it; the ones that
    mean something normcore does not have say so (instead of 'unknown', or silently another layer)."""
    assert type(nc.build_norm("batchnorm1d", 4)) is nc.BatchNorm
    assert type(nc.build_norm("batchnorm3d", 4)) is nc.BatchNorm
    assert type(nc.build_norm("groupnorm1", 4)) is nc.LayerNorm  # timm GroupNorm1 = GN with one group
    assert type(nc.build_norm("frozenbatchnorm2d", 4)) is nc.FrozenBatchNorm
    with pytest.raises(KeyError, match="over the channels only; normcore has no such layer"):
        nc.build_norm("layernorm2d", 4)
    with pytest.raises(KeyError, match=r"torch\.nn\.RMSNorm"):
        nc.build_norm("rmsnorm", 4)


def test_unknown_name_suggests_each_name_once():
    with pytest.raises(KeyError) as err:
        nc.build_norm("batchnrm", 4)
    hint = str(err.value).split("Did you mean ")[1].split("?")[0]
    names = [h.strip(" '") for h in hint.split(",")]
    assert len(names) == len(set(names)), hint
