r"""Layer Normalization at CPU scale (Ba, Kiros & Hinton 2016): Figure 6 and the recurrent claim, on the full
Fashion-MNIST with paired, powered seeds and whole-curve measures.

**Part 1, Figure 6 (LN §6.6).** Permutation-invariant classification with a 784-H-H-10 ReLU MLP, BN against LN,
Adam, batch 128 and batch 4, the same number of epochs at both batch sizes (the paper's x-axis). As §6.6 says:
LN on the hidden layers only ("excludes the last softmax layer"), BN "applied to all layers" (the hidden layers
and the logits), 55,000 training images, and at the small batch BN's variance "computed using the unbiased
estimator" (``normcore.BatchNorm(correction=1)`` at batch 4). The paper plots the training NLL (log axis) and
the test error and says LN "is robust to the batch-sizes and exhibits a faster training convergence comparing
to batch normalization"; it prints no number.

**Part 2, the recurrent claim (LN §6, §7: "recurrent neural networks benefit the most from the proposed method
especially for long sequences and small mini-batches").** An LSTM against the LN-LSTM of the paper's
supplementary equations (:class:`normcore.models.LNLSTMCell`, one parametrisation and one Python step for
both), reading each image as 112 steps of 7 pixels (a long sequence), batch 8 (the handwriting experiment's,
§6.5), Adam; judged on the area under the training-NLL curve.

Claims (each a :func:`reproductions.claims.paired.paired_comparison` over paired seeds, fixed before any run):

* faster convergence at batch 128 and at batch 4: :math:`d_s = A_s(\mathrm{BN}) - A_s(\mathrm{LN})` with
  :math:`A_s = \frac1K\sum_{k=1}^{K} \ln \mathrm{NLL}_s(t_k)` the area under the training-NLL curve on
  Figure 6's log axis (K evaluation points after step 0), test "greater", effect :data:`CONVERGENCE_EFFECT`;
* robust to the batch size: :math:`d_s = R_s(\mathrm{BN}) - R_s(\mathrm{LN})`, with :math:`R_s` the rise of
  the area under the test-error curve (mean test error over the evaluation points, in points) from batch 128
  to batch 4, test "greater", effect :data:`ROBUSTNESS_EFFECT`;
* LN speeds up recurrent training: :math:`d_s = A_s(\mathrm{LSTM}) - A_s(\mathrm{LN\text{-}LSTM})`, the
  area under the log training-NLL curve (the mean loss of the mini-batches between evaluation points), test
  "greater", effect :data:`CONVERGENCE_EFFECT`.

A pilot on :data:`PILOT_SEEDS` sets the number of seeds (:func:`reproductions.claims.paired.plan_seeds`, at most
:data:`MAX_SEEDS`, the time budget); ``--seeds`` skips it.

    python -m reproductions.layer_norm.cpu [--quick] [--seeds 0 1 2 3 4] [--data FASHION_MNIST_DIR]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from normcore import BatchNorm
from normcore.models import mlp
from normcore.models.lstm import LSTM
from reproductions.claims.paired import paired_comparison, plan_seeds
from reproductions.claims.statistics import curve_stats, stat
from reproductions.claims.verdicts import NOT_TESTABLE, central_verdict
from reproductions.smallscale.experiment import cli, finish_experiment, resolve_seeds, results_dir, select_runs
from reproductions.smallscale.fashion_mnist import FashionMNIST, fashion_mnist
from reproductions.smallscale.parallel import parallel_map
from reproductions.smallscale.training import Timer, evaluate_classifier, seed_everything, train_steps

__all__ = [
    "CLAIMS",
    "LSTM_CONFIG",
    "MLP_CONFIG",
    "Claim",
    "LSTMConfig",
    "MLPConfig",
    "SequenceClassifier",
    "build_lstm",
    "build_mlp",
    "claim_values",
    "comparisons",
    "curve_mean",
    "experiment_verdict",
    "log_curve_area",
    "main",
    "pilot_plan",
    "pixel_sequences",
    "run",
    "train_job",
]

# --------------------------------------------------------------------------------------------------
# budget, seeds and effects (fixed before any run)
# --------------------------------------------------------------------------------------------------
PILOT_SEEDS = (1000, 1001, 1002)
"""The pilot's own seeds (never reused by the run)."""
MAX_SEEDS = 8
"""The most seeds the 10-minute budget allows after the pilot (2 workers; see the paper card's arithmetic)."""
QUICK_PILOT_SEEDS = (1000, 1001)
QUICK_SEEDS = 2
VALIDATION_FRACTION = 5_000 / 60_000
"""Held out of the 60,000 training images, leaving the 55,000 training points of LN §6.6 (5,000 on the full
data; the same fraction of the tests' small generated data). Nothing is tuned on them."""
CONVERGENCE_EFFECT = 0.1
"""Smallest effect of interest for "converges faster", in the mean of ln NLL over the curve: the faster net's
NLL about 10 % lower (geometric mean over the evaluation points). Not from the paper (Figure 6 and Figure 5
print no number); chosen before any run as the smallest gap worth the name on Figure 6's log axis."""
ROBUSTNESS_EFFECT = 0.5
"""Smallest effect of interest for "robust to the batch size", in points of mean test error: batch 4 costs
BN at least 0.5 points (50 of the 10,000 test images, about 1.4 binomial standard errors of one error rate
near 15 %) more than it costs LN. Not from the paper (Figure 6 prints no number); chosen before any run."""
CHANCE_NLL = math.log(10.0)
"""Cross-entropy of a uniform guess over 10 classes: a diverged run counts as never having learned."""
CHANCE_ERROR = 90.0
"""Test error (%) of a guess: a diverged run's mean test error."""

