"""normcore beside the code people already run (issue 11): timm 1.0.31, mmcv-lite 2.2.0 / mmengine 0.10.7,
torchvision, and PyTorch's own module test inputs (``torch.testing._internal.common_modules.module_db``).

Where a setting is shared, normcore equals them sample by sample. Settings normcore does not take are
not skipped silently: every skipped sample must carry one of :data:`UNSUPPORTED`'s reasons, each of
which is listed in normcore/README.md ("Settings normcore does not take").

Tolerances: 1e-5 (float32) / 1e-10 (float64), absolute and relative, where both sides run different
code on the same O(1) data; ``torch.equal`` where they share a kernel.
"""

from __future__ import annotations

import copy
import inspect
import pathlib
import sys
import types
import unittest
import warnings

import pytest
import torch
from conftest import randomize_
from torch import nn
from torch.testing import assert_close

import normcore as nc

timm_layers = pytest.importorskip("timm.layers", reason="timm is in the dev extras: pip install -e '.[dev]'")

README = pathlib.Path(nc.__file__).parent / "README.md"
TOL = {torch.float32: {"atol": 1e-5, "rtol": 1e-5}, torch.float64: {"atol": 1e-10, "rtol": 1e-10}}


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors: one intra-op thread, as conftest gives the test_normcore modules (two OpenMP threads
    on the shared 2-core machine waited on each other: 0.5 s per module_db sample, 0.03 s with one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------------
# PyTorch's module_db
# --------------------------------------------------------------------------------------------------
def _module_db():
    """PyTorch's ``module_db``; its test utilities import ``expecttest`` only for their TestCase base,
    which these tests do not use, so a stand-in is provided when it is not installed."""
    if "expecttest" not in sys.modules:
        try:
            import expecttest  # noqa: F401
        except ImportError:
            stub = types.ModuleType("expecttest")
            stub.TestCase = unittest.TestCase  # type: ignore[attr-defined]
            sys.modules["expecttest"] = stub
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.testing._internal.common_modules import module_db
    return module_db


NATIVE = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d")
NATIVE += ("InstanceNorm3d", "LayerNorm")

UNSUPPORTED: dict[str, str] = {}
"""Reason id -> the README sentence that states it. Every module_db sample of the four families maps to
a normcore layer in torch 2.14.1, so nothing is skipped today; a torch upgrade that adds a setting
normcore lacks must add its reason here and to the README, or this test fails."""


def _normcore_twin(cls_name: str, bound: dict) -> nn.Module:
    """The normcore layer with the same settings as ``torch.nn.<cls_name>(**bound)``."""
    if cls_name.startswith("BatchNorm"):
        return nc.BatchNorm(
            bound["num_features"], eps=bound.get("eps", 1e-5), momentum=bound.get("momentum", 0.1),
            affine=bound.get("affine", True), track_running_stats=bound.get("track_running_stats", True),
            bias=bound.get("bias", True),
        )  # fmt: skip
    if cls_name == "GroupNorm":
        return nc.GroupNorm(
            bound["num_channels"], bound["num_groups"], eps=bound.get("eps", 1e-5),
            affine=bound.get("affine", True), bias=bound.get("bias", True),
        )  # fmt: skip
    if cls_name.startswith("InstanceNorm"):
        return nc.InstanceNorm(
            bound["num_features"], eps=bound.get("eps", 1e-5), momentum=bound.get("momentum", 0.1),
            affine=bound.get("affine", False), track_running_stats=bound.get("track_running_stats", False),
            bias=bound.get("bias", True), spatial_dims=int(cls_name[-2]),
        )  # fmt: skip
    if cls_name == "LayerNorm":
        return nc.FeatureLayerNorm(
            bound["normalized_shape"], eps=bound.get("eps", 1e-5), affine=bound.get("elementwise_affine", True),
            bias=bound.get("bias", True),
        )  # fmt: skip
    raise AssertionError(cls_name)


def _unsupported_reason(cls_name: str, bound: dict, inputs: tuple) -> str | None:
    """The :data:`UNSUPPORTED` id for a sample normcore does not take, else None."""
    return None


def _samples():
    for info in _module_db():
        name = info.module_cls.__name__
        if name not in NATIVE:
            continue
        for dtype in (torch.float32, torch.float64):
            for training in (True, False):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    samples = info.module_inputs_func(
                        info, device="cpu", dtype=dtype, requires_grad=True, training=training
                    )
                for i, sample in enumerate(samples):
                    yield pytest.param(info.module_cls, sample, dtype, training, id=f"{name}-{i}-{dtype}-{training}")


SAMPLES = list(_samples())


def test_module_db_covers_every_family_and_mode():
    families = {p.values[0].__name__ for p in SAMPLES}
    assert families == set(NATIVE)
    assert len(SAMPLES) >= 150


@pytest.mark.parametrize("module_cls, sample, dtype, training", SAMPLES)
def test_module_db_sample(module_cls, sample, dtype, training):
    args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
    bound = inspect.signature(module_cls).bind(*args, **kwargs).arguments
    inputs = sample.forward_input.args
    reason = _unsupported_reason(module_cls.__name__, bound, inputs)
    if reason is not None:
        assert reason in UNSUPPORTED and UNSUPPORTED[reason] in README.read_text()
        pytest.skip(reason)
    native = randomize_(module_cls(*args, **kwargs).to(dtype)).train(training)
    ours = _normcore_twin(module_cls.__name__, bound).to(dtype).train(training)
    ours.load_state_dict(native.state_dict())
    x1 = inputs[0].detach().clone().requires_grad_()
    x2 = inputs[0].detach().clone().requires_grad_()
    y_native, y_ours = native(x1), ours(x2)
    assert_close(y_ours, y_native, **TOL[dtype])
    if y_native.numel():
        g = torch.randn(y_native.shape, dtype=dtype, generator=torch.Generator().manual_seed(0))
        y_native.backward(g)
        y_ours.backward(g)
        assert_close(x2.grad, x1.grad, **TOL[dtype])
    for key, value in native.state_dict().items():
        assert_close(ours.state_dict()[key], value, **TOL[dtype], msg=key)


# --------------------------------------------------------------------------------------------------
# timm
# --------------------------------------------------------------------------------------------------
def test_timm_stdconv2d_is_ws_biased_at_eps_1e_6():
    torch.manual_seed(0)
    timm_conv = timm_layers.StdConv2d(8, 16, 3, padding=1, bias=True)  # timm's default eps 1e-6
    ours = nc.WSConv2d(8, 16, 3, padding=1, variant="biased", eps=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # timm's WS-trained weights carry no tag: no false warning
        ours.load_state_dict(timm_conv.state_dict())
    x = torch.randn(2, 8, 7, 7)
    assert_close(ours(x), timm_conv(x), atol=1e-5, rtol=1e-5)
    bit = timm_layers.StdConv2d(8, 16, 3, eps=1e-8)  # BiT models; timm pads "same" by default
    ours_bit = nc.WSConv2d(8, 16, 3, padding=1, variant="biased", eps=1e-8, bias=False)
    ours_bit.load_state_dict(bit.state_dict())
    assert_close(ours_bit(x), bit(x), atol=1e-5, rtol=1e-5)


def test_timm_stdconv_checkpoint_reports_the_formula():
    torch.manual_seed(0)
    timm_model = nn.Sequential(timm_layers.StdConv2d(3, 8, 3, padding=0), nn.GroupNorm(4, 8))
    default_ws = nn.Sequential(nc.WSConv2d(3, 8, 3, bias=False), nc.GroupNorm(8, 4))
    report = nc.load_checkpoint_into(default_ws, timm_model.state_dict(), layout="timm")
    assert report.ok and "WS variant 'biased'" in report.notes[0] and "'eps': 1e-06" in report.notes[0]
    matching = nn.Sequential(nc.WSConv2d(3, 8, 3, bias=False, variant="biased", eps=1e-6), nc.GroupNorm(8, 4))
    assert not nc.load_checkpoint_into(matching, timm_model.state_dict(), layout="timm").notes
    x = torch.randn(2, 3, 9, 9)
    assert_close(matching(x), timm_model(x), atol=1e-5, rtol=1e-5)


def test_timm_groupnorm_and_groupnorm1_are_gn_and_ln():
    x = torch.randn(2, 32, 5, 5) * 2 + 1
    pairs = [
        (timm_layers.GroupNorm(32, num_groups=8), nc.GroupNorm(32, 8)),
        (timm_layers.GroupNorm1(32), nc.LayerNorm(32)),
        (timm_layers.create_norm_layer("groupnorm1", 32), nc.build_norm("groupnorm1", 32)),
        (timm_layers.create_norm_layer("batchnorm2d", 32), nc.build_norm("batchnorm2d", 32)),
        (timm_layers.create_norm_layer("frozenbatchnorm2d", 32), nc.build_norm("frozenbatchnorm2d", 32)),
    ]
    pairs.append((timm_layers.create_norm_layer("batchnorm1d", 32), nc.build_norm("batchnorm1d", 32)))
    for theirs, ours in pairs:
        randomize_(theirs)
        ours.load_state_dict(theirs.state_dict())
        inputs = x.flatten(2) if isinstance(theirs, nn.BatchNorm1d) else x
        assert_close(ours(inputs), theirs(inputs), atol=1e-5, rtol=1e-5, msg=type(theirs).__name__)
    # timm's 'layernorm' is the LN paper's, over the last dimension, at timm's eps 1e-6: normcore's 'feature_ln'
    theirs, ours = timm_layers.create_norm_layer("layernorm", 5), nc.build_norm("feature_ln", 5, eps=1e-6)
    randomize_(theirs)
    ours.load_state_dict(theirs.state_dict())
    assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)


def _bn_act(act: type[nn.Module]) -> nn.Module:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), timm_layers.BatchNormAct2d(8, act_layer=act))
    with torch.no_grad():
        model(torch.randn(4, 3, 8, 8) * 3)  # running statistics
    return model.eval()


