"""The BN paper's Figure 1 experiment (reproductions/batch_norm/cpu.py, fig1.py) and the shared CPU toolkit it
runs on (reproductions/smallscale/: mini-batches, the training loop, curve statistics, the parallel runner)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch

from reproductions.batch_norm import cpu as bn_cpu
from reproductions.batch_norm import fig1
from reproductions.claims.results import VERDICTS, load_results
from reproductions.claims.statistics import curve_stats
from reproductions.claims.verdicts import overall_verdict
from reproductions.smallscale.data import Dataset
from reproductions.smallscale.experiment import DEFAULT_SEEDS, resolve_seeds, select_runs
from reproductions.smallscale.parallel import parallel_map
from reproductions.smallscale.training import (
    batch_indices,
    evaluate_classifier,
    first_step_reaching,
    minibatches,
    train_steps,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------------
# the experiment, end to end (generated data in Fashion-MNIST's format)
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_quick_run_pilots_plans_and_writes_both_results_files(tmp_path, fashion_mnist_dir):
    paths = bn_cpu.run(quick=True, data=str(fashion_mnist_dir), out_dir=str(tmp_path))
    assert [p.name for p in paths] == ["fashion_fig1.json", "fashion_fig1.png", "mnist_fig1.json", "mnist_fig1.png"]
    for name in (bn_cpu.FASHION, bn_cpu.MNIST5K):
        res = load_results(tmp_path / f"{name}.json")  # validates against the schema
        assert res["scale"] == "quick" and res["experiment"] == name
        assert res["pilot"]["pilot_seeds"] == [1000, 1001] and res["pilot"]["seeds"] == res["seeds"] == [0, 1]
        assert [sorted(v["a"]) for v in res["pilot"]["values"]] == [["1000", "1001"]] * 3  # per-seed pilot values
        assert [c["effect"] for c in res["pilot"]["claims"]] == [c.effect for c in bn_cpu.CLAIMS]
        assert res["disclosures"] == bn_cpu.DISCLOSURES[name]
        assert [c["key"] for c in res["comparisons"]] == ["accuracy", "speed", "stability"]
        for comp, claim in zip(res["comparisons"], bn_cpu.CLAIMS):
            assert comp["test"] == "greater" and comp["effect"] == claim.effect and comp["verdict"] in VERDICTS
            assert comp["paired"]["seeds"] == [0, 1] and len(comp["paired"]["d"]) == 2
        assert res["verdict"]["status"] in VERDICTS and "paired seeds" in res["verdict"]["summary"]
        acc = res["curves"]["test_accuracy"]
        assert acc["x"] == [0, 20, 40, 60]
        assert all(len(s["per_seed"]) == 2 for s in acc["series"].values())
        for net in bn_cpu.NETS:
            loss = res["curves"]["train_loss"]["series"][net]["mean"]
            assert loss[0] is None and loss[-1] < loss[1], f"{name} {net}: training loss did not fall ({loss})"
        assert (tmp_path / res["figures"][0]).read_bytes()[:8] == PNG_MAGIC
    fashion = load_results(tmp_path / "fashion_fig1.json")
    assert fashion["dataset"]["name"] == "Fashion-MNIST" and fashion["comparisons"][0]["n_eval"] == 400
    mnist = load_results(tmp_path / "mnist_fig1.json")
    assert "binarized at 0.5" in mnist["dataset"]["split"] and mnist["comparisons"][0]["n_eval"] == 1000


@pytest.mark.slow
def test_given_seeds_skip_the_pilot(tmp_path, fashion_mnist_dir):
    bn_cpu.run(quick=True, seeds=[3, 4], data=str(fashion_mnist_dir), out_dir=str(tmp_path))
    res = load_results(tmp_path / "fashion_fig1.json")
    assert res["pilot"] == {"skipped": "--seeds given"} and res["seeds"] == [3, 4]


# --------------------------------------------------------------------------------------------------
# the protocol against the paper's text
# --------------------------------------------------------------------------------------------------
def test_protocol_is_the_papers_section_4_1():
    """§4.1: "3 fully-connected hidden layers with 100 activations each ... sigmoid nonlinearity ... weights W
    initialized to small random Gaussian values ... We trained the network for 50000 steps, with 60 examples per
    mini-batch"; Fig. 1(b, c): "{15, 50, 85}th percentiles" of "one typical activation from the last hidden
    layer". 50,000 steps of 60 are 50 epochs of MNIST's 60,000 training images; MNIST-5k gets 50 epochs too."""
    fashion, mnist = bn_cpu.CONFIGS[bn_cpu.FASHION], bn_cpu.CONFIGS[bn_cpu.MNIST5K]
    for cfg in (fashion, mnist):
        assert cfg.batch_size == 60 and cfg.hidden == (100, 100, 100) and cfg.activation == "sigmoid"
        assert cfg.percentiles == (15.0, 50.0, 85.0)
        assert cfg.optimizer == "SGD" and cfg.momentum == 0.0 and cfg.weight_decay == 0.0 and cfg.lr == 0.1
        assert 0 < cfg.init_std <= 0.1  # "small random Gaussian values"
        assert cfg.threshold_accuracy == bn_cpu.THRESHOLD_ACCURACY
    assert fashion.steps == 50_000 == 50 * 60_000 // fashion.batch_size
    assert fashion.binarize_threshold is None and fashion.dataset == "fashion_mnist"
    assert mnist.steps == 50 * (4_000 // mnist.batch_size) and mnist.binarize_threshold == 0.5
    assert bn_cpu.NETS == {"no BN": None, "BN": "bn"}
    model, _ = fig1.build_net("BN", 0, fashion)
    hidden = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in hidden] == [(784, 100), (100, 100), (100, 100), (100, 10)]
    assert all(isinstance(a, torch.nn.Sigmoid) for a in model.acts)
    w = hidden[0].weight.detach()
    assert abs(w.std().item() - fashion.init_std) < 0.005 and abs(w.mean().item()) < 0.005


