r"""Instance Normalization (Ulyanov, Vedaldi & Lempitsky 2016) at CPU scale: the Johnson generator trained
for stylization with BN and with IN, same settings, on small photographs of ``skimage.data``.

The IN paper's claims (§2-§3): replacing BN by IN in the generator (and keeping it at test time) makes the
stylized output independent of the content image's contrast (§2, Figure 2) and improves the stylization
(§3, Figure 5). The paper gives **no numbers** (its comparisons are figures), so the numbers here are our
own measurements, judged by rules fixed before the first full run (:func:`comparisons`; one revision since,
recorded in the results' notes).

Setting (all choices fixed up front; none tuned on BN-vs-IN results):

* content: 10 photographs for training (:data:`TRAIN_IMAGES`), 2 held out (:data:`HELD_OUT_IMAGES`), each
  resized to a short side of 128 px; training batches are 4 random 64x64 crops (random flips); held-out
  images are evaluated at their central 128x128;
* style: ``immunohistochemistry`` (a colourful, painting-like stain texture), resized to 128x128;
* generator: :func:`normcore.models.johnson_generator` (the official ``johnson.lua`` layout: 9x9 conv, two
  stride-2 convs, 5 residual blocks, two transposed convs, reflection padding) at a quarter of the official
  width (8/16/32 channels), with ``norm="bn"`` or ``norm="in"`` everywhere; BN is evaluated with its running
  statistics (the standard test mode), IN with per-image statistics (the IN paper: "also at test time");
* loss: style layers relu1_1..relu4_1, content layer relu4_2 (the official ``train.lua`` defaults), TV weight
  0 (official default); the loss network is VGG-19 if its ImageNet weights are cached locally, otherwise a
  random-weight VGG-like network (:mod:`reproductions.tasks.stylization.losses`; the results say which);
* weights: balanced so that each trivial output costs 1: :math:`w_s = 1 / \bar L_s(y, s)` (the content image
  returned unchanged) and :math:`w_c = 1 / \bar L_c(s, y)` (a style crop returned instead), averaged over 64
  training crops drawn with a fixed seed (the official weights do not transfer to another loss network);
* Adam, LR 1e-3 (official default), batch 4 (the official README), 1000 steps, 3 seeds.

Measurements on the held-out images (eval mode, mean over images, then mean ± std over seeds): the style
and content losses and the weighted total; the **contrast test**: stylize x and its low-contrast copy
:math:`x' = 0.5x + 0.25`, and report (1) the distance :math:`d = \mathrm{RMS}(\hat G(x) - \hat G(x'))`
between the two outputs clipped to [0, 1] (pixel units; the inputs differ by :math:`\mathrm{RMS}(x - x')`),
and (2) the output contrast ratio :math:`r = \sigma(\hat G(x')) / \sigma(\hat G(x))` (σ: std of the
output's pixel values; the inputs have r = 0.5; the paper's claim is that the output contrast follows the
style, r = 1).

    python -m reproductions.instance_norm.cpu           # 3 seeds (about 7 CPU-minutes: 4 minutes on 2 idle cores)
    python -m reproductions.instance_norm.cpu --quick   # CI: a few steps, one seed
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from normcore.models import johnson_generator
from reproductions.claims.statistics import contrast, stat
from reproductions.claims.verdicts import RULE_GREATER, central_verdict, verdict_greater
from reproductions.errors import UserError
from reproductions.reporting.plots import save_figure
from reproductions.smallscale import photographs as ph
from reproductions.smallscale.experiment import cli, finish_experiment, resolve_seeds, results_dir
from reproductions.smallscale.parallel import default_workers, parallel_map
from reproductions.smallscale.training import Timer, seed_everything
from reproductions.tasks.stylization import losses as st

PAPER = "instance_norm"
TRAIN_IMAGES = (
    "astronaut",
    "camera",
    "rocket",
    "stereo_motorcycle",
    "coins",
    "retina",
    "moon",
    "page",
    "hubble_deep_field",
    "clock",
)
HELD_OUT_IMAGES = ("chelsea", "coffee")
STYLE_IMAGE = "immunohistochemistry"
SHORT_SIDE = 128
EVAL_SIZE = 128
NORMS = ("bn", "in")
LOW_CONTRAST = (0.5, 0.25)  # x' = 0.5 x + 0.25
RATIO_FAR_SMALLER = 0.25  # "IN's distance is far smaller than BN's": at most a quarter of it
WEIGHT_SEED = 12345


@dataclass(frozen=True)
class StylizationSchedule:
    """Hyper-parameters shared by the BN and IN runs."""

    steps: int = 1000
    batch: int = 4
    crop: int = 64
    lr: float = 1e-3
    width_mult: float = 0.25
    num_residual: int = 5
    tv_weight: float = 0.0
    log_every: int = 50
    weight_crops: int = 64

    def describe(self) -> dict[str, Any]:
        return dict(self.__dict__)


SCHEDULE = StylizationSchedule()
QUICK_SCHEDULE = StylizationSchedule(steps=30, log_every=10, weight_crops=8)


@dataclass
class StylizationData:
    """Training images, held-out images and the style image, as ``(3, H, W)`` tensors in [0, 1]."""

    train: list[torch.Tensor]
    held_out: torch.Tensor
    style: torch.Tensor
    names: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "name": f"skimage.data photographs, style '{STYLE_IMAGE}'",
            "source": "skimage.data (" + ", ".join((*TRAIN_IMAGES, *HELD_OUT_IMAGES, STYLE_IMAGE)) + ")",
            "n_train": len(self.train),
            "n_test": int(self.held_out.shape[0]),
            "split": f"train: {', '.join(TRAIN_IMAGES)} (short side {SHORT_SIDE} px, random crops); held out: "
            f"{', '.join(HELD_OUT_IMAGES)} (central {EVAL_SIZE}x{EVAL_SIZE}); style: {STYLE_IMAGE}",
        }


def load_data() -> StylizationData:
    """The photographs, resized (see the module docstring)."""
    train = [ph.resize_short_side(ph.load_photograph(n).image, SHORT_SIDE) for n in TRAIN_IMAGES]
    held = torch.stack(
        [
            ph.center_crop(ph.resize_short_side(ph.load_photograph(n).image, SHORT_SIDE), EVAL_SIZE)
            for n in HELD_OUT_IMAGES
        ]
    )
    style = ph.center_crop(ph.resize_short_side(ph.load_photograph(STYLE_IMAGE).image, SHORT_SIDE), EVAL_SIZE)
    return StylizationData(train, held, style)


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


@dataclass
class StylizationRun:
    """What one (norm, seed) run measured. Losses are on the held-out images in eval mode."""

    norm: str
    seed: int
    style_loss: float
    content_loss: float
    total_loss: float
    contrast_distance: float
    contrast_ratio: float
    train_loss: list[float]
    outputs: dict[str, torch.Tensor]
    seconds: float
    cpu_seconds: float


def _objective(
    net: st.LossNetwork,
    out: torch.Tensor,
    content: torch.Tensor,
    grams: dict[str, torch.Tensor],
    w: LossWeights,
    tv: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    features = net(out)
    with torch.no_grad():
        target = net(content)
    ls = st.style_loss(features, grams)
    lc = st.content_loss(features, target)
    total = w.style * ls + w.content * lc
    if tv:
        total = total + tv * st.total_variation(out)
    return total, ls, lc


def low_contrast(x: torch.Tensor) -> torch.Tensor:
    """The contrast test's input: :math:`0.5 x + 0.25` (same mean grey level, half the contrast)."""
    scale, shift = LOW_CONTRAST
    return scale * x + shift