PAPER = "layer_norm"
MLP_EXPERIMENT = "pi_mnist_fig6"
LSTM_EXPERIMENT = "lstm_sequential_mnist"
MLP_NORMS = ("BN", "LN")
LSTM_NETS = {"LSTM": False, "LN-LSTM": True}
"""Legend name -> ``layer_norm`` of :class:`normcore.models.lstm.LSTM`."""


@dataclass(frozen=True)
class MLPConfig:
    """Figure 6's network and training (LN §6.6); ``hidden`` is reduced from the paper's (1000, 1000) for the
    budget (reproductions/layer_norm/README.md gives the measured costs)."""

    hidden: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    optimizer: str = "Adam"
    lr: float = 1e-3
    batch_sizes: tuple[int, ...] = (128, 4)
    epochs: float = 1.0
    evals_per_epoch: int = 10
    bn_unbiased_variance_batch_sizes: tuple[int, ...] = (4,)
    bn_on_logits: bool = True
    train_nll_samples: int = 1000


@dataclass(frozen=True)
class LSTMConfig:
    """The recurrent part: a one-layer LSTM or LN-LSTM over ``784 / pixels_per_step`` steps."""

    hidden_size: int = 64
    pixels_per_step: int = 7
    batch_size: int = 8
    steps: int = 1000
    eval_every: int = 50
    optimizer: str = "Adam"
    lr: float = 1e-3


MLP_CONFIG = MLPConfig()
LSTM_CONFIG = LSTMConfig()
QUICK_MLP_CONFIG = MLPConfig(hidden=(32, 32), epochs=0.05, evals_per_epoch=40, train_nll_samples=200)
QUICK_LSTM_CONFIG = LSTMConfig(hidden_size=8, steps=20, eval_every=5)


@dataclass(frozen=True)
class Claim:
    """One paired claim: ``a`` and ``b`` are the two settings whose per-seed values form :math:`d = a - b`."""

    key: str
    experiment: str
    text: str
    measure: str
    labels: tuple[str, str]
    effect: float
    unit: str
    diverged_value: float
    published_ref: str
    published: str
    n_eval: bool = False


CLAIMS = (
    Claim(
        "converge_batch128",
        MLP_EXPERIMENT,
        "LN converges faster than BN at batch 128 (Fig. 6)",
        "area under the ln training-NLL curve (mean over the evaluation points after step 0), BN minus LN",
        ("BN", "LN"),
        CONVERGENCE_EFFECT,
        "ln NLL",
        math.log(CHANCE_NLL),
        "ln.pi_mnist.batch128",
        "figure only (no number): LN's training NLL falls faster than BN's",
    ),
    Claim(
        "converge_batch4",
        MLP_EXPERIMENT,
        "LN converges faster than BN at batch 4 (Fig. 6)",
        "area under the ln training-NLL curve (mean over the evaluation points after step 0), BN minus LN",
        ("BN", "LN"),
        CONVERGENCE_EFFECT,
        "ln NLL",
        math.log(CHANCE_NLL),
        "ln.pi_mnist.batch4",
        "figure only (no number): LN's training NLL falls faster than BN's",
    ),
    Claim(
        "robust_batch_size",
        MLP_EXPERIMENT,
        "LN is robust to the batch size (Fig. 6)",
        "rise of the mean test error (over the evaluation points after step 0) from batch 128 to batch 4, BN's "
        "rise minus LN's",
        ("BN", "LN"),
        ROBUSTNESS_EFFECT,
        "points",
        CHANCE_ERROR,
        "ln.pi_mnist.batch4",
        "figure only (no number): LN is robust to the batch size, BN is not",
        n_eval=True,
    ),
    Claim(
        "lstm_converge",
        LSTM_EXPERIMENT,
        "LN speeds up LSTM training on a long sequence (§6.5, §7)",
        "area under the ln training-NLL curve (the mean loss of the mini-batches between evaluation points), "
        "LSTM minus LN-LSTM",
        ("LSTM", "LN-LSTM"),
        CONVERGENCE_EFFECT,
        "ln NLL",
        math.log(CHANCE_NLL),
        "ln.handwriting.nll",
        "figure only (no number): LN converges much faster on long sequences and small batches (§6.5, §7)",
    ),
)
"""Every claim, its effect and its diverged value, fixed before any run."""


