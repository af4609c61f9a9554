r"""Group Normalization (Wu & He 2018) at CPU scale: the Table 2 / Figure 1 trend, Table 1 and Table 3.

A ResNet-8 (CIFAR-style, width 16: 16/32/64 channels) on the 8x8 digits of scikit-learn, with 8 virtual
devices; BN statistics are computed per device, as on the paper's 8 GPUs. The recipe is the paper's
ImageNet recipe scaled down (see :mod:`reproductions.smallscale.vision`): LR linear in the total batch,
the same number of epochs for every batch size, step decay at 30/60/90% of training, weight decay on
every parameter, zero-init of the last gamma of each block, the median test error of the last 5 epochs.

* Table 2 / Figure 1: BN and GN at 32, 16, 8, 4, 2 images per device (total batch 256 ... 16).
* Table 1: BN, LN, IN, GN at 32 images per device.
* Table 3: GN with G in {1 (=LN), 2, 4, 8, 16} groups, and with {1 (=IN), 2, 4, 8, 16} channels per group.

Scale-down choices, fixed before any GN or small-batch run (only the BN baseline was piloted):

* GN's default G = 8: at width 16 it gives 2 channels per group in the first stage, as G = 32 does on
  the 64-channel first stage of ResNet-50 (the paper's default).
* Base LR 0.4 per 256 images (the paper: 0.1 per 256 for 100 ImageNet epochs). 30 epochs of 1,438
  digits are only 150 steps at batch 256; a pilot of the BN baseline at 32 images/device (seed 0)
  reached a training loss of 0.14 at 0.1 and 0.005 at 0.4.
* 30 epochs (the time budget: about 9 CPU-minutes, 5 minutes on 2 idle cores).

Our errors are on a different dataset at a tiny scale, so absolute errors are not comparable with the
paper's; the comparisons are of the *trends*: differences between settings, each with its standard error
over seeds, against the paper's differences. The verdict rules are written in :func:`_table2`,
:func:`_table1` and :func:`_table3` and were fixed before the first full run, with one revision after it
(:data:`reproductions.smallscale.vision.RULE_REVISION`).

    python -m reproductions.group_norm.cpu            # 3 seeds, results in reproductions/group_norm/results
    python -m reproductions.group_norm.cpu --quick    # CI: 1 seed, a few epochs on a subset
    python -m reproductions.group_norm.cpu --data /path/to/mnist   # full MNIST (28x28) instead of digits
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reproductions.claims.published import published_value
from reproductions.claims.statistics import contrast
from reproductions.claims.verdicts import (
    RULE_EQUIVALENT,
    RULE_GREATER,
    RULE_REVISION,
    central_verdict,
    verdict_equivalent,
    verdict_greater,
)
from reproductions.reporting.plots import save_figure
from reproductions.smallscale.data import image_dataset
from reproductions.smallscale.experiment import cli, finish_experiment, resolve_seeds, results_dir
from reproductions.smallscale.parallel import default_workers
from reproductions.smallscale.training import Timer
from reproductions.smallscale.vision import ClassifierSchedule, ClassifierSetup, error_stats, run_curves, train_many

PAPER = "group_norm"
IMAGES_PER_DEVICE = (32, 16, 8, 4, 2)
LARGE = 32
SMALL = 2
GROUPS = 8
TABLE3_GROUPS = (1, 2, 4, 8, 16)
TABLE3_GROUP_SIZES = (1, 2, 4, 8, 16)
SCHEDULE = ClassifierSchedule(epochs=30, base_lr=0.4, depth=8, width=16, devices=8)
QUICK_SCHEDULE = ClassifierSchedule(epochs=3, base_lr=0.4, depth=8, width=16, devices=8, eval_last=1)
QUICK_TRAIN_IMAGES = 512
MARGIN = 0.5
"""Points. "No change" / "close" means the 2-se interval of the difference lies within ±MARGIN (the paper's
GN - BN gap at 32 images/GPU); an interval wider than that is "not testable at this scale"."""


# --------------------------------------------------------------------------------------------------
# settings
# --------------------------------------------------------------------------------------------------
def _bn(b: int) -> ClassifierSetup:
    return ClassifierSetup(f"BN {b}/dev", "bn", b)


def _gn(b: int) -> ClassifierSetup:
    return ClassifierSetup(f"GN {b}/dev", "gn", b, {"num_groups": GROUPS})


LN = ClassifierSetup(f"LN {LARGE}/dev", "ln", LARGE)
IN = ClassifierSetup(f"IN {LARGE}/dev", "in", LARGE)


def _groups_setup(g: int) -> ClassifierSetup:
    """Table 3, top row: G groups (G = 1 is LN, G = 8 is the default GN)."""
    if g == 1:
        return LN
    if g == GROUPS:
        return _gn(LARGE)
    return ClassifierSetup(f"GN G={g}", "gn", LARGE, {"num_groups": g})


def _group_size_setup(c: int) -> ClassifierSetup:
    """Table 3, bottom row: c channels per group in every layer (c = 1 is IN)."""
    if c == 1:
        return IN
    return ClassifierSetup(f"GN {c} ch/group", "gn", LARGE, {"group_size": c})


def settings() -> list[ClassifierSetup]:
    """Every distinct setting of the three tables, in table order."""
    out: list[ClassifierSetup] = []
    for setup in (
        *(f(b) for b in IMAGES_PER_DEVICE for f in (_bn, _gn)),
        LN,
        IN,
        *(_groups_setup(g) for g in TABLE3_GROUPS),
        *(_group_size_setup(c) for c in TABLE3_GROUP_SIZES),
    ):
        if setup not in out:
            out.append(setup)
    return out


# --------------------------------------------------------------------------------------------------
# comparisons and verdict rules
# --------------------------------------------------------------------------------------------------
def _pub(entry_id: str) -> float:
    return float(published_value(PAPER, entry_id)["value"])


Errors = dict[str, list[float]]
"""Per-seed test errors (%) by setting label; :func:`reproductions.smallscale.vision.errors_by_label` reads
them back from a results file's metrics, so the rules and plots run on committed results too."""


