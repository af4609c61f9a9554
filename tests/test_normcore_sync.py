"""SyncBatchNorm: without a process group it is BatchNorm and warns once; in a gloo group of two CPU
processes its training output, gradients and running statistics equal BatchNorm on the concatenated
batch, with uneven and empty per-rank batches weighted by their counts; its gathered path passes
gradcheck in a one-process group."""

from __future__ import annotations

import gc
import os
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.autograd import gradcheck
from torch.func import functional_call
from torch.testing import assert_close

import normcore as nc

TOL = {"atol": 1e-5, "rtol": 1e-5}
C = 6
# Per-rank batch sizes of the two-process runs: even, uneven, one rank empty.
SPLITS = [(4, 4), (3, 5), (0, 8)]
STEPS = 2
needs_gloo = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo backend")


def _batch(split: tuple[int, int], step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The full batch of one step and the upstream gradient, identical in every process."""
    gen = torch.Generator().manual_seed(100 * step + sum(split))
    n = sum(split)
    x = torch.randn(n, C, 3, 3, generator=gen, dtype=torch.float64).float() * (1 + step) + 2 * step
    return x, torch.randn(n, C, 3, 3, generator=gen)


def _layer(cls: type[nn.Module]) -> nn.Module:
    layer = cls(C, momentum=0.3)
    with torch.no_grad():
        layer.weight.copy_(torch.linspace(0.5, 1.5, C))
        layer.bias.copy_(torch.linspace(-1.0, 1.0, C))
    return layer


def _conv_bn(cls: type[nn.Module]) -> nn.Sequential:
    conv = nn.Conv2d(C, C, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.linspace(-1.0, 1.0, C * C).view(C, C, 1, 1))
    return nn.Sequential(conv, _layer(cls))


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    """One rank: SyncBatchNorm on its slice of each step's batch; save what the test compares."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        for split in SPLITS:
            layer = _layer(nc.SyncBatchNorm)
            start = sum(split[:rank])
            record = {"y": [], "x_grad": [], "w_grad": [], "b_grad": []}
            for step in range(STEPS):
                x, g = _batch(split, step)
                x = x[start : start + split[rank]].clone().requires_grad_()
                layer.zero_grad()
                y = layer(x)
                y.backward(g[start : start + split[rank]])
                record["y"].append(y.detach())
                record["x_grad"].append(x.grad)
                record["w_grad"].append(layer.weight.grad.clone())
                record["b_grad"].append(layer.bias.grad.clone())
            record["running_mean"] = layer.running_mean
            record["running_var"] = layer.running_var
            torch.save(record, Path(out_dir) / f"split{split[0]}_{split[1]}_rank{rank}.pt")
        # Inside DistributedDataParallel on CPU modules (torch.nn.SyncBatchNorm is refused there).
        ddp = nn.parallel.DistributedDataParallel(_conv_bn(nc.SyncBatchNorm))
        x, g = _batch((4, 4), 0)
        ddp(x[4 * rank : 4 * rank + 4]).backward(g[4 * rank : 4 * rank + 4])
        torch.save(ddp.module[0].weight.grad, Path(out_dir) / f"ddp_rank{rank}.pt")
        # DDP's reducer keeps the process group alive through reference cycles; if it is freed only
        # at interpreter exit, gloo's threads are torn down there and the process aborts
        # ("terminate called without an active exception"). Free it now, and let both ranks reach
        # this point before either closes its connections.
        del ddp
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()


@needs_gloo
@pytest.mark.slow
def test_two_process_gloo_sync_batchnorm_equals_batchnorm_on_the_whole_batch(tmp_path):
    """Spawned ranks on CPU (gloo, file:// rendezvous). Per step: each rank's output and input
    gradient equal the matching slice of nn.BatchNorm2d on the concatenated batch; the ranks'
    parameter gradients sum (as DDP's all-reduce does) to BatchNorm's; both ranks end with
    BatchNorm's running statistics. An empty rank contributes nothing and still takes part. Wrapped in
    DistributedDataParallel on CPU, a conv -> SyncBatchNorm model gets the whole-batch gradient."""
    mp.spawn(_worker, args=(2, str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=2, join=True)
    for split in SPLITS:
        ranks = [torch.load(tmp_path / f"split{split[0]}_{split[1]}_rank{r}.pt") for r in range(2)]
        ref = _layer(nn.BatchNorm2d)
        for step in range(STEPS):
            x, g = _batch(split, step)
            x.requires_grad_()
            ref.zero_grad()
            y = ref(x)
            y.backward(g)
            for name, whole in (("y", y.detach()), ("x_grad", x.grad)):
                got = torch.cat([r[name][step] for r in ranks])
                assert_close(got, whole, **TOL, msg=f"{name}, split {split}, step {step}")
            assert_close(ranks[0]["w_grad"][step] + ranks[1]["w_grad"][step], ref.weight.grad, **TOL)
            assert_close(ranks[0]["b_grad"][step] + ranks[1]["b_grad"][step], ref.bias.grad, **TOL)
        for r in ranks:
            assert_close(r["running_mean"], ref.running_mean, **TOL, msg=f"running_mean, split {split}")
            assert_close(r["running_var"], ref.running_var, **TOL, msg=f"running_var, split {split}")
    # DDP averages the ranks' gradients: twice that is the whole-batch gradient of conv -> BatchNorm.
    ref = _conv_bn(nn.BatchNorm2d)
    x, g = _batch((4, 4), 0)
    ref(x).backward(g)
    for r in range(2):
        assert_close(2 * torch.load(tmp_path / f"ddp_rank{r}.pt"), ref[0].weight.grad, **TOL)


@pytest.fixture
def one_process_group(tmp_path):
    """A gloo process group of world size 1 in this process, torn down afterwards."""
    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


class _Gathered(nc.SyncBatchNorm):
    """SyncBatchNorm forced onto its multi-rank CPU path (all-gathered moments), which a world of one
    would otherwise skip."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._gathered_forward(x)


@needs_gloo
def test_gathered_path_gradcheck_and_equals_batchnorm(one_process_group):
    """float64 gradcheck through the all-gather (w.r.t. input, weight and bias), and the same values as
    BatchNorm (output and running variance) in a world of one."""
    layer, ref = _layer(_Gathered).double(), _layer(nn.BatchNorm2d).double()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, C, 2, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    assert_close(layer(x), ref(x))
    assert_close(layer.running_var, ref.running_var)
    names = ["weight", "bias"]
    params = tuple(getattr(layer, n).detach().clone().requires_grad_() for n in names)
    assert gradcheck(lambda x, *ps: functional_call(layer, dict(zip(names, ps)), (x,)), (x, *params))


def test_without_process_group_equals_batchnorm_and_warns_exactly_once(monkeypatch):
    if dist.is_available() and dist.is_initialized():
        pytest.skip("a process group is initialised in this process")
    monkeypatch.setattr(nc.SyncBatchNorm, "_warned_no_group", False)
    layers = [nc.SyncBatchNorm(C), nc.SyncBatchNorm(C)]
    ref = nn.BatchNorm2d(C)
    gen = torch.Generator().manual_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(3):
            x = torch.randn(4, C, 3, 3, generator=gen) + step
            y_ref = ref(x)
            for layer in layers:
                assert_close(layer(x), y_ref, **TOL)
        for layer in layers:
            layer.eval()(x)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert "no torch.distributed process group" in messages[0] and "convert_norms(model, 'bn')" in messages[0]
    for layer in layers:
        assert_close(layer.running_mean, ref.running_mean, **TOL)
        assert_close(layer.running_var, ref.running_var, **TOL)
        assert int(layer.num_batches_tracked) == 3


def test_sync_batchnorm_state_dict_is_batchnorms():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sync = nc.SyncBatchNorm(C)
    assert list(sync.state_dict()) == list(nn.BatchNorm2d(C).state_dict())
    nn.BatchNorm2d(C).load_state_dict(sync.state_dict())
    assert os.environ.get("WORLD_SIZE") in (None, "1")  # the tests above assume a single-process run
