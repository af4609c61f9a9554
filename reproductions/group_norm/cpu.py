r"""Group Normalization (Wu & He 2018) at CPU scale: the Table 2 / Figure 1 trend, Table 1 and Table 3, on
Fashion-MNIST.

A ResNet-8 (CIFAR-style, width 8: 8/16/32 channels) with 8 virtual devices; BN statistics are computed per
device, as on the paper's 8 GPUs. The recipe is the paper's ImageNet recipe (§4.1) scaled down
(:mod:`reproductions.smallscale.vision`): LR = 0.1 x N / 256 for N images per step (the paper's rule) for
**every** method, the same number of epochs for every batch size, step decay at 30/60/90% of training,
weight decay on every parameter, zero-init of the last gamma of each block.

* Table 2 / Figure 1: BN and GN at 32, 8 and 2 images per device (total batch 256, 64, 16).
* Table 1: BN, LN, IN, GN at 32 images per device.
* Table 3: GN with G in {1 (= LN), 2, 4 (default)} groups and with {1 (= IN), 2, 4} channels per group.

Seeds: a pilot on seeds 1000-1002 estimates the paired spread of every claim, and
:func:`reproductions.claims.paired.plan_seeds` picks the run's seeds (80 % power, at least 5, at most
:data:`MAX_SEEDS`, the time budget). Every claim is a paired comparison
(:func:`reproductions.claims.paired.paired_comparison`) with an effect of interest or a margin fixed here,
before any run. The three results files (Tables 1, 2, 3) come from one set of runs.

    python -m reproductions.group_norm.cpu          # pilot + seeds: 10.6 minutes on 2 cores (AMD EPYC)
    python -m reproductions.group_norm.cpu --quick  # CI: tiny budgets, same path
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reproductions.claims.paired import paired_comparison
from reproductions.claims.published import published_value
from reproductions.claims.verdicts import central_verdict
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

PAPER = "group_norm"

# ---- budget and seeds (the full run: pilot + seeds, at most 13 minutes on 2 idle cores) ----
N_TRAIN = 12_000
"""Training images (a class-stratified subset of the 60,000; the time budget, see the paper card)."""
EPOCHS = 6
PILOT_SEEDS = (1000, 1001, 1002)
MAX_SEEDS = 5
"""The most seeds the time budget allows after the pilot (plan_seeds never goes below 5)."""
QUICK_N_TRAIN = 512
QUICK_EPOCHS = 2
QUICK_PILOT_SEEDS = (1000, 1001)
QUICK_SEEDS = 2

# ---- protocol (GN paper §4.1, scaled down) ----
WIDTH = 8
DEPTH = 8
POOL = 2
IMAGES_PER_DEVICE = (32, 8, 2)
LARGE = 32
SMALL = 2
GROUPS = 4
"""GN's default G: 2 channels per group in the first stage (8 channels), as G = 32 gives on ResNet-50's
64-channel first stage (the paper's default)."""
TABLE3_GROUPS = (1, 2, 4)
TABLE3_GROUP_SIZES = (1, 2, 4)
SCHEDULE = ClassifierSchedule(epochs=EPOCHS, base_lr=0.1, depth=DEPTH, width=WIDTH, devices=8)
QUICK_SCHEDULE = ClassifierSchedule(
    epochs=QUICK_EPOCHS, base_lr=0.1, depth=DEPTH, width=WIDTH, devices=8, loss_points=2, error_points=2
)

# ---- effects of interest and margins, fixed before any run ----
ERROR_SCALE = 1.0
"""The paper's effects (ImageNet, BN at 32 images/GPU: 23.6 % error) are used as published, in points: BN's error
at 32/dev is of the same order here (a probe, below). See :data:`DISCLOSURES`."""
DISCLOSURES = [
    "ERROR_SCALE, the factor applied to the paper's effects, was first fixed at 10/23.6 (an assumed BN error near "
    "10 % here against 23.6 % in the paper). A timing probe on seed 999 (not a pilot or result seed) then showed BN "
    "at 32 images/device near 26 % error, so before the first full run the factor was changed to 1 (the published "
    "effects in points). No other rule, margin or setting was changed after seeing results.",
]
"""Every rule, margin or setting changed after seeing a result (written into the results files)."""
DIVERGED_ERROR = 90.0
"""A diverged run (non-finite loss) counts as chance error (10 classes), fixed before the run."""
MARGIN = 1.0
"""Points (100 test images): the margin of the "no change" / "close" claims, twice the paper's GN - BN gap at 32
images/GPU (Table 1: +0.5), which the paper calls comparable."""


def _pub(entry_id: str) -> float:
    return float(published_value(PAPER, entry_id)["value"])


def _pub_mean(ids: Sequence[str]) -> float:
    return statistics.fmean(_pub(i) for i in ids)


PUB_BN_RISE = _pub(f"gn.table2.bn.{SMALL}") - _pub(f"gn.table2.bn.{LARGE}")
PUB_GN_BEATS_BN = -_pub(f"gn.table2.gn_minus_bn.{SMALL}")
PUB_LN_MINUS_GN = _pub("gn.table1.ln") - _pub("gn.table1.gn")
PUB_IN_MINUS_GN = _pub("gn.table1.in") - _pub("gn.table1.gn")
PUB_LN_MINUS_MIDDLE = _pub("gn.table3.groups.1") - _pub_mean([f"gn.table3.groups.{g}" for g in (64, 32, 16, 8, 4, 2)])
PUB_IN_MINUS_MIDDLE = _pub("gn.table3.channels_per_group.1") - _pub_mean(
    [f"gn.table3.channels_per_group.{c}" for c in (64, 32, 16, 8, 4, 2)]
)
EFFECTS = {
    "bn_rise": PUB_BN_RISE * ERROR_SCALE,  # Table 2: BN 34.7 at 2/GPU - 23.6 at 32 = 11.1 points
    "gn_beats_bn": PUB_GN_BEATS_BN * ERROR_SCALE,  # Table 2: GN 10.6 points better than BN at 2/GPU
    "gn_flat": MARGIN,  # Table 2: GN 24.1 at 2/GPU and at 32 (margin)
    "gn_close_to_bn": MARGIN,  # Table 1: GN - BN = +0.5 at 32/GPU (margin)
    "ln_worse": PUB_LN_MINUS_GN * ERROR_SCALE,  # Table 1: LN 25.3 - GN 24.1
    "in_worse": PUB_IN_MINUS_GN * ERROR_SCALE,  # Table 1: IN 28.4 - GN 24.1
    "g1_worse": PUB_LN_MINUS_MIDDLE * ERROR_SCALE,  # Table 3: G = 1 minus the mean of G = 2..64
    "c1_worse": PUB_IN_MINUS_MIDDLE * ERROR_SCALE,  # Table 3: 1 ch/group minus the mean of 2..64 ch/group
}
"""Effect of interest ("greater") or margin ("equivalent") of every claim, in points of test error."""


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
    """Table 3, top row: G groups (G = 1 is LN, G = GROUPS is the default GN)."""
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
# claims
# --------------------------------------------------------------------------------------------------
Errors = Mapping[str, Mapping[int, float]]
"""Test errors (%) by setting label and seed."""


def _middle(errors: Errors, setups: Sequence[ClassifierSetup]) -> dict[int, float]:
    """Per seed, the mean error of the settings (Table 3's middle range)."""
    seeds = set.intersection(*(set(errors[s.label]) for s in setups))
    return {seed: statistics.fmean(errors[s.label][seed] for s in setups) for seed in sorted(seeds)}


def _middle_groups() -> list[ClassifierSetup]:
    return [_groups_setup(g) for g in TABLE3_GROUPS if g != 1]


def _middle_sizes() -> list[ClassifierSetup]:
    return [_group_size_setup(c) for c in TABLE3_GROUP_SIZES if c != 1]


def claim_specs(errors: Errors) -> dict[str, list[dict[str, Any]]]:
    """Every claim of the three tables, by experiment: ``claim``, ``test``, ``effect`` (:data:`EFFECTS`),
    ``a``/``b`` (seed -> error, d = a - b oriented as the test reads), ``labels``, ``published_ref``,
    ``published``. The pilot plans with these, and :func:`comparisons` decides them."""
    e = errors
    return {
        "table2_batch_size": [
            {
                "claim": f"GN is better than BN at {SMALL} images/device (BN - GN, points)",
                "test": "greater",
                "effect": EFFECTS["gn_beats_bn"],
                **paired_errors(e, _bn(SMALL), _gn(SMALL)),
                "published_ref": f"gn.table2.gn_minus_bn.{SMALL}",
                "published": round(PUB_GN_BEATS_BN, 2),
            },
            {
                "claim": f"BN's error rises from {LARGE} to {SMALL} images/device (points)",
                "test": "greater",
                "effect": EFFECTS["bn_rise"],
                **paired_errors(e, _bn(SMALL), _bn(LARGE)),
                "published_ref": f"gn.table2.bn.{SMALL}",
                "published": round(PUB_BN_RISE, 2),
            },
            {
                "claim": f"GN's error does not change from {LARGE} to {SMALL} images/device (points)",
                "test": "equivalent",
                "effect": EFFECTS["gn_flat"],
                **paired_errors(e, _gn(SMALL), _gn(LARGE)),
                "published_ref": f"gn.table2.gn.{SMALL}",
                "published": round(_pub(f"gn.table2.gn.{SMALL}") - _pub(f"gn.table2.gn.{LARGE}"), 2),
            },
        ],
        "table1_norms": [
            {
                "claim": "LN is worse than GN (LN - GN, points)",
                "test": "greater",
                "effect": EFFECTS["ln_worse"],
                **paired_errors(e, LN, _gn(LARGE)),
                "published_ref": "gn.table1.ln",
                "published": round(PUB_LN_MINUS_GN, 2),
            },
            {
                "claim": "IN is worse than GN (IN - GN, points)",
                "test": "greater",
                "effect": EFFECTS["in_worse"],
                **paired_errors(e, IN, _gn(LARGE)),
                "published_ref": "gn.table1.in",
                "published": round(PUB_IN_MINUS_GN, 2),
            },
            {
                "claim": f"GN is close to BN at {LARGE} images/device (GN - BN, points)",
                "test": "equivalent",
                "effect": EFFECTS["gn_close_to_bn"],
                **paired_errors(e, _gn(LARGE), _bn(LARGE)),
                "published_ref": "gn.table1.gn_minus_bn",
                "published": _pub("gn.table1.gn_minus_bn"),
            },
        ],
        "table3_groups": [
            {
                "claim": f"G = 1 (LN) is worse than the middle range G in {[g for g in TABLE3_GROUPS if g != 1]} "
                "(LN - mean of the middle, points)",
                "test": "greater",
                "effect": EFFECTS["g1_worse"],
                "a": e[LN.label],
                "b": _middle(e, _middle_groups()),
                "labels": (LN.label, "mean of " + ", ".join(s.label for s in _middle_groups())),
                "published_ref": "gn.table3.groups.1",
                "published": round(PUB_LN_MINUS_MIDDLE, 2),
            },
            {
                "claim": f"1 channel per group (IN) is worse than {[c for c in TABLE3_GROUP_SIZES if c != 1]} channels "
                "per group (IN - mean, points)",
                "test": "greater",
                "effect": EFFECTS["c1_worse"],
                "a": e[IN.label],
                "b": _middle(e, _middle_sizes()),
                "labels": (IN.label, "mean of " + ", ".join(s.label for s in _middle_sizes())),
                "published_ref": "gn.table3.channels_per_group.1",
                "published": round(PUB_IN_MINUS_MIDDLE, 2),
            },
        ],
    }


CENTRAL = {"table2_batch_size": 2, "table1_norms": 2, "table3_groups": 2}
"""How many of each table's claims (the first ones) are central; the rest are secondary."""


def planned_claims(errors: Errors) -> list[dict[str, Any]]:
    """The pilot's planned claims: every claim of the three tables."""
    return [c for specs in claim_specs(errors).values() for c in specs]


def comparisons(errors: Errors, n_test: int) -> dict[str, tuple[list[dict[str, Any]], dict[str, str]]]:
    """By experiment: its paired comparisons and its verdict (central claims first, see :data:`CENTRAL`)."""
    out = {}
    for name, specs in claim_specs(errors).items():
        comps = [paired_comparison(**s, unit="points", n_eval=n_test, diverged_value=DIVERGED_ERROR) for s in specs]
        verdicts = [c["verdict"] for c in comps]
        status = central_verdict(central=verdicts[: CENTRAL[name]], others=verdicts[CENTRAL[name] :])
        summary = " ".join(
            f"{c['claim']}: d = {c['ours']['mean_difference']:+.2f}"
            + (f" [{c['ours']['low']:+.2f}, {c['ours']['high']:+.2f}]" if c["ours"]["low"] is not None else "")
            + f" (paper {c['published']:+.2f}), {c['verdict']}."
            for c in comps
        )
        out[name] = (comps, {"status": status, "summary": summary})
    return out


# --------------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------------
def _values(errors: Mapping[str, Any], label: str) -> list[float]:
    """Per-seed errors of a label from ``{label: {seed: error}}`` or ``{label: [errors]}``."""
    v = errors[label]
    return list(v.values()) if isinstance(v, Mapping) else list(v)


def plot_table2(errors: Mapping[str, Any]):
    """Figure 1 / Table 2 analogue: our error vs images per device (mean ± std over seeds), beside the
    paper's Table 2 (from ``published.yaml``). Returns the matplotlib figure."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    rows = []
    for b in IMAGES_PER_DEVICE:
        for name, f in (("BN", _bn), ("GN", _gn)):
            rows += [{"images/device": b, "norm": name, "error": e, "who": "ours"} for e in _values(errors, f(b).label)]
            rows.append(
                {"images/device": b, "norm": name, "error": _pub(f"gn.table2.{name.lower()}.{b}"), "who": "paper"}
            )
    df = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, who, title in (
        (axes[0], "ours", f"ours: ResNet-8, Fashion-MNIST {28 // POOL}px, 8 virtual devices (mean ± std over seeds)"),
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


def plot_tables13(errors: Mapping[str, Any]):
    """Table 1 and Table 3 analogues: ours (top row; bars: mean, whiskers: std over seeds) above the paper's
    values (bottom row, from ``published.yaml``). Returns the matplotlib figure."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    def ours(setups: Sequence[ClassifierSetup], names: Sequence[str]) -> pd.DataFrame:
        return pd.DataFrame(
            [{"setting": n, "error": e} for s, n in zip(setups, names) for e in _values(errors, s.label)]
        )

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
    """Training loss and test error against epochs for BN and GN at the largest and smallest batch per device
    (``curves`` as in a results file), one thin line per seed. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    from reproductions.reporting.notebook import plot_curves

    labels = [s.label for s in (_bn(LARGE), _gn(LARGE), _bn(SMALL), _gn(SMALL))]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    res = {"experiment": "table2_batch_size", "curves": curves, "seeds": list(seeds)}
    plot_curves(res, "train_loss", series=labels, ax=axes[0], logy=True, per_seed=True)
    plot_curves(res, "test_error", series=labels, ax=axes[1], per_seed=True)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------------
EXPERIMENTS = {
    "table2_batch_size": (
        "Table 2 / Figure 1: error vs images per device, BN vs GN",
        "BN's error increases rapidly as the batch per device shrinks, while GN's stays stable across batch "
        f"sizes; at {SMALL} images/GPU GN is {PUB_GN_BEATS_BN:.1f} points better than BN (GN paper §4.1, Table 2, "
        "Figure 1).",
    ),
    "table1_norms": (
        f"Table 1: BN, LN, IN, GN at {LARGE} images per device",
        f"At a large batch GN is close to BN ({_pub('gn.table1.gn_minus_bn'):+.1f} points) and better than LN (by "
        f"{PUB_LN_MINUS_GN:.1f}) and IN (by {PUB_IN_MINUS_GN:.1f}) (GN paper §4.1, Table 1).",
    ),
    "table3_groups": (
        "Table 3: number of groups and channels per group",
        "GN works well over a wide range of groups; the extremes, one group (LN) and one channel per group (IN), "
        "are worse (GN paper §4.1, Table 3).",
    ),
}


def _labels(name: str) -> list[str]:
    if name == "table2_batch_size":
        return [f(b).label for b in IMAGES_PER_DEVICE for f in (_bn, _gn)]
    if name == "table1_norms":
        return [_bn(LARGE).label, LN.label, IN.label, _gn(LARGE).label]
    table3 = [*map(_groups_setup, TABLE3_GROUPS), *map(_group_size_setup, TABLE3_GROUP_SIZES)]
    return list(dict.fromkeys(s.label for s in table3))


def run(
    quick: bool = False, seeds: Sequence[int] | None = None, data: str | None = None, out_dir: str | None = None
) -> list[Path]:
    """Pilot, then every setting with every planned seed (or ``seeds``); write the three results files and
    their figures."""
    if seeds is not None:
        seeds = resolve_seeds(seeds, quick)  # duplicate seeds are an error, before any work
    schedule = QUICK_SCHEDULE if quick else SCHEDULE
    images = ImageData(data, QUICK_N_TRAIN if quick else N_TRAIN, POOL)
    dataset = images.load()
    out = results_dir(PAPER, quick, out_dir)
    setups = settings()
    workers = 1 if quick else default_workers()
    with Timer() as timer:
        records, seeds, pilot = pilot_then_run(
            setups,
            schedule,
            images,
            planned_claims,
            seeds=seeds,
            pilot_seeds=QUICK_PILOT_SEEDS if quick else PILOT_SEEDS,
            maximum=QUICK_SEEDS if quick else MAX_SEEDS,
            minimum=QUICK_SEEDS if quick else 5,
            workers=workers,
            desc="group_norm runs",
        )
    errors = by_seed(records)
    n_test = len(dataset.x_test)
    decided = comparisons(errors, n_test)
    config = {
        "model": f"small_resnet(depth={schedule.depth}, width={schedule.width}), zero-init last gamma",
        "schedule": schedule.describe(),
        "images": {"n_train": images.n_train, "pool": images.pool},
        "gn_default_groups": GROUPS,
        "settings": [s.describe() for s in setups],
        "effects": EFFECTS,
        "error_scale": ERROR_SCALE,
        "diverged_error": DIVERGED_ERROR,
        "evaluation": "test error (%) after the last step, every test image",
        "workers": workers,
        "threads_per_run": 1,
    }
    timings = {"cpu_seconds": sum(r.cpu_seconds for recs in records.values() for r in recs)}
    metrics = {f"test_error.{s.label}": error_stats(records[s.label]) for s in setups}
    metrics |= {f"final_train_loss.{s.label}": loss_stats(records[s.label]) for s in setups}
    curves = run_curves(records, schedule)
    figures = {
        "table2_batch_size": [
            save_figure(plot_table2(errors), out / "fig1_error_vs_batch.png"),
            save_figure(plot_training_curves(curves, seeds), out / "training_curves.png"),
        ],
    }
    figures["table1_norms"] = figures["table3_groups"] = [save_figure(plot_tables13(errors), out / "tables1_3.png")]
    notes = [
        f"CPU scale: ResNet-8 (width {WIDTH}) on {dataset.describe()['split']}; 8 virtual devices. The paper: "
        f"ResNet-50 on ImageNet, 8 GPUs. Compare differences between settings, not absolute errors; one test image "
        f"is {100 / n_test:.2f} points.",
        f"The three results files (Tables 1, 2, 3) come from one run of {len(setups)} settings x {len(seeds)} seeds "
        f"(after the pilot); its time is recorded in each ({timer.seconds:.0f} s wall-clock, "
        f"{timings['cpu_seconds']:.0f} s CPU of the runs over {workers} worker(s)).",
    ]
    paths = []
    for name, (title, claim) in EXPERIMENTS.items():
        comps, verdict = decided[name]
        labels = _labels(name)
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
                metrics={k: v for k, v in metrics.items() if k.split(".", 1)[1] in labels},
                comparisons=comps,
                verdict=verdict,
                figures=figures[name],
                seconds=timer.seconds,
                timings=timings,
                curves={k: {**c, "series": {lb: c["series"][lb] for lb in labels}} for k, c in curves.items()},
                notes=notes,
                pilot=pilot,
                disclosures=DISCLOSURES,
            )
        )
    return paths


def main(argv: Sequence[str] | None = None) -> list[Path]:
    return cli(run, "Group Normalization at CPU scale: Table 2 / Figure 1, Table 1, Table 3", argv)


if __name__ == "__main__":
    main()
