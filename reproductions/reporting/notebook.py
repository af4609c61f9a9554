"""Shared helpers of the notebooks (``notebooks/*.ipynb``) and of the results table
(:mod:`reproductions.reporting.report`): load a paper's results files and its ``published.yaml``, put the
claims in a table, say each verdict in words, and plot with seaborn.

Everything here reads committed files only; nothing trains. Paths resolve from the repository root
(:data:`reproductions.claims.provenance.REPO_ROOT`), so a notebook runs from ``notebooks/`` or from
the root alike. A paper whose results are missing is reported as missing, never as an error, so the
overview works while some experiments have not been run.

    from reproductions.reporting import notebook as nb
    paper = nb.load_paper("batch_norm")
    nb.show_markdown(nb.claims_markdown(paper))
    nb.verdict_table([paper])
    nb.plot_curves(paper.results["mnist_fig1"], "test_accuracy")
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reproductions.claims.provenance import REPO_ROOT
from reproductions.claims.published import PAPERS
from reproductions.claims.results import RESULTS_ROOT_ENV, load_results
from reproductions.reporting.plots import deterministic_matplotlib

__all__ = [
    "PAPERS",
    "PAPER_TITLES",
    "PaperResults",
    "claim_markdown",
    "claims_markdown",
    "format_machine",
    "format_ours",
    "format_published",
    "format_seconds",
    "format_time_on",
    "get_experiment",
    "load_all",
    "load_paper",
    "metrics_table",
    "paired_table",
    "pilot_markdown",
    "plot_curves",
    "plot_ours_vs_published",
    "plot_paired",
    "published_entry",
    "published_settings_table",
    "show_markdown",
    "verdict_rows",
    "verdict_table",
]

deterministic_matplotlib()  # notebook figures: fixed PNG metadata (does nothing outside a notebook kernel)

PAPER_TITLES = {
    "batch_norm": "Batch Normalization (Ioffe & Szegedy 2015)",
    "layer_norm": "Layer Normalization (Ba, Kiros & Hinton 2016)",
    "instance_norm": "Instance Normalization (Ulyanov, Vedaldi & Lempitsky 2016)",
    "group_norm": "Group Normalization (Wu & He 2018)",
    "weight_standardization": "Weight Standardization / BCN (Qiao et al. 2019)",
    "normprop": "Normalization Propagation (Arpit et al. 2016)",
}


@dataclass
class PaperResults:
    """The committed results of one paper, keyed by experiment name, and its published numbers.

    ``missing`` says, in words, what could not be found (no results yet, no published.yaml);
    ``errors`` maps a results file that failed to load (e.g. schema violation) to the reason.
    """

    paper: str
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    published: Any = None
    missing: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return PAPER_TITLES.get(self.paper, self.paper)

    def figure_paths(self, experiment: str) -> list[Path]:
        """Absolute paths of the figures an experiment wrote (beside its results file)."""
        res = self.results[experiment]
        folder = Path(res["_path"]).parent
        return [folder / name for name in res.get("figures", [])]


# --------------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------------
def results_folder(paper: str, root: Path = REPO_ROOT) -> Path:
    return root / "reproductions" / paper / "results"


def load_paper(paper: str, root: Path = REPO_ROOT, results_root: Path | None = None) -> PaperResults:
    """Load every ``reproductions/<paper>/results/*.json`` (or ``results_root/<paper>/*.json``, e.g. a
    run under ``runs/reproduce/<machine-id>/``), validated against the schema, and the paper's
    ``published.yaml`` when they exist. Never raises for missing files."""
    if paper not in PAPERS:
        raise ValueError(f"unknown paper {paper!r}; expected one of {', '.join(PAPERS)}")
    out = PaperResults(paper)
    env_root = os.environ.get(RESULTS_ROOT_ENV)
    if results_root is not None:
        folder = Path(results_root) / paper
    elif env_root:  # the same variable the experiments' --update-committed honours
        folder = Path(env_root) / paper / "results"
    else:
        folder = results_folder(paper, root)
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    for path in files:
        try:
            res = load_results(path)
        except Exception as exc:  # a broken file is reported beside the others, not fatal
            out.errors[path.name] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            continue
        res["_path"] = str(path)
        out.results[res["experiment"]] = res
    if not out.results:
        shown = folder.relative_to(root) if folder.is_relative_to(root) else folder
        out.missing.append(f"no results files under {shown}/ (run `make reproduce PAPER={paper}`)")
    out.published = _load_published(paper, out.missing)
    return out


def load_all(papers: Iterable[str] = PAPERS, root: Path = REPO_ROOT) -> list[PaperResults]:
    return [load_paper(p, root) for p in papers]


def _load_published(paper: str, missing: list[str]) -> Any:
    try:
        from reproductions.claims.published import load_published
    except ImportError:
        missing.append("reproductions/claims/published.py is not available, so published.yaml was not read")
        return None
    try:
        return load_published(paper)
    except FileNotFoundError:
        missing.append(f"no papers/{paper}/published.yaml")
        return None


def published_entry(paper: PaperResults, ref: str | None) -> Any:
    """The published.yaml entry with id ``ref``, else the setting named ``ref``, or None."""
    if not ref or paper.published is None:
        return None
    pub = paper.published
    entries = pub.get("entries", pub) if isinstance(pub, dict) else pub
    if isinstance(entries, dict):
        return entries.get(ref)
    for entry in entries or ():
        entry_id = entry.get("id") if isinstance(entry, dict) else getattr(entry, "id", None)
        if entry_id == ref:
            return entry
    settings = pub.get("settings", {}) if isinstance(pub, dict) else {}
    return settings.get(ref)


# --------------------------------------------------------------------------------------------------
# formatting
# --------------------------------------------------------------------------------------------------
def _num(v: float, digits: int = 3) -> str:
    if v == 0 or 1e-3 <= abs(v) < 1e5:
        return f"{v:.{digits}g}" if abs(v) >= 1 else f"{v:.{digits}f}".rstrip("0").rstrip(".")
    return f"{v:.{digits}g}"


def format_ours(ours: Any, digits: int = 3) -> str:
    """``{"mean", "std", "n"}`` -> ``"0.952 ± 0.004 (3 seeds)"`` (an ``"over"`` key names what ``n``
    counts when it is not seeds, e.g. ``"repeats"``; with ``"std_is_standard_error": true`` the ± is the
    standard error of the mean and the text says so: ``"(standard error, 3 seeds)"``); numbers and
    strings as they are."""
    if ours is None:
        return "—"
    if isinstance(ours, dict) and "mean_difference" in ours:
        d, low, high, n = ours["mean_difference"], ours.get("low"), ours.get("high"), ours.get("n", 1)
        if d is None:
            return "—"
        if low is None or high is None:
            return f"d = {_num(d, digits)} ({n} paired seed{'s' if n != 1 else ''}, no interval)"
        return f"d = {_num(d, digits)}, 95% interval [{_num(low, digits)}, {_num(high, digits)}] ({n} paired seeds)"
    if isinstance(ours, dict) and "mean" in ours:
        mean, std, n = ours.get("mean"), ours.get("std"), ours.get("n", 1)
        unit = ours.get("unit", "")
        unit = f" {unit}" if unit and unit not in ("%",) else unit
        if mean is None:
            per_seed = ", ".join("—" if v is None else _num(v, digits) for v in ours.get("values", []))
            return f"no value in some seed (per seed: {per_seed}; — = never reached or diverged)"
        over = ours.get("over")  # what n counts, when not seeds (e.g. "repeats")
        if over and n == 1:
            count = over
        elif over:
            count = f"{n} {over}"
        else:
            count = f"{n} seed{'s' if n != 1 else ''}"
        if std is None or n <= 1:
            return f"{_num(mean, digits)}{unit} ({count})"
        spread = "standard error, " if ours.get("std_is_standard_error") else ""
        return f"{_num(mean, digits)} ± {_num(std, digits)}{unit} ({spread}{count})"
    if isinstance(ours, dict):
        return "; ".join(f"{k}: {format_ours(v, digits)}" for k, v in ours.items())
    if isinstance(ours, float):
        return _num(ours, digits) if math.isfinite(ours) else str(ours)
    return str(ours)


def format_published(published: Any) -> str:
    if published is None:
        return "—"
    if isinstance(published, float):
        return _num(published, 4)
    return str(published)


def format_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def format_machine(manifest: dict[str, Any]) -> str:
    """The machine a result was measured on, from its manifest: ``"AMD EPYC, 2 cores, 2 threads"``
    (``"CPU model not recorded"`` for manifests that predate it)."""
    machine = manifest.get("machine", {})
    model = machine.get("cpu_model") or "CPU model not recorded"
    cores, threads = machine.get("cpu_count"), machine.get("torch_threads")
    return ", ".join([model, *([f"{cores} cores"] if cores else []), *([f"{threads} threads"] if threads else [])])


def format_time_on(manifest: dict[str, Any]) -> str:
    """A result's time with the machine that measured it: ``"5.1 min (AMD EPYC, 2 cores, 2 threads)"``."""
    seconds = manifest.get("seconds")
    if seconds is None:
        return "—"
    return f"{format_seconds(seconds)} ({format_machine(manifest)})"


def _scale_text(res: dict[str, Any]) -> str:
    ds = res["dataset"]
    seeds = res["seeds"]
    return (
        f"{res['scale']} scale: {ds['name']} ({ds['n_train']:,} train / {ds['n_test']:,} test, {ds['split']}), "
        f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({', '.join(map(str, seeds))})"
    )


def claim_markdown(res: dict[str, Any], paper: PaperResults | None = None) -> str:
    """One experiment in words: the claim, the paper's number, ours, the scale, the verdict and the
    rule that decided it, one comparison per bullet."""
    lines = [f"#### {res['title']}", "", f"**Claim.** {res['claim']}", ""]
    for comp in res["comparisons"]:
        ref = comp.get("published_ref")
        entry = published_entry(paper, ref) if paper is not None else None
        src = f" (`{ref}`{'' if entry is not None or paper is None or not ref else ', not in published.yaml'})"
        lines.append(
            f"- *{comp['claim']}* — **paper:** {format_published(comp.get('published'))}{src if ref else ''}; "
            f"**ours:** {format_ours(comp.get('ours'))}"
            + (f"; gap {_num(comp['gap'])}" if comp.get("gap") is not None else "")
            + f"; **{comp['verdict']}**"
            + (" (**fragile**: one seed left out flips it)" if comp.get("fragile") else "")
            + (f"; {comp['needs']['text']}" if comp.get("needs") else "")
            + (f" — rule: {comp['rule']}" if comp.get("rule") else "")
        )
    seconds = res["manifest"].get("seconds")
    lines += [
        "",
        f"**Scale.** {_scale_text(res)}; {format_seconds(seconds)} on {format_machine(res['manifest'])}.",
        "",
        f"**Verdict: {res['verdict']['status']}.** {res['verdict']['summary']}",
    ]
    for note in res.get("notes", []):
        lines.append(f"\n*Note.* {note}")
    return "\n".join(lines)


def claims_markdown(paper: PaperResults) -> str:
    """Every experiment of a paper in words, or what is missing."""
    parts = [f"### {paper.title}"]
    parts += [f"*Missing:* {m}." for m in paper.missing]
    parts += [f"*Could not load* `{name}`: {why}" for name, why in paper.errors.items()]
    parts += [claim_markdown(res, paper) for res in paper.results.values()]
    return "\n\n".join(parts)


def verdict_rows(papers: Sequence[PaperResults]) -> list[dict[str, Any]]:
    """One row per comparison (claim) of every loaded results file, plus one row per paper with no
    results, saying so. Keys: paper, experiment, claim, published, ours, verdict, rule, seconds,
    command."""
    rows: list[dict[str, Any]] = []
    for paper in papers:
        if not paper.results:
            why = "; ".join(paper.missing[:1] + [f"{k}: {v}" for k, v in paper.errors.items()])
            rows.append(
                {
                    "paper": paper.paper,
                    "experiment": "—",
                    "claim": "—",
                    "published": "—",
                    "ours": "—",
                    "verdict": "missing",
                    "rule": why,
                    "seconds": None,
                    "time": "—",
                    "command": f"make reproduce PAPER={paper.paper}",
                }
            )
            continue
        for name, res in paper.results.items():
            for comp in res["comparisons"]:
                rows.append(
                    {
                        "paper": paper.paper,
                        "experiment": name,
                        "claim": comp["claim"],
                        "published": format_published(comp.get("published")),
                        "ours": format_ours(comp.get("ours")),
                        "verdict": comp["verdict"],
                        "fragile": comp.get("fragile"),
                        "needs": (comp.get("needs") or {}).get("seeds"),
                        "rule": comp.get("rule", ""),
                        "seconds": res["manifest"].get("seconds"),
                        "time": format_time_on(res["manifest"]),
                        "command": f"python -m reproductions.{paper.paper}.cpu",
                    }
                )
    return rows


def verdict_table(papers: Sequence[PaperResults], columns: Sequence[str] | None = None):
    """:func:`verdict_rows` as a pandas DataFrame (``columns`` picks and orders them)."""
    import pandas as pd

    df = pd.DataFrame(verdict_rows(papers))
    cols = list(columns or ("paper", "experiment", "claim", "published", "ours", "verdict", "time"))
    return df[cols]


def get_experiment(paper: PaperResults, experiment: str) -> dict[str, Any] | None:
    """The results of one experiment, or None after displaying why they are missing (so that a
    notebook's later cells can skip their plots instead of failing)."""
    res = paper.results.get(experiment)
    if res is None:
        why = "; ".join(paper.missing + [f"{k}: {v}" for k, v in paper.errors.items()]) or "not in the results folder"
        show_markdown(f"**No results for `{paper.paper}/{experiment}`** ({why}). The cells below show nothing.")
    return res


def metrics_table(res: dict[str, Any], names: Sequence[str] | None = None, prefix: str = ""):
    """The summary metrics of a results file (all, ``names``, or those starting with ``prefix``) as a
    DataFrame: mean ± std and the per-seed values."""
    import pandas as pd

    keys = [k for k in (names or res["metrics"]) if k.startswith(prefix) and k in res["metrics"]]
    rows = []
    for k in keys:
        m = res["metrics"][k]
        vals = ", ".join("—" if v is None else _num(v, 4) for v in m.get("values", []))
        rows.append({"metric": k, "ours": format_ours(m, 4), "per seed": vals, "unit": m.get("unit", "")})
    return pd.DataFrame(rows).set_index("metric") if rows else pd.DataFrame()


def published_settings_table(paper: PaperResults, prefix: str):
    """The paper's experimental settings whose names start with ``prefix`` (published.yaml
    ``settings``) as a DataFrame: value, source, confidence, note."""
    import pandas as pd

    settings = (paper.published or {}).get("settings", {}) if isinstance(paper.published, dict) else {}
    rows = [
        {"setting": k, "value": v.get("value"), "source": v.get("source"), "confidence": v.get("confidence"),
         "note": v.get("note", "")}
        for k, v in settings.items()
        if k.startswith(prefix)
    ]  # fmt: skip
    return pd.DataFrame(rows).set_index("setting") if rows else pd.DataFrame()


def show_markdown(text: str) -> None:
    """Display Markdown in a notebook (plain print elsewhere)."""
    try:
        from IPython.display import Markdown, display
    except ImportError:
        print(text)
        return
    display(Markdown(text))


# --------------------------------------------------------------------------------------------------
# plots
# --------------------------------------------------------------------------------------------------
def _curve_frame(curve: dict[str, Any], series: Sequence[str] | None = None):
    import pandas as pd

    rows = []
    for name, s in curve["series"].items():
        if series is not None and name not in series:
            continue
        for x, m, sd in zip(curve["x"], s["mean"], s["std"]):
            rows.append({"x": x, "series": name, "mean": _nan_if_none(m), "std": _nan_if_none(sd)})
    return pd.DataFrame(rows)


def _nan_if_none(v: float | None) -> float:
    return float("nan") if v is None else float(v)


def plot_curves(
    res: dict[str, Any],
    curve: str,
    *,
    series: Sequence[str] | None = None,
    ax: Any = None,
    title: str | None = None,
    logy: bool = False,
    palette: str = "deep",
    per_seed: bool = False,
):
    """Plot one curve of a results file: the mean over seeds per series, with a ±1 std band; with
    ``per_seed`` (and curves saved with :func:`reproductions.claims.statistics.curve_stats`'s
    ``keep_seeds``) every seed's curve as a thin line of the series' colour instead of the band."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if curve not in res.get("curves", {}):
        raise KeyError(f"{res['experiment']} has no curve {curve!r}; it has {sorted(res.get('curves', {}))}")
    c = res["curves"][curve]
    df = _curve_frame(c, series)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    colors = sns.color_palette(palette, n_colors=max(df["series"].nunique(), 1))
    for color, (name, g) in zip(colors, df.groupby("series", sort=False)):
        g = g.dropna(subset=["mean"])
        sns.lineplot(x=g["x"], y=g["mean"], ax=ax, label=name, color=color)
        seeds = c["series"][name].get("per_seed") if per_seed else None
        if seeds:
            for curve_of_seed in seeds:
                ax.plot(c["x"], [_nan_if_none(v) for v in curve_of_seed], color=color, alpha=0.35, linewidth=0.7)
            continue
        std = g["std"].fillna(0.0)
        ax.fill_between(g["x"], g["mean"] - std, g["mean"] + std, color=color, alpha=0.2, linewidth=0)
    ax.set_xlabel(c["x_label"])
    ax.set_ylabel(c["y_label"])
    if logy:
        ax.set_yscale("log")
    n = len(res["seeds"])
    spread = "thin lines: each seed" if per_seed else "band: ± std"
    ax.set_title(title or f"{curve} (mean over {n} seed{'s' if n != 1 else ''}; {spread})")
    return ax


# --------------------------------------------------------------------------------------------------
# paired comparisons (reproductions.claims.paired)
# --------------------------------------------------------------------------------------------------
def paired_comparisons(res: dict[str, Any]) -> list[dict[str, Any]]:
    """The comparisons of a results file decided on paired seeds (those with a ``paired`` record)."""
    return [c for c in res["comparisons"] if isinstance(c.get("paired"), dict)]


def paired_table(res: dict[str, Any]):
    """One row per paired comparison: the claim, the test and its effect or margin (fixed before the run),
    the mean paired difference and its 95 % interval, the seeds, the power at the observed spread, the
    verdict, whether it is fragile (a seed left out flips it) and the seeds a "not testable" claim needs."""
    import pandas as pd

    rows = []
    for c in paired_comparisons(res):
        ours = c.get("ours") or {}
        power = c.get("power") or {}
        a, b = c.get("labels", ["a", "b"])
        rows.append(
            {
                "claim": c["claim"],
                "d = a - b": f"{a} − {b}",
                "test": c["test"],
                "effect / margin": f"{_num(c['effect'])} {c['unit']}"
                + (f" ({_num(c['effect_images'])} test images)" if c.get("effect_images") is not None else ""),
                "mean d": ours.get("mean_difference"),
                "95% low": ours.get("low"),
                "95% high": ours.get("high"),
                "seeds": ours.get("n"),
                "power": power.get("at_n"),
                "verdict": c["verdict"],
                "fragile": c.get("fragile"),
                "seeds needed": (c.get("needs") or {}).get("seeds"),
            }
        )
    return pd.DataFrame(rows)


def plot_paired(res: dict[str, Any], axes: Any = None, *, ncols: int = 3):
    """One panel per paired comparison: each seed's difference d = a − b (dots), their mean with its 95 %
    interval (bar), zero (grey) and the effect of interest or the margin(s) (dashed), with the verdict in
    the title. Returns the axes (None when the results hold no paired comparison)."""
    import matplotlib.pyplot as plt
    import numpy as np

    comps = paired_comparisons(res)
    if not comps:
        return None
    if axes is None:
        cols = min(ncols, len(comps))
        rows = math.ceil(len(comps) / cols)
        _, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    flat = list(np.ravel(axes))
    for ax, c in zip(flat, comps):
        d = [_nan_if_none(v) for v in c["paired"]["d"]]
        ax.scatter(range(len(d)), d, color="tab:blue", s=18, zorder=3, label="per seed")
        ours = c.get("ours") or {}
        m, low, high = ours.get("mean_difference"), ours.get("low"), ours.get("high")
        x_mean = len(d) + 0.5
        if m is not None:
            if low is not None and high is not None:
                ax.errorbar([x_mean], [m], yerr=[[m - low], [high - m]], fmt="o", color="black", capsize=4)
            else:
                ax.plot([x_mean], [m], "o", color="black")
        ax.axhline(0.0, color="grey", linewidth=0.8)
        e = c["effect"]
        if c["test"] == "equivalent":
            for v in (-e, e):
                ax.axhline(v, color="tab:red", linestyle="--", linewidth=0.8)
        else:
            ax.axhline(e, color="tab:red", linestyle="--", linewidth=0.8)
        ax.set_xticks([*range(len(d)), x_mean])
        ax.set_xticklabels([*map(str, c["paired"]["seeds"]), "mean"], fontsize=7)
        a, b = c.get("labels", ["a", "b"])
        ax.set_ylabel(f"{a} − {b} ({c['unit']})", fontsize=8)
        fragile = ", fragile" if c.get("fragile") else ""
        title = c["claim"] if len(c["claim"]) <= 60 else c["claim"][:57] + "..."
        ax.set_title(f"{title}\n{c['verdict']}{fragile}", fontsize=8)
    for ax in flat[len(comps) :]:
        ax.set_visible(False)
    return axes


def pilot_markdown(res: dict[str, Any]) -> str:
    """The pilot that chose the number of seeds, in words (or why there was none), and the disclosures."""
    pilot = res.get("pilot")
    lines: list[str] = []
    if not pilot:
        lines.append("*No pilot recorded for this experiment.*")
    elif "skipped" in pilot:
        lines.append(f"*No pilot:* {pilot['skipped']}.")
    else:
        lines.append(
            f"**Pilot.** Seeds {', '.join(map(str, pilot['pilot_seeds']))} (not reused) estimated the spread of the "
            f"paired differences; rule: {pilot['rule']}. The run used **{pilot['n']} seeds** "
            f"({', '.join(map(str, pilot['seeds']))})"
            + (f"; the budget capped it (at most {pilot['maximum']})." if pilot.get("capped") else ".")
        )
        for c in pilot["claims"]:
            needed = "no number of seeds" if c["needed"] is None else f"{c['needed']} seeds"
            power = c.get("power_at_n")
            lines.append(
                f"- *{c['claim']}* ({c['test']}, effect/margin {_num(c['effect'])}): pilot paired sd {_num(c['sd'])}, "
                f"mean {_num(c['mean'])}; needs {needed} for {pilot['power']:.0%} power"
                + (f"; power with {pilot['n']} seeds: {power:.0%}" if power is not None else "")
            )
    disclosures = res.get("disclosures")
    if disclosures is not None:
        lines.append("")
        if disclosures:
            lines.append("**Changed after seeing results:**")
            lines += [f"- {d}" for d in disclosures]
        else:
            lines.append("**Changed after seeing results:** nothing (every rule, margin and setting was fixed before).")
    return "\n".join(lines)


def plot_ours_vs_published(res: dict[str, Any], *, ax: Any = None, title: str | None = None):
    """Bars of our value (mean, error bar: its ± as :func:`format_ours` states it, the std over seeds
    or the standard error) beside the paper's, for every comparison where both are numbers. Returns None
    (and draws nothing) when the paper gives no number to set beside ours."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    rows = []
    for comp in res["comparisons"]:
        pub, ours = comp.get("published"), comp.get("ours")
        if not isinstance(pub, (int, float)) or isinstance(pub, bool):
            continue
        if isinstance(ours, dict) and ours.get("mean") is not None:
            rows.append({"claim": comp["claim"], "who": "ours (CPU scale)", "value": ours["mean"], "err": ours["std"]})
        elif isinstance(ours, (int, float)):
            rows.append({"claim": comp["claim"], "who": "ours (CPU scale)", "value": ours, "err": 0.0})
        else:
            continue
        rows.append({"claim": comp["claim"], "who": "paper", "value": float(pub), "err": 0.0})
    if not rows:
        return None
    df = pd.DataFrame(rows)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.6 + 0.5 * df["claim"].nunique()))
    sns.barplot(data=df, y="claim", x="value", hue="who", ax=ax, orient="h", errorbar=None)
    for patch, err in zip(ax.patches, df.sort_values(["who"], kind="stable")["err"]):
        if err:
            y = patch.get_y() + patch.get_height() / 2
            ax.errorbar(patch.get_width(), y, xerr=err, color="black", capsize=3)
    ax.set_title(title or "ours vs published (error bars: std over seeds, or standard error where stated)")
    ax.set_ylabel("")
    return ax