# --------------------------------------------------------------------------------------------------
# data and models
# --------------------------------------------------------------------------------------------------
@cache
def _dataset(data: str | None) -> FashionMNIST:
    """The full Fashion-MNIST, flat, with :data:`VALIDATION_FRACTION` held out (loaded once per process)."""
    return fashion_mnist(data, validation=VALIDATION_FRACTION, flat=True)


def pixel_sequences(x: torch.Tensor, mean: float, std: float, pixels_per_step: int) -> torch.Tensor:
    r"""Flat images ``(N, 784)`` as sequences ``(N, 784 / p, p)`` of ``p`` consecutive pixels (row-major, so
    7 pixels are a quarter row), standardized :math:`(x - \mu) / \sigma` with the training set's pixel mean
    and std.

    Why standardize: an all-zero background chunk makes the LN-LSTM's input path :math:`W_x x_t` exactly zero,
    and layer-normalizing a constant vector has a Jacobian gain of :math:`1/\sqrt{\epsilon} \approx 316`,
    which compounds through time (see :mod:`normcore.models.lstm`). Both LSTMs get the same input."""
    if x.shape[1] % pixels_per_step:
        raise ValueError(f"{x.shape[1]} pixels do not split into steps of {pixels_per_step}")
    return ((x - mean) / std).view(x.shape[0], -1, pixels_per_step)


def build_mlp(norm: str, batch_size: int, cfg: MLPConfig) -> torch.nn.Module:
    """784-hidden-10 ReLU MLP (PyTorch's default init). LN (:class:`normcore.FeatureLayerNorm`) on the hidden
    layers only; BN on the hidden layers and, with ``cfg.bn_on_logits``, on the logits ("batch normalization
    that is applied to all layers", LN §6.6), with the unbiased variance at the configured small batches."""
    if norm == "LN":
        return mlp(784, cfg.hidden, 10, norm="feature_ln", activation=cfg.activation)
    correction = 1 if batch_size in cfg.bn_unbiased_variance_batch_sizes else 0
    body = mlp(784, cfg.hidden, 10, norm={"name": "bn", "correction": correction}, activation=cfg.activation)
    if not cfg.bn_on_logits:
        return body
    return torch.nn.Sequential(body, BatchNorm(10, correction=correction))


class SequenceClassifier(torch.nn.Module):
    """An :class:`normcore.models.lstm.LSTM` over ``(N, T, I)`` sequences, then a linear head on the last
    hidden state."""

    def __init__(self, input_size: int, hidden_size: int, layer_norm: bool, num_classes: int = 10) -> None:
        super().__init__()
        self.lstm = LSTM(input_size, hidden_size, layer_norm=layer_norm)
        self.head = torch.nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, _ = self.lstm(x)
        return self.head(output[:, -1])


def build_lstm(net: str, cfg: LSTMConfig) -> SequenceClassifier:
    """The LSTM or LN-LSTM classifier of the recurrent part (``net`` a key of :data:`LSTM_NETS`)."""
    return SequenceClassifier(cfg.pixels_per_step, cfg.hidden_size, LSTM_NETS[net])


