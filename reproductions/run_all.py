"""``make reproduce``: run every paper's CPU-scale experiment, then execute the notebooks.

    python -m reproductions.run_all                      # everything (what `make reproduce` does)
    python -m reproductions.run_all --paper group_norm   # one paper (`make reproduce PAPER=group_norm`)
    python -m reproductions.run_all --update-committed   # replace the committed results, notebooks, README
    python -m reproductions.run_all --notebooks-only     # re-execute the notebooks on committed results
    python -m reproductions.run_all --quick              # a few steps per experiment, results under runs/quick
    python -m reproductions.run_all --data DIR           # Fashion-MNIST's four IDX files from DIR

Before any experiment, the full Fashion-MNIST is looked up (:func:`ensure_data`): ``--data DIR``, else the
Debian package's folder, which is installed with ``apt-get install dataset-fashion-mnist`` when it is missing
and this user may (``--no-install`` to never install); otherwise the run stops with a message naming the
package, ``--data DIR`` and torchvision's download.

Each experiment runs in its own process (``python -m reproductions.<paper>.cpu``), so its results file
fingerprints only the files that experiment imports (:mod:`reproductions.claims.provenance`).

Where results go (:func:`reproductions.smallscale.experiment.destination`): the committed
``reproductions/<paper>/results/`` when they were made on this machine (same CPU model and cores) or
with ``--update-committed`` (``make reproduce UPDATE_COMMITTED=1``); on any other machine
``runs/reproduce/<machine-id>/<paper>/``, with that folder's own ``RESULTS.md``, and the committed
results, notebooks and README are left alone. The summary says which.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from reproductions.claims.provenance import REPO_ROOT, machine_id
from reproductions.claims.published import PAPERS
from reproductions.errors import UserError, run_cli
from reproductions.smallscale.experiment import add_destination_flags, committed_dir, destination

__all__ = ["NOTEBOOK_DIR", "ensure_data", "execute_notebook", "main", "run_experiment"]

NOTEBOOK_DIR = REPO_ROOT / "notebooks"


def ensure_data(data: str | None, install: bool) -> Path:
    """The folder of the full Fashion-MNIST (:func:`reproductions.smallscale.fashion_mnist.ensure_fashion_mnist`:
    ``data`` when given, else the Debian package's folder, installed with apt-get when missing and
    ``install``); a :class:`reproductions.errors.DataError` that says what to do otherwise."""
    from reproductions.smallscale.fashion_mnist import ensure_fashion_mnist

    return ensure_fashion_mnist(install, data)


def run_experiment(paper: str, quick: bool, out_dir: Path | None = None, data: str | None = None) -> tuple[str, float]:
    """Run ``python -m reproductions.<paper>.cpu`` in a fresh process (writing to ``out_dir``, reading
    Fashion-MNIST from ``data`` when given); returns (status, seconds)."""
    if not (REPO_ROOT / "reproductions" / paper / "cpu.py").exists():
        return f"missing: no reproductions/{paper}/cpu.py yet", 0.0
    command = [sys.executable, "-m", f"reproductions.{paper}.cpu", *(["--quick"] if quick else [])]
    if out_dir is not None:
        command += ["--out", str(out_dir)]
    if data is not None:
        command += ["--data", str(data)]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO_ROOT, check=False)
    seconds = time.perf_counter() - start
    return ("ok" if proc.returncode == 0 else f"failed: exit status {proc.returncode}"), seconds


def execute_notebook(path: Path, timeout: int = 900) -> float:
    """Execute a notebook in place (outputs written back atomically, execution metadata normalised:
    :func:`reproductions.reporting.notebook_files.normalise`)."""
    from reproductions.reporting.notebook_files import execute

    start = time.perf_counter()
    execute(path, timeout=timeout)
    return time.perf_counter() - start


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it."""
    return str(path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path)


def _results_report(out_root: Path, papers: Sequence[str]) -> Path:
    """A RESULTS.md for results written outside the committed folders (``out_root/<paper>/``)."""
    from reproductions.engine.atomic import write_text
    from reproductions.reporting import notebook as nb
    from reproductions.reporting import report

    loaded = [nb.load_paper(p, results_root=out_root) for p in papers]
    return write_text(out_root / "RESULTS.md", report.render(loaded))


def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paper", default="all", choices=("all", *PAPERS))
    parser.add_argument("--quick", action="store_true", help="a few steps per experiment (results under runs/quick)")
    parser.add_argument("--notebooks-only", action="store_true", help="only re-execute the notebooks")
    parser.add_argument("--skip-notebooks", action="store_true")
    parser.add_argument("--data", metavar="DIR", default=None, help="folder of Fashion-MNIST's four IDX files")
    parser.add_argument(
        "--no-install", action="store_true", help="never apt-get install dataset-fashion-mnist when it is missing"
    )
    add_destination_flags(parser)
    args = parser.parse_args(argv)
    if args.update_committed and args.quick:
        raise UserError(
            "--update-committed with --quick: quick results are never committed (the provenance test requires full "
            "CPU-scale runs). Drop --quick to replace the committed results, or --update-committed for a quick check."
        )
    papers = PAPERS if args.paper == "all" else (args.paper,)
    timings: list[tuple[str, str, float]] = []
    total = time.perf_counter()
    committed = True  # did this run write (only) the committed results?
    elsewhere: set[Path] = set()
    if not args.notebooks_only:
        data_dir = ensure_data(args.data, not args.no_install)
        print(f"Fashion-MNIST: {data_dir}", flush=True)
        # the experiments run from the repository root: a relative --data must not change meaning there
        data = str(data_dir.resolve()) if args.data is not None else None
        for paper in papers:
            out: Path | None = None
            if not args.quick:
                out, why = destination(paper, update_committed=args.update_committed)
                print(f"\n{why}", flush=True)
                if out != committed_dir(paper):
                    committed = False
                    elsewhere.add(out.parent)
            print(f"\n=== {paper}: CPU-scale experiment{' (quick)' if args.quick else ''} ===", flush=True)
            status, seconds = run_experiment(paper, args.quick, out, data=data)
            print(f"--- {paper}: {status} in {seconds / 60:.1f} min", flush=True)
            timings.append((paper, status, seconds))
    if not args.quick and not committed:
        for root in sorted(elsewhere):
            timings.append(("report", f"ok: {_shown(_results_report(root, papers))}", 0.0))
        print(
            f"\nThe results of this machine ({machine_id()}) are under "
            f"{', '.join(_shown(p) for p in sorted(elsewhere))}/; the committed results, "
            f"notebooks and README were not changed. To replace them: make reproduce PAPER={args.paper} "
            f"UPDATE_COMMITTED=1",
            flush=True,
        )
    elif not args.skip_notebooks and not args.quick:
        from reproductions.reporting import report

        for name in [*papers, "overview"]:
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


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (user errors: one paragraph, exit 2; ``--debug`` shows the traceback)."""
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
