"""The NormProp CPU-scale experiment (reproductions/normprop/cpu.py): NIN with NormProp, BN or no norm on
Fashion-MNIST, at the paper's batch and at batch 1; pilot -> seeds; paired claims; the normalized
pre-activations the normalization claim is measured on."""

from __future__ import annotations

import math
from dataclasses import asdict

import pytest
import torch

from normcore.models.common import ConvNormAct
from normcore.normprop import GAMMA_INIT
from reproductions.claims.paired import RULES
from reproductions.claims.results import VERDICTS, load_results
from reproductions.normprop import cpu as np_cpu

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_quick_run_pilots_plans_and_writes_paired_claims(tmp_path, fashion_mnist_dir):
    paths = np_cpu.run(quick=True, data=str(fashion_mnist_dir), out_dir=str(tmp_path))
    res = load_results(paths[0])  # validates against the schema
    assert res["scale"] == "quick" and res["experiment"] == "nin_fashion_mnist"
    assert res["pilot"]["pilot_seeds"] == list(np_cpu.QUICK_PILOT_SEEDS) and res["seeds"] == [0, 1]
    assert res["disclosures"] == np_cpu.DISCLOSURES
    bs = np_cpu.QUICK_CONFIG.batch_size
    for norm in ("NormProp", "BN"):
        loss = res["curves"][f"train_loss_batch{bs}"]["series"][norm]["mean"]
        assert loss[-1] < loss[1], f"{norm}: training loss did not fall ({loss})"
    assert len(res["curves"][f"deviation_batch{bs}"]["series"]["none"]["per_seed"]) == 2
    tests = [(c["test"], c["effect"]) for c in res["comparisons"]]
    assert tests == [
        ("not_worse", np_cpu.ACCURACY_MARGIN),
        ("greater", np_cpu.BATCH1_EFFECT),
        ("not_worse", np_cpu.BATCH1_MARGIN),
        ("greater", np_cpu.DEVIATION_EFFECT),
        ("not_worse", np_cpu.DEVIATION_EFFECT),
        ("greater", np_cpu.SPEED_EFFECT),
    ]
    for c in res["comparisons"]:
        assert c["verdict"] in VERDICTS and c["rule"] == RULES[c["test"]] and c["paired"]["seeds"] == [0, 1]
    accuracy = res["comparisons"][0]
    assert (
        accuracy["n_eval"] == 400 and accuracy["paired"]["a"] == res["metrics"][f"test_accuracy_bn_batch{bs}"]["values"]
    )
    assert (tmp_path / res["figures"][0]).read_bytes()[:8] == PNG_MAGIC


def test_protocol_constants():
    """Batch 50 and gamma 1/1.21 (as reported for the paper; not verified against its text, see the card),
    the NIN widths (Lin et al.: 192-160-96 in block 1, scaled), linear learning-rate scaling, and the budget:
    the batch-1 budget is a whole number of large-batch steps, so both are compared after the same images."""
    cfg = np_cpu.CONFIG
    assert cfg.batch_size == np_cpu.BATCH_SIZE == 50 and cfg.width == np_cpu.WIDTH
    assert abs(GAMMA_INIT - 1 / 1.21) < 2e-3
    assert cfg.lr(256) == pytest.approx(0.1) and cfg.lr(50) == pytest.approx(0.1 * 50 / 256)
    assert cfg.lr(1) == pytest.approx(0.1 / 256) and cfg.momentum == 0.9 and cfg.weight_decay == 0.0
    assert cfg.batch1_images % cfg.batch_size == 0 and cfg.steps(1) == cfg.batch1_images
    assert cfg.equal_step(cfg.batch_size) * cfg.batch_size == cfg.batch1_images
    assert cfg.steps(cfg.batch_size) % cfg.eval_every(cfg.batch_size) == 0
    model = np_cpu.build("NormProp", cfg, torch.rand(8, 1, 28, 28))
    f = model.features
    assert (f.conv1.conv.out_channels, f.cccp1.conv.out_channels, f.cccp2.conv.out_channels) == (16, 13, 8)
    assert torch.all(f.conv1.conv.gamma == GAMMA_INIT) and torch.all(f.cccp5.conv.gamma == GAMMA_INIT)
    assert len(np_cpu.PILOT_SEEDS) == 3 and not set(np_cpu.PILOT_SEEDS) & set(range(np_cpu.MAX_SEEDS))