def test_effects_and_budget_are_fixed_positive_constants():
    assert [c.key for c in bn_cpu.CLAIMS] == ["accuracy", "speed", "stability"]
    assert bn_cpu.ACCURACY_EFFECT == 0.5 and bn_cpu.SPEEDUP_EFFECT == 1.0
    assert pytest.approx(math.log2(1.5)) == bn_cpu.DRIFT_EFFECT
    assert all(c.effect > 0 for c in bn_cpu.CLAIMS)
    assert all(n >= 5 for n in bn_cpu.MAX_SEEDS.values())  # plan_seeds runs at least 5
    for name, seeds in bn_cpu.PILOT_SEEDS.items():
        assert len(seeds) >= 2 and min(seeds) >= bn_cpu.MAX_SEEDS[name]  # never a run seed


# --------------------------------------------------------------------------------------------------
# pairing: same seed -> same initial weights and the same mini-batches for both nets
# --------------------------------------------------------------------------------------------------
def test_both_nets_of_a_seed_start_from_the_same_weights_and_see_the_same_batches():
    cfg = bn_cpu.CONFIGS[bn_cpu.FASHION]
    bn, order_bn = fig1.build_net("BN", 7, cfg)
    plain, order_plain = fig1.build_net("no BN", 7, cfg)
    weights = lambda m: [x.weight for x in m.modules() if isinstance(x, torch.nn.Linear)]  # noqa: E731
    assert all(torch.equal(a, b) for a, b in zip(weights(bn), weights(plain)))
    assert all(float(lin.bias.detach().abs().max()) == 0.0 for lin in plain.linears)
    assert torch.equal(torch.randperm(100, generator=order_bn), torch.randperm(100, generator=order_plain))
    other, order_other = fig1.build_net("BN", 8, cfg)
    assert not torch.equal(weights(other)[0], weights(bn)[0])
    assert not torch.equal(
        torch.randperm(100, generator=order_other), torch.randperm(100, generator=fig1.build_net("BN", 7, cfg)[1])
    )


