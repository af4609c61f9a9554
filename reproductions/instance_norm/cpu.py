r"""Instance Normalization (Ulyanov, Vedaldi & Lempitsky 2016) at CPU scale: the Johnson generator trained
for stylization with BN and with IN, same settings and paired seeds, on the photographs of ``skimage.data``,
judged on 8 held-out photographs.

The IN paper's claims (arXiv 1607.08022): §2, "the result of stylization should not, in general, depend on
the contrast of the content image [...] the contrast of the stylized image is similar to the contrast of the
style image. Thus, the generator network should discard contrast information in the content image" (Figure
2); §3, with IN instead of BN (also at test time) and "the same hyper-parameters" both generators
"significantly improved" (Figure 5). The paper gives **no numbers** (its comparisons are figures), so every
number here is our own measurement, judged by :mod:`reproductions.claims.paired` with the effects of interest
below, fixed before any run of this protocol.

Protocol (:data:`SCHEDULE`):

* content: the 17 photographs of :data:`reproductions.smallscale.photographs.NATURAL_PHOTOGRAPHS`, split by a
  rule (alphabetical order, every second one held out): 9 for training (random 64x64 crops of the images
  resized to a short side of 128 px, random flips), **8 held out** (their central 128x128, never seen in
  training);
* style: ``immunohistochemistry`` (a colourful stain texture), resized to 128x128;
* generator: :func:`normcore.models.johnson_generator` (the official ``johnson.lua`` layout: 9x9 conv, two
  stride-2 convs, 5 residual blocks, two transposed convs, reflection padding) at a quarter of the official
  width (8/16/32 channels), ``norm="bn"`` or ``norm="in"`` everywhere; BN is evaluated with its running
  statistics (the standard test mode), IN with per-image statistics (the paper: "at test time as well");
* loss: style layers relu1_1..relu4_1, content layer relu4_2, TV weight 0 (the ``train.lua`` defaults); the
  loss network is VGG-19 if its ImageNet weights are cached locally, otherwise a random-weight VGG-like
  network (:mod:`reproductions.tasks.stylization.losses`; the results say which, and so does every label);
* weights: :math:`w_s = 1 / \bar L_s(y, s)` and :math:`w_c = 1 / \bar L_c(s, y)` (:func:`balanced_weights`),
  so that each trivial output (the content unchanged, or the style image) costs 1;
* Adam, LR 1e-3 (``train.lua``), batch 4 (the official README), 500 steps (the time budget; ``train.lua``
  runs 50,000);
* paired seeds: with seed s both generators start from the same weights and see the same crops.

Measurements on the 8 held-out images (eval mode, mean over the images); x' = 0.5 x + 0.25 is the
low-contrast copy of x (same mean grey, half the contrast):

* contrast transfer :math:`T = \mathrm{RMS}(\hat G(x) - \hat G(x')) / \mathrm{RMS}(x - x')`, the fraction of
  the input's change that reaches the output (:math:`\hat G`: the output clipped to [0, 1]);
* contrast deviation :math:`|1 - r|`, :math:`r = \sigma(\hat G(x')) / \sigma(\hat G(x))` (the inputs have
  :math:`|1 - r| = 0.5`; an output whose contrast follows the style has 0);
* the weighted style term :math:`w_s L_s`, the weighted content term :math:`w_c L_c` (descriptive only: the
  paper claims nothing about content) and their sum, the training objective, all of the output as it is
  shown (clipped to [0, 1], as in the figures).

Each claim is ``d = BN - IN`` with the test "greater" (positive: IN better); the seeds come from a pilot
(:data:`PILOT_SEEDS`) and :func:`reproductions.claims.paired.plan_seeds`, at most :data:`MAX_SEEDS`.

    python -m reproductions.instance_norm.cpu           # pilot + planned seeds (estimated 3.9-4.8 min on 2 cores)
    python -m reproductions.instance_norm.cpu --quick   # CI: a few steps, a 2-seed pilot, 2 seeds
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from normcore.models import johnson_generator
from reproductions.claims.paired import paired_comparison, plan_seeds
from reproductions.claims.statistics import curve_stats, stat
from reproductions.claims.verdicts import central_verdict
from reproductions.errors import UserError
from reproductions.reporting.plots import save_figure
from reproductions.smallscale import photographs as ph
from reproductions.smallscale.experiment import cli, finish_experiment, resolve_seeds, results_dir
from reproductions.smallscale.parallel import default_workers, parallel_map
from reproductions.smallscale.training import Timer, seed_everything
from reproductions.tasks.stylization import losses as st

PAPER = "instance_norm"
TRAIN_IMAGES, HELD_OUT_IMAGES = ph.alternate_split(ph.NATURAL_PHOTOGRAPHS)
STYLE_IMAGE = "immunohistochemistry"
SHORT_SIDE = 128
EVAL_SIZE = 128
NORMS = ("bn", "in")
LOW_CONTRAST = (0.5, 0.25)  # x' = 0.5 x + 0.25
WEIGHT_SEED = 12345

# ---- seeds and budget (full run: at most 5 minutes on 2 idle cores, pilot included) ---------------------
PILOT_SEEDS = (1000, 1001, 1002)
"""The pilot's own seeds (never reused by the run)."""
FIRST_SEED = 0
MAX_SEEDS = 7
"""The most seeds the budget allows. Measured on the 2-core AMD EPYC (1 thread per run; the machine was shared
with other jobs): 0.043-0.054 CPU s per training step (batch 4, 64x64 crops; the low end alone, the high end
with two workers and another job), 0.2 s per run for the loss network and the held-out evaluation, so a
500-step run costs 21.7-27 s; (3 pilot + 7) seeds x 2 norms = 20 runs on 2 workers take 217-270 s, plus 15-18 s
of imports, two worker start-ups and figures: an estimated 3.9-4.8 minutes (the committed 2-worker run of the
previous protocol, on the idle machine, matches the low end: 132 s for 6 x 1000 steps)."""
QUICK_PILOT_SEEDS = (1000, 1001)
QUICK_SEEDS = 2