def test_pairing_same_seed_same_data_order_and_same_initial_weights(fashion_mnist_dir):
    """Within a seed every net gets the same data-order generator, and NormProp at batch 50 and at batch 1
    starts from the same weights; another seed changes both."""
    base = {"config": asdict(np_cpu.QUICK_CONFIG), "data": str(fashion_mnist_dir)}
    starts = {
        (n, bs, s): np_cpu.start({"norm": n, "seed": s, "batch_size": bs, **base})
        for n, bs, s in [("NormProp", 16, 3), ("NormProp", 1, 3), ("BN", 16, 3), ("none", 16, 3), ("NormProp", 16, 4)]
    }
    orders = {k: torch.randperm(100, generator=g).tolist() for k, (_, _, _, g) in starts.items()}
    assert orders[("NormProp", 16, 3)] == orders[("NormProp", 1, 3)] == orders[("BN", 16, 3)] == orders[("none", 16, 3)]
    assert orders[("NormProp", 16, 4)] != orders[("NormProp", 16, 3)]
    weights = {k: m.state_dict() for k, (_, _, m, _) in starts.items()}
    a, b, c = weights[("NormProp", 16, 3)], weights[("NormProp", 1, 3)], weights[("NormProp", 16, 4)]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["features.conv1.conv.weight"], c["features.conv1.conv.weight"])


@pytest.mark.parametrize("norm", list(np_cpu.NORMS))
def test_normalized_preactivation_is_the_preactivation_before_gamma_and_beta(norm):
    """What the normalization claim measures: u = gamma * z + beta for NormProp and BN (eval mode, running
    estimates), u = z + bias for no normalization, for every hidden unit."""
    torch.manual_seed(0)
    x = torch.rand(16, 1, 28, 28)
    model = np_cpu.build(norm, np_cpu.NormPropConfig(width=8), x)
    with torch.no_grad():
        for p in model.parameters():  # move gamma, beta and the running estimates off their initial values
            p.add_(0.1 * torch.randn_like(p))
        for b in model.buffers():
            if b.dtype.is_floating_point:
                b.add_(0.1 * torch.rand_like(b))
    model.eval()
    h = x
    for name, unit in model.features.named_children():
        if isinstance(unit, ConvNormAct) and "act" in unit._modules:
            with torch.no_grad():
                z, u = np_cpu._normalized(unit, h), unit.preactivation(h)
            if norm == "none":
                expected = z + unit.conv.bias.view(1, -1, 1, 1)
            else:
                affine = unit.conv if norm == "NormProp" else unit.norm
                gamma = affine.gamma if norm == "NormProp" else affine.weight
                expected = gamma.view(1, -1, 1, 1) * z + affine.bias.view(1, -1, 1, 1)
            torch.testing.assert_close(u, expected, rtol=1e-4, atol=1e-5, msg=name)
        h = unit(h)


def test_normalized_stats_per_channel_and_the_deviation():
    """At init NormProp's first unit, fed standardized input, is N(0, 1) per channel up to the zero-padded
    border; the stats leave the model's mode alone; D is mean over units and channels of |m| + |ln s|."""
    torch.manual_seed(0)
    x = torch.randn(64, 1, 28, 28) * 0.3 + 0.5
    model = np_cpu.build("NormProp", np_cpu.NormPropConfig(width=16), x).train()
    stats = np_cpu.normalized_stats(model, x)
    assert model.training and list(stats) == ["conv1", "cccp1", "cccp2", "conv2", "cccp3", "cccp4", "conv3", "cccp5"]
    assert len(stats["conv1"]["mean"]) == 16
    assert max(abs(m) for m in stats["conv1"]["mean"]) < 0.1
    assert all(0.8 < s < 1.05 for s in stats["conv1"]["std"])  # 5x5 taps, zero padding: border std below 1
    assert np_cpu.deviation({"a": {"mean": [0.0, 0.0], "std": [1.0, 1.0]}}) == 0.0
    two = {"a": {"mean": [0.5], "std": [math.e]}, "b": {"mean": [-0.5], "std": [1 / math.e]}}
    assert np_cpu.deviation(two) == pytest.approx(1.5)  # signed means do not cancel
    assert np_cpu.layer_summary(two) == {"a": (0.5, pytest.approx(math.e)), "b": (0.5, pytest.approx(1 / math.e))}