# --------------------------------------------------------------------------------------------------
# the per-seed measures and the comparisons
# --------------------------------------------------------------------------------------------------
def _dataset(x: torch.Tensor) -> Dataset:
    y = torch.zeros(x.shape[0], dtype=torch.long)
    return Dataset(x, y, x.clone(), y.clone(), "toy", "test", "none")


def test_binarize_thresholds_strictly_above():
    ds = fig1.binarize(_dataset(torch.tensor([[0.0, 0.5, 0.51, 1.0]])), 0.5)
    assert ds.x_train.tolist() == [[0.0, 0.0, 1.0, 1.0]]
    assert ds.x_test.tolist() == [[0.0, 0.0, 1.0, 1.0]]
    assert "binarized at 0.5" in ds.split


def test_relative_drift_of_a_stationary_distribution_is_zero():
    pct = np.tile(np.array([[-1.0], [0.0], [1.0]]), (5, 1, 1))  # (T=5, 3, U=1)
    assert bn_cpu.relative_drift(pct, [0, 10, 20, 30, 40], after_step=0).tolist() == [0.0]


def test_relative_drift_is_the_swept_range_over_the_mean_width():
    # the whole distribution (width 2) moves up by 1 between the two kept evaluations
    pct = np.array([[[-9.0], [0.0], [9.0]], [[-1.0], [0.0], [1.0]], [[0.0], [1.0], [2.0]]])
    drift = bn_cpu.relative_drift(pct, [0, 50, 100], after_step=10)  # the step-0 point is left out
    assert drift.tolist() == [pytest.approx(1.0 / 2.0)]


def test_relative_drift_is_scale_free():
    rng = np.random.default_rng(0)
    pct = np.sort(rng.normal(size=(6, 3, 4)), axis=1)
    steps = list(range(6))
    assert np.allclose(bn_cpu.relative_drift(pct, steps, 1), bn_cpu.relative_drift(10 * pct, steps, 1))


def _fake_run(net: str, seed: int, final: float, speed: float, wobble: float) -> dict:
    """A run whose accuracy climbs by ``speed`` per evaluation up to ``final`` and whose sigmoid input (2 units,
    width 2) moves by ``wobble`` per evaluation."""
    steps = list(range(0, 101, 10))
    pct = [[[-1 + wobble * i] * 2, [wobble * i] * 2, [1 + wobble * i] * 2] for i in range(len(steps))]
    return {
        "net": net, "seed": seed, "steps": steps, "train_loss": [float("nan")] + [1.0] * 10,
        "test_accuracy": [min(final, 0.1 + speed * i) for i in range(len(steps))], "test_nll": [1.0] * 11,
        "train_seconds": 1.0, "percentile_steps": steps, "percentiles": pct,
    }  # fmt: skip


def _fake_runs(seeds, bn, plain):
    return [_fake_run("BN", s, *bn(s)) for s in seeds] + [_fake_run("no BN", s, *plain(s)) for s in seeds]


CFG = fig1.Fig1Config(steps=100, eval_every=10, percentile_every=10, threshold_accuracy=0.85)


def test_compare_reproduces_the_claims_when_bn_wins_clearly_in_every_seed():
    seeds = [0, 1, 2, 3, 4]
    runs = _fake_runs(
        seeds, lambda s: (0.90 + 0.001 * s, 0.4, 0.01 + 0.001 * s), lambda s: (0.87 - 0.002 * s, 0.1, 0.1)
    )
    out = bn_cpu.compare(runs, seeds, CFG, n_test=10_000)
    assert [c["verdict"] for c in out["comparisons"]] == ["reproduced"] * 3
    assert out["verdict"]["status"] == "reproduced"
    acc, speed, _ = out["comparisons"]
    assert acc["ours"]["mean_difference"] == pytest.approx(100 * (0.902 - 0.866))  # in points
    # BN reaches 0.85 at step 20 (0.1 + 2 * 0.4, capped at its final 0.90), the plain net at step 80 (0.1 + 8 * 0.1)
    assert speed["paired"]["d"] == [pytest.approx(math.log2(80 / 20))] * 5
    assert speed["paired"]["summary"]["t"] is None  # infinite t (no spread) is not written as JSON infinity
    assert out["metrics"]["steps_to_threshold_bn"]["values"] == [20.0] * 5
    json.dumps(out, allow_nan=False)