# ---- effects of interest, fixed before any run of this protocol ------------------------------------------
# The paper gives no number (figures only), so these are our smallest effects of interest, not published ones.
EFFECT_CONTRAST_TRANSFER = 0.1
"""Contrast transfer T, BN - IN: a tenth of the input's contrast change reaching the output."""
EFFECT_CONTRAST_DEVIATION = 0.05
"""Contrast deviation |1 - r|, BN - IN: a tenth of the inputs' own |1 - r| = |1 - 0.5|."""
EFFECT_LOSS = 0.05
"""Held-out weighted losses, BN - IN: 5 % of the cost of a trivial output (the balance rule makes that 1)."""

DISCLOSURES = [
    "This protocol replaces one whose results had been seen (issue 10: 3 seeds compared as unpaired means, 2 "
    "held-out images, 1000 steps): the held-out set grew to 8 photographs by a fixed rule, the comparisons became "
    "paired with seeds planned by a pilot, the steps fell to 500 to fit the pilot and the seeds into the 5-minute "
    "budget, the contrast distance was divided by the input's change, and the content-loss claim became a "
    "descriptive measure because the paper makes no such claim. The effects of interest were set with this "
    "protocol, before any of its runs.",
    "MAX_SEEDS went from 8 to 7 after a timing probe that ran seed 0 at full length (its printed values were "
    "seen): the reason was its CPU time, 24-27 s per run instead of the 21.7 s estimated, which put 8 seeds at "
    "the 5-minute limit. No rule, effect or other setting changed after it.",
]
"""Every change made after seeing results, with why."""


@dataclass(frozen=True)
class StylizationSchedule:
    """Hyper-parameters shared by the BN and IN runs."""

    steps: int = 500
    batch: int = 4
    crop: int = 64
    lr: float = 1e-3
    width_mult: float = 0.25
    num_residual: int = 5
    tv_weight: float = 0.0
    log_every: int = 25
    weight_crops: int = 64

    def describe(self) -> dict[str, Any]:
        return dict(self.__dict__)


SCHEDULE = StylizationSchedule()
QUICK_SCHEDULE = StylizationSchedule(steps=20, log_every=5, weight_crops=8)


