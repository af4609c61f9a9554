"""Unit tests of the full-scale engine (reproductions/common): configs, schedules, parameter groups,
samplers, per-sample seeding, checkpoints, metrics, batch reporting, model building, CLI."""

from __future__ import annotations

import argparse
import io
import random

import numpy as np
import pytest
import torch
from torch import nn

import normcore
from reproductions.engine import checkpoint as ckpt
from reproductions.engine.cli import config_from_args, engine_parser
from reproductions.engine.config import ConfigError, apply_overrides, load_config, merge
from reproductions.engine.optim import param_groups
from reproductions.engine.precision import Precision
from reproductions.engine.sampling import GlobalBatchSampler, SeededDataset, ShardSampler, sample_seed
from reproductions.engine.schedules import LRSchedule, build_scheduler, scaled_lr
from reproductions.engine.session import median_of_last
from reproductions.engine.trainer import _WindowSums, batch_report, move_to_device
from reproductions.tasks.classification.main import CLASSIFICATION_DEFAULTS, topk_correct
from reproductions.tasks.models import build_model, norm_name


# --------------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------------
def test_config_inherits_overrides_and_replaces_kwargs(tmp_path):
    (tmp_path / "_base.yaml").write_text("model:\n  norm: gn\n  norm_kwargs: {num_groups: 32}\noptim:\n  lr: 0.1\n")
    (tmp_path / "row.yaml").write_text("_base_: _base.yaml\nmodel:\n  norm: bn\n  norm_kwargs: {}\n")
    defaults = {"model": {"norm": "bn", "norm_kwargs": {}}, "optim": {"lr": 1.0, "wd": 0.0}}
    cfg = load_config(tmp_path / "row.yaml", defaults, ["optim.lr=0.05", "optim.wd=1e-4"])
    assert cfg["model"] == {"norm": "bn", "norm_kwargs": {}}  # kwargs replaced whole, not merged
    assert cfg["optim"] == {"lr": 0.05, "wd": 1e-4}