# --------------------------------------------------------------------------------------------------
# one training run (a job for parallel_map)
# --------------------------------------------------------------------------------------------------
def _train_mlp(job: dict[str, Any], tick: Callable[[int], Any] | None) -> dict[str, Any]:
    """One Figure 6 run: training NLL (inference mode, fixed training images) and test error (%) at
    ``evals_per_epoch`` points per epoch."""
    cfg = MLPConfig(**job["config"])
    ds = _dataset(job["data"])
    bs = job["batch_size"]
    generator = seed_everything(job["seed"])
    model = build_mlp(job["net"], bs, cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, foreach=True)
    per_epoch = ds.x_train.shape[0] // bs
    steps = max(1, round(cfg.epochs * per_epoch))
    x_nll, y_nll = ds.x_train[: cfg.train_nll_samples], ds.y_train[: cfg.train_nll_samples]

    def evaluate(step: int) -> dict[str, float]:
        train_nll, _ = evaluate_classifier(model, x_nll, y_nll)
        _, test_acc = evaluate_classifier(model, ds.x_test, ds.y_test)
        return {"train_nll": train_nll, "test_error": 100.0 * (1.0 - test_acc)}

    log = train_steps(
        model,
        optimizer,
        ds.x_train,
        ds.y_train,
        steps=steps,
        batch_size=bs,
        generator=generator,
        eval_every=math.ceil(steps / max(1, round(cfg.evals_per_epoch * cfg.epochs))),
        evaluate=evaluate,
        tick=None if tick is None else (lambda n: tick(n * bs)),
    )
    return {
        **{k: job[k] for k in ("kind", "net", "seed", "batch_size")},
        "steps": log.steps,
        "epochs": [s / per_epoch for s in log.steps],
        "train_seconds": log.seconds[-1],
        **{k: log.column(k) for k in ("train_nll", "test_error")},
    }


def _train_lstm(job: dict[str, Any], tick: Callable[[int], Any] | None) -> dict[str, Any]:
    """One recurrent run: the mean training NLL of the mini-batches between evaluation points, and the final
    test error (%) on the whole test set."""
    cfg = LSTMConfig(**job["config"])
    ds = _dataset(job["data"])
    mean, std = float(ds.x_train.mean()), float(ds.x_train.std())
    x_train = pixel_sequences(ds.x_train, mean, std, cfg.pixels_per_step)
    x_test = pixel_sequences(ds.x_test, mean, std, cfg.pixels_per_step)
    generator = seed_everything(job["seed"])
    model = build_lstm(job["net"], cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, foreach=True)
    log = train_steps(
        model,
        optimizer,
        x_train,
        ds.y_train,
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        generator=generator,
        eval_every=cfg.eval_every,
        tick=None if tick is None else (lambda n: tick(n * cfg.batch_size)),
    )
    _, test_acc = evaluate_classifier(model, x_test, ds.y_test)
    return {
        **{k: job[k] for k in ("kind", "net", "seed")},
        "steps": log.steps[1:],
        "train_nll": log.train_loss[1:],
        "seconds": log.seconds[1:],
        "train_seconds": log.seconds[-1],
        "test_error": 100.0 * (1.0 - test_acc),
    }


def train_job(job: dict[str, Any], tick: Callable[[int], Any] | None = None) -> dict[str, Any]:
    """One run of either part (``job["kind"]`` is ``"mlp"`` or ``"lstm"``); progress in samples."""
    return (_train_mlp if job["kind"] == "mlp" else _train_lstm)(job, tick)


# --------------------------------------------------------------------------------------------------
# whole-curve measures and the claims' per-seed values
# --------------------------------------------------------------------------------------------------
def log_curve_area(nll: Sequence[float]) -> float:
    r"""The area under a training-NLL curve on a log axis per unit of training,
    :math:`\frac1K \sum_k \ln \mathrm{NLL}(t_k)` over its K points (NaN if any point is not finite: a
    diverged run)."""
    values = np.asarray(nll, dtype=float)
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        return float("nan")
    return float(np.mean(np.log(values)))


def curve_mean(values: Sequence[float]) -> float:
    """The mean of a curve's points (the area under it per unit of training); NaN if any is not finite."""
    arr = np.asarray(values, dtype=float)
    return float(np.mean(arr)) if np.all(np.isfinite(arr)) else float("nan")


def _by_seed(runs: Sequence[dict[str, Any]], seeds: Sequence[int], measure: Callable[[dict], float], **match: Any):
    return {r["seed"]: measure(r) for r in select_runs(runs, seeds, **match)}