@dataclass(frozen=True)
class Claim:
    """One paired claim: the per-seed measure ``key`` of :class:`StylizationRun`, compared as d = BN - IN with
    the test "greater" and the smallest effect of interest ``effect``."""

    key: str
    claim: str
    effect: float
    unit: str
    central: bool
    published_ref: str
    published: str


CLAIMS = (
    Claim(
        "contrast_transfer",
        "Contrast (§2, Fig. 2): the output does not depend on the content's contrast: contrast transfer "
        "T = RMS(G(x) - G(x'))/RMS(x - x') on held-out images, x' = 0.5x + 0.25, is lower with IN (BN - IN)",
        EFFECT_CONTRAST_TRANSFER,
        "fraction of the input change",
        True,
        "in.contrast_independence",
        "no number; §2 and Figure 2 (the stylized output should not depend on the content image's contrast)",
    ),
    Claim(
        "contrast_deviation",
        "Contrast (§2): the output contrast follows the style, not the content: |1 - r|, r = "
        "std(G(x'))/std(G(x)), is closer to 0 with IN (BN - IN; the inputs have 0.5)",
        EFFECT_CONTRAST_DEVIATION,
        "|1 - r|",
        False,
        "in.contrast_independence",
        "no number; §2 ('the contrast of the stylized image is similar to the contrast of the style image')",
    ),
    Claim(
        "total_loss",
        "Stylization (§3, Fig. 5): IN improves the generator: held-out weighted loss (style + content, the "
        "training objective) is lower with IN (BN - IN)",
        EFFECT_LOSS,
        "loss (a trivial output costs 1)",
        True,
        "in.quantitative",
        "no number; §3 and Figure 5 (both generators 'significantly improved' with IN)",
    ),
    Claim(
        "style_loss",
        "Stylization (§3, Fig. 5): the held-out weighted style term is lower with IN (BN - IN)",
        EFFECT_LOSS,
        "loss (a trivial output costs 1)",
        False,
        "in.quantitative",
        "no number; Figure 5 only",
    ),
)
LOSS_MEASURES = ("total_loss", "style_loss", "content_loss")
"""Measures that depend on the loss network (their claims name it)."""
DESCRIPTIVE = ("content_loss", "contrast_ratio")
"""Measured and reported, but no claim: the paper says nothing about the content term; r is the raw ratio."""


# --------------------------------------------------------------------------------------------------
# data and loss weights
# --------------------------------------------------------------------------------------------------
@dataclass
class StylizationData:
    """Training images, held-out images and the style image, as ``(3, H, W)`` tensors in [0, 1]."""

    train: list[torch.Tensor]
    held_out: torch.Tensor
    style: torch.Tensor

    def describe(self) -> dict[str, Any]:
        return {
            "name": f"skimage.data photographs, style '{STYLE_IMAGE}'",
            "source": "skimage.data (" + ", ".join((*TRAIN_IMAGES, *HELD_OUT_IMAGES, STYLE_IMAGE)) + ")",
            "n_train": len(self.train),
            "n_test": int(self.held_out.shape[0]),
            "split": f"alphabetical order, every second photograph held out; train: {', '.join(TRAIN_IMAGES)} "
            f"(short side {SHORT_SIDE} px, random crops); held out: {', '.join(HELD_OUT_IMAGES)} (central "
            f"{EVAL_SIZE}x{EVAL_SIZE}); style: {STYLE_IMAGE}",
        }


def _prepared(name: str) -> torch.Tensor:
    return ph.resize_short_side(ph.load_photograph(name).image, SHORT_SIDE)


@functools.lru_cache(maxsize=1)
def load_data() -> StylizationData:
    """The photographs, resized (see the module docstring); cached, so each worker loads them once."""
    train = [_prepared(n) for n in TRAIN_IMAGES]
    held = torch.stack([ph.center_crop(_prepared(n), EVAL_SIZE) for n in HELD_OUT_IMAGES])
    return StylizationData(train, held, ph.center_crop(_prepared(STYLE_IMAGE), EVAL_SIZE))