def _errs(errors: Errors, setup: ClassifierSetup) -> list[float]:
    return errors[setup.label]


def _mean(errors: Errors, setup: ClassifierSetup) -> float:
    return sum(errors[setup.label]) / len(errors[setup.label])


def _ours(value: float, se: float, n: int) -> dict[str, Any]:
    """A difference of mean errors; ``std`` holds its standard error (see the rules)."""
    return {"mean": value, "std": se, "n": n, "unit": "points", "std_is_standard_error": True}


def _table2(errors: Errors, n: int) -> tuple[list[dict[str, Any]], dict[str, str]]:
    bn_l, bn_s = _errs(errors, _bn(LARGE)), _errs(errors, _bn(SMALL))
    gn_l, gn_s = _errs(errors, _gn(LARGE)), _errs(errors, _gn(SMALL))
    d_bn, se_bn = contrast([(1, bn_s), (-1, bn_l)])
    d_gn, se_gn = contrast([(1, gn_s), (-1, gn_l)])
    d_dd, se_dd = contrast([(1, bn_s), (-1, bn_l), (-1, gn_s), (1, gn_l)])
    d_2, se_2 = contrast([(1, gn_s), (-1, bn_s)])
    pub_bn = _pub(f"gn.table2.bn.{SMALL}") - _pub(f"gn.table2.bn.{LARGE}")
    pub_gn = _pub(f"gn.table2.gn.{SMALL}") - _pub(f"gn.table2.gn.{LARGE}")
    verdicts = [
        verdict_greater(d_bn, se_bn),
        verdict_equivalent(d_gn, se_gn, MARGIN),
        verdict_greater(d_dd, se_dd),
        verdict_greater(-d_2, se_2),
    ]
    comps = [
        {
            "claim": f"BN's error rises from {LARGE} to {SMALL} images/device (points)",
            "published_ref": f"gn.table2.bn.{SMALL}",
            "published": round(pub_bn, 2),
            "ours": _ours(d_bn, se_bn, n),
            "verdict": verdicts[0],
            "rule": f"d = err(BN,{SMALL}) - err(BN,{LARGE}); {RULE_GREATER}; ± is the standard error of d over "
            f"seeds; published = gn.table2.bn.{SMALL} - gn.table2.bn.{LARGE}",
        },
        {
            "claim": f"GN's error does not change from {LARGE} to {SMALL} images/device (points)",
            "published_ref": f"gn.table2.gn.{SMALL}",
            "published": round(pub_gn, 2),
            "ours": _ours(d_gn, se_gn, n),
            "verdict": verdicts[1],
            "rule": f"d = err(GN,{SMALL}) - err(GN,{LARGE}); {RULE_EQUIVALENT}, m = {MARGIN} points; "
            f"published = gn.table2.gn.{SMALL} - gn.table2.gn.{LARGE}",
        },
        {
            "claim": f"BN degrades more than GN from {LARGE} to {SMALL} images/device (difference of the two rises)",
            "published_ref": f"gn.table2.gn_minus_bn.{SMALL}",
            "published": round(pub_bn - pub_gn, 2),
            "ours": _ours(d_dd, se_dd, n),
            "verdict": verdicts[2],
            "rule": f"d = (BN's rise) - (GN's rise), se from the four settings' seed variances; {RULE_GREATER}",
        },
        {
            "claim": f"GN - BN at {SMALL} images/device (negative: GN better)",
            "published_ref": f"gn.table2.gn_minus_bn.{SMALL}",
            "published": _pub(f"gn.table2.gn_minus_bn.{SMALL}"),
            "ours": _ours(d_2, se_2, n),
            "verdict": verdicts[3],
            "rule": f"d = err(BN,{SMALL}) - err(GN,{SMALL}) (shown with the opposite sign); {RULE_GREATER}",
        },
    ]
    status = central_verdict(central=[verdicts[2], verdicts[3]], others=[verdicts[0], verdicts[1]])
    summary = (
        f"BN's error rises by {d_bn:+.2f} ± {se_bn:.2f} points from {LARGE} to {SMALL} images/device "
        f"(paper {pub_bn:+.1f}), GN's by {d_gn:+.2f} ± {se_gn:.2f} (paper {pub_gn:+.1f}); at {SMALL} images/device "
        f"GN - BN = {d_2:+.2f} ± {se_2:.2f} points (paper {_pub(f'gn.table2.gn_minus_bn.{SMALL}'):+.1f}). "
        f"Absolute errors are on 8x8 digits and not comparable with ImageNet's."
    )
    return comps, {"status": status, "summary": summary}


