r"""Weight Standardization and Batch-Channel Normalization (Qiao et al. 2019, "Micro-Batch Training with
Batch-Channel Normalization and Weight Standardization") at CPU scale: micro-batch training on Fashion-MNIST.

The setting of :mod:`reproductions.group_norm.cpu` (ResNet-8 of width 8, 8 virtual devices, 14x14 Fashion-MNIST
images, LR 0.1 x 256 / 256 for every method, step decay, weight decay on every parameter) with the WS paper's
micro-batch protocol: every optimizer step accumulates the gradients of micro-batches of 8 devices x 1 image
up to 256 images, so every method takes the same steps at the same LR and only the normalization sees the
micro-batch (:mod:`reproductions.smallscale.vision`).

Rows:

* ``BN 32/dev``: BN at a large batch, the reference (one forward pass of 8 x 32 images per step);
* ``GN 1/dev``, ``GN+WS 1/dev``: batch-independent, so the 32 micro-batches of a step are one forward pass of
  256 images, the same computation (the official WS README: batch 256 with iteration size 1 equals batch 1
  with iteration size 256);
* ``BCN+WS 1/dev``: the paper's micro-batch BCN (§5): the batch stage normalizes with running **estimates** of
  the mean and variance (``estimate=True``, updated from each micro-batch), then the channel stage (G = 4,
  per-group affine), with WS convs; the 32 micro-batches of a step run one after the other.

Seeds: a pilot (seeds 1000-1002) sets the number of paired seeds (80 % power, at least 5, at most
:data:`MAX_SEEDS`). The training-loss curves (every seed) are the WS paper's smoothing argument: WS should make
the loss fall faster; the final training loss of every row is recorded (``final_train_loss.*``).

Deviations: the EstBN estimates of BCN are updated from each micro-batch of 8 devices together (normcore's
BCN with ``estimate=True`` has no per-device slices; in DDP each device updates from its own images and rank 0's
are kept); the paper trains ResNet-50/101 on ImageNet (and detection/segmentation).

    python -m reproductions.weight_standardization.cpu          # pilot + seeds: 13.9 minutes on 2 cores (AMD EPYC)
    python -m reproductions.weight_standardization.cpu --quick  # CI
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reproductions.claims.paired import paired_comparison
from reproductions.claims.published import published_value
from reproductions.claims.verdicts import central_verdict
from reproductions.group_norm.cpu import DEPTH, DIVERGED_ERROR, ERROR_SCALE, GROUPS, MARGIN, POOL, WIDTH
from reproductions.reporting.plots import save_figure
from reproductions.smallscale.experiment import cli, finish_experiment, resolve_seeds, results_dir
from reproductions.smallscale.parallel import default_workers
from reproductions.smallscale.training import Timer
from reproductions.smallscale.vision import (
    ClassifierSchedule,
    ClassifierSetup,
    ImageData,
    by_seed,
    error_stats,
    loss_stats,
    paired_errors,
    pilot_then_run,
    run_curves,
)

PAPER = "weight_standardization"

# ---- budget and seeds (the full run: pilot + seeds, about 15 minutes estimated on 2 idle cores) ----
N_TRAIN = 12_000
"""Training images (a class-stratified subset of the 60,000; the time budget, see the paper card)."""
EPOCHS = 12
"""Twice the GN experiment's 6: the WS protocol asks for training to convergence (see :data:`DISCLOSURES`)."""
PILOT_SEEDS = (1000, 1001, 1002)
MAX_SEEDS = 5
QUICK_N_TRAIN = 512
QUICK_EPOCHS = 2
QUICK_PILOT_SEEDS = (1000, 1001)
QUICK_SEEDS = 2

# ---- protocol ----
EFFECTIVE_BATCH = 256
SCHEDULE = ClassifierSchedule(
    epochs=EPOCHS, base_lr=0.1, depth=DEPTH, width=WIDTH, devices=8, effective_batch=EFFECTIVE_BATCH
)
QUICK_SCHEDULE = ClassifierSchedule(
    epochs=QUICK_EPOCHS,
    base_lr=0.1,
    depth=DEPTH,
    width=WIDTH,
    devices=8,
    effective_batch=EFFECTIVE_BATCH,
    loss_points=2,
    error_points=2,
)

BN_LARGE = ClassifierSetup("BN 32/dev", "bn", 32)
GN = ClassifierSetup("GN 1/dev", "gn", 1, {"num_groups": GROUPS})
GN_WS = ClassifierSetup("GN+WS 1/dev", "gn", 1, {"num_groups": GROUPS}, conv="ws")
BCN_WS = ClassifierSetup("BCN+WS 1/dev", "bcn", 1, {"num_groups": GROUPS, "estimate": True}, conv="ws")
SETTINGS = (BN_LARGE, GN, GN_WS, BCN_WS)


def _pub(entry_id: str, paper: str = PAPER) -> float:
    return float(published_value(paper, entry_id)["value"])