@dataclass(frozen=True)
class LossWeights:
    """Weights of the style and content terms (see :func:`balanced_weights`)."""

    style: float
    content: float


def balanced_weights(net: st.LossNetwork, data: StylizationData, crops: int, crop: int) -> LossWeights:
    r"""The balance rule: :math:`w_s = 1 / \bar L_s(y, s)`, :math:`w_c = 1 / \bar L_c(s, y)`, averages over
    ``crops`` training crops y (and as many style crops s) drawn with a fixed seed, so that returning the
    content unchanged and returning the style image both cost 1."""
    g = torch.Generator().manual_seed(WEIGHT_SEED)
    with torch.no_grad():
        y = ph.random_crops(data.train, crop, crops, g)
        s = ph.random_crops([data.style], crop, crops, g)
        grams = {k: st.gram_matrix(v) for k, v in net(data.style[None]).items()}
        fy, fs = net(y), net(s)
        ls = float(st.style_loss(fy, grams))
        lc = float(st.content_loss(fs, fy))
    return LossWeights(style=1.0 / ls, content=1.0 / lc)


def low_contrast(x: torch.Tensor) -> torch.Tensor:
    """The contrast test's input: :math:`0.5 x + 0.25` (same mean grey level, half the contrast)."""
    scale, shift = LOW_CONTRAST
    return scale * x + shift


# --------------------------------------------------------------------------------------------------
# one run
# --------------------------------------------------------------------------------------------------
@dataclass
class StylizationRun:
    """What one (norm, seed) run measured on the held-out images (eval mode, mean over the images)."""

    norm: str
    seed: int
    total_loss: float
    style_loss: float
    content_loss: float
    contrast_transfer: float
    contrast_deviation: float
    contrast_ratio: float
    train_loss: list[float]
    outputs: dict[str, torch.Tensor] | None
    seconds: float
    cpu_seconds: float