def test_a_net_that_never_reaches_the_threshold_counts_as_reaching_it_at_the_last_step():
    run = _fake_run("no BN", 0, 0.80, 0.1, 0.0)
    assert fig1.steps_to_threshold(run, 0.85) is None
    assert fig1.log2_steps_to_threshold(run, CFG) == math.log2(CFG.steps)
    seeds = [0, 1, 2]
    runs = _fake_runs(seeds, lambda s: (0.9, 0.4, 0.0), lambda s: (0.8 + 0.001 * s, 0.1, 0.1))
    speed = bn_cpu.compare(runs, seeds, CFG, n_test=1000)["comparisons"][1]
    assert speed["not_reached"] == {"no BN": [0, 1, 2], "BN": []}


def test_compare_does_not_reproduce_a_bn_that_loses():
    seeds = [0, 1, 2, 3, 4]
    runs = _fake_runs(seeds, lambda s: (0.80 - 0.001 * s, 0.1, 0.2), lambda s: (0.88 + 0.001 * s, 0.4, 0.0))
    out = bn_cpu.compare(runs, seeds, CFG, n_test=10_000)
    assert [c["verdict"] for c in out["comparisons"]] == ["not reproduced"] * 3
    assert out["verdict"]["status"] == "not reproduced"


def test_pilot_entries_count_a_diverged_run_as_the_claims_fixed_value():
    seeds = [1000, 1001]
    runs = _fake_runs(seeds, lambda s: (0.9, 0.4, 0.0), lambda s: (0.85, 0.1, 0.1))
    runs[0]["test_accuracy"][-1] = float("nan")  # BN seed 1000 diverged
    entries = bn_cpu.pilot_entries(runs, seeds, CFG)
    assert entries[0]["a"][1000] == bn_cpu.DIVERGED_ACCURACY and entries[0]["a"][1001] == pytest.approx(90.0)
    assert [e["effect"] for e in entries] == [c.effect for c in bn_cpu.CLAIMS]


# --------------------------------------------------------------------------------------------------
# the shared toolkit (reproductions/smallscale/, reproductions/claims/statistics.py)
# --------------------------------------------------------------------------------------------------
def test_minibatches_are_the_batches_of_batch_indices():
    x = torch.arange(23.0).unsqueeze(1)
    y = torch.arange(23)
    idx = list(batch_indices(23, 5, 9, torch.Generator().manual_seed(3)))
    pairs = list(minibatches(x, y, 5, 9, torch.Generator().manual_seed(3)))
    assert len(pairs) == len(idx) == 9
    for i, (xb, yb) in zip(idx, pairs):
        assert torch.equal(xb, x[i]) and torch.equal(yb, y[i])


def test_batch_indices_reshuffle_every_epoch_and_drop_the_short_batch():
    batches = list(batch_indices(10, 3, 6, torch.Generator().manual_seed(0)))
    assert all(len(b) == 3 for b in batches)
    first, second = torch.cat(batches[:3]), torch.cat(batches[3:])
    assert len(set(first.tolist())) == 9 and len(set(second.tolist())) == 9  # no repeat within an epoch
    assert not torch.equal(first, second)
    with pytest.raises(ValueError, match="batch_size"):
        next(batch_indices(4, 5, 1, torch.Generator()))


def test_train_steps_evaluates_at_zero_every_k_and_the_end():
    torch.manual_seed(0)
    x, y = torch.randn(40, 3), torch.randint(0, 2, (40,))
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []
    log = train_steps(
        model, opt, x, y, steps=25, batch_size=8, generator=torch.Generator().manual_seed(0), eval_every=10,
        evaluate=lambda step: seen.append(step) or {"step": step},
    )  # fmt: skip
    assert log.steps == seen == [0, 10, 20, 25]
    assert math.isnan(log.train_loss[0]) and all(math.isfinite(v) for v in log.train_loss[1:])
    assert log.column("step") == [0, 10, 20, 25]
    assert log.seconds[0] == 0.0 and log.seconds == sorted(log.seconds)


