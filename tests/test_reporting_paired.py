"""The notebooks' views of paired claims (reproductions/reporting/notebook.py): the table, the plot, the
pilot in words, per-seed curves, and reading results from NORMCORE_RESULTS_ROOT."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest

from reproductions.claims import paired
from reproductions.claims.results import RESULTS_ROOT_ENV, validate_results
from reproductions.claims.statistics import curve_stats
from reproductions.reporting import notebook as nb
from reproductions.smallscale.experiment import finish_experiment


def _results(tmp_path, paper: str = "normprop"):
    a = {0: 10.0, 1: 11.0, 2: 12.0, 3: 10.5, 4: 11.5}
    b = {0: 8.1, 1: 9.2, 2: 10.0, 3: 8.0, 4: 9.0}
    comps = [
        paired.paired_comparison("a beats b", a, b, test="greater", effect=1.0, labels=("A", "B"), unit="points"),
        paired.paired_comparison("a equals b", a, b, test="equivalent", effect=0.5, labels=("A", "B"), unit="points"),
    ]
    pilot_values = {1000: 1.0, 1001: 2.0, 1002: 1.5}
    plan = paired.plan_seeds(
        [
            {
                "claim": "a beats b",
                "test": "greater",
                "effect": 1.0,
                "a": pilot_values,
                "b": dict.fromkeys(pilot_values, 0),
            }
        ],
        maximum=10,
        first_seed=0,
    )
    curves = {"loss": {"x": [0, 1, 2], "x_label": "step", "y_label": "loss",
                       "series": {"A": curve_stats([[3, 2, 1], [3, 2.5, 1.5]], keep_seeds=True)}}}  # fmt: skip
    folder = tmp_path / paper / "results"
    folder.mkdir(parents=True)
    return finish_experiment(
        folder / "t.json", paper=paper, experiment="t", quick=True, title="t", claim="c",
        dataset={"name": "n", "source": "s", "n_train": 1, "n_test": 1, "split": "x", "n_val": 0},
        seeds=[0, 1], config={}, metrics={}, comparisons=comps, curves=curves,
        verdict={"status": "partly reproduced", "summary": "s"}, figures=[], seconds=1.0,
        pilot=plan, disclosures=["the margin was 0.4 before the first run"],
    )  # fmt: skip


def test_notebook_views_of_a_paired_results_file(tmp_path, monkeypatch):
    _results(tmp_path)
    monkeypatch.setenv(RESULTS_ROOT_ENV, str(tmp_path))
    res = nb.load_paper("normprop").results["t"]
    validate_results({k: v for k, v in res.items() if k != "_path"})
    table = nb.paired_table(res)
    assert list(table["verdict"]) == ["reproduced", "not reproduced"]
    assert table["seeds"].tolist() == [5, 5] and table["power"].between(0, 1).all()
    axes = nb.plot_paired(res)
    assert sum(ax.get_visible() for ax in axes.ravel()) == 2
    text = nb.pilot_markdown(res)
    assert "1000, 1001, 1002" in text and "the margin was 0.4" in text
    ax = nb.plot_curves(res, "loss", per_seed=True)
    assert len(ax.lines) == 3  # the mean and one line per seed
    md = nb.claim_markdown(res)
    assert "95% interval" in md and "fragile" not in md.split("a beats b")[1].split("\n")[0]


def test_pilot_markdown_without_a_pilot():
    assert "No pilot recorded" in nb.pilot_markdown({"comparisons": []})
    assert "--seeds given" in nb.pilot_markdown({"pilot": {"skipped": "--seeds given"}})


def test_a_results_file_without_paired_comparisons_has_no_paired_plot():
    assert nb.plot_paired({"comparisons": [{"claim": "x", "verdict": "reproduced"}]}) is None
    with pytest.raises(KeyError):
        nb.plot_curves({"experiment": "t", "curves": {}, "seeds": [0]}, "loss")