def _terms(
    net: st.LossNetwork, out: torch.Tensor, content: torch.Tensor, grams: dict[str, torch.Tensor], w: LossWeights
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The weighted style and content terms :math:`w_s L_s(G(x), s)` and :math:`w_c L_c(G(x), x)`."""
    features = net(out)
    with torch.no_grad():
        target = net(content)
    return w.style * st.style_loss(features, grams), w.content * st.content_loss(features, target)


def build_generator(norm: str, seed: int, schedule: StylizationSchedule) -> tuple[torch.nn.Module, torch.Generator]:
    """Seed everything with ``seed``, then build the generator: BN and IN get the same initial weights (their
    affine parameters start at 1 and 0) and the returned crop generator gives them the same crops."""
    crops = seed_everything(seed)
    model = johnson_generator(norm=norm, width_mult=schedule.width_mult, num_residual=schedule.num_residual)
    return model, crops


def contrast_measures(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Any]:
    r"""The contrast test on images ``x`` (eval mode): per image, the transfer
    :math:`T = \mathrm{RMS}(\hat G(x) - \hat G(x'))/\mathrm{RMS}(x - x')` and the ratio
    :math:`r = \sigma(\hat G(x'))/\sigma(\hat G(x))`, averaged over the images (with :math:`|1 - r|`), and the
    clipped outputs."""
    x_low = low_contrast(x)
    with torch.no_grad():
        shown, shown_low = model(x).clamp(0, 1), model(x_low).clamp(0, 1)
    dims = (1, 2, 3)
    transfer = (shown - shown_low).square().mean(dims).sqrt() / (x - x_low).square().mean(dims).sqrt()
    ratio = shown_low.flatten(1).std(1) / shown.flatten(1).std(1)
    return {
        "contrast_transfer": float(transfer.mean()),
        "contrast_deviation": float((1 - ratio).abs().mean()),
        "contrast_ratio": float(ratio.mean()),
        "outputs": {"output": shown, "output_low_contrast": shown_low},
    }


def train_stylization(
    norm: str,
    seed: int,
    schedule: StylizationSchedule,
    data: StylizationData,
    weights: LossWeights,
    *,
    keep_outputs: bool = False,
    prefer_vgg19: bool = True,
    tick: Callable[[int], Any] | None = None,
) -> StylizationRun:
    """Train one generator with Adam on ``w_s L_s + w_c L_c`` and measure it on the held-out images;
    ``tick(n)`` reports progress in steps."""
    start, cpu_start = time.perf_counter(), time.process_time()
    net = st.loss_network(prefer_vgg19)
    model, crops = build_generator(norm, seed, schedule)
    optimizer = torch.optim.Adam(model.parameters(), lr=schedule.lr)
    with torch.no_grad():
        grams = {k: st.gram_matrix(v) for k, v in net(data.style[None]).items()}
    window: list[float] = []
    train_loss: list[float] = []
    model.train()
    for step in range(schedule.steps):
        content = ph.random_crops(data.train, schedule.crop, schedule.batch, crops)
        out = model(content)
        ls, lc = _terms(net, out, content, grams, weights)
        total = ls + lc + (schedule.tv_weight * st.total_variation(out) if schedule.tv_weight else 0.0)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        window.append(float(total.detach()))
        if (step + 1) % schedule.log_every == 0:
            train_loss.append(statistics.fmean(window))
            window = []
            if tick is not None:
                tick(schedule.log_every)
    model.eval()
    x = data.held_out
    contrast = contrast_measures(model, x)
    with torch.no_grad():
        terms = [
            _terms(net, contrast["outputs"]["output"][i : i + 1], x[i : i + 1], grams, weights) for i in range(len(x))
        ]
    style = statistics.fmean(float(t[0]) for t in terms)
    content_term = statistics.fmean(float(t[1]) for t in terms)
    return StylizationRun(
        norm=norm,
        seed=seed,
        total_loss=style + content_term,
        style_loss=style,
        content_loss=content_term,
        contrast_transfer=contrast["contrast_transfer"],
        contrast_deviation=contrast["contrast_deviation"],
        contrast_ratio=contrast["contrast_ratio"],
        train_loss=train_loss,
        outputs=contrast["outputs"] if keep_outputs else None,
        seconds=time.perf_counter() - start,
        cpu_seconds=time.process_time() - cpu_start,
    )


def _stylization_job(
    job: tuple[str, int, StylizationSchedule, LossWeights, bool], tick: Callable[[int], Any]
) -> StylizationRun:
    norm, seed, schedule, weights, keep_outputs = job
    return train_stylization(norm, seed, schedule, load_data(), weights, keep_outputs=keep_outputs, tick=tick)


def train_all(
    seeds: Sequence[int],
    schedule: StylizationSchedule,
    weights: LossWeights,
    *,
    workers: int,
    desc: str,
    outputs_of: int | None,
) -> dict[str, list[StylizationRun]]:
    """Both norms with every seed on ``workers`` processes (one thread each); the run of seed ``outputs_of``
    keeps its held-out outputs for the figures. Returns the runs by norm, in ``seeds`` order."""
    jobs = [(norm, seed, schedule, weights, seed == outputs_of) for seed in seeds for norm in NORMS]
    results = parallel_map(_stylization_job, jobs, workers=workers, desc=desc, total=len(jobs) * schedule.steps)
    for r in results:
        print(
            f"  {desc}: {r.norm.upper()} seed {r.seed}: held-out total {r.total_loss:.3f} (style {r.style_loss:.3f}, "
            f"content {r.content_loss:.3f}); contrast transfer {r.contrast_transfer:.4f}, |1 - r| "
            f"{r.contrast_deviation:.3f}; {r.cpu_seconds:.0f} CPU s"
        )
    return {norm: [r for r in results if r.norm == norm] for norm in NORMS}


# --------------------------------------------------------------------------------------------------
# claims, pilot and verdict
# --------------------------------------------------------------------------------------------------
def claim_text(claim: Claim, loss_network: str) -> str:
    """The claim as the results state it: a loss claim names the loss network that measured it."""
    return f"{claim.claim} [loss network: {loss_network}]" if claim.key in LOSS_MEASURES else claim.claim


def per_seed(runs: Sequence[StylizationRun], key: str) -> dict[int, float]:
    """``{seed: value of key}`` of one norm's runs."""
    return {r.seed: float(getattr(r, key)) for r in runs}


def plan(pilot: Mapping[str, Sequence[StylizationRun]], quick: bool, loss_network: str) -> dict[str, Any]:
    """The run's seeds from the pilot (:func:`reproductions.claims.paired.plan_seeds`, every claim, at most
    :data:`MAX_SEEDS`; quick mode: exactly 2), with the pilot's per-seed values."""
    entries = [
        {
            "claim": claim_text(c, loss_network),
            "test": "greater",
            "effect": c.effect,
            "a": per_seed(pilot["bn"], c.key),
            "b": per_seed(pilot["in"], c.key),
        }
        for c in CLAIMS
    ]
    limits = {"minimum": QUICK_SEEDS, "maximum": QUICK_SEEDS} if quick else {"maximum": MAX_SEEDS}
    out = plan_seeds(entries, first_seed=FIRST_SEED, **limits)
    out["values"] = {c.key: {norm.upper(): [getattr(r, c.key) for r in pilot[norm]] for norm in NORMS} for c in CLAIMS}
    return out


def comparisons(runs: Mapping[str, Sequence[StylizationRun]], loss_network: str) -> list[dict[str, Any]]:
    """One :func:`~reproductions.claims.paired.paired_comparison` per claim of :data:`CLAIMS` (d = BN - IN,
    test "greater"), marked ``central`` or not."""
    out = []
    for c in CLAIMS:
        comp = paired_comparison(
            claim_text(c, loss_network),
            per_seed(runs["bn"], c.key),
            per_seed(runs["in"], c.key),
            test="greater",
            effect=c.effect,
            labels=("BN", "IN"),
            unit=c.unit,
            n_eval=len(HELD_OUT_IMAGES),
            published_ref=c.published_ref,
            published=c.published,
        )
        comp.update(measure=c.key, central=c.central)
        out.append(comp)
    return out


def verdict(comps: Sequence[dict[str, Any]], runs: Mapping[str, Sequence[StylizationRun]]) -> dict[str, str]:
    """The overall verdict (:func:`~reproductions.claims.verdicts.central_verdict`: central are the contrast
    transfer and the held-out weighted loss) and a summary generated from the numbers."""
    status = central_verdict(
        central=[c["verdict"] for c in comps if c["central"]], others=[c["verdict"] for c in comps if not c["central"]]
    )
    parts = []
    for c in comps:
        o = c["ours"]
        interval = f" [{o['low']:.3g}, {o['high']:.3g}]" if o["low"] is not None else ""
        parts.append(f"{c['measure']}: BN - IN = {o['mean_difference']:.3g}{interval} ({c['verdict']})")
    content = [b.content_loss - i.content_loss for b, i in zip(runs["bn"], runs["in"])]
    summary = (
        f"{len(runs['bn'])} paired seeds, {len(HELD_OUT_IMAGES)} held-out photographs; mean paired differences with "
        f"95% intervals: {'; '.join(parts)}. Descriptive (no claim): weighted content term BN - IN = "
        f"{statistics.fmean(content):.3g}. The paper reports no numbers (figures only)."
    )
    return {"status": status, "summary": summary}


# --------------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------------
def _show(ax: Any, image: torch.Tensor, title: str) -> None:
    ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")  # the pixels as they are
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def _figure_rows(rows: Sequence[tuple[str, torch.Tensor]], title: str, path: Path) -> str:
    """One row per ``(label, images)``, one column per held-out photograph."""
    import matplotlib.pyplot as plt

    n = len(HELD_OUT_IMAGES)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.5 * n, 1.6 * len(rows)), squeeze=False)
    for i, (label, images) in enumerate(rows):
        for j, name in enumerate(HELD_OUT_IMAGES):
            _show(axes[i, j], images[j], f"{label}\n{name}" if j == 0 else name)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def _figure_grid(runs: Mapping[str, Sequence[StylizationRun]], data: StylizationData, net: str, path: Path) -> str:
    """Figure 5 analogue: held-out content, BN output, IN output (the first seed)."""
    first = {norm: next(r for r in runs[norm] if r.outputs is not None) for norm in NORMS}
    rows = [("content", data.held_out), *((f"{n.upper()} generator", first[n].outputs["output"]) for n in NORMS)]
    return _figure_rows(rows, f"style '{STYLE_IMAGE}', seed {first['bn'].seed}, loss network {net}", path)


