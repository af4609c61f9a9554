"""Every notebook in notebooks/ executes without error against the committed results, and is committed
executed (so that it reads as a report without running it).

Each notebook runs in a fresh kernel from the notebooks/ folder (the notebooks also run from the
repository root); the committed file is never modified: execution happens on an in-memory copy.
"""

from __future__ import annotations

import nbformat
import pytest

from reproductions.claims.provenance import REPO_ROOT

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 300

notebooks = pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])


@notebooks
def test_notebook_is_committed_executed(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert code, f"{path.name} has no code cells"
    unexecuted = [i for i, c in enumerate(code) if c.execution_count is None]
    assert not unexecuted, (
        f"{path.name}: code cells {unexecuted} have no outputs; execute it with "
        f"`make notebooks` (python -m reproductions.run_all --notebooks-only) before committing"
    )
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name} was committed with an error output: {errors[0].get('ename')}"


@pytest.mark.slow
@notebooks
def test_notebook_executes_to_exactly_the_committed_file(path, tmp_path):
    """Executed on the committed results (as `make notebooks` does), each notebook runs without error and
    gives the committed file byte for byte: the report is what the code makes of the results, and a
    figure that changes on every execution (random jitter, bootstrapped intervals) shows up here."""
    import shutil

    from reproductions.reporting.notebook_files import execute

    copy = tmp_path / path.name
    shutil.copy(path, copy)
    try:
        execute(copy, timeout=CELL_TIMEOUT_S)
    except Exception as exc:  # nbclient's CellExecutionError carries the failing cell and traceback
        pytest.fail(f"{path.name} failed:\n{exc}")
    nb = nbformat.read(copy, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    assert copy.read_bytes() == path.read_bytes(), (
        f"{path.name}: executing it on the committed results does not give the committed file; run "
        "`make notebooks` and commit, and if it differs again between two runs, make its figures deterministic"
    )


def test_ours_says_when_its_spread_is_a_standard_error():
    """Comparisons judged by a 2-standard-error rule store the standard error in ``std``; the reports must
    not print it as if it were the std over seeds."""
    from reproductions.reporting.notebook import format_ours

    std = {"mean": 10.3, "std": 6.09, "n": 3, "unit": "points"}
    assert format_ours(std) == "10.3 ± 6.09 points (3 seeds)"
    assert format_ours({**std, "std_is_standard_error": True}) == "10.3 ± 6.09 points (standard error, 3 seeds)"
    assert format_ours({**std, "n": 1, "std_is_standard_error": True}) == "10.3 points (1 seed)"
    assert format_ours({"mean": 0.795, "std": None, "n": 5, "over": "repeats"}) == "0.795 (5 repeats)"


def test_normalise_drops_what_changes_between_executions():
    import nbformat

    from reproductions.reporting.notebook_files import normalise

    nb = nbformat.v4.new_notebook()
    nb.metadata.update(
        kernelspec={"name": "python3", "display_name": "Python 3", "language": "python"},
        language_info={"name": "python", "version": "3.11.9", "file_extension": ".py"},
        widgets={"state": {}},
    )
    cell = nbformat.v4.new_code_cell("1")
    cell.metadata["execution"] = {"iopub.execute_input": "2026-12-06T03:14:08.271472Z"}
    nb.cells.append(cell)
    normalise(nb)
    assert "execution" not in nb.cells[0].metadata and "widgets" not in nb.metadata
    assert nb.metadata.language_info == {"name": "python", "file_extension": ".py"}
    assert nb.metadata.kernelspec["name"] == "python3"


@pytest.mark.slow
def test_executing_twice_on_the_same_results_gives_the_same_bytes(tmp_path):
    """`make notebooks` on unchanged results leaves the notebooks byte-identical: no timestamps, and
    figures whose PNG bytes carry fixed metadata (no matplotlib version)."""
    import base64

    from reproductions.reporting.notebook_files import execute

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from reproductions.reporting import notebook as nb\nimport matplotlib.pyplot as plt"
        ),
        nbformat.v4.new_code_cell("plt.plot([0, 1], [1, 0]);"),
    ]
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    first = execute(path).read_bytes()
    second = execute(path).read_bytes()
    assert first == second
    png = next(
        o for o in nbformat.reads(first.decode(), as_version=4).cells[1].outputs if "image/png" in o.get("data", {})
    )
    raw = base64.b64decode(png["data"]["image/png"])
    assert b"normcore" in raw and b"Matplotlib" not in raw
