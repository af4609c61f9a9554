r"""Normalization Propagation at CPU scale (Arpit, Zhou, Kota & Govindaraju, ICML 2016, arXiv 1603.01431).

The paper trains a Network-in-Network-like conv net on CIFAR-10/100 and SVHN with NormProp, BN and no
normalization. Its claims (abstract and method): NormProp matches BN's accuracy, trains with batch size 1
because it uses no batch statistics, is faster than BN, and keeps every hidden layer's input normalized
(zero mean, unit variance) by propagating the input's normalization parametrically, where BN's estimates
used for validation lag behind its shifting parameters.

What we run (claims, tests, effects and margins were fixed before any run; the budget constants were set
from timing probes, :data:`DISCLOSURES`; reproductions/normprop/README.md says which settings come from the paper
and which could not be verified):

* data: the full Fashion-MNIST (60,000 training, 10,000 test images, ``(1, 28, 28)`` in [0, 1]); the
  NormProp net standardizes its input with the training set's per-channel mean and std
  (:class:`normcore.NormPropInputNorm`, NormProp §3: "normalize the dataset"), BN and the plain net take
  the pixels as they are;
* model: :func:`normcore.models.nin` of width :data:`WIDTH` with ``norm="normprop"`` (gamma starts at
  :data:`normcore.normprop.GAMMA_INIT` = 1/1.21), ``"bn"`` or ``None``;
* training, the same for every net: SGD with momentum 0.9, no weight decay, learning rate
  :math:`0.1 \cdot B / 256` (linear scaling, Goyal et al. 2017 §2.1; the paper's rate could not be
  checked), a constant rate; at batch :data:`BATCH_SIZE` for :data:`TRAIN_IMAGES` images, and at batch 1
  for :data:`BATCH1_IMAGES` images (NormProp and BN). Within a seed every net sees the same data order, and
  the batch-1 and batch-50 runs of one net start from the same weights;
* the normalization claim itself: on :data:`STATS_IMAGES` fixed test images, at init and at every
  evaluation, every hidden conv unit's *normalized* pre-activation before gamma and beta, per channel:
  NormProp :math:`W_i^T x / \lVert W_i \rVert_2`; BN :math:`(x - \hat\mu) / \sqrt{\hat\sigma^2 + \epsilon}`
  with the running estimates it applies to test images (in training mode it is 0 and 1 by construction);
  no normalization: the conv output without bias. Per channel :math:`c` its mean :math:`m_c` and std
  :math:`s_c`, and the deviation from N(0, 1) :math:`D = \mathrm{mean}_{l, c}(|m_c| + |\ln s_c|)`
  (absolute per-channel means, so signed means do not cancel over channels).

Claims (paired over seeds, :mod:`reproductions.claims.paired`; effects fixed below, before any run):

1. NormProp is not worse than BN at the paper's batch (final test accuracy, margin :data:`ACCURACY_MARGIN`);
2. at batch 1 NormProp beats BN (final test accuracy, smallest effect :data:`BATCH1_EFFECT`);
3. at batch 1 NormProp is not worse than itself at batch :data:`BATCH_SIZE` after the same images
   (margin :data:`BATCH1_MARGIN`);
4. NormProp's hidden pre-activations are closer to N(0, 1) than the unnormalized net's (D averaged over the
   evaluations, smallest effect :data:`DEVIATION_EFFECT`);
5. NormProp's parametric normalization is not worse than BN's test-time (running) estimates (the same D,
   margin :data:`DEVIATION_EFFECT`);
6. NormProp trains faster than BN (training seconds at batch :data:`BATCH_SIZE`, relative difference,
   smallest effect :data:`SPEED_EFFECT`).

A full run first trains every setting on the pilot seeds :data:`PILOT_SEEDS`, then
:func:`reproductions.claims.paired.plan_seeds` picks the run's seeds (5 to :data:`MAX_SEEDS`).

    python -m reproductions.normprop.cpu [--quick] [--seeds 0 1 2 3 4] [--data FASHION_MNIST_DIR]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from normcore import functional as Fn
from normcore.models import nin
from normcore.models.common import ConvNormAct
from normcore.normprop import GAMMA_INIT, NormPropConv2d
from reproductions.claims.paired import paired_comparison, plan_seeds
from reproductions.claims.statistics import curve_stats, stat
from reproductions.claims.verdicts import NOT_TESTABLE, central_verdict
from reproductions.engine.schedules import scaled_lr
from reproductions.reporting.plots import save_figure
from reproductions.smallscale.data import Dataset
from reproductions.smallscale.experiment import cli, finish_experiment, resolve_seeds, results_dir, select_runs
from reproductions.smallscale.fashion_mnist import fashion_mnist
from reproductions.smallscale.parallel import parallel_map
from reproductions.smallscale.training import Timer, count_correct, seed_everything, train_steps

__all__ = ["CONFIG", "NORMS", "QUICK_CONFIG", "NormPropConfig", "claims", "main", "normalized_stats", "run"]

PAPER = "normprop"
EXPERIMENT = "nin_fashion_mnist"
NORMS = {"NormProp": "normprop", "BN": "bn", "none": None}
"""Legend name -> ``norm`` of :func:`normcore.models.nin`."""
BATCH1_NORMS = ("NormProp", "BN")

# ---- budget and seeds (a full run: at most 9 minutes on 2 idle cores, see README.md) ----------
WIDTH = 16
"""NIN width C (the paper's NIN: 192), the largest that fits the time budget."""
BATCH_SIZE = 50
"""The paper's training batch as we recall it (its experimental section could not be checked here)."""
TRAIN_IMAGES = 30_000
"""Images per run at :data:`BATCH_SIZE` (600 steps, half an epoch)."""
BATCH1_IMAGES = 3_000
"""Images (= steps) per run at batch 1."""
PILOT_SEEDS = (1000, 1001, 1002)
MAX_SEEDS = 7
"""The most seeds the time budget allows after the pilot."""

# ---- effects of interest and margins (fixed before any run) ---------------------------------------
ACCURACY_MARGIN = 1.0
"""Points of test accuracy: "as accurate as BN". The paper's (unverified) CIFAR-10 errors put NormProp
0.3 points from BN (9.11 vs 9.41 %) and call that comparable; 1 point is the smallest difference we would
call a loss."""
BATCH1_EFFECT = 5.0
"""Points: the smallest advantage of NormProp over BN at batch 1 that would support "BN cannot be used with
batch size 1" (the paper gives no number)."""
BATCH1_MARGIN = 2.0
"""Points: NormProp at batch 1 may lose at most this against NormProp at batch 50 after the same images."""
DEVIATION_EFFECT = 0.1
"""Units of D (|mean| + |ln std|): 0.1 is a mean shift of 0.1 std or a std off by 10 %."""
SPEED_EFFECT = 0.05
"""Relative training time: NormProp at least 5 % faster than BN (the paper gives no factor)."""
DISCLOSURES = [
    "Budget constants set after timing probes of single seed-0 runs (which also printed their accuracy and D): "
    "TRAIN_IMAGES 45,000 -> 30,000, BATCH1_IMAGES 6,000 -> 3,000, MAX_SEEDS 6 -> 7, curve images 2,000 -> 1,000, "
    "statistics images 500 -> 256, full-test evaluation at the batch-1 budget for NormProp only; chosen for the "
    "9-minute budget. No claim, test, effect, margin or rule was changed.",
]
"""Every setting changed after seeing any result (the results file's ``disclosures``)."""
DIVERGED_ACCURACY = 10.0
"""A run whose loss became non-finite counts as chance accuracy (10 classes), in points."""
DIVERGED_DEVIATION = 10.0
"""... and as a deviation D of 10 (far from any trained net's)."""


@dataclass(frozen=True)
class NormPropConfig:
    """One experiment's settings (:data:`CONFIG` or :data:`QUICK_CONFIG`)."""

    width: int = WIDTH
    batch_size: int = BATCH_SIZE
    train_images: int = TRAIN_IMAGES
    batch1_images: int = BATCH1_IMAGES
    base_lr: float = 0.1
    reference_batch: int = 256
    momentum: float = 0.9
    weight_decay: float = 0.0
    curve_test_images: int = 1_000
    stats_images: int = 256
    batch1_evaluations: int = 6
    train_subset: int | None = None
    test_subset: int | None = None

    def lr(self, batch_size: int) -> float:
        """Linear scaling (Goyal et al. 2017, §2.1): ``base_lr * batch_size / reference_batch``."""
        return scaled_lr(self.base_lr, batch_size, self.reference_batch)

    def steps(self, batch_size: int) -> int:
        """Training steps of a run at ``batch_size``."""
        return (self.train_images if batch_size > 1 else self.batch1_images) // batch_size

    def equal_step(self, batch_size: int) -> int:
        """The step at which a run at ``batch_size`` has seen the batch-1 runs' images."""
        return self.batch1_images // batch_size

    def eval_every(self, batch_size: int) -> int:
        """Steps between evaluations: every batch-1 budget of images at the large batch; at batch 1
        ``batch1_evaluations`` times."""
        if batch_size > 1:
            return self.equal_step(batch_size)
        return max(1, self.batch1_images // self.batch1_evaluations)


CONFIG = NormPropConfig()
QUICK_CONFIG = NormPropConfig(
    width=8,
    batch_size=16,
    train_images=512,
    base_lr=0.8,
    batch1_images=64,
    curve_test_images=100,
    stats_images=32,
    batch1_evaluations=2,
    train_subset=512,
    test_subset=500,
)
"""Quick mode (CI): the same path with tiny budgets, a larger learning rate (0.05 at batch 16) so that 32
steps move the loss, a pilot of 2 seeds and 2 planned seeds."""
QUICK_PILOT_SEEDS = (1000, 1001)
QUICK_SEEDS = 2


# --------------------------------------------------------------------------------------------------
# data and models
# --------------------------------------------------------------------------------------------------
@cache
def _dataset(data: str | None, train_subset: int | None, test_subset: int | None) -> Dataset:
    """Fashion-MNIST as ``(N, 1, 28, 28)`` images (quick mode: the first images only); loaded once per
    process (each worker loads it from ``data`` itself)."""
    ds = fashion_mnist(data, flat=False)
    if train_subset is None and test_subset is None:
        return ds
    n = min(train_subset or ds.x_train.shape[0], ds.x_train.shape[0])
    m = min(test_subset or ds.x_test.shape[0], ds.x_test.shape[0])
    split = f"{ds.split}; quick: first {n} training and {m} test images"
    return Dataset(ds.x_train[:n], ds.y_train[:n], ds.x_test[:m], ds.y_test[:m], ds.name, ds.source, split)


def build(norm: str, cfg: NormPropConfig, x_train: torch.Tensor) -> torch.nn.Module:
    """NIN (gamma of NormProp at its preset 1/1.21); the NormProp net's input standardization is fitted on
    the training images."""
    kwargs = {"norm_kwargs": {"gamma_init": GAMMA_INIT}} if NORMS[norm] == "normprop" else {}
    model = nin(num_classes=10, in_channels=1, norm=NORMS[norm], width=cfg.width, **kwargs)
    if NORMS[norm] == "normprop":
        model.fit_input_norm(x_train)
    return model


def _normalized(unit: ConvNormAct, x: torch.Tensor) -> torch.Tensor:
    r"""A hidden unit's pre-activation before gamma and beta, from the unit's input ``x``: NormProp
    :math:`W_i^T x / \lVert W_i \rVert` (§3), BN the conv output normalized with its running estimates
    (eval mode), none the conv output without its bias."""
    conv = unit.conv
    if isinstance(conv, NormPropConv2d):
        return conv._conv_forward(x, Fn.normprop_weight(conv.weight), None)
    y = F.conv2d(x, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)
    norm = unit.norm
    if isinstance(norm, torch.nn.modules.batchnorm._BatchNorm):
        shape = (1, -1, 1, 1)
        return (y - norm.running_mean.view(shape)) / torch.sqrt(norm.running_var.view(shape) + norm.eps)
    return y


@torch.no_grad()
def normalized_stats(model: torch.nn.Module, x: torch.Tensor) -> dict[str, dict[str, list[float]]]:
    """Per hidden conv unit (the class maps are left out) and per channel: the mean and std over images and
    positions of the normalized pre-activation (:func:`_normalized`) on ``x``, in eval mode (restored
    after); ``{unit: {"mean": [...], "std": [...]}}``."""
    was_training = model.training
    model.eval()
    out: dict[str, dict[str, list[float]]] = {}
    h = x
    try:
        for name, module in model.features.named_children():
            if isinstance(module, ConvNormAct) and "act" in module._modules:
                z = _normalized(module, h).double()
                std, mean = torch.std_mean(z, dim=(0, 2, 3), correction=0)
                out[name] = {"mean": mean.tolist(), "std": std.tolist()}
            h = module(h)
    finally:
        model.train(was_training)
    return out


def deviation(stats: Mapping[str, Mapping[str, Sequence[float]]]) -> float:
    r"""Distance from N(0, 1) over units and channels: :math:`\mathrm{mean}_{l,c}(|m_c| + |\ln s_c|)`."""
    terms = [abs(m) + abs(math.log(max(s, 1e-12))) for u in stats.values() for m, s in zip(u["mean"], u["std"])]
    return float(np.mean(terms))


def layer_summary(stats: Mapping[str, Mapping[str, Sequence[float]]]) -> dict[str, tuple[float, float]]:
    """Per unit: (mean over channels of |m_c|, mean over channels of s_c)."""
    return {k: (float(np.mean(np.abs(u["mean"]))), float(np.mean(u["std"]))) for k, u in stats.items()}


# --------------------------------------------------------------------------------------------------
# one training run (a job for parallel_map)
# --------------------------------------------------------------------------------------------------
def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Test accuracy in points (percent)."""
    correct, _ = count_correct(model, x, y, 500)
    return 100.0 * correct / x.shape[0]


def start(job: Mapping[str, Any]) -> tuple[NormPropConfig, Dataset, torch.nn.Module, torch.Generator]:
    """A run's config, data, model and data-order generator. Pairing: everything is seeded with the run's
    seed right before the model is built, so within a seed every net sees the same data order and the
    batch-1 and batch-50 runs of one net start from the same weights."""
    cfg = NormPropConfig(**job["config"])
    ds = _dataset(job["data"], cfg.train_subset, cfg.test_subset)
    generator = seed_everything(job["seed"])
    return cfg, ds, build(job["norm"], cfg, ds.x_train), generator


def train_job(job: dict[str, Any], tick: Callable[[int], Any] | None = None) -> dict[str, Any]:
    """Train one net at one batch size for one seed. At every evaluation: accuracy on the first
    ``curve_test_images`` test images, the normalized pre-activations' deviation D; at the step where the
    batch-1 budget is reached (NormProp, for claim 3) and at the end: accuracy on the whole test set."""
    cfg, ds, model, generator = start(job)
    bs = job["batch_size"]
    steps = cfg.steps(bs)
    full_at = {cfg.equal_step(bs), steps} if job["norm"] == "NormProp" else {steps}  # claim 3 is NormProp's
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg.lr(bs), momentum=cfg.momentum, weight_decay=cfg.weight_decay, foreach=True
    )
    x_stats = ds.x_test[: cfg.stats_images]
    x_curve, y_curve = ds.x_test[: cfg.curve_test_images], ds.y_test[: cfg.curve_test_images]

    def evaluate(step: int) -> dict[str, Any]:
        stats = normalized_stats(model, x_stats)
        out = {"curve_accuracy": _accuracy(model, x_curve, y_curve), "deviation": deviation(stats), "stats": stats}
        if step in full_at:
            out["test_accuracy"] = _accuracy(model, ds.x_test, ds.y_test)
        return out

    log = train_steps(
        model, optimizer, ds.x_train, ds.y_train, steps=steps, batch_size=bs, generator=generator,
        eval_every=cfg.eval_every(bs), evaluate=evaluate, tick=None if tick is None else (lambda n: tick(n * bs)),
    )  # fmt: skip
    nan = float("nan")
    full = {s: e.get("test_accuracy", nan) for s, e in zip(log.steps, log.evals)}
    return {
        **{k: job[k] for k in ("norm", "seed", "batch_size")},
        "images": [s * bs for s in log.steps],
        "train_loss": log.train_loss,
        "curve_accuracy": [e.get("curve_accuracy", nan) for e in log.evals],
        "deviation": [e.get("deviation", nan) for e in log.evals],
        "layers_init": layer_summary(log.evals[0]["stats"]),
        "layers_final": layer_summary(log.evals[-1]["stats"]) if "stats" in log.evals[-1] else None,
        "channels_final": log.evals[-1].get("stats"),
        "test_accuracy": full.get(steps, nan),
        "test_accuracy_equal_images": full.get(cfg.equal_step(bs), nan),
        "train_seconds": log.seconds[-1],
    }


def _jobs(seeds: Sequence[int], cfg: NormPropConfig, data: str | None) -> list[dict[str, Any]]:
    base = {"config": asdict(cfg), "data": data}
    jobs = [{"norm": n, "seed": s, "batch_size": cfg.batch_size, **base} for s in seeds for n in NORMS]
    return jobs + [{"norm": n, "seed": s, "batch_size": 1, **base} for s in seeds for n in BATCH1_NORMS]


def train_all(seeds: Sequence[int], cfg: NormPropConfig, data: str | None, workers: int | None, desc: str):
    """Every net and batch size for ``seeds`` on ``workers`` processes (a progress bar in images)."""
    jobs = _jobs(seeds, cfg, data)
    total = sum(cfg.steps(j["batch_size"]) * j["batch_size"] for j in jobs)
    return parallel_map(train_job, jobs, workers=workers, desc=desc, total=total)


# --------------------------------------------------------------------------------------------------
# claims
# --------------------------------------------------------------------------------------------------
def _by_seed(runs: Sequence[dict[str, Any]], seeds: Sequence[int], norm: str, bs: int, value) -> dict[int, float]:
    return {r["seed"]: float(value(r)) for r in select_runs(runs, seeds, norm=norm, batch_size=bs)}


def _mean_deviation(run: dict[str, Any]) -> float:
    """D averaged over every evaluation of the run (init included); NaN if the run diverged."""
    return float(np.mean(run["deviation"]))


def claims(runs: Sequence[dict[str, Any]], seeds: Sequence[int], cfg: NormPropConfig) -> list[dict[str, Any]]:
    """The six planned claims: name, test, effect and the per-seed values ``a`` and ``b`` (seed -> value),
    ``d = a - b`` oriented as the test reads, plus the keyword arguments of :func:`paired_comparison`."""
    bs = cfg.batch_size
    v = partial(_by_seed, runs, seeds)
    acc, acc_eq = (lambda r: r["test_accuracy"]), (lambda r: r["test_accuracy_equal_images"])
    seconds = v("BN", bs, lambda r: r["train_seconds"])
    points = {"unit": "points", "diverged_value": DIVERGED_ACCURACY}
    dev = {"unit": "D (|mean| + |ln std|)", "diverged_value": DIVERGED_DEVIATION}
    return [
        {
            "claim": f"NormProp is as accurate as BN (final test accuracy, batch {bs})",
            "test": "not_worse", "effect": ACCURACY_MARGIN, "labels": ("BN", "NormProp"),
            "a": v("BN", bs, acc), "b": v("NormProp", bs, acc), **points,
            "published_ref": "normprop.paper_table",
            "published": "NormProp about as accurate as BN (CIFAR-10/100, SVHN; table values unverified)",
        },
        {
            "claim": "At batch 1 NormProp trains better than BN (final test accuracy)",
            "test": "greater", "effect": BATCH1_EFFECT, "labels": ("NormProp batch 1", "BN batch 1"),
            "a": v("NormProp", 1, acc), "b": v("BN", 1, acc), **points,
            "published_ref": "method.statistics", "published": "BN cannot be used with batch size 1 (abstract)",
        },
        {
            "claim": f"NormProp at batch 1 is as accurate as at batch {bs} after the same images",
            "test": "not_worse", "effect": BATCH1_MARGIN,
            "labels": (f"NormProp batch {bs}", "NormProp batch 1"),
            "a": v("NormProp", bs, acc_eq), "b": v("NormProp", 1, acc_eq), **points,
            "published_ref": "method.statistics", "published": "NormProp can be used with batch size 1 (abstract)",
        },
        {
            "claim": "NormProp's hidden pre-activations are closer to N(0, 1) than without normalization",
            "test": "greater", "effect": DEVIATION_EFFECT, "labels": ("none", "NormProp"),
            "a": v("none", bs, _mean_deviation), "b": v("NormProp", bs, _mean_deviation), **dev,
            "published_ref": "normprop.fig.hidden_input_stability",
            "published": "every hidden layer's input stays ~ zero mean, unit variance (method; no number)",
        },
        {
            "claim": "NormProp's parametric normalization is as close to N(0, 1) as BN's test-time estimates",
            "test": "not_worse", "effect": DEVIATION_EFFECT, "labels": ("NormProp", "BN (running estimates)"),
            "a": v("NormProp", bs, _mean_deviation), "b": v("BN", bs, _mean_deviation), **dev,
            "published_ref": "normprop.fig.hidden_input_stability",
            "published": "BN's validation-time estimates are inaccurate, especially early in training (abstract)",
        },
        {
            "claim": f"NormProp trains faster than BN (training seconds at batch {bs}, relative to BN)",
            "test": "greater", "effect": SPEED_EFFECT, "labels": ("BN", "NormProp"),
            "a": {s: 1.0 for s in seconds},
            "b": {s: t / seconds[s] for s, t in v("NormProp", bs, lambda r: r["train_seconds"]).items()},
            "unit": "fraction of BN's time",
            "published_ref": "normprop.speedup_vs_bn", "published": "computationally faster than BN (abstract)",
        },
    ]  # fmt: skip


def compare(runs: Sequence[dict[str, Any]], seeds: Sequence[int], cfg: NormPropConfig, n_eval: int) -> dict[str, Any]:
    """The paired comparisons, metrics and the overall verdict (claims 1-5 central, the speed claim not)."""
    comparisons = []
    for c in claims(runs, seeds, cfg):
        kw = {k: v for k, v in c.items() if k not in ("claim", "a", "b")}
        n = n_eval if c["unit"] == "points" else None
        comparisons.append(paired_comparison(c["claim"], c["a"], c["b"], n_eval=n, **kw))
    metrics: dict[str, Any] = {}
    for n in NORMS:
        for bs in (cfg.batch_size, 1) if n in BATCH1_NORMS else (cfg.batch_size,):
            rs = select_runs(runs, seeds, norm=n, batch_size=bs)
            key = f"{n.lower()}_batch{bs}"
            metrics[f"test_accuracy_{key}"] = stat([r["test_accuracy"] for r in rs], higher_is_better=True)
            metrics[f"deviation_{key}"] = stat([_mean_deviation(r) for r in rs], higher_is_better=False)
            metrics[f"deviation_init_{key}"] = stat([r["deviation"][0] for r in rs], higher_is_better=False)
            metrics[f"deviation_final_{key}"] = stat([r["deviation"][-1] for r in rs], higher_is_better=False)
            metrics[f"train_seconds_{key}"] = stat([r["train_seconds"] for r in rs], unit="s")
    verdicts = [c["verdict"] for c in comparisons]
    central = verdicts[:5]
    status = NOT_TESTABLE if all(v == NOT_TESTABLE for v in central) else central_verdict(central, verdicts[5:])
    m, bs = metrics, cfg.batch_size
    summary = (
        f"Test accuracy at batch {bs}: NormProp {m[f'test_accuracy_normprop_batch{bs}']['mean']:.2f}%, "
        f"BN {m[f'test_accuracy_bn_batch{bs}']['mean']:.2f}%, none "
        f"{m[f'test_accuracy_none_batch{bs}']['mean']:.2f}%; at batch 1 NormProp "
        f"{m['test_accuracy_normprop_batch1']['mean']:.2f}%, BN {m['test_accuracy_bn_batch1']['mean']:.2f}%. "
        "Verdicts: " + "; ".join(f"{c['claim']}: {c['verdict']}" for c in comparisons) + "."
    )
    return {"metrics": metrics, "comparisons": comparisons, "verdict": {"status": status, "summary": summary}}


def pilot_plan(runs: Sequence[dict[str, Any]], seeds: Sequence[int], cfg: NormPropConfig, **limits: int):
    """:func:`plan_seeds` from the pilot's runs (a diverged pilot run enters with its claim's fixed
    ``diverged_value``), with the pilot's per-seed values of every claim."""
    planned = []
    for c in claims(runs, seeds, cfg):
        fixed = c.get("diverged_value", math.nan)
        a, b = ({s: x if math.isfinite(x) else fixed for s, x in c[side].items()} for side in ("a", "b"))
        planned.append({"claim": c["claim"], "test": c["test"], "effect": c["effect"], "a": a, "b": b})
    plan = plan_seeds(planned, first_seed=0, **limits)
    plan["pilot_values"] = [{"claim": c["claim"], "a": c["a"], "b": c["b"]} for c in planned]
    return plan


# --------------------------------------------------------------------------------------------------
# curves and figure
# --------------------------------------------------------------------------------------------------
def curves(runs: Sequence[dict[str, Any]], seeds: Sequence[int], cfg: NormPropConfig) -> dict[str, Any]:
    """Accuracy, training loss and D over the images seen, per batch size, every seed kept."""
    out: dict[str, Any] = {}
    labels = {"curve_accuracy": f"test accuracy (%, first {cfg.curve_test_images} test images)",
              "train_loss": "training loss", "deviation": "D of the normalized pre-activations"}  # fmt: skip
    for bs in (cfg.batch_size, 1):
        for key, label in labels.items():
            series = {}
            for n in NORMS if bs > 1 else BATCH1_NORMS:
                rs = select_runs(runs, seeds, norm=n, batch_size=bs)
                series[n] = curve_stats([r[key] for r in rs], keep_seeds=True)
            x = select_runs(runs, seeds[:1], norm="NormProp", batch_size=bs)[0]["images"]
            out[f"{key}_batch{bs}"] = {"x": x, "x_label": "training images", "y_label": label, "series": series}
    for when in ("init", "final"):
        for i, quantity in enumerate(("|mean|", "std")):
            series = {}
            for n in NORMS:
                rs = select_runs(runs, seeds, norm=n, batch_size=cfg.batch_size)
                units = list(rs[0]["layers_init"])
                per_seed = [[(r[f"layers_{when}"] or {}).get(u, (math.nan,) * 2)[i] for u in units] for r in rs]
                series[n] = curve_stats(per_seed, keep_seeds=True)  # a diverged run: NaN
            name = "abs_mean" if i == 0 else "std"
            out[f"layers_{name}_{when}"] = {
                "x": list(range(1, len(units) + 1)),
                "x_label": "hidden conv unit (" + ", ".join(units) + ")",
                "y_label": f"per-channel {quantity}, mean over channels ({when})",
                "series": series,
            }
    return out


def plot(runs: Sequence[dict[str, Any]], seeds: Sequence[int], cfg: NormPropConfig, path: Path) -> str:
    """Test accuracy and D over training (per-seed lines) and the final per-channel (|m_c|, s_c)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    colors = dict(zip(NORMS, sns.color_palette("deep")))
    fig, axes = plt.subplots(1, 3, figsize=(18, 4.2))
    for n in NORMS:
        for r in select_runs(runs, seeds, norm=n, batch_size=cfg.batch_size):
            label = n if r["seed"] == seeds[0] else None
            axes[0].plot(r["images"], r["curve_accuracy"], color=colors[n], alpha=0.6, label=label)
            axes[1].plot(r["images"], r["deviation"], color=colors[n], alpha=0.6, label=label)
            ch = r["channels_final"] or {}
            m = [abs(v) for u in ch.values() for v in u["mean"]]
            s = [v for u in ch.values() for v in u["std"]]
            axes[2].scatter(m, s, s=4, color=colors[n], alpha=0.4, label=label)
    axes[0].set(xlabel="training images", ylabel="test accuracy (%)", title=f"(a) accuracy, batch {cfg.batch_size}")
    axes[1].set(xlabel="training images", ylabel="D", yscale="log", title="(b) deviation D from N(0, 1)")
    axes[2].axhline(1.0, color="black", linewidth=0.8)
    axes[2].set(xlabel="|channel mean|", ylabel="channel std", xscale="symlog", yscale="log",
                title="(c) normalized pre-activation per channel, end of training")  # fmt: skip
    for ax in axes:
        ax.legend(fontsize=8)
    return save_figure(fig, path)


# --------------------------------------------------------------------------------------------------
# entry points
# --------------------------------------------------------------------------------------------------
def run(
    quick: bool = False,
    seeds: Sequence[int] | None = None,
    data: str | None = None,
    out_dir: str | None = None,
    workers: int | None = None,
) -> list[Path]:
    """Pilot (unless ``seeds`` are given), the planned seeds, the paired claims, the figure; writes
    ``nin_fashion_mnist.{json,png}``."""
    if seeds is not None:
        seeds = resolve_seeds(seeds, quick)  # duplicate seeds: an error before any work
    cfg = QUICK_CONFIG if quick else CONFIG
    out = results_dir(PAPER, quick, out_dir)
    workers = 1 if quick else workers
    with Timer() as timer:
        ds = _dataset(data, cfg.train_subset, cfg.test_subset)
        if seeds is None:
            pilot_seeds = list(QUICK_PILOT_SEEDS if quick else PILOT_SEEDS)
            pilot_runs = train_all(pilot_seeds, cfg, data, workers, "NormProp pilot (images)")
            limits = {"minimum": QUICK_SEEDS, "maximum": QUICK_SEEDS} if quick else {"maximum": MAX_SEEDS}
            pilot = pilot_plan(pilot_runs, pilot_seeds, cfg, **limits)
            seeds = pilot["seeds"]
            print(f"  pilot: {pilot['n']} seeds ({'capped' if pilot['capped'] else 'as needed'})", flush=True)
        else:
            pilot = {"skipped": "--seeds given"}
        seeds = list(seeds)
        runs = train_all(seeds, cfg, data, workers, "NormProp NIN (images)")
        result = compare(runs, seeds, cfg, n_eval=int(ds.x_test.shape[0]))
        figure = plot(runs, seeds, cfg, out / f"{EXPERIMENT}.png")
    path = finish_experiment(
        out / f"{EXPERIMENT}.json",
        paper=PAPER,
        experiment=EXPERIMENT,
        quick=quick,
        title="NormProp vs BN vs no normalization on a NIN-style net (Fashion-MNIST)",
        claim="Normalization Propagation normalizes every hidden layer parametrically, without batch statistics: "
        "it matches BN's accuracy, trains with batch size 1, is faster than BN, and keeps the hidden layers' "
        "inputs near zero mean and unit variance where BN's validation-time estimates lag (abstract, §3).",
        dataset=ds,
        seeds=seeds,
        config={
            **asdict(cfg),
            "model": "normcore.models.nin(num_classes=10, in_channels=1, norm=..., width=width); NormProp with "
            "norm_kwargs={'gamma_init': GAMMA_INIT}",
            "normprop_gamma_init": GAMMA_INIT,
            "lr_at_batch": {str(b): cfg.lr(b) for b in (1, cfg.batch_size)},
            "input": "NormProp: NormPropInputNorm.from_data(training images); BN and none: pixels in [0, 1]",
            "pilot_seeds": list(QUICK_PILOT_SEEDS if quick else PILOT_SEEDS),
            "max_seeds": QUICK_SEEDS if quick else MAX_SEEDS,
            "threads_per_run": 1,
        },
        metrics=result["metrics"],
        comparisons=result["comparisons"],
        verdict=result["verdict"],
        figures=[figure],
        seconds=timer.seconds,
        curves=curves(runs, seeds, cfg),
        notes=[
            "No CIFAR-10/100 or SVHN offline: Fashion-MNIST stands in, so the paper's error rates are not "
            "comparable; its table values are also unverified (papers/normprop/published.yaml).",
            "BN at batch 1 does not raise in this conv net (28x28 values per channel per image): it trains with "
            "per-image statistics and is tested with its running averages.",
            "Max pooling is outside NormProp's closed forms (it raises the mean and changes the variance of its "
            "input); no correction is applied, so the units after pool1 start off N(0, 1).",
            "The speed claim compares training seconds of runs on 2 worker processes, paired by seed; the "
            "verdict holds for this machine only.",
        ],
        pilot=pilot,
        disclosures=DISCLOSURES,
    )
    print(f"{PAPER}: {result['verdict']['status']} ({timer.seconds:.0f} s) - {result['verdict']['summary']}")
    return [path, out / figure]


def main(argv: Sequence[str] | None = None) -> list[Path]:
    return cli(run, "NormProp vs BN vs no normalization on a NIN-style net at CPU scale (Fashion-MNIST).", argv)


if __name__ == "__main__":
    main()