def _figure_contrast(runs: Mapping[str, Sequence[StylizationRun]], data: StylizationData, path: Path) -> str:
    """Figure 2 analogue: each held-out image x and x' = 0.5x + 0.25, stylized by BN and by IN."""
    first = {norm: next(r for r in runs[norm] if r.outputs is not None) for norm in NORMS}
    rows = [("x", data.held_out), ("x' = 0.5x + 0.25", low_contrast(data.held_out))]
    for n in NORMS:
        rows += [
            (f"{n.upper()}(x)", first[n].outputs["output"]),
            (f"{n.upper()}(x')", first[n].outputs["output_low_contrast"]),
        ]
    return _figure_rows(rows, f"contrast test, seed {first['bn'].seed}", path)


def _figure_curves(curve: dict[str, Any], path: Path) -> str:
    """The training loss of every seed (thin lines) and the mean (thick), BN and IN."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for color, (name, s) in zip(sns.color_palette("deep", 2), curve["series"].items()):
        for seed_curve in s["per_seed"]:
            ax.plot(curve["x"], seed_curve, color=color, alpha=0.35, linewidth=0.7)
        ax.plot(curve["x"], s["mean"], color=color, label=f"{name} generator (mean)")
    ax.set_xlabel(curve["x_label"])
    ax.set_ylabel(curve["y_label"])
    ax.set_yscale("log")
    ax.legend()
    return save_figure(fig, path)


# --------------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------------
def _metrics(runs: Mapping[str, Sequence[StylizationRun]], data: StylizationData) -> dict[str, Any]:
    keys = (*(c.key for c in CLAIMS), *DESCRIPTIVE)
    metrics = {
        f"{key}.{norm}": stat(
            [getattr(r, key) for r in runs[norm]], higher_is_better=None if key == "contrast_ratio" else False
        )
        for key in keys
        for norm in NORMS
    }
    x = data.held_out
    metrics["input_rms_change"] = stat([float((x - low_contrast(x)).square().mean((1, 2, 3)).sqrt().mean())])
    return metrics


def _train_curve(runs: Mapping[str, Sequence[StylizationRun]], schedule: StylizationSchedule) -> dict[str, Any]:
    n = len(runs["bn"][0].train_loss)
    return {
        "x": [schedule.log_every * (k + 1) for k in range(n)],
        "x_label": "step",
        "y_label": f"training loss (weighted, mean over {schedule.log_every} steps)",
        "series": {norm.upper(): curve_stats([r.train_loss for r in runs[norm]], keep_seeds=True) for norm in NORMS},
    }


def _config(
    schedule: StylizationSchedule, net: st.LossNetwork, weights: LossWeights, quick: bool, workers: int
) -> dict[str, Any]:
    """The results' ``config``: every setting of the run."""
    return {
        "schedule": schedule.describe(),
        "generator": f"johnson_generator(norm, width_mult={schedule.width_mult}, num_residual={schedule.num_residual})",
        "loss_network": net.description,
        "loss_weights": {"style": weights.style, "content": weights.content, "tv": schedule.tv_weight},
        "weight_rule": "w_s = 1/mean L_s(y, s), w_c = 1/mean L_c(s, y) over training crops (seed "
        f"{WEIGHT_SEED}): both trivial outputs cost 1",
        "train_images": list(TRAIN_IMAGES),
        "held_out_images": list(HELD_OUT_IMAGES),
        "split_rule": "skimage.data's photographs in alphabetical order, every second one held out",
        "style_image": STYLE_IMAGE,
        "short_side": SHORT_SIDE,
        "eval_size": EVAL_SIZE,
        "low_contrast": {"scale": LOW_CONTRAST[0], "shift": LOW_CONTRAST[1]},
        "bn_eval": "running statistics (model.eval())",
        "pairing": "seed everything with the seed right before building each generator: BN and IN start from the "
        "same weights and see the same crops",
        "effects": {c.key: c.effect for c in CLAIMS},
        "pilot_seeds": list(QUICK_PILOT_SEEDS if quick else PILOT_SEEDS),
        "max_seeds": QUICK_SEEDS if quick else MAX_SEEDS,
        "workers": workers,
        "threads_per_run": 1,
    }