def test_config_rejects_unknown_keys_with_a_suggestion(tmp_path):
    (tmp_path / "bad.yaml").write_text("optim:\n  weight_decy: 0.1\n")
    with pytest.raises(ConfigError, match=r"optim.weight_decy.*Did you mean 'optim.weight_decay'"):
        load_config(tmp_path / "bad.yaml", {"optim": {"weight_decay": 0.0}})
    with pytest.raises(ConfigError, match=r"key\.sub=value"):
        apply_overrides({}, ["no-equals-sign"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml", {})


def test_merge_keeps_sections_and_copies():
    base = {"a": {"x": 1, "y": [1]}, "b": 2}
    out = merge(base, {"a": {"x": 3}})
    assert out == {"a": {"x": 3, "y": [1]}, "b": 2}
    out["a"]["y"].append(2)
    assert base["a"]["y"] == [1]


def test_cli_flags_map_to_config_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: row\n")
    args = engine_parser("t").parse_args(
        [
            *("--config", str(path), "--batch-size", "2", "--virtual-devices", "8", "--amp", "bf16"),
            *("--channels-last", "--data", "/d a/t's", "--set", "optim.lr=0.2"),
        ]
    )
    cfg = config_from_args(args, CLASSIFICATION_DEFAULTS)
    assert cfg["data"]["batch_size"] == 2 and cfg["train"]["virtual_devices"] == 8
    assert cfg["train"]["amp"] == "bf16" and cfg["train"]["channels_last"] is True
    assert cfg["data"]["root"] == "/d a/t's" and cfg["optim"]["lr"] == 0.2
    assert cfg["train"]["sync_bn"] is False  # flags left out leave the config alone


# --------------------------------------------------------------------------------------------------
# schedules and optimizer
# --------------------------------------------------------------------------------------------------
def _lrs(scheduler, opt, steps):
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return out


def test_step_schedule_changes_at_epoch_boundaries_with_warmup():
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    sched = build_scheduler(opt, steps_per_epoch=10, milestones=[1, 2], warmup=0.5, warmup_start_factor=0.1)
    lrs = _lrs(sched, opt, 25)
    assert lrs[0] == pytest.approx(0.01)  # warmup starts at 0.1 x lr
    assert lrs[4] == pytest.approx(0.1 * (0.1 * (1 - 0.8) + 0.8))  # linear
    assert lrs[5:10] == pytest.approx([0.1] * 5)
    assert lrs[10:20] == pytest.approx([0.01] * 10)  # /10 exactly at epoch 1
    assert lrs[20] == pytest.approx(0.001)


def test_other_schedules_and_linear_scaling():
    assert LRSchedule("exponential", decay_steps=3, gamma=0.5)(7) == 0.25
    cos = LRSchedule("cosine", total_steps=10)
    assert cos(0) == 1.0 and cos(10) == pytest.approx(0.0) and cos(5) == pytest.approx(0.5)
    assert LRSchedule("poly", total_steps=10, power=1.0)(5) == pytest.approx(0.5)
    assert scaled_lr(0.1, 64, 256) == pytest.approx(0.025)  # GN: 0.1 x 2/32 at 2 images/GPU x 8
    assert scaled_lr(0.1, 64, None) == 0.1
    with pytest.raises(ValueError, match="unknown LR schedule"):
        LRSchedule("linear")


def test_scheduler_state_loads_weights_only():
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    sched = build_scheduler(opt, steps_per_epoch=4, milestones=[1])
    _lrs(sched, opt, 6)
    buf = io.BytesIO()
    torch.save(sched.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    opt2 = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    sched2 = build_scheduler(opt2, steps_per_epoch=4, milestones=[1])
    sched2.load_state_dict(state)
    assert sched2.get_last_lr() == sched.get_last_lr()


def test_param_groups_split_norm_bias_and_rest():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.Linear(4, 2))
    model[2].weight.requires_grad_(False)
    groups = {g["name"]: g for g in param_groups(model, 1e-4, norm_weight_decay=0.0)}
    assert {id(p) for p in groups["norm"]["params"]} == {id(model[1].weight), id(model[1].bias)}
    assert groups["norm"]["weight_decay"] == 0.0
    assert {id(p) for p in groups["bias"]["params"]} == {id(model[0].bias), id(model[2].bias)}
    assert [id(p) for p in groups["other"]["params"]] == [id(model[0].weight)]  # frozen Linear weight left out
    assert groups["other"]["weight_decay"] == groups["bias"]["weight_decay"] == 1e-4


# --------------------------------------------------------------------------------------------------
# samplers and per-sample seeds
# --------------------------------------------------------------------------------------------------
def test_ranks_slice_the_single_process_batch():
    single = list(GlobalBatchSampler(50, 8, seed=3))
    ranks = [list(GlobalBatchSampler(50, 2, world_size=4, rank=r, seed=3)) for r in range(4)]
    assert len(single) == 6 and all(len(r) == 6 for r in ranks)
    for step, batch in enumerate(single):
        assert batch == [key for r in range(4) for key in ranks[r][step]]


def test_accumulation_cuts_micro_batches_from_the_global_batch():
    full = list(GlobalBatchSampler(40, 8, seed=1))
    micro = list(GlobalBatchSampler(40, 4, accum_steps=2, seed=1))
    assert len(micro) == 2 * len(full)
    assert [k for pair in zip(micro[::2], micro[1::2]) for mb in pair for k in mb] == [k for b in full for k in b]


def test_sampler_epochs_resume_and_errors():
    s = GlobalBatchSampler(20, 4, seed=0)
    first = list(s)
    s.set_epoch(1)
    second = list(s)
    assert first != second and {k[1] for b in second for k in b} == {1}
    assert sorted(k[0] for b in second for k in b) == list(range(20))
    s.set_start_step(3)
    assert list(s) == second[3:] and len(s) == 2
    with pytest.raises(ValueError, match="fewer than one optimizer step"):
        GlobalBatchSampler(5, 4, world_size=2)
    shards = [list(ShardSampler(11, world_size=3, rank=r)) for r in range(3)]
    assert sorted(i for shard in shards for i in shard) == list(range(11))


class _RandomTransformData(torch.utils.data.Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        return torch.rand(3) + i


def test_seeded_dataset_is_order_independent_and_leaves_caller_rng_alone():
    ds = SeededDataset(_RandomTransformData(), seed=7)
    torch.manual_seed(0)
    a = ds[(4, 2)]
    after = torch.rand(1)
    torch.manual_seed(0)
    ds[(1, 2)]  # another sample first: must not change sample 4's draw
    b = ds[(4, 2)]
    assert torch.equal(a, b)
    assert torch.equal(torch.rand(1), after)  # the caller's stream is where it was
    assert not torch.equal(ds[(4, 3)], a)  # a new epoch, a new draw
    assert sample_seed(1, 2, 3) != sample_seed(1, 3, 2) and 0 <= sample_seed(1, 2, 3) < 2**63


# --------------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------------
def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = ckpt.capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(2))
    ckpt.save_checkpoint(tmp_path / "c.pt", {"rng": [state], "x": torch.ones(2)})
    random.random(), np.random.rand(), torch.rand(5)
    loaded = ckpt.load_checkpoint(tmp_path / "c.pt")
    ckpt.restore_rng_state(loaded["rng"][0])
    got = (random.random(), np.random.rand(), torch.rand(2))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


class _Pickled:
    pass


def test_untrusted_pickles_need_the_flag(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"obj": _Pickled()}, path)
    with pytest.raises(RuntimeError, match="--trusted-checkpoint"):
        ckpt.load_checkpoint(path)
    assert isinstance(ckpt.load_checkpoint(path, trusted=True)["obj"], _Pickled)


def test_resolve_resume(tmp_path):
    assert ckpt.resolve_resume(None, tmp_path) is None
    assert ckpt.resolve_resume("auto", tmp_path) is None  # nothing yet: fresh start
    (tmp_path / ckpt.CHECKPOINT_NAME).write_bytes(b"x")
    assert ckpt.resolve_resume("auto", tmp_path) == tmp_path / ckpt.CHECKPOINT_NAME
    assert ckpt.resolve_resume(str(tmp_path), "/elsewhere") == tmp_path / ckpt.CHECKPOINT_NAME
    with pytest.raises(FileNotFoundError, match="--resume auto"):
        ckpt.resolve_resume(str(tmp_path / "nope.pt"), tmp_path)


# --------------------------------------------------------------------------------------------------
# metrics, batch report, models, precision
# --------------------------------------------------------------------------------------------------
def test_topk_and_median_of_last():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.2], [0.2, 0.3, 0.5]])
    c1, c5 = topk_correct(logits, torch.tensor([1, 2, 0]), ks=(1, 2))
    assert c1.item() == 1 and c5.item() == 2
    history = [{"top1_err": v} for v in (30.0, 25.0, 24.0, 26.0, 23.0, 27.0, 22.0)]
    assert median_of_last(history, "top1_err", 5) == 24.0  # 24, 26, 23, 27, 22
    assert median_of_last([], "top1_err", 5) is None


