"""What every CPU-scale experiment (``reproductions/<paper>/cpu.py``) shares around its training: the
seeds, where results go, the results file with its manifest, and the command line.

Every experiment module exposes ``run(quick=False, seeds=None, data=None, out_dir=None) -> list[Path]``
and ``main(argv=None)``, whose command line is :func:`cli`::

    python -m reproductions.<paper>.cpu [--quick] [--seeds 0 1 2] [--data PATH] [--out DIR]
                                        [--threads N] [--update-committed] [--debug]

Where results go (:func:`results_dir`): ``--out`` when given; ``runs/quick/<paper>/`` in quick mode;
else the committed folder ``reproductions/<paper>/results/`` **only** when the committed results were
made on this machine (same CPU model and cores, :func:`reproductions.claims.provenance.machine_id`) or
``--update-committed`` is given; on any other machine ``runs/reproduce/<machine-id>/<paper>/``, and the
command says so. CPU-scale numbers depend on the CPU and thread count in their last bits, so a run
elsewhere never silently replaces the committed ones.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from reproductions.claims import provenance
from reproductions.claims.results import RESULTS_ROOT_ENV, write_results
from reproductions.errors import UserError, run_cli
from reproductions.smallscale.data import Dataset
from reproductions.smallscale.parallel import default_workers, set_threads

__all__ = [
    "DEFAULT_SEEDS",
    "RESULTS_ROOT_ENV",
    "RUNS_DIR",
    "add_destination_flags",
    "cli",
    "committed_dir",
    "committed_machines",
    "destination",
    "finish_experiment",
    "resolve_seeds",
    "results_dir",
    "select_runs",
]

DEFAULT_SEEDS = (0, 1, 2)
RUNS_DIR = provenance.REPO_ROOT / "runs"
"""Runs that are not committed: ``quick/<paper>/`` and ``reproduce/<machine-id>/<paper>/``."""


def resolve_seeds(seeds: Sequence[int] | None, quick: bool) -> list[int]:
    """The seeds to run: as given, else one seed (0) in quick mode and :data:`DEFAULT_SEEDS` otherwise.
    A seed given twice is an error: it would count as a second, independent seed (std 0)."""
    if seeds is not None:
        duplicates = sorted({s for s in seeds if list(seeds).count(s) > 1})
        if duplicates:
            raise UserError(
                f"seed {', '.join(map(str, duplicates))} is given more than once "
                f"(--seeds {' '.join(map(str, seeds))}); "
                f"a repeated seed reruns the same run and would count as a second independent seed. "
                f"Give distinct seeds, e.g. --seeds {' '.join(map(str, range(max(len(seeds), 3))))}."
            )
        if not seeds:
            raise UserError("--seeds needs at least one seed, e.g. --seeds 0 1 2")
    return list(seeds if seeds is not None else ((0,) if quick else DEFAULT_SEEDS))


def select_runs(runs: Sequence[dict[str, Any]], seeds: Sequence[int], **match: Any) -> list[dict[str, Any]]:
    """The run of each seed (in ``seeds`` order) whose fields equal ``match``, e.g.
    ``select_runs(runs, [0, 1, 2], net="BN", batch_size=4)``; exactly one per seed, else an error."""
    out = []
    for seed in seeds:
        found = [r for r in runs if r["seed"] == seed and all(r.get(k) == v for k, v in match.items())]
        if len(found) != 1:
            raise RuntimeError(f"expected one run for seed {seed} and {match}, found {len(found)}")
        out.append(found[0])
    return out


# --------------------------------------------------------------------------------------------------
# where results go
# --------------------------------------------------------------------------------------------------
def committed_dir(paper: str) -> Path:
    """``reproductions/<paper>/results`` (or ``$NORMCORE_RESULTS_ROOT/<paper>/results``)."""
    root = os.environ.get(RESULTS_ROOT_ENV)
    return Path(root) / paper / "results" if root else provenance.REPO_ROOT / "reproductions" / paper / "results"


def committed_machines(paper: str) -> set[str]:
    """The machine ids recorded in the committed results of ``paper`` (``"unknown"`` for a manifest
    that predates the CPU model); empty when there are none."""
    folder = committed_dir(paper)
    ids = set()
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            machine = json.loads(path.read_text(encoding="utf-8"))["manifest"]["machine"]
        except (OSError, ValueError, KeyError, TypeError):
            ids.add("unknown")
            continue
        ids.add(machine.get("id") or (provenance.machine_id(machine) if machine.get("cpu_model") else "unknown"))
    return ids


def destination(paper: str, *, update_committed: bool = False) -> tuple[Path, str]:
    """Where a full (non-quick) run of ``paper`` writes, and one sentence that says why: the committed
    folder when asked (``update_committed``), when there are no committed results yet, or when they were
    made on this machine; else ``runs/reproduce/<machine-id>/<paper>``."""
    here = provenance.machine_id()
    committed = committed_dir(paper)
    machines = committed_machines(paper)
    if update_committed:
        return committed, f"--update-committed: replacing the committed results in {committed}"
    if not machines:
        return committed, f"no committed results yet: writing {committed}"
    if machines == {here}:
        return committed, f"the committed results were made on this machine ({here}): replacing them in {committed}"
    separate = RUNS_DIR / "reproduce" / here / paper
    return separate, (
        f"the committed results of {paper} were made on another machine ({', '.join(sorted(machines))}; this is "
        f"{here}), and CPU-scale numbers differ in their last digits between CPUs, so this run writes to {separate} "
        f"and leaves the committed results, notebooks and README alone. To replace the committed results with "
        f"this machine's: make reproduce PAPER={paper} UPDATE_COMMITTED=1 "
        f"(python -m reproductions.run_all --paper {paper} --update-committed)."
    )


def results_dir(paper: str, quick: bool, out_dir: str | os.PathLike | None = None) -> Path:
    """Where an experiment writes (created): ``out_dir`` when given, ``runs/quick/<paper>`` in quick mode,
    else :func:`destination` (which is printed)."""
    if out_dir is not None:
        path = Path(out_dir)
    elif quick:
        path = RUNS_DIR / "quick" / paper
    else:
        path, why = destination(paper)
        print(why, flush=True)
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------------------------------
# the results file and the command line
# --------------------------------------------------------------------------------------------------
def finish_experiment(
    path: Path,
    *,
    paper: str,
    experiment: str,
    quick: bool,
    title: str,
    claim: str,
    dataset: Dataset | dict[str, Any],
    seeds: Sequence[int],
    config: dict[str, Any],
    metrics: dict[str, Any],
    comparisons: list[dict[str, Any]],
    verdict: dict[str, str],
    figures: Sequence[str],
    seconds: float,
    curves: dict[str, Any] | None = None,
    notes: Sequence[str] = (),
    timings: dict[str, float] | None = None,
    pilot: dict[str, Any] | None = None,
    disclosures: Sequence[str] | None = None,
) -> Path:
    """Assemble a results file with its manifest and write it (validated, atomically). ``timings``
    (e.g. ``{"cpu_seconds": ...}``) go to the manifest, outside the hashed ``config``. ``pilot``: the
    plan that chose the seeds (:func:`reproductions.claims.paired.plan_seeds`, or ``{"skipped": why}``);
    ``disclosures``: every rule, margin or setting changed after seeing results (an empty list states
    that none was)."""
    results: dict[str, Any] = {
        "schema_version": 1,
        "paper": paper,
        "experiment": experiment,
        "scale": "quick" if quick else "cpu",
        "title": title,
        "claim": claim,
        "dataset": dataset.describe() if isinstance(dataset, Dataset) else dataset,
        "seeds": list(seeds),
        "config": config,
        "metrics": metrics,
        "comparisons": comparisons,
        "verdict": verdict,
        "figures": list(figures),
        "manifest": provenance.build_manifest(config, seconds, timings=timings),
    }
    if curves is not None:
        results["curves"] = curves
    if notes:
        results["notes"] = list(notes)
    if pilot is not None:
        results["pilot"] = pilot
    if disclosures is not None:
        results["disclosures"] = list(disclosures)
    return write_results(path, results)


def _paper_of(run: Callable[..., Any]) -> str:
    """The paper of an experiment's ``run``: ``reproductions.<paper>.cpu`` -> ``<paper>`` (also when the
    module runs as ``__main__`` under ``python -m``)."""
    module = sys.modules.get(run.__module__)
    spec = getattr(module, "__spec__", None)
    parts = (spec.name if spec is not None else run.__module__).split(".")
    if len(parts) != 3 or parts[0] != "reproductions":
        raise ValueError(f"{run.__module__} is not an experiment module reproductions.<paper>.cpu")
    return parts[1]


def add_destination_flags(parser: argparse.ArgumentParser) -> None:
    """``--update-committed`` and ``--debug``, the flags the experiments and ``run_all`` share."""
    parser.add_argument(
        "--update-committed",
        action="store_true",
        help="write the committed reproductions/<paper>/results/ (and, from run_all, the notebooks and README) "
        "even if the committed results were made on another machine",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")


def cli(run: Callable[..., list[Path]], description: str, argv: Sequence[str] | None = None) -> list[Path]:
    """The command line every CPU experiment shares (user errors: one paragraph, exit 2, see
    :func:`reproductions.errors.run_cli`)."""
    return run_cli(lambda args: _cli(run, description, args), argv)


def _cli(run: Callable[..., list[Path]], description: str, argv: Sequence[str] | None) -> list[Path]:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a few steps and one seed (what CI runs)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help=f"default {list(DEFAULT_SEEDS)}")
    parser.add_argument("--data", default=None, help="path to the full dataset (see the paper's README)")
    parser.add_argument(
        "--out", default=None, help="output folder (default: see reproductions/smallscale/experiment.py)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help=f"torch threads (default: min(2, cores) = {default_workers()})"
    )
    add_destination_flags(parser)
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        raise UserError(
            f"--threads {args.threads}: the number of torch threads must be at least 1. Leave --threads out for "
            f"the default (min(2, cores) = {default_workers()}, what the committed results used), or give e.g. "
            f"--threads 2."
        )
    resolve_seeds(args.seeds, args.quick)  # fails before any work on duplicate seeds
    out = args.out
    if args.update_committed:
        if args.out is not None:
            raise UserError("--update-committed writes to the committed results folder; leave out --out.")
        if args.quick and not os.environ.get(RESULTS_ROOT_ENV):
            raise UserError(
                "--quick results are never committed (the provenance test requires full CPU-scale runs); "
                "drop --quick to replace the committed results."
            )
        out = committed_dir(_paper_of(run))
        print(f"--update-committed: writing the committed results in {out}", flush=True)
    set_threads(args.threads)
    paths = run(quick=args.quick, seeds=args.seeds, data=args.data, out_dir=out)
    for p in paths:
        print(f"wrote {p}")
    return paths