def run(
    quick: bool = False, seeds: Sequence[int] | None = None, data: str | None = None, out_dir: str | None = None
) -> list[Path]:
    """Pilot (without ``seeds``), then the BN and IN generators with every planned seed; write
    ``stylization.json`` and three figures.

    ``data`` is not used: the experiment runs on the photographs of ``skimage.data`` (a full-scale style
    transfer on COCO is a separate script)."""
    if data is not None:
        raise UserError(
            "the instance_norm CPU experiment uses skimage.data photographs only, so --data has no effect here; "
            "leave it out"
        )
    if seeds is not None:
        seeds = resolve_seeds(seeds, quick)
    schedule = QUICK_SCHEDULE if quick else SCHEDULE
    images = load_data()
    out = results_dir(PAPER, quick, out_dir)
    net = st.loss_network()
    weights = balanced_weights(net, images, schedule.weight_crops, schedule.crop)
    workers = 1 if quick else default_workers()  # quick: no worker start-up (CI time)
    with Timer() as timer:
        if seeds is None:
            pilot_seeds = QUICK_PILOT_SEEDS if quick else PILOT_SEEDS
            pilot = plan(
                train_all(pilot_seeds, schedule, weights, workers=workers, desc="pilot", outputs_of=None),
                quick,
                net.description["name"],
            )
            seeds = pilot["seeds"]
            print(f"pilot: {pilot['n']} seeds planned (needed {pilot['needed']}, at most {pilot['maximum']})")
        else:
            pilot = {"skipped": "--seeds given"}
        runs = train_all(seeds, schedule, weights, workers=workers, desc="instance_norm runs", outputs_of=seeds[0])
    comps = comparisons(runs, net.description["name"])
    curve = _train_curve(runs, schedule)
    figures = [
        _figure_grid(runs, images, net.description["name"], out / "fig5_stylization_grid.png"),
        _figure_contrast(runs, images, out / "fig2_contrast.png"),
        _figure_curves(curve, out / "training_loss.png"),
    ]
    config = _config(schedule, net, weights, quick, workers)
    path = finish_experiment(
        out / "stylization.json",
        paper=PAPER,
        experiment="stylization",
        quick=quick,
        title="Stylization generator with BN vs IN: the contrast test and held-out losses, paired seeds",
        claim="Replacing batch normalization by instance normalization in the stylization generator (also at test "
        "time) removes the dependence of the output on the content image's contrast and significantly improves "
        "the stylization (IN paper §2-§3, Figures 2 and 5).",
        dataset=images.describe(),
        seeds=list(seeds),
        config=config,
        metrics=_metrics(runs, images),
        comparisons=comps,
        verdict=verdict(comps, runs),
        figures=figures,
        seconds=timer.seconds,
        curves={"train_loss": curve},
        timings={"cpu_seconds": sum(r.cpu_seconds for rs in runs.values() for r in rs)},
        pilot=pilot,
        disclosures=DISCLOSURES,
        notes=[
            f"Loss network used: {net.description['name']} ({net.description['weights']}).",
            "The IN paper reports no numbers; every number here is ours, and the verdicts apply the paired rules "
            "(reproductions.claims.paired) with our effects of interest, fixed before the runs.",
            "The weighted content term is descriptive only (metrics content_loss.*): the paper claims nothing about "
            "it, and the balance of style against content is ours.",
            f"CPU scale: 64x64 training crops of {len(TRAIN_IMAGES)} photographs, a quarter-width generator, "
            f"{schedule.steps} steps; the paper trains at 256-512 px on ImageNet/COCO with VGG-19.",
        ],
    )
    return [path]


def main(argv: Sequence[str] | None = None) -> list[Path]:
    return cli(run, "Instance Normalization at CPU scale: stylization with BN vs IN", argv)


if __name__ == "__main__":
    main()