def test_window_sums_average_per_micro_batch():
    sums = _WindowSums()
    for v in (1.0, 3.0):
        sums.add({"loss": torch.tensor(v)})
    assert sums.flush() == {"loss": 2.0}
    sums.add({"loss": torch.tensor(5.0)})
    assert sums.epoch_means() == {"loss": 3.0}


def test_batch_report_names_the_bn_statistics_batch():
    bn = build_model({"arch": "small_resnet", "norm": "bn", "kwargs": {"depth": 8, "width": 8}}, virtual_devices=8)
    lines = batch_report(bn, per_device_batch=2, virtual_devices=8, world_size=1, accum_steps=4)
    assert "= 64 images per optimizer step" in lines[0]
    assert "BN statistics batch (BatchNorm): 2 images" in lines
    assert any("does not enlarge the BN statistics batch" in line for line in lines)
    gn = build_model({"arch": "small_resnet", "norm": "gn", "norm_kwargs": {"num_groups": 4}, "kwargs": {"depth": 8}})
    assert "none" in batch_report(gn, per_device_batch=2, virtual_devices=1, world_size=4, accum_steps=1)[1]


def test_batch_report_asks_normcore_which_layers_use_batch_statistics():
    """Estimated BN (and BCN with estimate=True) normalizes with running estimates, not the batch: no BN
    statistics batch to report (the report used to list EstimatedBatchNorm, a _BatchNorm subclass). A BCN
    with a plain BN stage is reported once, as its BN."""
    kwargs = {"depth": 8, "width": 8}
    estimated = {"num_groups": 4, "estimate": True}
    est = build_model({"arch": "small_resnet", "norm": "bcn", "norm_kwargs": estimated, "kwargs": kwargs})
    lines = batch_report(est, per_device_batch=2, virtual_devices=1, world_size=1, accum_steps=1)
    assert lines[1].startswith("BN statistics batch: none"), lines
    est_bn = build_model({"arch": "small_resnet", "norm": "est_bn", "kwargs": kwargs})
    assert "none" in batch_report(est_bn, per_device_batch=2, virtual_devices=1, world_size=1, accum_steps=1)[1]
    bcn = build_model({"arch": "small_resnet", "norm": "bcn", "norm_kwargs": {"num_groups": 4}, "kwargs": kwargs})
    lines = batch_report(bcn, per_device_batch=4, virtual_devices=1, world_size=1, accum_steps=1)
    assert lines[1:] == ["BN statistics batch (BatchNorm): 4 images"]