def _table1(errors: Errors, n: int) -> tuple[list[dict[str, Any]], dict[str, str]]:
    bn, gn = _errs(errors, _bn(LARGE)), _errs(errors, _gn(LARGE))
    ln, inn = _errs(errors, LN), _errs(errors, IN)
    d_gn, se_gn = contrast([(1, gn), (-1, bn)])
    d_ln, se_ln = contrast([(1, ln), (-1, gn)])
    d_in, se_in = contrast([(1, inn), (-1, gn)])
    verdicts = [
        verdict_equivalent(d_gn, se_gn, MARGIN),
        verdict_greater(d_ln, se_ln),
        verdict_greater(d_in, se_in),
    ]
    comps = [
        {
            "claim": f"GN is close to BN at {LARGE} images/device (GN - BN, points)",
            "published_ref": "gn.table1.gn_minus_bn",
            "published": _pub("gn.table1.gn_minus_bn"),
            "ours": _ours(d_gn, se_gn, n),
            "verdict": verdicts[0],
            "rule": f"d = err(GN) - err(BN); {RULE_EQUIVALENT}, m = {MARGIN} points",
        },
        {
            "claim": "LN is worse than GN (LN - GN, points)",
            "published_ref": "gn.table1.ln",
            "published": round(_pub("gn.table1.ln") - _pub("gn.table1.gn"), 2),
            "ours": _ours(d_ln, se_ln, n),
            "verdict": verdicts[1],
            "rule": f"d = err(LN) - err(GN); {RULE_GREATER}; published = gn.table1.ln - gn.table1.gn",
        },
        {
            "claim": "IN is worse than GN (IN - GN, points)",
            "published_ref": "gn.table1.in",
            "published": round(_pub("gn.table1.in") - _pub("gn.table1.gn"), 2),
            "ours": _ours(d_in, se_in, n),
            "verdict": verdicts[2],
            "rule": f"d = err(IN) - err(GN); {RULE_GREATER}; published = gn.table1.in - gn.table1.gn",
        },
    ]
    means = {name: _mean(errors, s) for name, s in (("BN", _bn(LARGE)), ("LN", LN), ("IN", IN), ("GN", _gn(LARGE)))}
    order = ", ".join(f"{k} {v:.2f}%" for k, v in sorted(means.items(), key=lambda kv: kv[1]))
    paper = ", ".join(f"{k} {_pub(f'gn.table1.{k.lower()}')}" for k in means)
    summary = (
        f"At {LARGE} images/device: {order} (paper, ImageNet: {paper}). GN - BN = {d_gn:+.2f} ± {se_gn:.2f}, "
        f"LN - GN = {d_ln:+.2f} ± {se_ln:.2f}, IN - GN = {d_in:+.2f} ± {se_in:.2f} points."
    )
    return comps, {"status": central_verdict(central=verdicts[1:], others=verdicts[:1]), "summary": summary}