@pytest.mark.parametrize("act", [nn.ReLU, nn.PReLU])
def test_freezing_timm_batchnormact_keeps_the_activation(act):
    model = _bn_act(act)
    x = torch.randn(2, 3, 8, 8)
    expected = model(x)
    frozen_by_timm = timm_layers.freeze_batch_norm_2d(copy.deepcopy(model))
    frozen = nc.freeze_norms(copy.deepcopy(model)).train()  # stays frozen in training mode
    assert isinstance(frozen[1], nc.FrozenBatchNorm) and isinstance(frozen[1].act, act)
    assert_close(frozen(x), expected)
    assert_close(frozen(x), frozen_by_timm(x))
    assert set(frozen.state_dict()) == set(frozen_by_timm.state_dict())


def test_converting_timm_batchnormact_keeps_the_activation():
    model = _bn_act(nn.ReLU)
    with pytest.warns(UserWarning, match="BN-trained affine parameters"):
        converted = nc.convert_norms(copy.deepcopy(model), "gn", num_groups=4)
    x = torch.randn(2, 3, 8, 8)
    gn = nc.GroupNorm(8, 4)
    gn.load_state_dict({k: v for k, v in model[1].state_dict().items() if k in ("weight", "bias")})
    assert_close(converted(x), torch.relu(gn(model[0](x))))
    assert (converted(x) >= 0).all()


