"""ModelNet40 in its standard HDF5 release (``modelnet40_ply_hdf5_2048``, the PointNet/DGCNN files:
2,048 points per shape sampled from the mesh surfaces, unit-sphere normalized), read with h5py, with the
official point-cloud code's augmentation and a dataset check that names what is missing.

Layout (as the archive unpacks; ``--data`` points at this folder)::

    modelnet40_ply_hdf5_2048/
        shape_names.txt                 the 40 class names, one per line (label = line index)
        train_files.txt, test_files.txt one .h5 path per line (only the file name is used)
        ply_data_train0.h5 ... ply_data_train4.h5, ply_data_test0.h5, ply_data_test1.h5
        each .h5: data (shapes, 2048, 3) float32, label (shapes, 1) integer

The official code (csrhddlam/dgcnn ``train.py``/``provider.py``, from PointNet) takes the first
``num_points`` (1,024) of each shape's 2,048 points, and augments each training shape by a random
rotation about the up (y) axis, Gaussian jitter (sigma 0.01, clipped at 0.05), a random scale in
[0.8, 1.25], a small random rotation (angles with sigma 0.06 rad, clipped at 0.18) and a random shift
in [-0.1, 0.1] per axis, in that order. Test shapes are not augmented.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from reproductions.tasks.classification.data import DataError

__all__ = ["ModelNet40", "augment", "check_modelnet40", "read_split"]

SPLITS = ("train", "test")
_FIX = (
    "Download modelnet40_ply_hdf5_2048.zip (the PointNet/DGCNN release, 2,048 points per shape; "
    "https://shapenet.cs.stanford.edu/media/modelnet40_ply_hdf5_2048.zip or a mirror), unzip it and pass "
    "the modelnet40_ply_hdf5_2048 folder with --data."
)


def _h5_files(root: Path, split: str) -> list[Path]:
    listing = root / f"{split}_files.txt"
    if not listing.is_file():
        raise DataError(f"{listing} not found: the release lists its {split} files there. {_FIX}")
    names = [Path(line.strip()).name for line in listing.read_text().splitlines() if line.strip()]
    missing = [n for n in names if not (root / n).is_file()]
    if missing or not names:
        raise DataError(
            f"{root}: {', '.join(missing) or 'no files'} listed in {listing.name} "
            f"{'are' if len(missing) != 1 else 'is'} missing. {_FIX}"
        )
    return [root / n for n in names]


def read_split(root: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All points ``(shapes, 2048, 3)`` float32, labels ``(shapes,)`` int64 and the class names of
    ``split`` (``train`` or ``test``). Raises :class:`DataError` naming the missing or malformed file."""
    import h5py

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"ModelNet40 folder {root} does not exist. {_FIX}")
    names_file = root / "shape_names.txt"
    if not names_file.is_file():
        raise DataError(f"{names_file} not found: it names the 40 classes. {_FIX}")
    classes = [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
    points, labels = [], []
    for path in _h5_files(root, split):
        try:
            with h5py.File(path, "r") as h5:
                if "data" not in h5 or "label" not in h5:
                    raise DataError(f"{path}: needs the datasets 'data' and 'label', has {sorted(h5.keys())}. {_FIX}")
                data, label = h5["data"][:], h5["label"][:]
        except OSError as err:
            raise DataError(f"{path}: not a readable HDF5 file ({err}). {_FIX}") from err
        if data.ndim != 3 or data.shape[2] != 3 or len(label) != len(data):
            raise DataError(
                f"{path}: data must be (shapes, points, 3) with one label per shape, got "
                f"{data.shape} and {label.shape}. {_FIX}"
            )
        points.append(data.astype(np.float32))
        labels.append(label.reshape(-1).astype(np.int64))
    all_labels = np.concatenate(labels)
    if all_labels.min() < 0 or all_labels.max() >= len(classes):
        raise DataError(
            f"{root}: labels must lie in 0..{len(classes) - 1} (shape_names.txt has {len(classes)} "
            f"classes), found {all_labels.min()}..{all_labels.max()}"
        )
    return np.concatenate(points), all_labels, classes


def check_modelnet40(root: str | os.PathLike, splits: Sequence[str] = SPLITS) -> dict[str, int]:
    """Shapes per split after reading every file (raises :class:`DataError` otherwise)."""
    return {split: len(read_split(root, split)[1]) for split in splits}


def _rotation(angles: np.ndarray) -> np.ndarray:
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def augment(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The official training augmentation of one shape ``(N, 3)`` (module docstring)."""
    angle = rng.uniform() * 2 * np.pi
    c, s = np.cos(angle), np.sin(angle)
    out = points @ np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])  # rotation about the up axis
    out = out + np.clip(0.01 * rng.standard_normal(out.shape), -0.05, 0.05)
    out = out * rng.uniform(0.8, 1.25)
    out = out @ _rotation(np.clip(0.06 * rng.standard_normal(3), -0.18, 0.18))
    out = out + rng.uniform(-0.1, 0.1, size=(1, 3))
    return out.astype(np.float32)


class ModelNet40(Dataset):
    """One split of the HDF5 release; items are ``(points (3, num_points), label)``, augmented when
    ``train`` (the randomness comes from torch's RNG, which the engine seeds per sample)."""

    def __init__(
        self, root: str | os.PathLike, split: str, *, train: bool, num_points: int = 1024, max_shapes: int | None = None
    ) -> None:
        points, labels, self.classes = read_split(root, split)
        if not 0 < num_points <= points.shape[1]:
            raise ValueError(f"num_points={num_points}: the files hold {points.shape[1]} points per shape")
        self.points, self.labels = points[:max_shapes, :num_points], labels[:max_shapes]
        self.split, self.train, self.num_points = split, train, num_points

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        points = self.points[index]
        if self.train:
            points = augment(points, np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item())))
        return torch.from_numpy(np.ascontiguousarray(points.T)), int(self.labels[index])
