"""The committed results (``reproductions/<paper>/results/*.json``) were produced by the committed code.

For every results file: it validates against the schema, is a CPU-scale run (``scale: cpu``) over at
least 3 seeds, records the git commit it was made at (a commit of this repository when the history is
available), its figures exist, the published.yaml ids it cites exist, and -- the check that catches
stale results -- the fingerprints of the files its experiment imported (``manifest.source_hashes``)
equal those of the same files in the current tree.

While experiment code changes during development, the last check fails: that is its job. The failure
names the results file, the files that were added, removed or edited, and the command that regenerates
it; the committed results are regenerated with ``make reproduce UPDATE_COMMITTED=1`` once the code is
final. Each experiment imports only its own paper's code (it runs in its own process), so a change to one
paper's experiment leaves the other papers' results valid (tested below on a fresh quick run).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from reproductions.claims.provenance import REPO_ROOT, stale_reason
from reproductions.claims.results import load_results

RESULTS = sorted(REPO_ROOT.glob("reproductions/*/results/*.json"))
IDS = [p.relative_to(REPO_ROOT).as_posix() for p in RESULTS]
COMMIT = re.compile(r"^[0-9a-f]{40}$")

results_files = pytest.mark.parametrize("path", RESULTS, ids=IDS)


def _regenerate(path: Path) -> str:
    return f"make reproduce PAPER={path.parent.parent.name} UPDATE_COMMITTED=1"


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)


def _full_history() -> bool:
    try:
        out = _git("rev-parse", "--is-shallow-repository")
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and out.stdout.strip() == "false"


@results_files
def test_schema_scale_seeds_and_commit(path):
    res = load_results(path)  # raises with the failing field when the schema is broken
    rel = path.relative_to(REPO_ROOT)
    assert res["paper"] == path.parent.parent.name, f"{rel} says paper {res['paper']!r}"
    assert path.stem == res["experiment"], f"{rel}: file name and experiment {res['experiment']!r} differ"
    assert res["scale"] == "cpu", (
        f"{rel} has scale {res['scale']!r}: only full CPU-scale runs are committed ({_regenerate(path)})"
    )
    assert len(set(res["seeds"])) >= 3, f"{rel} was run with seeds {res['seeds']}; at least 3 are required"
    assert COMMIT.match(res["manifest"]["git_commit"]), f"{rel} records no git commit; {_regenerate(path)}"


@results_files
def test_code_fingerprint_matches_the_current_tree(path):
    res = load_results(path)
    rel = path.relative_to(REPO_ROOT)
    why = stale_reason(res["manifest"])
    assert why is None, (
        f"{rel} is stale: the code that produced it has changed since (other than comments, docstrings or "
        f"formatting) -- {why}. Regenerate: {_regenerate(path)}"
    )


@results_files
def test_recorded_commit_is_in_this_repository(path):
    if not _full_history():
        pytest.skip("no full git history here (e.g. a shallow CI clone)")
    commit = load_results(path)["manifest"]["git_commit"]
    rel = path.relative_to(REPO_ROOT)
    assert _git("cat-file", "-e", f"{commit}^{{commit}}").returncode == 0, (
        f"{rel} was made at commit {commit}, which is not in this repository; {_regenerate(path)}"
    )
    assert _git("merge-base", "--is-ancestor", commit, "HEAD").returncode == 0, (
        f"{rel} was made at commit {commit}, which is not an ancestor of HEAD; {_regenerate(path)}"
    )


@results_files
def test_figures_exist_beside_the_results(path):
    res = load_results(path)
    for name in res["figures"]:
        figure = path.parent / name
        assert figure.is_file(), f"{path.relative_to(REPO_ROOT)} lists figure {name}, which is missing"
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{figure} is not a PNG"


@results_files
def test_published_refs_resolve_in_published_yaml(path):
    """A comparison's ``published_ref`` that looks like an id of the paper's published.yaml (its
    ``id_prefix``) or names one of its settings must exist there. (A comparison may quote a number
    derived from several entries, e.g. a difference, so the quoted value itself is not checked.)"""
    from reproductions.claims.published import load_published

    res = load_results(path)
    published = load_published(res["paper"])
    known = {e["id"] for e in published["entries"]} | set(published["settings"])
    prefix = published["id_prefix"] + "."
    unknown = [
        c["published_ref"]
        for c in res["comparisons"]
        if c.get("published_ref", "").startswith(prefix) and c["published_ref"] not in known
    ]
    assert not unknown, f"{path.name}: published_ref not in papers/{res['paper']}/published.yaml: {unknown}"


def test_results_tables_in_results_md_and_readme_are_up_to_date():
    """RESULTS.md and the README's results section are generated from the committed results files;
    after new results, `python -m reproductions.reporting.report` (run by `make reproduce`) must be rerun."""
    from reproductions.reporting import report

    assert report.main(["--check"]) == 0, "run `python -m reproductions.reporting.report`"


def test_readme_section_is_replaced_between_the_markers_only():
    from reproductions.reporting.report import README_BEGIN, README_END, readme_with_results

    readme = f"intro\n{README_BEGIN}\nold table\n{README_END}\noutro\n"
    new = readme_with_results(readme, "## Results at CPU scale\n\n| a |\n")
    assert new.startswith("intro\n") and new.endswith(f"{README_END}\noutro\n")
    assert "old table" not in new and "## Results at CPU scale" in new and "| a |" in new
    with pytest.raises(ValueError, match="markers"):
        readme_with_results("no markers", "x")


# --------------------------------------------------------------------------------------------------
# per-file provenance
# --------------------------------------------------------------------------------------------------
def _write(root: Path, rel: str, text: str) -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text, encoding="utf-8")


def test_stale_reason_names_added_removed_and_edited_files(tmp_path):
    from reproductions.claims.provenance import source_fingerprint, source_hashes

    _write(tmp_path, "reproductions/a.py", '"""A."""\nimport reproductions.b\nX = 1\n')
    _write(tmp_path, "reproductions/b.py", "Y = 2\n")
    files = ["reproductions/a.py", "reproductions/b.py"]
    manifest = {
        "source_files": files,
        "source_hash": source_fingerprint(files, tmp_path),
        "source_hashes": source_hashes(files, tmp_path),
    }
    assert stale_reason(manifest, tmp_path) is None
    _write(tmp_path, "reproductions/a.py", '"""A, reworded."""\nimport reproductions.b\n\nX = 1  # comment\n')
    assert stale_reason(manifest, tmp_path) is None  # docstrings, comments and layout do not count
    _write(tmp_path, "reproductions/a.py", "import reproductions.b\nimport reproductions.c\nX = 3\n")
    _write(tmp_path, "reproductions/c.py", "Z = 0\n")
    (tmp_path / "reproductions/b.py").unlink()
    assert stale_reason(manifest, tmp_path) == (
        "added: reproductions/c.py; removed: reproductions/b.py; edited: reproductions/a.py"
    )


def test_an_import_inside_a_function_that_did_not_run_is_not_an_added_file(tmp_path):
    """A function-level (lazy) import runs only when the function is called; if it ran, the module is in
    the manifest already. Only imports that run at import time can add a file."""
    from reproductions.claims.provenance import source_fingerprint, source_hashes

    lazy = "def build():\n    from reproductions.extra import f\n    return f()\n"
    _write(tmp_path, "reproductions/a.py", lazy)
    _write(tmp_path, "reproductions/extra.py", "def f():\n    return 1\n")
    files = ["reproductions/a.py"]
    manifest = {
        "source_files": files,
        "source_hash": source_fingerprint(files, tmp_path),
        "source_hashes": source_hashes(files, tmp_path),
    }
    assert stale_reason(manifest, tmp_path) is None
    _write(tmp_path, "reproductions/a.py", "import reproductions.extra\n" + lazy)
    assert stale_reason(manifest, tmp_path) == "added: reproductions/extra.py; edited: reproductions/a.py"


def test_stale_reason_of_a_manifest_without_per_file_hashes_says_so(tmp_path):
    from reproductions.claims.provenance import source_fingerprint

    _write(tmp_path, "reproductions/a.py", "X = 1\n")
    manifest = {
        "source_files": ["reproductions/a.py"],
        "source_hash": source_fingerprint(["reproductions/a.py"], tmp_path),
    }
    assert stale_reason(manifest, tmp_path) is None
    _write(tmp_path, "reproductions/a.py", "X = 2\n")
    assert "predates per-file hashes" in stale_reason(manifest, tmp_path)


@pytest.mark.slow
def test_a_change_to_one_paper_leaves_the_other_papers_results_valid(tmp_path, fashion_mnist_dir):
    """A fresh experiment run (its own process, as ``run_all`` starts it) records only the files it imports:
    its own cpu.py and the shared code, never another paper's experiment or the report renderer; so editing
    another paper's cpu.py leaves its results valid, and editing its own makes them stale."""
    import shutil
    import sys

    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "reproductions.batch_norm.cpu", "--quick", "--out", str(out), "--data",
         str(fashion_mnist_dir)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "NORMCORE_NO_PROGRESS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = load_results(out / "mnist_fig1.json")["manifest"]
    files = manifest["source_files"]
    assert "reproductions/batch_norm/cpu.py" in files and "reproductions/claims/provenance.py" in files
    others = [
        f for f in files if re.match(r"reproductions/(?!batch_norm/)[a-z_]+/cpu\.py$", f) or "reporting/report" in f
    ]
    assert not others, f"the batch_norm experiment fingerprints files it does not need: {others}"
    assert set(manifest["source_hashes"]) == set(files)
    copy = tmp_path / "tree"
    for rel in [*files, "reproductions/layer_norm/cpu.py"]:
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / rel, copy / rel)
    assert stale_reason(manifest, copy) is None
    with (copy / "reproductions/layer_norm/cpu.py").open("a") as fh:
        fh.write("\nCHANGED = True\n")
    assert stale_reason(manifest, copy) is None  # another paper's change: batch_norm's results stay valid
    with (copy / "reproductions/batch_norm/cpu.py").open("a") as fh:
        fh.write("\nCHANGED = True\n")
    assert stale_reason(manifest, copy) == "edited: reproductions/batch_norm/cpu.py"