# --------------------------------------------------------------------------------------------------
# mmcv / mmengine
# --------------------------------------------------------------------------------------------------
mmcv_cnn = pytest.importorskip("mmcv.cnn", reason="the mmcv extra: pip install -e '.[mmcv]'")


def test_mmcv_conv_ws_and_conv_aws_are_official_and_bcn():
    from mmcv.cnn.bricks.conv_ws import ConvAWS2d, ConvWS2d

    torch.manual_seed(0)
    x = torch.randn(2, 8, 7, 7)
    ws = ConvWS2d(8, 16, 3, padding=1)
    ours = nc.WSConv2d(8, 16, 3, padding=1, variant="official")
    ours.load_state_dict(ws.state_dict())
    assert_close(ours(x), ws(x), atol=1e-5, rtol=1e-5)
    aws = ConvAWS2d(8, 16, 3, padding=1)  # weight_gamma = 1, weight_beta = 0: the plain formula
    ours_aws = nc.WSConv2d(8, 16, 3, padding=1, variant="bcn")
    ours_aws.load_state_dict({k: v for k, v in aws.state_dict().items() if not k.startswith("weight_")})
    assert_close(ours_aws(x), aws(x), atol=1e-5, rtol=1e-5)


def test_mmcv_is_norm_and_mmengine_norm_decay_see_normcore_norms():
    """mmcv's ``is_norm`` is mmengine's test for ``norm_decay_mult``: every normcore norm with affine
    parameters passes it, so ``norm_decay_mult=0`` stops their decay. FrozenBatchNorm has no parameters
    (buffers only) and stays outside it, as torchvision's and detectron2's: a ``_BatchNorm`` subclass
    would be turned back into a trainable SyncBatchNorm by ``convert_sync_batchnorm``."""
    from mmengine.optim import DefaultOptimWrapperConstructor

    norms = [nc.BatchNorm(8), nc.GroupNorm(8, 4), nc.LayerNorm(8), nc.InstanceNorm(8), nc.BatchChannelNorm(8, 4)]
    norms += [nc.EstimatedBatchNorm(8), nc.FeatureLayerNorm(8)]
    assert all(mmcv_cnn.is_norm(m) for m in norms if not isinstance(m, nc.FeatureLayerNorm))
    assert not list(nc.FrozenBatchNorm(8).parameters())
    model = nn.Sequential(*[nn.Sequential(nn.Conv2d(8, 8, 1), m) for m in norms[:-1]])
    cfg = {"type": "OptimWrapper", "optimizer": {"type": "SGD", "lr": 0.1, "weight_decay": 1e-4}}
    wrapper = DefaultOptimWrapperConstructor(cfg, {"norm_decay_mult": 0.0})(model)
    decay = {id(p): g["weight_decay"] for g in wrapper.optimizer.param_groups for p in g["params"]}
    for m in norms[:-1]:
        for name, p in m.named_parameters(recurse=False):
            assert decay[id(p)] == 0.0, f"{type(m).__name__}.{name}"
    assert all(decay[id(p)] == 1e-4 for p in model[0][0].parameters())


# --------------------------------------------------------------------------------------------------
# torchvision
# --------------------------------------------------------------------------------------------------
def test_torchvision_frozen_bn_and_freezing():
    torchvision = pytest.importorskip("torchvision")
    tv = torchvision.ops.FrozenBatchNorm2d(8)
    randomize_(tv)
    ours = nc.FrozenBatchNorm(8)
    ours.load_state_dict(tv.state_dict())
    x = torch.randn(2, 8, 5, 5)
    assert_close(ours(x), tv(x), atol=1e-6, rtol=1e-5)  # torchvision multiplies by a precomputed scale
    model = torchvision.models.resnet18(norm_layer=torchvision.ops.FrozenBatchNorm2d)
    converted = nc.convert_norms(model, "frozen_bn")
    assert sum(isinstance(m, nc.FrozenBatchNorm) for m in converted.modules()) == 20
