"""The BN paper's Figure 1 experiment (reproductions/batch_norm/cpu.py) and the shared CPU toolkit it
runs on (reproductions/smallscale/: mini-batches, the training loop, curve statistics, the parallel
runner)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from reproductions.batch_norm import cpu as bn_cpu
from reproductions.claims.results import VERDICTS, load_results
from reproductions.claims.statistics import curve_stats
from reproductions.claims.verdicts import overall_verdict, seed_verdict
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
# the experiment, end to end
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_quick_run_trains_and_writes_a_valid_results_file(tmp_path):
    paths = bn_cpu.run(quick=True, out_dir=str(tmp_path))
    res = load_results(paths[0])  # validates against the schema
    assert res["scale"] == "quick" and res["seeds"] == [0]
    assert res["paper"] == "batch_norm" and res["experiment"] == "mnist_fig1"
    assert "binarized at 0.5" in res["dataset"]["split"]
    for net in bn_cpu.NETS:
        loss = res["curves"]["train_loss"]["series"][net]["mean"]
        assert loss[0] is None  # nothing trained yet at step 0
        assert loss[-1] < loss[1], f"{net}: training loss did not fall ({loss})"
    assert res["curves"]["test_accuracy"]["x"] == [0, 100, 200, 300]
    assert len(res["comparisons"]) == 3
    for comp in res["comparisons"]:
        assert comp["verdict"] in VERDICTS and comp["rule"]
    assert res["verdict"]["status"] in VERDICTS
    figure = tmp_path / res["figures"][0]
    assert figure.read_bytes()[:8] == PNG_MAGIC


# --------------------------------------------------------------------------------------------------
# pieces of the experiment
# --------------------------------------------------------------------------------------------------
def _dataset(x: torch.Tensor) -> Dataset:
    y = torch.zeros(x.shape[0], dtype=torch.long)
    return Dataset(x, y, x.clone(), y.clone(), "toy", "test", "none")


def test_binarize_thresholds_strictly_above():
    ds = bn_cpu.binarize(_dataset(torch.tensor([[0.0, 0.5, 0.51, 1.0]])), 0.5)
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


def _fake_runs(bn_final: list[float], plain_final: list[float], bn_wobble: float, plain_wobble: float):
    cfg = bn_cpu.Fig1Config(steps=100, eval_every=10)
    steps = list(range(0, 101, 10))
    runs = []
    for seed, (b, p) in enumerate(zip(bn_final, plain_final)):
        for net, final, wobble in (("BN", b, bn_wobble), ("no BN", p, plain_wobble)):
            acc = [min(final, 0.1 + 0.2 * i) for i in range(len(steps))]
            pct = [[[-1 + wobble * i], [wobble * i], [1 + wobble * i]] for i in range(len(steps))]
            runs.append({"net": net, "seed": seed, "steps": steps, "test_accuracy": acc, "percentiles": pct})
    return runs, cfg


def test_compare_reproduced_when_bn_wins_in_every_seed():
    runs, cfg = _fake_runs([0.95, 0.96, 0.97], [0.90, 0.91, 0.92], bn_wobble=0.0, plain_wobble=0.1)
    for r in runs:
        r["train_seconds"] = 1.0
    out = bn_cpu.compare(runs, [0, 1, 2], cfg)
    assert [c["verdict"] for c in out["comparisons"]] == ["reproduced"] * 3
    assert out["verdict"]["status"] == "reproduced"
    # the BN curve 0.1, 0.3, ..., 0.9 (step 40), then its final value: reaches 0.90 at step 40, 0.91 at 50
    assert out["metrics"]["steps_bn_reaches_no_bn_final_accuracy"]["values"] == [40.0, 50.0, 50.0]


def test_compare_partly_when_bn_wins_only_on_average_and_not_when_it_loses():
    runs, cfg = _fake_runs([0.99, 0.89, 0.97], [0.90, 0.91, 0.92], bn_wobble=0.2, plain_wobble=0.1)
    for r in runs:
        r["train_seconds"] = 1.0
    out = bn_cpu.compare(runs, [0, 1, 2], cfg)
    accuracy, speed, stability = (c["verdict"] for c in out["comparisons"])
    assert accuracy == "partly reproduced"  # higher in the mean, lower in seed 1
    assert speed == "not reproduced"  # seed 1 never reaches 0.91
    assert stability == "not reproduced"  # the BN distribution moves more
    assert out["verdict"]["status"] == "partly reproduced"


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
def test_parallel_runs_give_the_numbers_of_serial_runs():
    """The same jobs in two spawned one-thread workers and in this process agree exactly."""
    config = bn_cpu.Fig1Config(steps=30, eval_every=15).__dict__
    jobs = [{"net": net, "seed": 1, "config": config, "data": None} for net in bn_cpu.NETS]
    serial = parallel_map(bn_cpu.train_net, jobs, workers=1, total=60)
    parallel = parallel_map(bn_cpu.train_net, jobs, workers=2, total=60)
    for run in serial + parallel:
        run.pop("train_seconds")
    assert json.dumps(serial) == json.dumps(parallel)
    assert [r["net"] for r in parallel] == list(bn_cpu.NETS)  # results in job order


def test_shared_verdict_rules_and_run_selection():
    assert seed_verdict([True, True, True], mean_holds=True) == "reproduced"
    assert seed_verdict([True, False, True], mean_holds=True) == "partly reproduced"
    assert seed_verdict([True, True, True], mean_holds=False) == "not reproduced"
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