# ---- effects of interest and margins, fixed before any run (points of test error) ----
PUB_WS_GAIN = _pub("ws.ablation.r50.gn") - _pub("ws.ablation.r50.gn_ws")
PUB_BCN_GAIN = _pub("ws.voc.bcn_ws.miou") - _pub("ws.voc.gn_ws.miou")
EFFECTS = {
    "gn_ws_matches_bn": MARGIN,  # ImageNet R-50: GN+WS 23.72 (1/GPU) vs BN 23.6 (32/GPU); margin of GN's Table 1
    "bcn_ws_matches_bn": MARGIN,  # same margin
    "bcn_beats_gn_ws": PUB_BCN_GAIN * ERROR_SCALE,  # VOC: BCN+WS 78.10 vs GN+WS 77.20 mIoU, read as points, scaled
    "ws_improves_gn": PUB_WS_GAIN * ERROR_SCALE,  # ImageNet R-50 ablation: GN 24.81 -> GN+WS 23.72, scaled
}
"""Margin ("not_worse") or effect of interest ("greater") of every claim; ERROR_SCALE and MARGIN are the GN
experiment's (:mod:`reproductions.group_norm.cpu`)."""
DISCLOSURES = [
    "EPOCHS was first 6 (as the GN experiment). A timing probe on seed 999 (not a pilot or result seed) showed BN at "
    "32 images/device still at a training loss near 0.75 after 6 epochs, short of the convergence this protocol asks "
    "for, so before the first full run the budget was doubled to 12 epochs for every setting.",
    "ERROR_SCALE (from the GN experiment) was changed from 10/23.6 to 1 before the first full run, after the same "
    "probe showed BN near 26 % error (see the GN results' disclosures). No other rule, margin or setting was changed "
    "after seeing results.",
]
"""Every rule, margin or setting changed after seeing a result (written into the results file)."""
CENTRAL = 3
"""The first three claims are central (micro-batch GN+WS and BCN+WS match large-batch BN; BCN+WS beats GN+WS)."""


def claim_specs(err: dict[str, dict[int, float]]) -> list[dict[str, Any]]:
    """Every claim: ``claim``, ``test``, ``effect``, ``a``/``b`` (seed -> error, d = a - b oriented as the test
    reads), ``labels``, ``published_ref``, ``published``. The pilot plans with these; :func:`comparisons`
    decides them."""
    bn_pub = _pub("gn.table2.bn.32", "group_norm")
    gn_ws_pub = _pub("ws.imagenet.r50.gn_ws.top1")
    return [
        {
            "claim": "GN+WS at 1 image/device is not worse than BN at 32 images/device (GN+WS - BN, points)",
            "test": "not_worse",
            "effect": EFFECTS["gn_ws_matches_bn"],
            **paired_errors(err, GN_WS, BN_LARGE),
            "published_ref": "ws.imagenet.r50.gn_ws.top1",
            "published": f"ResNet-50 ImageNet: GN+WS {gn_ws_pub}% at 1 image/GPU (official README) vs BN {bn_pub}% "
            f"at 32 images/GPU (GN paper, gn.table2.bn.32): {gn_ws_pub - bn_pub:+.2f}",
        },
        {
            "claim": "BCN+WS at 1 image/device is not worse than BN at 32 images/device (BCN+WS - BN, points)",
            "test": "not_worse",
            "effect": EFFECTS["bcn_ws_matches_bn"],
            **paired_errors(err, BCN_WS, BN_LARGE),
            "published_ref": "ws.voc.bcn_ws.miou",
            "published": f"ImageNet value not found; VOC DeepLabv3: BCN+WS {_pub('ws.voc.bcn_ws.miou')} vs BN "
            f"{_pub('ws.voc.bn.miou')} mIoU (higher is better)",
        },
        {
            "claim": "BCN+WS is better than GN+WS at 1 image/device (GN+WS - BCN+WS, points)",
            "test": "greater",
            "effect": EFFECTS["bcn_beats_gn_ws"],
            **paired_errors(err, GN_WS, BCN_WS),
            "published_ref": "ws.voc.gn_ws.miou",
            "published": round(PUB_BCN_GAIN, 2),
        },
        {
            "claim": "WS improves GN at 1 image/device (GN - GN+WS, points)",
            "test": "greater",
            "effect": EFFECTS["ws_improves_gn"],
            **paired_errors(err, GN, GN_WS),
            "published_ref": "ws.ablation.r50.gn",
            "published": round(PUB_WS_GAIN, 2),
        },
    ]


