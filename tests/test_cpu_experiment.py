"""What every CPU experiment shares (reproductions/smallscale/experiment.py, reproductions/run_all.py,
reproductions/errors.py): user errors on the command line, where results go on this and on other
machines, the machine and timings in the manifest, and the one list of papers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reproductions import run_all
from reproductions.claims import provenance
from reproductions.claims.published import PAPERS
from reproductions.claims.results import load_results
from reproductions.smallscale import experiment


def _main_exit(capsys, argv: list[str]) -> tuple[int, str]:
    from reproductions.group_norm import cpu

    with pytest.raises(SystemExit) as exc:
        cpu.main(argv)
    return exc.value.code, capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# user errors
# --------------------------------------------------------------------------------------------------
def test_duplicate_seeds_are_a_user_error(capsys):
    code, err = _main_exit(capsys, ["--quick", "--seeds", "0", "0"])
    assert code == 2
    assert "seed 0 is given more than once" in err and "independent seed" in err and "--seeds 0 1 2" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("paper", PAPERS)
def test_every_experiment_rejects_duplicate_seeds_before_training(paper, tmp_path):
    import importlib

    from reproductions.errors import UserError

    cpu = importlib.import_module(f"reproductions.{paper}.cpu")
    with pytest.raises(UserError, match="more than once"):
        cpu.run(quick=True, seeds=[1, 2, 1], out_dir=tmp_path)


def test_zero_threads_is_a_user_error(capsys):
    code, err = _main_exit(capsys, ["--quick", "--threads", "0"])
    assert code == 2 and "--threads 0" in err and "at least 1" in err and "Traceback" not in err


def test_debug_shows_the_error_itself():
    from reproductions.errors import UserError
    from reproductions.group_norm import cpu

    with pytest.raises(UserError, match="more than once"):
        cpu.main(["--quick", "--seeds", "3", "3", "--debug"])


def test_update_committed_refuses_quick_runs_and_out(capsys, monkeypatch):
    monkeypatch.delenv(experiment.RESULTS_ROOT_ENV, raising=False)
    code, err = _main_exit(capsys, ["--quick", "--update-committed"])
    assert code == 2 and "never committed" in err
    code, err = _main_exit(capsys, ["--update-committed", "--out", "x"])
    assert code == 2 and "leave out --out" in err
    with pytest.raises(SystemExit) as exc:
        run_all.main(["--quick", "--update-committed"])
    assert exc.value.code == 2


# --------------------------------------------------------------------------------------------------
# where results go
# --------------------------------------------------------------------------------------------------
def _committed(root: Path, paper: str, machine: dict) -> None:
    folder = root / paper / "results"
    folder.mkdir(parents=True)
    (folder / "x.json").write_text(json.dumps({"manifest": {"machine": machine}}))


def test_destination_depends_on_the_machine_of_the_committed_results(tmp_path, monkeypatch):
    monkeypatch.setenv(experiment.RESULTS_ROOT_ENV, str(tmp_path))
    here = provenance.machine_id()
    committed = tmp_path / "group_norm" / "results"
    assert experiment.destination("group_norm")[0] == committed  # nothing committed yet
    _committed(tmp_path, "group_norm", {"id": here})
    assert experiment.destination("group_norm")[0] == committed  # made here
    _committed(tmp_path, "normprop", {"cpu_model": "Intel(R) Xeon(R) CPU @ 2.20GHz", "cpu_count": 2})
    path, why = experiment.destination("normprop")
    assert path == experiment.RUNS_DIR / "reproduce" / here / "normprop"
    assert "intel-xeon-2cores" in why and "UPDATE_COMMITTED=1" in why
    assert experiment.destination("normprop", update_committed=True)[0] == tmp_path / "normprop" / "results"
    _committed(tmp_path, "layer_norm", {"processor": "x86_64", "cpu_count": 2})  # an old manifest: no CPU model
    assert experiment.destination("layer_norm")[0].parts[-4:-1] == ("runs", "reproduce", here)


def test_cpu_description_and_machine_id():
    info = provenance.cpu_description(
        "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse4_2 avx avx2 fma\n"
    )
    assert info == {"cpu_model": "AMD EPYC 7B13", "isa": ["sse4_2", "avx", "avx2", "fma"]}
    assert provenance.machine_id({"cpu_model": "AMD EPYC 7B13", "cpu_count": 2}) == "amd-epyc-7b13-2cores"


def _fake_runs(monkeypatch) -> list:
    calls: list = []
    monkeypatch.setattr(
        run_all, "run_experiment", lambda paper, quick, out=None, data=None: calls.append((paper, out)) or ("ok", 0.0)
    )
    monkeypatch.setattr(
        run_all, "ensure_data", lambda data, install: calls.append(("data", data, install)) or Path("d")
    )
    monkeypatch.setattr(run_all, "execute_notebook", lambda path: calls.append(("notebook", path.name)) or 0.0)
    from reproductions.reporting import report

    monkeypatch.setattr(report, "main", lambda argv: calls.append(("report", tuple(argv))) or 0)
    return calls


def test_make_reproduce_on_another_machine_leaves_committed_files_alone(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(experiment.RESULTS_ROOT_ENV, str(tmp_path))
    _committed(tmp_path, "normprop", {"id": "intel-xeon-2cores"})
    monkeypatch.setattr(experiment, "RUNS_DIR", tmp_path / "runs")
    calls = _fake_runs(monkeypatch)
    assert run_all.main(["--paper", "normprop"]) == 0
    here = provenance.machine_id()
    # the data first, then the experiment; no notebooks, no report
    assert calls == [("data", None, True), ("normprop", tmp_path / "runs" / "reproduce" / here / "normprop")]
    out = capsys.readouterr().out
    assert "another machine" in out and "UPDATE_COMMITTED=1" in out
    assert (tmp_path / "runs" / "reproduce" / here / "RESULTS.md").is_file()


def test_update_committed_writes_the_committed_results_then_notebooks_and_report(tmp_path, monkeypatch):
    monkeypatch.setenv(experiment.RESULTS_ROOT_ENV, str(tmp_path))
    _committed(tmp_path, "normprop", {"id": "intel-xeon-2cores"})
    calls = _fake_runs(monkeypatch)
    assert run_all.main(["--paper", "normprop", "--update-committed"]) == 0
    assert calls == [
        ("data", None, True),
        ("normprop", tmp_path / "normprop" / "results"),
        ("notebook", "normprop.ipynb"),
        ("notebook", "overview.ipynb"),
        ("report", ()),
    ]


def test_run_all_starts_each_experiment_in_its_own_process(monkeypatch):
    seen = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: seen.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    assert run_all.run_experiment("layer_norm", True, Path("o"))[0] == "ok"
    assert seen == [[sys.executable, "-m", "reproductions.layer_norm.cpu", "--quick", "--out", "o"]]
    run_all.run_experiment("layer_norm", False, None, data="/d")
    assert seen[-1] == [sys.executable, "-m", "reproductions.layer_norm.cpu", "--data", "/d"]


def test_run_all_stops_with_a_fix_when_fashion_mnist_is_missing(tmp_path, capsys, monkeypatch):
    """Missing data is a user error before any experiment starts: the message names the package, --data and
    torchvision's download (nothing is installed with --no-install)."""
    monkeypatch.delenv("NORMCORE_FASHION_MNIST_MANIFEST", raising=False)
    started = []
    monkeypatch.setattr(run_all, "run_experiment", lambda *a, **k: started.append(a) or ("ok", 0.0))
    with pytest.raises(SystemExit) as exc:
        run_all.main(["--paper", "normprop", "--data", str(tmp_path / "nowhere"), "--no-install"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and not started
    assert "dataset-fashion-mnist" in err and "--data" in err and "download=True" in err


@pytest.mark.slow
def test_update_committed_end_to_end_in_a_temporary_folder(tmp_path, fashion_mnist_dir):
    """``python -m reproductions.<paper>.cpu --update-committed`` (what ``make reproduce PAPER=x
    UPDATE_COMMITTED=1`` runs) writes the committed results folder, here redirected to a temporary one,
    with this machine in the manifest and the timings outside the hashed config."""
    env = {**os.environ, experiment.RESULTS_ROOT_ENV: str(tmp_path), "NORMCORE_NO_PROGRESS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "reproductions.batch_norm.cpu", "--quick", "--update-committed",
         "--data", str(fashion_mnist_dir)],
        cwd=provenance.REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = load_results(tmp_path / "batch_norm" / "results" / "mnist_fig1.json")
    machine = res["manifest"]["machine"]
    assert machine["id"] == provenance.machine_id() and machine["cpu_model"]
    assert {"isa", "torch_threads", "torch_interop_threads", "thread_env"} <= set(machine)
    assert res["manifest"]["config_hash"] == provenance.config_hash(res["config"])
    assert "--update-committed: writing the committed results" in proc.stdout


def test_timings_stay_out_of_the_hashed_config(tmp_path):
    from reproductions.smallscale.experiment import finish_experiment

    kw = dict(
        paper="group_norm", experiment="t", quick=True, title="t", claim="c", seeds=[0], metrics={},
        comparisons=[], verdict={"status": "reproduced", "summary": "s"}, figures=[], config={"a": 1},
        dataset={"name": "n", "source": "s", "n_train": 1, "n_test": 1, "split": "x"},
    )  # fmt: skip
    a = json.loads(finish_experiment(tmp_path / "a.json", seconds=1.0, timings={"cpu_seconds": 3.0}, **kw).read_text())
    b = json.loads(finish_experiment(tmp_path / "b.json", seconds=9.0, timings={"cpu_seconds": 7.0}, **kw).read_text())
    assert a["manifest"]["config_hash"] == b["manifest"]["config_hash"]
    assert a["manifest"]["timings"] == {"cpu_seconds": 3.0}


@pytest.mark.parametrize("paper", ["group_norm", "weight_standardization"])
def test_no_experiment_puts_timings_in_its_config(paper):
    source = (provenance.REPO_ROOT / "reproductions" / paper / "cpu.py").read_text()
    assert '"cpu_seconds":' not in source.split("config = {", 1)[1].split("}", 1)[0]


# --------------------------------------------------------------------------------------------------
# one list of papers
# --------------------------------------------------------------------------------------------------
def test_the_list_of_papers_is_defined_once():
    from reproductions.claims.results import SCHEMA_PATH
    from reproductions.reporting import notebook

    schema = json.loads(SCHEMA_PATH.read_text())
    assert tuple(schema["properties"]["paper"]["enum"]) == PAPERS
    assert notebook.PAPERS is PAPERS and run_all.PAPERS is PAPERS


def test_run_all_hands_the_experiments_an_absolute_data_folder(tmp_path, monkeypatch):
    """The experiments run from the repository root, so a relative --data is resolved before they start."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fm").mkdir()
    given = []
    monkeypatch.setattr(run_all, "ensure_data", lambda data, install: Path(data))
    monkeypatch.setattr(run_all, "run_experiment", lambda *a, data=None: given.append(data) or ("ok", 0.0))
    assert run_all.main(["--paper", "normprop", "--quick", "--data", "fm"]) == 0
    assert given == [str(tmp_path / "fm")]
