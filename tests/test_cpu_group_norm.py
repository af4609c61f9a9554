"""The Group Normalization CPU experiment (reproductions/group_norm/cpu.py) in quick mode on generated
Fashion-MNIST-format data, its protocol constants against the paper's text (papers/group_norm/published.yaml),
and the shared training loop of reproductions/smallscale/vision.py (pairing, LR rule, accumulation)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from reproductions.claims.published import published_setting
from reproductions.claims.results import load_results
from reproductions.smallscale.data import Dataset
from reproductions.smallscale.parallel import one_thread
from reproductions.smallscale.vision import (
    ClassifierSchedule,
    ClassifierSetup,
    ImageData,
    _build,
    _step_sizes,
    build_paired,
    train_classifier,
)

PNG = b"\x89PNG\r\n\x1a\n"


def _tiny(n: int = 128, side: int = 14) -> Dataset:
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(n, 1, side, side, generator=g), torch.arange(n) % 10
    return Dataset(x, y, x[:40], y[:40], "tiny", "generated", "tiny")


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory, fashion_mnist_dir):
    from reproductions.group_norm import cpu

    out = tmp_path_factory.mktemp("group_norm")
    return out, cpu.run(quick=True, data=str(fashion_mnist_dir), out_dir=str(out))


@pytest.mark.slow
def test_quick_run_writes_valid_results_with_pilot(quick_results):
    from reproductions.group_norm import cpu

    out, paths = quick_results
    assert sorted(p.name for p in paths) == ["table1_norms.json", "table2_batch_size.json", "table3_groups.json"]
    for path in paths:
        res = load_results(path)  # validates against the schema
        assert res["scale"] == "quick" and res["disclosures"] == cpu.DISCLOSURES
        assert res["pilot"]["pilot_seeds"] == list(cpu.QUICK_PILOT_SEEDS)
        assert res["seeds"] == res["pilot"]["seeds"] and not set(res["seeds"]) & set(cpu.QUICK_PILOT_SEEDS)
        for c in res["comparisons"]:
            assert c["effect"] in cpu.EFFECTS.values() and c["test"] in ("greater", "equivalent")
            assert c["paired"]["seeds"] == res["seeds"] and c["n_eval"] == res["dataset"]["n_test"]
        for name in res["figures"]:
            assert (out / name).read_bytes()[:8] == PNG


@pytest.mark.slow
def test_quick_run_curves_keep_every_seed(quick_results):
    out, _ = quick_results
    res = json.loads((out / "table2_batch_size.json").read_text())
    series = res["curves"]["train_loss"]["series"]
    assert set(series) == {f"{n} {b}/dev" for n in ("BN", "GN") for b in (32, 8, 2)}
    for label, s in series.items():
        assert len(s["per_seed"]) == len(res["seeds"]), label
        assert all(math.isfinite(v) for curve in s["per_seed"] for v in curve), label
    assert all(0.0 <= m["mean"] <= 100.0 for k, m in res["metrics"].items() if k.startswith("test_error."))


def test_protocol_follows_the_paper():
    """GN paper §4.1: 8 GPUs, LR 0.1 per 256 images (0.1 at 32 images/GPU), weight decay 1e-4, LR / 10 at
    epochs 30, 60, 90 of 100, images per GPU 32 ... 2; GN's default G gives 2 channels per group in the
    first stage, as G = 32 on ResNet-50's 64 channels."""
    from reproductions.group_norm import cpu

    s = cpu.SCHEDULE
    assert s.devices == published_setting("group_norm", "imagenet.gpus")["value"] == 8
    assert s.base_lr == published_setting("group_norm", "imagenet.base_lr")["value"] and s.reference_batch == 256
    assert s.weight_decay == published_setting("group_norm", "imagenet.weight_decay")["value"]
    epochs = published_setting("group_norm", "imagenet.epochs")["value"]
    milestones = published_setting("group_norm", "imagenet.lr_milestones_epochs")["value"]
    assert list(s.milestones) == [m / epochs for m in milestones]
    assert set(cpu.IMAGES_PER_DEVICE) <= set(published_setting("group_norm", "imagenet.images_per_gpu")["value"])
    assert (cpu.LARGE, cpu.SMALL) == (32, 2)
    assert 64 // published_setting("group_norm", "gn.default_groups")["value"] == cpu.WIDTH // cpu.GROUPS
    # the effects are the published ones, scaled, and fixed at import (before any run)
    assert cpu.EFFECTS["gn_beats_bn"] == pytest.approx(10.6 * cpu.ERROR_SCALE)
    assert cpu.EFFECTS["bn_rise"] == pytest.approx((34.7 - 23.6) * cpu.ERROR_SCALE)