def claim_values(
    runs: Sequence[dict[str, Any]], seeds: Sequence[int], mcfg: MLPConfig
) -> dict[str, tuple[dict[int, float], dict[int, float]]]:
    """Per claim key of :data:`CLAIMS`, the per-seed values ``(a, b)`` whose difference it tests. MLP curves
    skip the step-0 point (the same untrained net for every setting)."""
    big, small = max(mcfg.batch_sizes), min(mcfg.batch_sizes)
    out: dict[str, tuple[dict[int, float], dict[int, float]]] = {}
    for bs in mcfg.batch_sizes:
        area = {n: _by_seed(runs, seeds, lambda r: log_curve_area(r["train_nll"][1:]), kind="mlp", net=n,
                            batch_size=bs) for n in MLP_NORMS}  # fmt: skip
        out[f"converge_batch{bs}"] = (area["BN"], area["LN"])
    rise = {}
    for n in MLP_NORMS:
        err = {
            bs: _by_seed(runs, seeds, lambda r: curve_mean(r["test_error"][1:]), kind="mlp", net=n, batch_size=bs)
            for bs in (big, small)
        }
        rise[n] = {s: err[small][s] - err[big][s] for s in seeds}
    out["robust_batch_size"] = (rise["BN"], rise["LN"])
    area = {n: _by_seed(runs, seeds, lambda r: log_curve_area(r["train_nll"]), kind="lstm", net=n) for n in LSTM_NETS}
    out["lstm_converge"] = (area["LSTM"], area["LN-LSTM"])
    return out


def pilot_plan(
    runs: Sequence[dict[str, Any]], seeds: Sequence[int], mcfg: MLPConfig, *, minimum: int, maximum: int
) -> dict[str, Any]:
    """The run's seeds from the pilot's runs (:func:`reproductions.claims.paired.plan_seeds`, every claim of
    :data:`CLAIMS` planned), with the pilot's per-seed values."""
    values = claim_values(runs, seeds, mcfg)
    entries = [
        {"claim": c.text, "test": "greater", "effect": c.effect, "a": _finite(values[c.key][0], c.diverged_value),
         "b": _finite(values[c.key][1], c.diverged_value)}
        for c in CLAIMS
    ]  # fmt: skip
    plan = plan_seeds(entries, maximum=maximum, first_seed=0, minimum=minimum)
    plan["pilot_values"] = {c.key: {"a": entries[i]["a"], "b": entries[i]["b"]} for i, c in enumerate(CLAIMS)}
    return plan


def _finite(values: Mapping[int, float], diverged_value: float) -> dict[int, float]:
    return {s: (v if math.isfinite(v) else diverged_value) for s, v in values.items()}


def comparisons(
    runs: Sequence[dict[str, Any]], seeds: Sequence[int], mcfg: MLPConfig, n_test: int
) -> dict[str, dict[str, Any]]:
    """Every claim's :func:`~reproductions.claims.paired.paired_comparison`, by key."""
    values = claim_values(runs, seeds, mcfg)
    return {
        c.key: {"measure": c.measure}
        | paired_comparison(
            c.text,
            values[c.key][0],
            values[c.key][1],
            test="greater",
            effect=c.effect,
            labels=c.labels,
            unit=c.unit,
            n_eval=n_test if c.n_eval else None,
            diverged_value=c.diverged_value,
            published_ref=c.published_ref,
            published=c.published,
        )
        for c in CLAIMS
    }


def experiment_verdict(comps: Sequence[dict[str, Any]]) -> str:
    """One claim: its own verdict; several: :func:`reproductions.claims.verdicts.central_verdict` (all central),
    except that claims all "not testable at this scale" leave the experiment so too (``central_verdict`` would
    call it "not reproduced")."""
    verdicts = [c["verdict"] for c in comps]
    if len(verdicts) == 1 or all(v == NOT_TESTABLE for v in verdicts):
        return verdicts[0]
    return central_verdict(verdicts)


def _interval_text(c: dict[str, Any]) -> str:
    o = c["ours"]
    interval = "" if o["low"] is None else f", 95% [{o['low']:.3f}, {o['high']:.3f}]"
    return f"mean d {o['mean_difference']:.3f} {c['unit']}{interval} (n={o['n']}): {c['verdict']}"


def summary_text(comps: Sequence[dict[str, Any]]) -> str:
    """One line per claim, from the comparisons."""
    return "; ".join(f"{c['claim'].split(' (')[0]}: {_interval_text(c)}" for c in comps) + "."