def test_readme_summary_counts_each_verdict_per_paper_and_links_the_full_table():
    from reproductions.reporting.notebook import PaperResults
    from reproductions.reporting.report import render_summary

    manifest = {"seconds": 306.0, "machine": {"cpu_model": "AMD EPYC 7B13", "cpu_count": 2, "torch_threads": 2}}
    verdicts = (("a", "reproduced", True), ("b", "not reproduced", False), ("c", "reproduced", None))
    comps = [{"claim": c, "verdict": v, "fragile": f} for c, v, f in verdicts]
    res = {"experiment": "t", "comparisons": comps, "manifest": manifest}
    text = render_summary([PaperResults("group_norm", results={"t": res}), PaperResults("normprop")])
    machine = "5.1 min (AMD EPYC 7B13, 2 cores, 2 threads)"
    assert f"| [group_norm](notebooks/group_norm.ipynb) | 3 | 2 | 0 | 1 | 0 | 1 | {machine} |" in text
    assert "| [normprop](notebooks/normprop.ipynb) | no results | 0 | 0 | 0 | 0 | 0 | — |" in text
    bad = {"experiment": "t", "comparisons": [{"claim": "a", "verdict": "sort of"}], "manifest": manifest}
    with pytest.raises(ValueError, match="vocabulary"):
        render_summary([PaperResults("group_norm", results={"t": bad})])
    assert "](reproductions/RESULTS.md)" in text


def test_results_table_gives_each_time_with_the_machine_that_measured_it():
    from reproductions.reporting.notebook import PaperResults
    from reproductions.reporting.report import render

    manifest = {"seconds": 306.0, "git_commit": "a" * 40,
                "machine": {"cpu_model": "AMD EPYC 7B13", "cpu_count": 2, "torch_threads": 2}}  # fmt: skip
    res = {"experiment": "t", "comparisons": [], "manifest": manifest}
    old = {"experiment": "u", "comparisons": [], "manifest": {"seconds": 60.0, "machine": {"cpu_count": 2}}}
    text = render([PaperResults("group_norm", results={"t": res, "u": old})])
    assert "| 5.1 min (AMD EPYC 7B13, 2 cores, 2 threads) |" in text
    assert "| 60 s (CPU model not recorded, 2 cores) |" in text
    assert "on AMD EPYC 7B13, 2 cores, 2 threads; CPU model not recorded, 2 cores" in text