def test_linear_lr_rule_and_same_epochs():
    """LR = 0.1 x N / 256 for N images per step; the same epochs for every batch size (more steps when small)."""
    data = _tiny(256)
    schedule = ClassifierSchedule(epochs=1, loss_points=1, error_points=1)
    small = train_classifier(ClassifierSetup("GN 2/dev", "gn", 2, {"num_groups": 4}), schedule, data, seed=0)
    large = train_classifier(ClassifierSetup("GN 32/dev", "gn", 32, {"num_groups": 4}), schedule, data, seed=0)
    assert small.lr == pytest.approx(0.1 * 16 / 256) and large.lr == pytest.approx(0.1)
    assert (small.steps, large.steps) == (256 // 16, 1)


def test_same_seed_pairs_init_and_data_order(monkeypatch):
    """Within a seed every setting starts from the same conv/linear weights and sees the same data order."""
    bn, gn = ClassifierSetup("BN", "bn", 4), ClassifierSetup("GN", "gn", 4, {"num_groups": 4})
    schedule = ClassifierSchedule(epochs=1)
    models = [build_paired(setup, schedule, 1, 10, seed=7) for setup in (bn, gn)]
    weights = [{k: v for k, v in m.state_dict().items() if "conv" in k or "fc" in k} for m in models]
    assert weights[0].keys() == weights[1].keys() and weights[0]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])

    orders: list[torch.Tensor] = []
    real = torch.randperm

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        orders.append(out.clone())
        return out

    monkeypatch.setattr(torch, "randperm", spy)
    data, one = _tiny(64), ClassifierSchedule(epochs=1, loss_points=1, error_points=1)
    a = train_classifier(bn, one, data, seed=3)
    b = train_classifier(gn, one, data, seed=3)
    c = train_classifier(bn, one, data, seed=4)
    assert len(orders) == 3 and torch.equal(orders[0], orders[1]) and not torch.equal(orders[0], orders[2])
    assert a.train_loss != c.train_loss and b.steps == a.steps
    assert train_classifier(bn, one, data, seed=3).train_loss == a.train_loss  # repeatable


def test_batch_statistics_are_per_device():
    model = _build(ClassifierSetup("BN", "bn", 2), ClassifierSchedule(epochs=1), 1, 10)
    assert model.norm1.virtual_devices == 8
    gn = _build(ClassifierSetup("GN", "gn", 2, {"num_groups": 4}), ClassifierSchedule(epochs=1), 1, 10)
    assert gn.norm1.num_groups == 4


def test_accumulation_collapses_only_batch_independent_norms():
    """With gradient accumulation, GN(+WS) runs the step in one forward pass (the same gradient), while BN
    and BCN run micro-batches of devices x images_per_device."""
    schedule = ClassifierSchedule(epochs=1, effective_batch=64)
    assert _step_sizes(ClassifierSetup("GN", "gn", 1, {"num_groups": 4}, "ws"), schedule) == (64, 64)
    assert _step_sizes(ClassifierSetup("BN", "bn", 1), schedule) == (64, 8)
    bcn = ClassifierSetup("BCN", "bcn", 2, {"num_groups": 4, "estimate": True}, "ws")
    assert _step_sizes(bcn, schedule) == (64, 16)
    with pytest.raises(ValueError, match="not a multiple"):
        _step_sizes(ClassifierSetup("BN", "bn", 3), schedule)
    # The collapse is exact for GN+WS: one forward of 64 images = 8 weighted micro-batches of 8.
    torch.manual_seed(0)
    model = _build(ClassifierSetup("GN", "gn", 1, {"num_groups": 4}, "ws"), schedule, 1, 10)
    x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,))
    with one_thread():
        full = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
        parts = sum(F.cross_entropy(model(x[i : i + 8]), y[i : i + 8]) * (8 / 64) for i in range(0, 64, 8))
        micro = torch.autograd.grad(parts, list(model.parameters()))
    for g_full, g_micro in zip(full, micro):
        torch.testing.assert_close(g_full, g_micro, rtol=1e-4, atol=1e-6)


def test_images_are_a_stratified_pooled_subset(fashion_mnist_dir):
    ds = ImageData(str(fashion_mnist_dir), 200, 2).load()
    assert tuple(ds.x_train.shape) == (200, 1, 14, 14) and ds.x_test.shape[-1] == 14
    assert torch.bincount(ds.y_train, minlength=10).tolist() == [20] * 10
    assert "200 of the" in ds.describe()["split"]


def test_bad_batch_is_explained():
    with pytest.raises(ValueError, match="fewer images per device"):
        train_classifier(ClassifierSetup("BN", "bn", 32), ClassifierSchedule(epochs=1), _tiny(64), 0)