def _table3(errors: Errors, n: int) -> tuple[list[dict[str, Any]], dict[str, str]]:
    middle_g = [g for g in TABLE3_GROUPS if g != 1]
    middle_c = [c for c in TABLE3_GROUP_SIZES if c != 1]
    ln = _errs(errors, _groups_setup(1))
    inn = _errs(errors, _group_size_setup(1))
    d_ln, se_ln = contrast([(1, ln), *((-1 / len(middle_g), _errs(errors, _groups_setup(g))) for g in middle_g)])
    d_in, se_in = contrast([(1, inn), *((-1 / len(middle_c), _errs(errors, _group_size_setup(c))) for c in middle_c)])
    pub_g = [_pub(f"gn.table3.groups.{g}") for g in (64, 32, 16, 8, 4, 2)]
    pub_c = [_pub(f"gn.table3.channels_per_group.{c}") for c in (64, 32, 16, 8, 4, 2)]
    pub_ln = _pub("gn.table3.groups.1") - sum(pub_g) / len(pub_g)
    pub_in = _pub("gn.table3.channels_per_group.1") - sum(pub_c) / len(pub_c)
    verdicts = [verdict_greater(d_ln, se_ln), verdict_greater(d_in, se_in)]
    comps = [
        {
            "claim": f"G = 1 (LN) is worse than the middle range G in {middle_g} (LN - mean of the middle, points)",
            "published_ref": "gn.table3.groups.1",
            "published": round(pub_ln, 2),
            "ours": _ours(d_ln, se_ln, n),
            "verdict": verdicts[0],
            "rule": f"d = err(G=1) - mean over the middle G of err(G) (settings fixed in advance, not the best one); "
            f"{RULE_GREATER}; published: gn.table3.groups.1 - mean of G in 2..64",
        },
        {
            "claim": f"1 channel per group (IN) is worse than {middle_c} channels per group (IN - mean, points)",
            "published_ref": "gn.table3.channels_per_group.1",
            "published": round(pub_in, 2),
            "ours": _ours(d_in, se_in, n),
            "verdict": verdicts[1],
            "rule": f"d = err(1 ch/group) - mean over the middle c of err(c ch/group); {RULE_GREATER}; published: "
            "gn.table3.channels_per_group.1 - mean of 2..64 channels/group",
        },
    ]
    row = lambda setups: ", ".join(f"{s.label} {_mean(errors, s):.2f}" for s in setups)  # noqa: E731
    summary = (
        f"Groups: {row([_groups_setup(g) for g in TABLE3_GROUPS])}. Channels per group: "
        f"{row([_group_size_setup(c) for c in TABLE3_GROUP_SIZES])} (test error %, mean of {n} seeds)."
    )
    return comps, {"status": central_verdict(central=verdicts), "summary": summary}