def test_train_steps_stops_on_a_non_finite_loss_and_pads_with_nan():
    class Exploding(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, x):
            return torch.cat([x * self.w * float("inf"), x], dim=1)

    x, y = torch.ones(8, 1), torch.zeros(8, dtype=torch.long)
    model = Exploding()
    log = train_steps(
        model, torch.optim.SGD(model.parameters(), lr=0.1), x, y, steps=6, batch_size=2,
        generator=torch.Generator().manual_seed(0), eval_every=2, evaluate=lambda step: {"acc": 1.0},
    )  # fmt: skip
    assert log.steps == [0, 2, 4, 6]
    assert math.isnan(log.train_loss[1])  # the first interval already diverged
    assert math.isnan(log.column("acc")[-1]) and math.isnan(log.seconds[-1])


def test_evaluate_classifier_restores_the_training_mode():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2)).train()
    x, y = torch.eye(2), torch.tensor([0, 1])
    nll, acc = evaluate_classifier(model, x, y)
    assert model.training and 0.0 <= acc <= 1.0 and nll > 0.0


def test_curve_stats_and_first_step_reaching():
    out = curve_stats([[1.0, 2.0, float("nan")], [3.0, 4.0, 1.0]])
    assert out["mean"][:2] == [2.0, 3.0] and out["std"][0] == pytest.approx(math.sqrt(2.0))
    assert out["mean"][2] is None  # undefined where a seed diverged
    with pytest.raises(ValueError, match="different lengths"):
        curve_stats([[1.0], [1.0, 2.0]])
    assert first_step_reaching([0, 10, 20], [0.1, 0.5, 0.9], 0.5) == 10
    assert first_step_reaching([0, 10, 20], [2.0, 1.0, 0.5], 0.6, higher_is_better=False) == 20
    assert first_step_reaching([0, 10], [0.1, float("nan")], 0.5) is None


@pytest.mark.slow
def test_parallel_runs_give_the_numbers_of_serial_runs(fashion_mnist_dir):
    """The same jobs in two spawned one-thread workers and in this process agree exactly."""
    config = asdict(replace(bn_cpu.CONFIGS[bn_cpu.FASHION], steps=30, eval_every=15, percentile_every=15))
    jobs = [
        {"experiment": "fashion_fig1", "net": net, "seed": 1, "config": config, "data": str(fashion_mnist_dir)}
        for net in bn_cpu.NETS
    ]
    serial = parallel_map(bn_cpu.train_net, jobs, workers=1, total=60)
    parallel = parallel_map(bn_cpu.train_net, jobs, workers=2, total=60)
    for run in serial + parallel:
        run.pop("train_seconds")
    assert json.dumps(serial) == json.dumps(parallel)
    assert [r["net"] for r in parallel] == list(bn_cpu.NETS)  # results in job order


def test_shared_verdict_rules_and_run_selection():
    assert overall_verdict(["reproduced", "reproduced"]) == "reproduced"
    assert overall_verdict(["not reproduced", "not reproduced"]) == "not reproduced"
    assert overall_verdict(["reproduced", "not reproduced"]) == "partly reproduced"
    assert overall_verdict(["partly reproduced", "not reproduced"]) == "partly reproduced"
    runs = [{"seed": s, "net": n} for n in ("a", "b") for s in (2, 0, 1)]
    assert [r["seed"] for r in select_runs(runs, [0, 1, 2], net="b")] == [0, 1, 2]
    with pytest.raises(RuntimeError, match="expected one run"):
        select_runs(runs, [0], net="c")
    assert resolve_seeds(None, quick=True) == [0]
    assert resolve_seeds(None, quick=False) == list(DEFAULT_SEEDS)
    assert resolve_seeds((5, 6), quick=True) == [5, 6]