def train_stylization(
    norm: str,
    seed: int,
    schedule: StylizationSchedule,
    data: StylizationData,
    *,
    prefer_vgg19: bool = True,
    tick: Callable[[int], Any] | None = None,
) -> StylizationRun:
    """Train one generator and measure it on the held-out images; ``tick(n)`` reports progress in steps."""
    start, cpu_start = time.perf_counter(), time.process_time()
    net = st.loss_network(prefer_vgg19)
    weights = balanced_weights(net, data, schedule.weight_crops, schedule.crop)
    generator = seed_everything(seed)
    model = johnson_generator(norm=norm, width_mult=schedule.width_mult, num_residual=schedule.num_residual)
    optimizer = torch.optim.Adam(model.parameters(), lr=schedule.lr)
    with torch.no_grad():
        grams = {k: st.gram_matrix(v) for k, v in net(data.style[None]).items()}
    window: list[float] = []
    train_loss: list[float] = []
    model.train()
    for step in range(schedule.steps):
        content = ph.random_crops(data.train, schedule.crop, schedule.batch, generator)
        total, _, _ = _objective(net, model(content), content, grams, weights, schedule.tv_weight)
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
    with torch.no_grad():
        x, x_low = data.held_out, low_contrast(data.held_out)
        out, out_low = model(x), model(x_low)
        per_image = [_objective(net, out[i : i + 1], x[i : i + 1], grams, weights, 0.0) for i in range(len(x))]
        shown, shown_low = out.clamp(0, 1), out_low.clamp(0, 1)
        distance = float((shown - shown_low).square().mean().sqrt())
        ratio = statistics.fmean(float(shown_low[i].std() / shown[i].std()) for i in range(len(x)))
    return StylizationRun(
        norm=norm,
        seed=seed,
        style_loss=statistics.fmean(float(p[1]) for p in per_image),
        content_loss=statistics.fmean(float(p[2]) for p in per_image),
        total_loss=statistics.fmean(float(p[0]) for p in per_image),
        contrast_distance=distance,
        contrast_ratio=ratio,
        train_loss=train_loss,
        outputs={"output": shown, "output_low_contrast": shown_low},
        seconds=time.perf_counter() - start,
        cpu_seconds=time.process_time() - cpu_start,
    )


