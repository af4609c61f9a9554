"""``make reproduce``: run every paper's CPU-scale experiment, then execute the notebooks.

    python -m reproductions.run_all                      # everything (what `make reproduce` does)
    python -m reproductions.run_all --paper group_norm   # one paper (`make reproduce PAPER=group_norm`)
    python -m reproductions.run_all --notebooks-only     # re-execute the notebooks on committed results
    python -m reproductions.run_all --quick              # a few steps per experiment, results under runs/quick

Prints the time each part takes. A paper whose experiment does not exist yet is reported as such.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import time
from pathlib import Path

from reproductions.claims.provenance import REPO_ROOT
from reproductions.reporting import report

PAPERS = ("batch_norm", "layer_norm", "instance_norm", "group_norm", "weight_standardization", "normprop")
NOTEBOOK_DIR = REPO_ROOT / "notebooks"


def run_experiment(paper: str, quick: bool) -> tuple[str, float]:
    module = f"reproductions.{paper}.cpu"
    if not (REPO_ROOT / "reproductions" / paper / "cpu.py").exists():
        return f"missing: no reproductions/{paper}/cpu.py yet", 0.0
    start = time.perf_counter()
    importlib.import_module(module).run(quick=quick)
    return "ok", time.perf_counter() - start


def execute_notebook(path: Path, timeout: int = 900) -> float:
    """Execute a notebook in place (outputs written back, atomically)."""
    import nbformat
    from nbclient import NotebookClient

    from reproductions.engine.atomic import write_text

    start = time.perf_counter()
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    write_text(path, nbformat.writes(nb))
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paper", default="all", choices=("all", *PAPERS))
    parser.add_argument("--quick", action="store_true", help="a few steps per experiment (results under runs/quick)")
    parser.add_argument("--notebooks-only", action="store_true", help="only re-execute the notebooks")
    parser.add_argument("--skip-notebooks", action="store_true")
    args = parser.parse_args(argv)
    papers = PAPERS if args.paper == "all" else (args.paper,)
    timings: list[tuple[str, str, float]] = []
    total = time.perf_counter()
    if not args.notebooks_only:
        for paper in papers:
            print(f"\n=== {paper}: CPU-scale experiment{' (quick)' if args.quick else ''} ===", flush=True)
            status, seconds = run_experiment(paper, args.quick)
            print(f"--- {paper}: {status} in {seconds / 60:.1f} min", flush=True)
            timings.append((paper, status, seconds))
    if not args.skip_notebooks and not args.quick:
        names = [*papers, "overview"]
        for name in names:
            path = NOTEBOOK_DIR / f"{name}.ipynb"
            if not path.exists():
                timings.append((f"notebook {name}", f"missing: no notebooks/{name}.ipynb yet", 0.0))
                continue
            print(f"\n=== notebook {path.relative_to(REPO_ROOT)} ===", flush=True)
            start = time.perf_counter()
            try:
                timings.append((f"notebook {name}", "ok", execute_notebook(path)))
            except Exception as err:  # report every notebook, then fail at the end
                first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                timings.append((f"notebook {name}", f"failed: {first_line}", time.perf_counter() - start))
        report.main([])
    print("\n=== summary ===")
    for name, status, seconds in timings:
        print(f"{name:32s} {seconds / 60:6.1f} min  {status}")
    print(f"{'total':32s} {(time.perf_counter() - total) / 60:6.1f} min")
    return 1 if any(s.startswith("failed") for _, s, _ in timings) else 0


if __name__ == "__main__":
    sys.exit(main())