# --------------------------------------------------------------------------------------------------
# metrics, curves and figures
# --------------------------------------------------------------------------------------------------
def mlp_metrics(runs: Sequence[dict[str, Any]], seeds: Sequence[int], cfg: MLPConfig) -> dict[str, Any]:
    """Per norm and batch size: the curve areas, the final training NLL and test error, the training seconds."""
    metrics: dict[str, Any] = {}
    for bs in cfg.batch_sizes:
        for norm in MLP_NORMS:
            rs = select_runs(runs, seeds, kind="mlp", net=norm, batch_size=bs)
            tag = f"{norm.lower()}_batch{bs}"
            metrics[f"area_ln_train_nll_{tag}"] = stat(
                [log_curve_area(r["train_nll"][1:]) for r in rs], "ln NLL", False
            )
            metrics[f"mean_test_error_{tag}"] = stat([curve_mean(r["test_error"][1:]) for r in rs], "%", False)
            metrics[f"final_train_nll_{tag}"] = stat([r["train_nll"][-1] for r in rs], higher_is_better=False)
            metrics[f"final_test_error_{tag}"] = stat([r["test_error"][-1] for r in rs], "%", False)
            metrics[f"train_seconds_{tag}"] = stat([r["train_seconds"] for r in rs], unit="s")
    return metrics


def lstm_metrics(runs: Sequence[dict[str, Any]], seeds: Sequence[int], cfg: LSTMConfig) -> dict[str, Any]:
    """Per net: the curve area, the final training NLL (last interval), the final test error, seconds per step."""
    metrics: dict[str, Any] = {}
    for net in LSTM_NETS:
        rs = select_runs(runs, seeds, kind="lstm", net=net)
        tag = net.lower().replace("-", "_")
        metrics[f"area_ln_train_nll_{tag}"] = stat([log_curve_area(r["train_nll"]) for r in rs], "ln NLL", False)
        metrics[f"final_train_nll_{tag}"] = stat([r["train_nll"][-1] for r in rs], higher_is_better=False)
        metrics[f"final_test_error_{tag}"] = stat([r["test_error"] for r in rs], "%", False)
        metrics[f"ms_per_step_{tag}"] = stat([1e3 * r["train_seconds"] / cfg.steps for r in rs], "ms")
    return metrics


def mlp_curves(runs: Sequence[dict[str, Any]], seeds: Sequence[int], cfg: MLPConfig) -> dict[str, Any]:
    """Training NLL and test error against epochs, per batch size, every seed kept."""
    out: dict[str, Any] = {}
    for bs in cfg.batch_sizes:
        for key, label in (("train_nll", "training NLL"), ("test_error", "test error (%)")):
            series = {}
            for norm in MLP_NORMS:
                rs = select_runs(runs, seeds, kind="mlp", net=norm, batch_size=bs)
                series[norm] = curve_stats([r[key] for r in rs], keep_seeds=True)
            out[f"{key}_batch{bs}"] = {"x": rs[0]["epochs"], "x_label": "epochs", "y_label": label, "series": series}
    return out


def lstm_curves(runs: Sequence[dict[str, Any]], seeds: Sequence[int]) -> dict[str, Any]:
    """Training NLL (mean of the mini-batches since the previous point) against steps, every seed kept."""
    series = {}
    for net in LSTM_NETS:
        rs = select_runs(runs, seeds, kind="lstm", net=net)
        series[net] = curve_stats([r["train_nll"] for r in rs], keep_seeds=True)
    return {
        "train_nll": {"x": rs[0]["steps"], "x_label": "training steps", "y_label": "training NLL", "series": series}
    }


