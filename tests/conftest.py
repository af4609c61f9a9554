"""Shared fixtures for the test suite.

``norm_case`` parametrizes a test over every channels-first normcore normalization layer (each in a
non-trivial state: random affine parameters and running statistics), ``conv_case`` over the
weight-reparametrized convolutions. Tests that must hold "for every layer" use them, so a layer added
here is covered everywhere at once.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
from torch import nn

import normcore as nc


def randomize_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every floating parameter and running statistic of a norm layer random values (gains near
    1, variances positive), so that parity tests cannot pass on the identity initialisation."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in [*module.named_parameters(), *module.named_buffers()]:
            if not t.is_floating_point() or name.endswith("estbn_moving_speed"):
                continue
            r = torch.randn(t.shape, generator=gen).to(t.dtype)
            if name.endswith("running_var"):
                t.copy_(r.abs() + 0.5)
            elif name.endswith("weight"):
                t.copy_(1.0 + 0.3 * r)
            else:
                t.copy_(0.3 * r)
    return module


def _sync_bn(c: int) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nc.SyncBatchNorm(c)


NORM_LAYERS: dict[str, Callable[[int], nn.Module]] = {
    "bn": lambda c: nc.BatchNorm(c),
    "bn_virtual": lambda c: nc.BatchNorm(c, virtual_devices=2),
    "sync_bn": _sync_bn,
    "frozen_bn": lambda c: nc.FrozenBatchNorm(c),
    "gn": lambda c: nc.GroupNorm(c, 4),
    "ln": lambda c: nc.LayerNorm(c),
    "in": lambda c: nc.InstanceNorm(c),
    "in_tracked": lambda c: nc.InstanceNorm(c, track_running_stats=True),
    "bcn": lambda c: nc.BatchChannelNorm(c, 4),
    "bcn_estimate": lambda c: nc.BatchChannelNorm(c, 4, estimate=True),
    "est_bn": lambda c: nc.EstimatedBatchNorm(c),
}
"""Every channels-first normalization layer, keyed by a test id; each takes ``num_channels``."""


def _ws_conv(variant: str) -> Callable[[int, int], nn.Module]:
    return lambda i, o: nc.WSConv2d(i, o, 3, padding=1, variant=variant)


CONV_LAYERS: dict[str, Callable[[int, int], nn.Module]] = {
    **{f"ws_{v}": _ws_conv(v) for v in nc.functional.WS_VARIANTS},
    "normprop": lambda i, o: nc.NormPropConv2d(i, o, 3, padding=1),
}
"""The weight-reparametrized 3x3 convolutions, keyed by a test id; each takes ``(in, out)``."""


@pytest.fixture(params=sorted(NORM_LAYERS))
def norm_case(request) -> tuple[str, Callable[[int], nn.Module]]:
    """``(name, factory)`` for every normalization layer; the factory returns a randomized layer."""
    name = request.param
    return name, lambda c, seed=0: randomize_(NORM_LAYERS[name](c), seed)


@pytest.fixture(params=sorted(CONV_LAYERS))
def conv_case(request) -> tuple[str, Callable[[int, int], nn.Module]]:
    """``(name, factory)`` for every weight-reparametrized convolution."""
    return request.param, CONV_LAYERS[request.param]


@pytest.fixture(autouse=True)
def _one_intra_op_thread(request):
    """The normcore tests run with one intra-op thread. Their tensors are small, and on a machine shared
    with other jobs two OpenMP threads wait on each other whenever one is descheduled: ResNet-50
    forward+backward on 2x3x64x64 took 20 s of wall time with 2 threads and 1.5-2 s with 1 (measured
    under load on the 2-core development machine). Other test modules keep the process setting."""
    if not request.module.__name__.startswith("test_normcore"):
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def gen() -> torch.Generator:
    """A CPU generator seeded with 0, for inputs that do not depend on test order."""
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="session")
def fashion_mnist_dir(tmp_path_factory):
    """A small generated dataset in Fashion-MNIST's format (:mod:`tests.fixtures.fashion_mnist`), made the
    expected files for this test session (``NORMCORE_FASHION_MNIST_MANIFEST``, which spawned workers
    inherit). Pass it as ``data=`` to a CPU experiment's ``run``."""
    import os

    from reproductions.smallscale.fashion_mnist import MANIFEST_ENV
    from tests.fixtures.fashion_mnist import write_fashion_mnist

    folder = write_fashion_mnist(tmp_path_factory.mktemp("fashion_mnist"))
    before = os.environ.get(MANIFEST_ENV)
    os.environ[MANIFEST_ENV] = str(folder / "manifest.json")
    yield folder
    if before is None:
        os.environ.pop(MANIFEST_ENV, None)
    else:
        os.environ[MANIFEST_ENV] = before