def comparisons(err: dict[str, dict[int, float]], n_test: int) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The paired comparisons and the overall verdict (central claims: the first :data:`CENTRAL`)."""
    comps = [
        paired_comparison(**s, unit="points", n_eval=n_test, diverged_value=DIVERGED_ERROR) for s in claim_specs(err)
    ]
    verdicts = [c["verdict"] for c in comps]
    status = central_verdict(central=verdicts[:CENTRAL], others=verdicts[CENTRAL:])
    summary = " ".join(
        f"{c['claim']}: d = {c['ours']['mean_difference']:+.2f}"
        + (f" [{c['ours']['low']:+.2f}, {c['ours']['high']:+.2f}]" if c["ours"]["low"] is not None else "")
        + f", {c['verdict']}."
        for c in comps
    )
    return comps, {"status": status, "summary": summary}


def plot_results(errors: dict[str, Any], curves: dict[str, Any], seeds: Sequence[int]):
    """Final test errors (every seed, and their mean) of every row, and the training-loss and test-error
    curves with one thin line per seed. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    from reproductions.reporting.notebook import plot_curves

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    rows = [
        {"setting": s.label, "error": e}
        for s in SETTINGS
        for e in (errors[s.label].values() if isinstance(errors[s.label], dict) else errors[s.label])
    ]
    df = pd.DataFrame(rows)
    sns.swarmplot(data=df, y="setting", x="error", ax=axes[0], orient="h", size=4)
    sns.pointplot(data=df, y="setting", x="error", ax=axes[0], orient="h", errorbar=None, color="black", markers="|")
    axes[0].set_xlabel("test error (%): each seed, and the mean")
    axes[0].set_ylabel("")
    axes[0].set_title("final test error (after the last step)", fontsize=9)
    res = {"experiment": "micro_batch", "curves": curves, "seeds": list(seeds)}
    plot_curves(res, "train_loss", ax=axes[1], logy=True, per_seed=True)
    plot_curves(res, "test_error", ax=axes[2], per_seed=True)
    for ax in axes[1:]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def run(
    quick: bool = False, seeds: Sequence[int] | None = None, data: str | None = None, out_dir: str | None = None
) -> list[Path]:
    """Pilot, then every row with every planned seed (or ``seeds``); write ``micro_batch.json`` and its figure."""
    if seeds is not None:
        seeds = resolve_seeds(seeds, quick)  # duplicate seeds are an error, before any work
    schedule = QUICK_SCHEDULE if quick else SCHEDULE
    images = ImageData(data, QUICK_N_TRAIN if quick else N_TRAIN, POOL)
    dataset = images.load()
    out = results_dir(PAPER, quick, out_dir)
    workers = 1 if quick else default_workers()
    with Timer() as timer:
        records, seeds, pilot = pilot_then_run(
            SETTINGS,
            schedule,
            images,
            claim_specs,
            seeds=seeds,
            pilot_seeds=QUICK_PILOT_SEEDS if quick else PILOT_SEEDS,
            maximum=QUICK_SEEDS if quick else MAX_SEEDS,
            minimum=QUICK_SEEDS if quick else 5,
            workers=workers,
            desc="weight_standardization runs",
        )
    errors = by_seed(records)
    n_test = len(dataset.x_test)
    comps, verdict = comparisons(errors, n_test)
    curves = run_curves(records, schedule)
    figure = save_figure(plot_results(errors, curves, seeds), out / "micro_batch.png")
    config = {
        "model": f"small_resnet(depth={schedule.depth}, width={schedule.width}), zero-init last gamma",
        "schedule": schedule.describe(),
        "images": {"n_train": images.n_train, "pool": images.pool},
        "gn_groups": GROUPS,
        "settings": [s.describe() for s in SETTINGS],
        "effects": EFFECTS,
        "error_scale": ERROR_SCALE,
        "diverged_error": DIVERGED_ERROR,
        "evaluation": "test error (%) after the last step, every test image",
        "workers": workers,
        "threads_per_run": 1,
    }
    timings = {"cpu_seconds": sum(r.cpu_seconds for recs in records.values() for r in recs)}
    metrics = {f"test_error.{s.label}": error_stats(records[s.label]) for s in SETTINGS}
    metrics |= {f"final_train_loss.{s.label}": loss_stats(records[s.label]) for s in SETTINGS}
    path = finish_experiment(
        out / "micro_batch.json",
        paper=PAPER,
        experiment="micro_batch",
        quick=quick,
        title="Micro-batch training: GN, GN+WS, BCN+WS at 1 image/device vs BN at 32",
        claim="With micro-batches (1 image per GPU), GN+WS and BCN+WS match or beat BN trained with large batches, "
        "BCN+WS beats GN+WS, and WS improves GN (WS paper, abstract, §5 and its ImageNet/COCO/VOC tables).",
        dataset=dataset,
        seeds=seeds,
        config=config,
        metrics=metrics,
        comparisons=comps,
        verdict=verdict,
        figures=[figure],
        seconds=timer.seconds,
        timings=timings,
        curves=curves,
        notes=[
            f"CPU scale: ResNet-8 (width {WIDTH}) on {dataset.describe()['split']}; 8 virtual devices, gradient "
            f"accumulation to {EFFECTIVE_BATCH} images per step. The paper: ResNet-50/101 on ImageNet. Compare "
            "differences, not absolute errors.",
            "BCN+WS is the paper's micro-batch BCN: the batch stage uses running estimates (estimate=True), "
            "updated from each micro-batch of 8 devices together.",
        ],
        pilot=pilot,
        disclosures=DISCLOSURES,
    )
    return [path]


def main(argv: Sequence[str] | None = None) -> list[Path]:
    return cli(run, "Weight Standardization / BCN at CPU scale: micro-batch training", argv)


if __name__ == "__main__":
    main()