def plot_curves_figure(curves: dict[str, Any], names: Sequence[str], path: Path, *, ncols: int) -> str:
    """The named curves, one panel each, every seed a thin line and the mean a thick one, log axis for NLL."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    from reproductions.reporting.plots import save_figure

    sns.set_theme(style="whitegrid")
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6 * ncols, 4 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        curve = curves[name]
        for color, (label, s) in zip(sns.color_palette("deep"), curve["series"].items()):
            for y in s["per_seed"]:
                ax.plot(curve["x"], [np.nan if v is None else v for v in y], color=color, lw=0.6, alpha=0.4)
            ax.plot(curve["x"], [np.nan if v is None else v for v in s["mean"]], color=color, lw=2, label=label)
        ax.set(xlabel=curve["x_label"], ylabel=curve["y_label"], title=name.replace("_", " "))
        if "nll" in name:
            ax.set_yscale("log")
        ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)


# --------------------------------------------------------------------------------------------------
# entry points
# --------------------------------------------------------------------------------------------------
def _jobs(seeds: Sequence[int], data: str | None, mcfg: MLPConfig, lcfg: LSTMConfig) -> list[dict[str, Any]]:
    """Every run of both parts, the longest first (batch-4 MLPs, LSTMs, then batch-128 MLPs), so that the
    workers finish together."""
    small = min(mcfg.batch_sizes)

    def mlp_jobs(sizes: Sequence[int]) -> list[dict[str, Any]]:
        return [
            {"kind": "mlp", "net": n, "seed": s, "batch_size": bs, "config": asdict(mcfg), "data": data}
            for bs in sizes
            for s in seeds
            for n in MLP_NORMS
        ]

    lstm = [
        {"kind": "lstm", "net": net, "seed": s, "config": asdict(lcfg), "data": data}
        for s in seeds
        for net in reversed(LSTM_NETS)
    ]
    return mlp_jobs([small]) + lstm + mlp_jobs([b for b in mcfg.batch_sizes if b != small])


def _samples(job: dict[str, Any], n_train: int) -> int:
    """A job's training samples (the progress bar's unit)."""
    if job["kind"] == "lstm":
        return job["config"]["steps"] * job["config"]["batch_size"]
    bs = job["batch_size"]
    return max(1, round(job["config"]["epochs"] * (n_train // bs))) * bs


def _train_all(
    seeds: Sequence[int], data: str | None, mcfg: MLPConfig, lcfg: LSTMConfig, workers: int | None, desc: str
) -> list[dict[str, Any]]:
    jobs = _jobs(seeds, data, mcfg, lcfg)
    n_train = _dataset(data).x_train.shape[0]
    total = sum(_samples(j, n_train) for j in jobs)
    runs = parallel_map(train_job, jobs, workers=workers, desc=desc, total=total)
    for r in runs:
        where = f"batch {r['batch_size']:>3d}" if r["kind"] == "mlp" else "sequence"
        print(
            f"  {r['net']:>7s} {where} seed {r['seed']}: final training NLL {r['train_nll'][-1]:.4f}, "
            f"test error {np.ravel(r['test_error'])[-1]:.2f}% ({r['train_seconds']:.0f} s training)"
        )
    return runs


def choose_seeds(
    seeds: Sequence[int] | None, quick: bool, data: str | None, mcfg: MLPConfig, lcfg: LSTMConfig, workers: int | None
) -> tuple[list[int], dict[str, Any]]:
    """``--seeds`` as given (no pilot), else the pilot's plan (:func:`pilot_plan`)."""
    if seeds:
        return list(seeds), {"skipped": "--seeds given"}
    pilot_seeds = QUICK_PILOT_SEEDS if quick else PILOT_SEEDS
    runs = _train_all(pilot_seeds, data, mcfg, lcfg, workers, "LN pilot (samples)")
    limits = {"minimum": QUICK_SEEDS, "maximum": QUICK_SEEDS} if quick else {"maximum": MAX_SEEDS, "minimum": 5}
    plan = pilot_plan(runs, pilot_seeds, mcfg, **limits)
    print(f"{PAPER}: pilot on seeds {list(pilot_seeds)} -> {plan['n']} seeds (needed {plan['needed']})")
    return plan["seeds"], plan


