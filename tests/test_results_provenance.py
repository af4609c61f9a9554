"""The committed results (``reproductions/<paper>/results/*.json``) were produced by the committed code.

For every results file: it validates against the schema, is a CPU-scale run (``scale: cpu``) over at
least 3 seeds, records the git commit it was made at (a commit of this repository when the history is
available), its figures exist, the published.yaml ids it cites exist, and -- the check that catches
stale results -- the fingerprint of the code that made it (``manifest.source_hash``) equals the
fingerprint of the same files in the current tree.

While experiment code changes during development, the last check fails: that is its job. The failure
names the stale file and the command that regenerates it; the committed results are regenerated with
``make reproduce`` once the code is final.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from reproductions.claims.provenance import REPO_ROOT, source_fingerprint
from reproductions.claims.results import load_results

RESULTS = sorted(REPO_ROOT.glob("reproductions/*/results/*.json"))
IDS = [p.relative_to(REPO_ROOT).as_posix() for p in RESULTS]
COMMIT = re.compile(r"^[0-9a-f]{40}$")

results_files = pytest.mark.parametrize("path", RESULTS, ids=IDS)


def _regenerate(path: Path) -> str:
    return f"make reproduce PAPER={path.parent.parent.name}"


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
    files = res["manifest"]["source_files"]
    gone = [f for f in files if not (REPO_ROOT / f).is_file()]
    assert not gone, f"{rel} is stale: it was made with {', '.join(gone)}, which no longer exist. Regenerate: " + (
        _regenerate(path)
    )
    assert source_fingerprint(files) == res["manifest"]["source_hash"], (
        f"{rel} is stale: the code that produced it has changed since (other than comments, docstrings or "
        f"formatting) in one of its {len(files)} source files ({', '.join(files)}). "
        f"Regenerate: {_regenerate(path)}"
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
    new = readme_with_results(readme, "# Results of the CPU-scale reproductions\n\n| a |\n")
    assert new.startswith("intro\n") and new.endswith(f"{README_END}\noutro\n")
    assert "old table" not in new and "## Results at CPU scale" in new and "| a |" in new
    with pytest.raises(ValueError, match="markers"):
        readme_with_results("no markers", "x")
