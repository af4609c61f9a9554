r"""Weight Standardization and Batch-Channel Normalization (Qiao et al. 2019, "Micro-Batch Training with
Batch-Channel Normalization and Weight Standardization") at CPU scale: micro-batch training.

The setting of :mod:`reproductions.group_norm.cpu` (ResNet-8, width 16, 8 virtual devices, base LR 0.4 per
256 images, 30 epochs, step decay, weight decay on every parameter, median test error of the last 5
epochs) with the WS paper's micro-batch protocol: every optimizer step accumulates the gradients of
micro-batches of 8 devices x 1 (or 2) images up to 256 images, so every method takes the same steps at the
same LR and only the normalization sees the micro-batch (:mod:`reproductions.smallscale.vision`).

Rows (3 seeds each):

* ``BN 32/dev``: BN at a large batch, the reference (one forward pass of 8 x 32 images per step);
* ``BN 1/dev``, ``BN 2/dev``: BN with per-device statistics of 1 or 2 images;
* ``GN``, ``GN+WS``: batch-independent, so one run stands for 1 and 2 images/device (the official WS
  README: batch 256 with iteration size 1 equals batch 1 with iteration size 256);
* ``BCN+WS 1/dev``, ``BCN+WS 2/dev``: the paper's micro-batch BCN (§5): the batch stage normalizes with
  running **estimates** of the mean and variance (``estimate=True``, updated from each micro-batch,
  moving speed 0.1), then the channel stage (G = 8, per-group affine), with WS convs.

What BN with 1 image per device means here: each device normalizes each channel over the spatial
positions of its single image. The digits are upsampled x2 to 16x16 (bilinear), so the three stages of
the ResNet hold 256, 64 and 16 positions per image and channel (ResNet-50 at 224 px: 12544 ... 49); at the
native 8x8 the last stage would hold 4 values, where per-image "batch" statistics are little more than
noise. In eval mode BN uses its running averages of those per-image statistics (from device 0, as DDP).

Deviations: the EstBN estimates of BCN are updated from each micro-batch of 8 devices together (normcore's
BCN with ``estimate=True`` has no per-device slices; in DDP each device updates from its own images and rank
0's are kept); the paper trains ResNet-50/101 on ImageNet (and detection/segmentation), we train a
ResNet-8 on 16x16 digits, so absolute errors are not comparable: compare the differences.

    python -m reproductions.weight_standardization.cpu   # 3 seeds: ~15 CPU-minutes, 7-8 min on 2 idle cores
    python -m reproductions.weight_standardization.cpu --quick   # CI
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reproductions.claims.published import published_value
from reproductions.claims.statistics import contrast
from reproductions.claims.verdicts import (
    RULE_GREATER,
    RULE_NOT_WORSE,
    RULE_REVISION,
    central_verdict,
    verdict_greater,
    verdict_not_worse,
)
from reproductions.reporting.plots import save_figure
from reproductions.smallscale.data import image_dataset
from reproductions.smallscale.experiment import cli, finish_experiment, resolve_seeds, results_dir
from reproductions.smallscale.parallel import default_workers
from reproductions.smallscale.training import Timer
from reproductions.smallscale.vision import ClassifierSchedule, ClassifierSetup, error_stats, run_curves, train_many

PAPER = "weight_standardization"
GROUPS = 8
UPSAMPLE = 2
EFFECTIVE_BATCH = 256
SCHEDULE = ClassifierSchedule(epochs=30, base_lr=0.4, depth=8, width=16, devices=8, effective_batch=EFFECTIVE_BATCH)
QUICK_SCHEDULE = ClassifierSchedule(
    epochs=3, base_lr=0.4, depth=8, width=16, devices=8, effective_batch=EFFECTIVE_BATCH, eval_last=1
)
QUICK_TRAIN_IMAGES = 768
MARGIN = 0.5
"""Points: "matches or beats" means the upper end of the 2-se interval of (ours - BN at 32/dev) is at most
MARGIN (the GN paper's GN - BN gap at 32 images/GPU)."""

BN_LARGE = ClassifierSetup("BN 32/dev", "bn", 32)
BN_1 = ClassifierSetup("BN 1/dev", "bn", 1)
BN_2 = ClassifierSetup("BN 2/dev", "bn", 2)
GN = ClassifierSetup("GN (any b/dev)", "gn", 1, {"num_groups": GROUPS})
GN_WS = ClassifierSetup("GN+WS (any b/dev)", "gn", 1, {"num_groups": GROUPS}, conv="ws")
_BCN = {"num_groups": GROUPS, "estimate": True}
BCN_WS_1 = ClassifierSetup("BCN+WS 1/dev", "bcn", 1, _BCN, conv="ws")
BCN_WS_2 = ClassifierSetup("BCN+WS 2/dev", "bcn", 2, _BCN, conv="ws")
SETTINGS = (BN_LARGE, BN_1, BN_2, GN, GN_WS, BCN_WS_1, BCN_WS_2)


def _pub(entry_id: str) -> float:
    return float(published_value(PAPER, entry_id)["value"])


def _ours(value: float, se: float, n: int) -> dict[str, Any]:
    """A difference of mean errors; ``std`` holds its standard error."""
    return {"mean": value, "std": se, "n": n, "unit": "points", "std_is_standard_error": True}


def comparisons(err: dict[str, list[float]], n: int) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The claims, each with its rule (fixed before the first full run; one revision since:
    :data:`reproductions.smallscale.vision.RULE_REVISION`), and the overall verdict, from the per-seed test
    errors by setting label."""
    d_gnws, se_gnws = contrast([(1, err[GN_WS.label]), (-1, err[BN_LARGE.label])])
    d_bcn, se_bcn = contrast([(1, err[BCN_WS_1.label]), (-1, err[BN_LARGE.label])])
    d_bcn_gn, se_bcn_gn = contrast([(1, err[GN_WS.label]), (-1, err[BCN_WS_1.label])])
    d_ws, se_ws = contrast([(1, err[GN.label]), (-1, err[GN_WS.label])])
    d_bn, se_bn = contrast([(1, err[BN_1.label]), (-1, err[BN_LARGE.label])])
    matches = [verdict_not_worse(d_gnws, se_gnws, MARGIN), verdict_not_worse(d_bcn, se_bcn, MARGIN)]
    better = [verdict_greater(d_bcn_gn, se_bcn_gn), verdict_greater(d_ws, se_ws), verdict_greater(d_bn, se_bn)]
    gn_ws_pub, bn_pub = (
        _pub("ws.imagenet.r50.gn_ws.top1"),
        float(published_value("group_norm", "gn.table2.bn.32")["value"]),
    )
    comps = [
        {
            "claim": "GN+WS at 1 image/device matches or beats BN at 32 images/device (GN+WS - BN, points)",
            "published_ref": "ws.imagenet.r50.gn_ws.top1",
            "published": f"ResNet-50 ImageNet: GN+WS {gn_ws_pub}% at 1 image/GPU (official README) vs BN "
            f"{bn_pub}% at 32 images/GPU (GN paper, gn.table2.bn.32): {gn_ws_pub - bn_pub:+.2f}",
            "ours": _ours(d_gnws, se_gnws, n),
            "verdict": matches[0],
            "rule": f"d = err(GN+WS) - err(BN 32/dev); {RULE_NOT_WORSE}, m = {MARGIN} points; ± is the standard "
            "error of d over seeds",
        },
        {
            "claim": "BCN+WS at 1 image/device matches or beats BN at 32 images/device (BCN+WS - BN, points)",
            "published_ref": "ws.voc.bcn_ws.miou",
            "published": f"ImageNet value not found (ws.imagenet.r50.bcn_ws.top1); VOC DeepLabv3: BCN+WS "
            f"{_pub('ws.voc.bcn_ws.miou')} vs BN {_pub('ws.voc.bn.miou')} mIoU (higher is better)",
            "ours": _ours(d_bcn, se_bcn, n),
            "verdict": matches[1],
            "rule": f"d = err(BCN+WS 1/dev) - err(BN 32/dev); {RULE_NOT_WORSE}, m = {MARGIN} points",
        },
        {
            "claim": "BCN+WS is better than GN+WS at 1 image/device (GN+WS - BCN+WS, points)",
            "published_ref": "ws.voc.gn_ws.miou",
            "published": f"VOC DeepLabv3: BCN+WS {_pub('ws.voc.bcn_ws.miou')} vs GN+WS {_pub('ws.voc.gn_ws.miou')} "
            f"mIoU (+{_pub('ws.voc.bcn_ws.miou') - _pub('ws.voc.gn_ws.miou'):.2f}); ImageNet values not found",
            "ours": _ours(d_bcn_gn, se_bcn_gn, n),
            "verdict": better[0],
            "rule": f"d = err(GN+WS) - err(BCN+WS 1/dev); {RULE_GREATER}",
        },
        {
            "claim": "WS improves GN (GN - GN+WS, points)",
            "published_ref": "ws.ablation.r50.gn",
            "published": round(_pub("ws.ablation.r50.gn") - _pub("ws.ablation.r50.gn_ws"), 2),
            "ours": _ours(d_ws, se_ws, n),
            "verdict": better[1],
            "rule": f"d = err(GN) - err(GN+WS); {RULE_GREATER}; published: ws.ablation.r50.gn - "
            "ws.ablation.r50.gn_ws (ImageNet ResNet-50, one secondary source)",
        },
        {
            "claim": "BN degrades at 1 image/device (BN 1/dev - BN 32/dev, points): the paper's premise",
            "published": "no WS-paper number; the GN paper's BN at 2 images/GPU is "
            f"{float(published_value('group_norm', 'gn.table2.bn.2')['value']) - bn_pub:+.1f} points worse than at 32 "
            "(papers/group_norm/published.yaml: gn.table2.bn.2 - gn.table2.bn.32)",
            "ours": _ours(d_bn, se_bn, n),
            "verdict": better[2],
            "rule": f"d = err(BN 1/dev) - err(BN 32/dev); {RULE_GREATER}",
        },
    ]
    central = [*matches, better[0]]
    status = central_verdict(central, others=better[1:])
    mean = {s.label: sum(err[s.label]) / len(err[s.label]) for s in SETTINGS}
    summary = (
        "Test error (%): "
        + ", ".join(f"{label} {m:.2f}" for label, m in mean.items())
        + f". GN+WS - BN 32/dev = {d_gnws:+.2f} ± {se_gnws:.2f}, BCN+WS - BN 32/dev = {d_bcn:+.2f} ± {se_bcn:.2f}, "
        f"GN+WS - BCN+WS = {d_bcn_gn:+.2f} ± {se_bcn_gn:.2f}, GN - GN+WS = {d_ws:+.2f} ± {se_ws:.2f} points. "
        f"Central claims (micro-batch GN+WS and BCN+WS match large-batch BN; BCN+WS beats GN+WS): "
        f"{sum(v == 'reproduced' for v in central)} of 3 reproduced."
    )
    return comps, {"status": status, "summary": summary}


def plot_results(errors: dict[str, list[float]], curves: dict[str, Any], seeds: Sequence[int]):
    """Final test errors (mean ± std over seeds) of every row, and the training-loss and test-error curves.
    Returns the matplotlib figure."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    from reproductions.reporting.notebook import plot_curves

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    df = pd.DataFrame([{"setting": s.label, "error": e} for s in SETTINGS for e in errors[s.label]])
    sns.barplot(data=df, y="setting", x="error", errorbar="sd", ax=axes[0], orient="h", color=sns.color_palette()[0])
    axes[0].set_xlabel("test error (%), mean ± std over seeds")
    axes[0].set_ylabel("")
    axes[0].set_title("final test error (median of the last 5 epochs)", fontsize=9)
    res = {"experiment": "micro_batch", "curves": curves, "seeds": list(seeds)}
    plot_curves(res, "train_loss", ax=axes[1], logy=True)
    plot_curves(res, "test_error", ax=axes[2], logy=True)
    for ax in axes[1:]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def run(
    quick: bool = False, seeds: Sequence[int] | None = None, data: str | None = None, out_dir: str | None = None
) -> list[Path]:
    """Train every row with every seed; write ``micro_batch.json`` and its figure."""
    seeds = resolve_seeds(seeds, quick)
    schedule = QUICK_SCHEDULE if quick else SCHEDULE
    dataset = image_dataset(data, QUICK_TRAIN_IMAGES if quick else None, upsample=1 if data else UPSAMPLE)
    out = results_dir(PAPER, quick, out_dir)
    workers = 1 if quick else default_workers()
    with Timer() as timer:
        records = train_many(SETTINGS, seeds, schedule, dataset, workers=workers, desc="weight_standardization runs")
    n = len(seeds)
    errors = {label: [r.test_error for r in recs] for label, recs in records.items()}
    comps, verdict = comparisons(errors, n)
    curves = run_curves(records, schedule.epochs)
    figure = save_figure(plot_results(errors, curves, seeds), out / "micro_batch.png")
    config = {
        "model": f"small_resnet(depth={schedule.depth}, width={schedule.width}), zero-init last gamma",
        "schedule": schedule.describe(),
        "gn_groups": GROUPS,
        "upsample": 1 if data else UPSAMPLE,
        "settings": [s.describe() for s in SETTINGS],
        "evaluation": f"test error (%), median of the last {schedule.eval_last} epochs",
        "workers": workers,
        "threads_per_run": 1,
    }
    timings = {"cpu_seconds": sum(r.cpu_seconds for recs in records.values() for r in recs)}
    path = finish_experiment(
        out / "micro_batch.json",
        paper=PAPER,
        experiment="micro_batch",
        quick=quick,
        title="Micro-batch training: BN, GN, GN+WS, BCN+WS at 1-2 images/device vs BN at 32",
        claim="With micro-batches (1-2 images per GPU), GN+WS and BCN+WS match or beat BN trained with large "
        "batches, BCN+WS beats GN+WS, and WS improves GN (WS paper, abstract, §5 and its ImageNet/COCO/VOC tables).",
        dataset=dataset,
        seeds=seeds,
        config=config,
        metrics={f"test_error.{s.label}": error_stats(records[s.label]) for s in SETTINGS},
        comparisons=comps,
        verdict=verdict,
        figures=[figure],
        seconds=timer.seconds,
        timings=timings,
        curves=curves,
        notes=[
            RULE_REVISION,
            f"CPU scale: ResNet-8 on {dataset.name} ({len(dataset.x_train):,} train / {len(dataset.x_test):,} test), "
            "8 virtual devices, gradient accumulation to 256 images per step; the paper: ResNet-50/101 on ImageNet. "
            "Compare differences, not absolute errors.",
            "BCN+WS is the paper's micro-batch BCN: the batch stage uses running estimates (estimate=True), "
            "updated from each micro-batch of 8 devices together.",
        ],
    )
    return [path]


def main(argv: Sequence[str] | None = None) -> list[Path]:
    return cli(run, "Weight Standardization / BCN at CPU scale: micro-batch training", argv)


if __name__ == "__main__":
    main()