def run(
    quick: bool = False,
    seeds: Sequence[int] | None = None,
    data: str | None = None,
    out_dir: str | None = None,
    workers: int | None = None,
) -> list[Path]:
    """Pilot (unless ``seeds``), then both parts on the chosen seeds; writes ``pi_mnist_fig6.{json,png}`` and
    ``lstm_sequential_mnist.{json,png}``."""
    if seeds is not None:
        seeds = resolve_seeds(seeds, quick)  # duplicate seeds: an error before any work
    mcfg, lcfg = (QUICK_MLP_CONFIG, QUICK_LSTM_CONFIG) if quick else (MLP_CONFIG, LSTM_CONFIG)
    out = results_dir(PAPER, quick, out_dir)
    with Timer() as timer:
        ds = _dataset(data)
        workers = 1 if quick else workers  # quick: no process start-up (CI's 40 s)
        seeds, plan = choose_seeds(seeds, quick, data, mcfg, lcfg, workers)
        runs = _train_all(seeds, data, mcfg, lcfg, workers, "LN Fig. 6 + LSTM (samples)")
    comps = comparisons(runs, seeds, mcfg, ds.x_test.shape[0])
    seconds_mlp = sum(r["train_seconds"] for r in runs if r["kind"] == "mlp")
    share = seconds_mlp / max(1e-9, sum(r["train_seconds"] for r in runs))
    common = {"dataset": ds, "seeds": seeds, "quick": quick, "paper": PAPER, "pilot": plan, "disclosures": []}
    protocol = {
        "validation_fraction": VALIDATION_FRACTION,
        "pilot_seeds": list(QUICK_PILOT_SEEDS if quick else PILOT_SEEDS),
        "max_seeds": QUICK_SEEDS if quick else MAX_SEEDS,
        "effects": {c.key: c.effect for c in CLAIMS},
    }
    paths: list[Path] = []
    for experiment, metrics, curves, names, ncols, seconds, title, claim, config, notes in (
        (
            MLP_EXPERIMENT,
            mlp_metrics(runs, seeds, mcfg),
            mlp_curves(runs, seeds, mcfg),
            [f"{k}_batch{bs}" for k in ("train_nll", "test_error") for bs in mcfg.batch_sizes],
            len(mcfg.batch_sizes),
            timer.seconds * share,
            "LN paper Figure 6 on Fashion-MNIST: BN vs LN at batch 128 and 4",
            "Layer normalization is robust to the batch size and converges faster than batch normalization "
            "(784-1000-1000-10 MLP, Adam, batch 128 and 4; LN §6.6, Figure 6).",
            {**asdict(mcfg), "model": "normcore.models.mlp(784, hidden, 10, norm=...), ReLU, PyTorch default init; "
             "BN also on the logits (bn_on_logits)", **protocol},
            MLP_NOTES,
        ),
        (
            LSTM_EXPERIMENT,
            lstm_metrics(runs, seeds, lcfg),
            lstm_curves(runs, seeds),
            ["train_nll"],
            1,
            timer.seconds * (1 - share),
            "LN-LSTM vs LSTM on pixel-sequence Fashion-MNIST (112 steps of 7 pixels)",
            "Layer normalization speeds up the training of recurrent networks, especially on long sequences and "
            "small mini-batches (LN §6.5, §7).",
            {**asdict(lcfg), "model": "SequenceClassifier: normcore.models.lstm.LSTM(7, hidden, layer_norm) + linear "
             "head on the last state", **protocol},
            LSTM_NOTES,
        ),
    ):  # fmt: skip
        comps_here = [comps[c.key] for c in CLAIMS if c.experiment == experiment]
        figure = plot_curves_figure(curves, names, out / f"{experiment}.png", ncols=ncols)
        paths.append(
            finish_experiment(
                out / f"{experiment}.json",
                experiment=experiment,
                title=title,
                claim=claim,
                config=config,
                metrics=metrics,
                comparisons=comps_here,
                verdict={"status": experiment_verdict(comps_here), "summary": summary_text(comps_here)},
                figures=[figure],
                seconds=seconds,
                curves=curves,
                notes=notes,
                **common,
            )
        )
        paths.append(out / figure)
        print(f"{PAPER} {experiment}: {experiment_verdict(comps_here)} - {summary_text(comps_here)}")
    print(f"{PAPER}: {timer.seconds:.0f} s in all")
    return paths


MLP_NOTES = (
    "Hidden layers of 256 units, not the paper's 1000: on the 2-core reference machine an Adam step of the "
    "1.8M-parameter 784-1000-1000-10 net takes about 10 ms whatever the batch (memory-bound), so one epoch at "
    "batch 4 would take over 2 minutes per run; the 10-minute budget holds 1 epoch of the 256-wide net.",
    "One epoch at each batch size (the paper plots 60); the claims are judged on the whole curve of that epoch.",
    "Training NLL on the first 1,000 training images in inference mode (BN with its running averages); test "
    "error on all 10,000 test images; both at 10 points per epoch.",
    "The paper's unnormalized baseline is not run (no claim is about it).",
    "seconds: this part's share (by training time) of the whole run's wall-clock time, pilot included.",
    "Adam at PyTorch's default learning rate 1e-3 for every net and batch size (the paper states none).",
)
LSTM_NOTES = (
    "A stand-in task: the LN paper has no sequential-MNIST experiment; its long-sequence claim comes from "
    "handwriting generation (§6.5: sequences of about 700 points, batch 8), out of reach on 2 CPU cores.",
    "Both nets use the same Python LSTM step (normcore.models.LNLSTMCell, layer_norm off or on) and the same "
    "initial weights per seed.",
    "The training NLL at each point is the mean cross-entropy of the mini-batches since the previous point (all "
    "training steps count, no extra evaluation); the test error is measured once, at the end, on all 10,000 "
    "test images.",
    "1,000 steps of batch 8 (8,000 sequences, a seventh of an epoch): the budget's limit, the same for both nets.",
    "seconds: this part's share (by training time) of the whole run's wall-clock time, pilot included.",
)


def main(argv: Sequence[str] | None = None) -> list[Path]:
    return cli(run, "LN paper Figure 6 and LN-LSTM vs LSTM on Fashion-MNIST at CPU scale.", argv)


if __name__ == "__main__":
    main()