# --------------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------------
def plot_table2(errors: Errors):
    """Figure 1 / Table 2 analogue: our error vs images per device (mean ± std over seeds), beside the
    paper's Table 2 (from ``published.yaml``). Returns the matplotlib figure."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    rows = []
    for b in IMAGES_PER_DEVICE:
        for name, f in (("BN", _bn), ("GN", _gn)):
            rows += [{"images/device": b, "norm": name, "error": e, "who": "ours"} for e in errors[f(b).label]]
            rows.append(
                {"images/device": b, "norm": name, "error": _pub(f"gn.table2.{name.lower()}.{b}"), "who": "paper"}
            )
    df = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, who, title in (
        (axes[0], "ours", "ours: ResNet-8, 8x8 digits, 8 virtual devices (mean ± std over seeds)"),
        (axes[1], "paper", "paper: ResNet-50, ImageNet, 8 GPUs (Table 2)"),
    ):
        sns.lineplot(data=df[df.who == who], x="images/device", y="error", hue="norm", marker="o", errorbar="sd", ax=ax)
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(IMAGES_PER_DEVICE), [str(b) for b in IMAGES_PER_DEVICE])
        ax.invert_xaxis()
        ax.set_ylabel("test error (%)" if who == "ours" else "val error (%)")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_tables13(errors: Errors):
    """Table 1 and Table 3 analogues: ours (top row; bars: mean, whiskers: std over seeds) above the paper's
    values (bottom row, from ``published.yaml``). Returns the matplotlib figure."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    def ours(setups: Sequence[ClassifierSetup], names: Sequence[str]) -> pd.DataFrame:
        return pd.DataFrame([{"setting": n, "error": e} for s, n in zip(setups, names) for e in errors[s.label]])

    def paper(ids: Sequence[str], names: Sequence[str]) -> pd.DataFrame:
        return pd.DataFrame([{"setting": n, "error": _pub(i)} for i, n in zip(ids, names)])

    def tag(k: int, extreme: str) -> str:
        return f"{k} ({extreme})" if k == 1 else str(k)

    t1 = ["BN", "LN", "IN", "GN"]
    paper_k = (64, 32, 16, 8, 4, 2, 1)
    panels = [
        (ours([_bn(LARGE), LN, IN, _gn(LARGE)], t1), f"ours: Table 1 ({LARGE} images/device, GN G={GROUPS})", ""),
        (
            ours([_groups_setup(g) for g in TABLE3_GROUPS], [tag(g, "LN") for g in TABLE3_GROUPS]),
            "ours: Table 3",
            "groups G",
        ),
        (
            ours([_group_size_setup(c) for c in TABLE3_GROUP_SIZES], [tag(c, "IN") for c in TABLE3_GROUP_SIZES]),
            "ours: Table 3",
            "channels per group",
        ),
        (paper([f"gn.table1.{k.lower()}" for k in t1], t1), "paper: Table 1 (ResNet-50, ImageNet)", ""),
        (
            paper([f"gn.table3.groups.{g}" for g in paper_k], [tag(g, "LN") for g in paper_k]),
            "paper: Table 3",
            "groups G",
        ),
        (
            paper([f"gn.table3.channels_per_group.{c}" for c in paper_k], [tag(c, "IN") for c in paper_k]),
            "paper: Table 3",
            "channels per group",
        ),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    for ax, (df, title, xlabel) in zip(axes.flat, panels):
        sns.barplot(data=df, x="setting", y="error", errorbar="sd", ax=ax, color=sns.color_palette("deep")[0])
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test error (%)" if title.startswith("ours") else "val error (%)")
        if title.startswith("paper"):
            ax.set_ylim(20, None)
    fig.tight_layout()
    return fig


def plot_training_curves(curves: dict[str, Any], seeds: Sequence[int]):
    """Training loss and test error per epoch for BN and GN at the largest and smallest batch per device
    (``curves`` as in a results file). Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    from reproductions.reporting.notebook import plot_curves

    labels = [s.label for s in (_bn(LARGE), _gn(LARGE), _bn(SMALL), _gn(SMALL))]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    res = {"experiment": "table2_batch_size", "curves": curves, "seeds": list(seeds)}
    plot_curves(res, "train_loss", series=labels, ax=axes[0], logy=True)
    plot_curves(res, "test_error", series=labels, ax=axes[1], logy=True)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------------
def run(
    quick: bool = False, seeds: Sequence[int] | None = None, data: str | None = None, out_dir: str | None = None
) -> list[Path]:
    """Train every setting with every seed, then write the three results files and their figures."""
    seeds = resolve_seeds(seeds, quick)
    schedule = QUICK_SCHEDULE if quick else SCHEDULE
    dataset = image_dataset(data, QUICK_TRAIN_IMAGES if quick else None)
    out = results_dir(PAPER, quick, out_dir)
    setups = settings()
    workers = 1 if quick else default_workers()
    with Timer() as timer:
        records = train_many(setups, seeds, schedule, dataset, workers=workers, desc="group_norm runs")
    n = len(seeds)
    errors: Errors = {label: [r.test_error for r in recs] for label, recs in records.items()}
    config = {
        "model": f"small_resnet(depth={schedule.depth}, width={schedule.width}), zero-init last gamma",
        "schedule": schedule.describe(),
        "gn_default_groups": GROUPS,
        "settings": [s.describe() for s in setups],
        "evaluation": f"test error (%), median of the last {schedule.eval_last} epochs",
        "workers": workers,
        "threads_per_run": 1,
    }
    timings = {"cpu_seconds": sum(r.cpu_seconds for recs in records.values() for r in recs)}
    metrics = {f"test_error.{s.label}": error_stats(records[s.label]) for s in setups}
    curves = run_curves(records, schedule.epochs)
    n_train, n_test = len(dataset.x_train), len(dataset.x_test)
    note_scale = (
        f"CPU scale: ResNet-8 on {dataset.name} ({n_train:,} train / {n_test:,} test), 8 virtual devices; the paper: "
        f"ResNet-50 on ImageNet, 8 GPUs. Compare differences between settings, not absolute errors; one test image "
        f"is {100 / n_test:.2f} points."
    )
    figures = {
        "table2": [
            save_figure(plot_table2(errors), out / "fig1_error_vs_batch.png"),
            save_figure(plot_training_curves(curves, seeds), out / "training_curves.png"),
        ],
        "tables13": [save_figure(plot_tables13(errors), out / "tables1_3.png")],
    }
    table3_labels = [s.label for s in (*map(_groups_setup, TABLE3_GROUPS), *map(_group_size_setup, TABLE3_GROUP_SIZES))]
    experiments = (
        (
            "table2_batch_size",
            "Table 2 / Figure 1: error vs images per device, BN vs GN",
            "BN's error increases rapidly as the batch per device shrinks, while GN's stays stable across batch "
            f"sizes; at {SMALL} images/GPU GN is {-_pub(f'gn.table2.gn_minus_bn.{SMALL}'):.1f} points better than BN "
            "(GN paper §4.1, Table 2, Figure 1).",
            _table2,
            figures["table2"],
            [f(b).label for b in IMAGES_PER_DEVICE for f in (_bn, _gn)],
        ),
        (
            "table1_norms",
            f"Table 1: BN, LN, IN, GN at {LARGE} images per device",
            f"At a large batch GN is close to BN ({_pub('gn.table1.gn_minus_bn'):.1f} points worse) and better than "
            f"LN (by {_pub('gn.table1.ln') - _pub('gn.table1.gn'):.1f}) and IN (by "
            f"{_pub('gn.table1.in') - _pub('gn.table1.gn'):.1f}) (GN paper §4.1, Table 1).",
            _table1,
            figures["tables13"],
            [_bn(LARGE).label, LN.label, IN.label, _gn(LARGE).label],
        ),
        (
            "table3_groups",
            "Table 3: number of groups and channels per group",
            "GN works well over a wide range of groups; the extremes, one group (LN) and one channel per group "
            "(IN), are worse (GN paper §4.1, Table 3).",
            _table3,
            figures["tables13"],
            list(dict.fromkeys(table3_labels)),
        ),
    )
    paths = []
    for name, title, claim, rules, figure_names, labels in experiments:
        comps, verdict = rules(errors, n)
        paths.append(
            finish_experiment(
                out / f"{name}.json",
                paper=PAPER,
                experiment=name,
                quick=quick,
                title=title,
                claim=claim,
                dataset=dataset,
                seeds=seeds,
                config=config,
                metrics={f"test_error.{label}": metrics[f"test_error.{label}"] for label in labels},
                comparisons=comps,
                verdict=verdict,
                figures=figure_names,
                seconds=timer.seconds,
                timings=timings,
                curves={k: {**c, "series": {lb: c["series"][lb] for lb in labels}} for k, c in curves.items()},
                notes=[
                    note_scale,
                    RULE_REVISION,
                    f"The three results files (Tables 1, 2, 3) come from one run of {len(setups)} settings x {n} "
                    f"seeds; its time is recorded in each ({timer.seconds:.0f} s wall-clock, "
                    f"{timings['cpu_seconds']:.0f} s CPU over {workers} worker(s)).",
                ],
            )
        )
    return paths


def main(argv: Sequence[str] | None = None) -> list[Path]:
    return cli(run, "Group Normalization at CPU scale: Table 2 / Figure 1, Table 1, Table 3", argv)


if __name__ == "__main__":
    main()