def _stylization_job(
    job: tuple[str, int, StylizationSchedule, StylizationData], tick: Callable[[int], Any]
) -> StylizationRun:
    norm, seed, schedule, data = job
    return train_stylization(norm, seed, schedule, data, tick=tick)


# --------------------------------------------------------------------------------------------------
# verdict rules
# --------------------------------------------------------------------------------------------------
def _values(runs: dict[str, list[StylizationRun]], norm: str, key: str) -> list[float]:
    return [getattr(r, key) for r in runs[norm]]


def _diff(value: float, se: float, n: int, unit: str) -> dict[str, Any]:
    return {"mean": value, "std": se, "n": n, "unit": unit, "std_is_standard_error": True}


def comparisons(runs: dict[str, list[StylizationRun]], n: int) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The claims with their rules and the overall verdict: central are the contrast distance and the held-out
    weighted loss."""
    dist_bn, dist_in = _values(runs, "bn", "contrast_distance"), _values(runs, "in", "contrast_distance")
    d_dist, se_dist = contrast([(1, dist_bn), (-1, dist_in)])
    ratio_of_means = (
        statistics.fmean(dist_in) / statistics.fmean(dist_bn) if statistics.fmean(dist_bn) > 0 else math.inf
    )
    r_bn, r_in = _values(runs, "bn", "contrast_ratio"), _values(runs, "in", "contrast_ratio")
    dev_bn, dev_in = [abs(1 - v) for v in r_bn], [abs(1 - v) for v in r_in]
    d_dev, se_dev = contrast([(1, dev_bn), (-1, dev_in)])
    rows = []
    for key, name in (("total_loss", "weighted total"), ("style_loss", "style"), ("content_loss", "content")):
        d, se = contrast([(1, _values(runs, "bn", key)), (-1, _values(runs, "in", key))])
        rows.append((key, name, d, se))
    far_smaller = d_dist > 2 * se_dist and ratio_of_means <= RATIO_FAR_SMALLER
    smaller = d_dist > 2 * se_dist
    dist_verdict = "reproduced" if far_smaller else ("partly reproduced" if smaller else "not reproduced")
    comps = [
        {
            "claim": "Contrast test: IN's outputs for an image and its low-contrast copy agree far more than BN's "
            "(RMS distance between the two outputs, BN - IN, pixel units in [0, 1])",
            "published_ref": "in.contrast_independence",
            "published": "the paper gives no number; Figure 2 and §2 only (the stylized contrast should not depend "
            "on the content's contrast)",
            "ours": {
                "bn": stat(dist_bn),
                "in": stat(dist_in),
                "bn_minus_in": _diff(d_dist, se_dist, n, "pixel RMS"),
                "in_over_bn": ratio_of_means,
            },
            "verdict": dist_verdict,
            "rule": f"reproduced if d(BN) - d(IN) > 2 se and mean d(IN) <= {RATIO_FAR_SMALLER} x mean d(BN); partly "
            "if only the first holds; d = RMS(clip(G(x)) - clip(G(0.5x + 0.25))) over the held-out images",
        },
        {
            "claim": "The output contrast follows the style, not the content: output-contrast ratio r = "
            "std(G(x'))/std(G(x)) is closer to 1 with IN (|1 - r|, BN - IN)",
            "published_ref": "in.contrast_independence",
            "published": "the paper gives no number; Figure 2 only",
            "ours": {"bn": stat(r_bn), "in": stat(r_in), "bn_minus_in": _diff(d_dev, se_dev, n, "|1 - r|")},
            "verdict": verdict_greater(d_dev, se_dev),
            "rule": f"d = |1 - r(BN)| - |1 - r(IN)|; {RULE_GREATER} (the inputs have r = 0.5)",
        },
    ]
    for key, name, d, se in rows:
        comps.append(
            {
                "claim": f"IN stylizes better than BN: held-out {name} loss, BN - IN (positive: IN lower)",
                "published_ref": "in.quantitative",
                "published": "the paper gives no number; Figure 5 only (both generators 'significantly improved' "
                "with IN)",
                "ours": {
                    "bn": stat(_values(runs, "bn", key)),
                    "in": stat(_values(runs, "in", key)),
                    "bn_minus_in": _diff(d, se, n, "loss"),
                },
                "verdict": verdict_greater(d, se),
                "rule": f"d = loss(BN) - loss(IN); {RULE_GREATER}; the losses are the training objective's terms on "
                "the held-out images, eval mode",
            }
        )
    status = central_verdict(
        central=[dist_verdict, comps[2]["verdict"]],
        others=[comps[1]["verdict"], comps[3]["verdict"], comps[4]["verdict"]],
    )
    summary = (
        f"Contrast test: the two outputs differ by {statistics.fmean(dist_bn):.4f} (BN) vs "
        f"{statistics.fmean(dist_in):.4f} (IN) RMS (IN/BN = {ratio_of_means:.3f}); output contrast ratio "
        f"{statistics.fmean(r_bn):.2f} (BN) vs {statistics.fmean(r_in):.2f} (IN), input 0.5. Held-out weighted "
        f"loss BN - IN = {rows[0][2]:+.3f} ± {rows[0][3]:.3f} (style {rows[1][2]:+.3f} ± {rows[1][3]:.3f}, content "
        f"{rows[2][2]:+.3f} ± {rows[2][3]:.3f}). The paper reports no numbers (figures only)."
    )
    return comps, {"status": status, "summary": summary}


# --------------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------------
def _show(ax: Any, image: torch.Tensor, title: str) -> None:
    ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")  # the pixels as they are
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def _figure_grid(runs: dict[str, list[StylizationRun]], data: StylizationData, path: Path) -> str:
    """Figure 5 analogue: content, style, BN output, IN output (seed of the first run)."""
    import matplotlib.pyplot as plt

    n = len(HELD_OUT_IMAGES)
    fig, axes = plt.subplots(n, 4, figsize=(8, 2.2 * n), squeeze=False)
    for i, name in enumerate(HELD_OUT_IMAGES):
        _show(axes[i, 0], data.held_out[i], f"content: {name} (held out)")
        _show(axes[i, 1], data.style, f"style: {STYLE_IMAGE}")
        _show(axes[i, 2], runs["bn"][0].outputs["output"][i], "BN generator")
        _show(axes[i, 3], runs["in"][0].outputs["output"][i], "IN generator")
    fig.tight_layout()
    return save_figure(fig, path)


def _figure_contrast(runs: dict[str, list[StylizationRun]], data: StylizationData, path: Path) -> str:
    """Figure 2 analogue: a held-out image and its low-contrast copy, stylized by BN and by IN."""
    import matplotlib.pyplot as plt

    n = len(HELD_OUT_IMAGES)
    fig, axes = plt.subplots(n, 6, figsize=(12, 2.2 * n), squeeze=False)
    low = low_contrast(data.held_out)
    for i, name in enumerate(HELD_OUT_IMAGES):
        _show(axes[i, 0], data.held_out[i], f"{name}")
        _show(axes[i, 1], low[i], "0.5 x + 0.25")
        for j, norm in enumerate(NORMS):
            out = runs[norm][0].outputs
            _show(axes[i, 2 + 2 * j], out["output"][i], f"{norm.upper()}(x)")
            _show(axes[i, 3 + 2 * j], out["output_low_contrast"][i], f"{norm.upper()}(0.5 x + 0.25)")
    fig.tight_layout()
    return save_figure(fig, path)


def _figure_curves(runs: dict[str, list[StylizationRun]], schedule: StylizationSchedule, path: Path) -> str:
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for color, norm in zip(sns.color_palette("deep", 2), NORMS):
        c = _curve(runs[norm])
        x = [schedule.log_every * (k + 1) for k in range(len(c["mean"]))]
        ax.plot(x, c["mean"], color=color, label=f"{norm.upper()} generator")
        lo = [m - s for m, s in zip(c["mean"], c["std"])]
        hi = [m + s for m, s in zip(c["mean"], c["std"])]
        ax.fill_between(x, lo, hi, color=color, alpha=0.2, linewidth=0)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (weighted style + content)")
    ax.set_yscale("log")
    ax.legend()
    return save_figure(fig, path)


def _curve(runs: Sequence[StylizationRun]) -> dict[str, list[float | None]]:
    length = min(len(r.train_loss) for r in runs)
    per = [stat([r.train_loss[i] for r in runs]) for i in range(length)]
    return {"mean": [p["mean"] for p in per], "std": [p["std"] for p in per]}


# --------------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------------
def run(
    quick: bool = False, seeds: Sequence[int] | None = None, data: str | None = None, out_dir: str | None = None
) -> list[Path]:
    """Train the BN and IN generators with every seed; write ``stylization.json`` and three figures.

    ``data`` is not used: the experiment runs on the photographs of ``skimage.data`` (a full-scale style
    transfer on COCO is a separate script)."""
    if data is not None:
        raise UserError(
            "the instance_norm CPU experiment uses skimage.data photographs only, so --data has no effect here; "
            "leave it out"
        )
    seeds = resolve_seeds(seeds, quick)
    schedule = QUICK_SCHEDULE if quick else SCHEDULE
    images = load_data()
    out = results_dir(PAPER, quick, out_dir)
    workers = 1 if quick else default_workers()
    jobs = [(norm, seed, schedule, images) for seed in seeds for norm in NORMS]
    with Timer() as timer:
        results = parallel_map(
            _stylization_job, jobs, workers=workers, desc="instance_norm runs", total=len(jobs) * schedule.steps
        )
    for r in results:
        print(
            f"  {r.norm.upper()} seed {r.seed}: held-out total {r.total_loss:.3f} (style {r.style_loss:.4g}, content "
            f"{r.content_loss:.4g}); contrast distance {r.contrast_distance:.4f}, ratio {r.contrast_ratio:.2f}; "
            f"cpu {r.cpu_seconds:.0f} s"
        )
    runs = {norm: [r for r in results if r.norm == norm] for norm in NORMS}
    n = len(seeds)
    comps, verdict = comparisons(runs, n)
    net = st.loss_network()
    weights = balanced_weights(net, images, schedule.weight_crops, schedule.crop)
    figures = [
        _figure_grid(runs, images, out / "fig5_stylization_grid.png"),
        _figure_contrast(runs, images, out / "fig2_contrast.png"),
        _figure_curves(runs, schedule, out / "training_loss.png"),
    ]
    metrics = {
        f"{key}.{norm}": stat(_values(runs, norm, key), higher_is_better=False if key != "contrast_ratio" else None)
        for key in ("total_loss", "style_loss", "content_loss", "contrast_distance", "contrast_ratio")
        for norm in NORMS
    }
    metrics["input_contrast_distance"] = stat(
        [float((images.held_out - low_contrast(images.held_out)).square().mean().sqrt())]
    )
    config = {
        "schedule": schedule.describe(),
        "generator": f"johnson_generator(norm, width_mult={schedule.width_mult}, num_residual={schedule.num_residual})",
        "loss_network": net.description,
        "loss_weights": {"style": weights.style, "content": weights.content, "tv": schedule.tv_weight},
        "weight_rule": "w_s = 1/mean L_s(y, s), w_c = 1/mean L_c(s, y) over training crops (seed "
        f"{WEIGHT_SEED}): both trivial outputs cost 1",
        "train_images": list(TRAIN_IMAGES),
        "held_out_images": list(HELD_OUT_IMAGES),
        "style_image": STYLE_IMAGE,
        "short_side": SHORT_SIDE,
        "eval_size": EVAL_SIZE,
        "low_contrast": {"scale": LOW_CONTRAST[0], "shift": LOW_CONTRAST[1]},
        "bn_eval": "running statistics (model.eval())",
        "workers": workers,
        "threads_per_run": 1,
    }
    curves = {
        "train_loss": {
            "x": [schedule.log_every * (k + 1) for k in range(len(_curve(runs["bn"])["mean"]))],
            "x_label": "step",
            "y_label": f"training loss (weighted, mean over {schedule.log_every} steps)",
            "series": {norm.upper(): _curve(runs[norm]) for norm in NORMS},
        }
    }
    path = finish_experiment(
        out / "stylization.json",
        paper=PAPER,
        experiment="stylization",
        quick=quick,
        title="Stylization generator with BN vs IN: held-out losses and the contrast test",
        claim="Replacing batch normalization by instance normalization in the stylization generator (also at test "
        "time) removes the dependence of the output on the content image's contrast and significantly improves "
        "the stylization (IN paper §2-§3, Figures 2 and 5).",
        dataset=images.describe(),
        seeds=seeds,
        config=config,
        metrics=metrics,
        comparisons=comps,
        verdict=verdict,
        figures=figures,
        seconds=timer.seconds,
        curves=curves,
        notes=[
            "Rule revision (after the first full run, before these results): the held-out loss claims first gave "
            "'partly reproduced' for any positive BN - IN difference within 2 se; a difference within noise is now "
            "'not reproduced'. No other rule, setting or hyper-parameter changed.",
            f"Loss network used: {net.description['name']} ({net.description['weights']}).",
            "The IN paper reports no numbers; every number here is ours, and the verdicts apply our rules to them.",
            f"CPU scale: 64x64 training crops of 10 photographs, a quarter-width generator, {schedule.steps} steps; "
            "the paper trains at 256-512 px on ImageNet/COCO with VGG-19.",
        ],
    )
    return [path]


def main(argv: Sequence[str] | None = None) -> list[Path]:
    return cli(run, "Instance Normalization at CPU scale: stylization with BN vs IN", argv)


if __name__ == "__main__":
    main()