def test_virtual_devices_follow_normcores_batch_statistics():
    """--virtual-devices applies to the norms normcore says use batch statistics, whatever their alias."""
    model = build_model({"arch": "small_resnet", "norm": "BatchNorm", "kwargs": {"depth": 8}}, virtual_devices=2)
    assert {m.virtual_devices for m in model.modules() if isinstance(m, normcore.BatchNorm)} == {2}
    with pytest.raises(ValueError, match="use batch statistics"):
        build_model({"arch": "small_resnet", "norm": "est_bn", "kwargs": {"depth": 8}}, virtual_devices=2)


def test_build_model_applies_engine_options_and_rejects_misuse(monkeypatch):
    monkeypatch.setattr(normcore.SyncBatchNorm, "_warned_no_group", False)  # it warns once per process
    cfg = {"arch": "small_resnet", "norm": "BatchNorm", "kwargs": {"depth": 8, "width": 8}}
    model = build_model(cfg, virtual_devices=2)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bns and all(m.virtual_devices == 2 and m.virtual_running_stats == "first" for m in bns)
    with pytest.warns(UserWarning, match="no torch.distributed process group"):
        synced = build_model(cfg, sync_bn=True)
        synced(torch.randn(2, 3, 8, 8))
    assert any(isinstance(m, normcore.SyncBatchNorm) for m in synced.modules())
    gn = {"arch": "small_resnet", "norm": "gn", "norm_kwargs": {"num_groups": 4}, "kwargs": {"depth": 8}}
    with pytest.raises(ValueError, match="virtual-devices applies to norms that use batch statistics"):
        build_model(gn, virtual_devices=2)
    with pytest.raises(ValueError, match="sync-bn applies to norm 'bn'"):
        build_model(gn, sync_bn=True)
    with pytest.raises(ValueError, match=r"model\.arch='resnet5'"):
        build_model({"arch": "resnet5"})
    assert norm_name("group_norm") == "gn" and norm_name("nonsense") is None


def test_precision_choices():
    with pytest.raises(ValueError, match="--amp"):
        Precision("fp8", torch.device("cpu"))
    bf16 = Precision("bf16", torch.device("cpu"))
    with bf16.autocast():
        y = nn.Linear(4, 4)(torch.randn(2, 4))
    assert y.dtype == torch.bfloat16 and not bf16.scaler.is_enabled()
    assert Precision("fp16", torch.device("cpu")).scaler.is_enabled()


def test_move_to_device_converts_nested_batches():
    batch = {"img": torch.randn(2, 3, 4, 4), "meta": [torch.tensor([1]), "name"]}
    out = move_to_device(batch, torch.device("cpu"), channels_last=True)
    assert out["img"].is_contiguous(memory_format=torch.channels_last)
    assert out["meta"][1] == "name"


def test_parser_help_lists_engine_flags():
    parser = engine_parser("x")
    assert isinstance(parser, argparse.ArgumentParser)
    text = parser.format_help()
    for flag in ("--resume", "--trusted-checkpoint", "--virtual-devices", "--sync-bn", "--accum-steps", "--amp"):
        assert flag in text
