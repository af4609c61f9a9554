"""The full Fashion-MNIST (Xiao, Rasul & Vollgraf 2017; 60,000 training and 10,000 test images of 28x28
pixels, 10 classes) from its four IDX files, checked against the original Zalando release.

Where the files come from, in order of preference:

* the Debian/Ubuntu package ``dataset-fashion-mnist`` (``sudo apt-get install dataset-fashion-mnist``),
  which installs the four gzipped release files in :data:`DEFAULT_DIR`;
* ``--data DIR``: any folder holding the four files, gzipped (``*.gz``) or decompressed;
* on a machine with internet: ``torchvision.datasets.FashionMNIST(root, download=True)``, then
  ``--data root`` (the loader also looks in torchvision's ``root/FashionMNIST/raw``).

Every file is verified before use: a gzipped file by its size and sha256 (:data:`RELEASE`), a decompressed
one by its IDX magic number, its shape and (for the release's own bytes) its sha256. A truncated, wrong or
missing file is named in a :class:`DataError` with the fix.

    from reproductions.smallscale.fashion_mnist import fashion_mnist

    ds = fashion_mnist(validation=10_000)     # 50,000 train / 10,000 validation / 10,000 test
    ds.x_train.shape                           # (50000, 784), float32 in [0, 1]

:func:`ensure_fashion_mnist` installs the package where it is missing and the machine allows
(``make reproduce``). ``python -m reproductions.smallscale.fashion_mnist [--data DIR] [--install]`` checks
(and with ``--install`` installs) the data and prints what it found.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reproductions.errors import DataError, run_cli
from reproductions.smallscale.data import SPLIT_SEED, Dataset, _read_idx

__all__ = [
    "APT_PACKAGE",
    "CLASSES",
    "DEFAULT_DIR",
    "RELEASE",
    "DataError",
    "FashionMNIST",
    "IdxFile",
    "ensure_fashion_mnist",
    "fashion_mnist",
    "find_files",
    "main",
    "verify_file",
]

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where the Debian package ``dataset-fashion-mnist`` installs the four gzipped files."""

APT_PACKAGE = "dataset-fashion-mnist"

CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
"""The label names, by label value (Xiao et al. 2017, Table 1)."""

_IDX_UBYTE = 0x08


@dataclass(frozen=True)
class IdxFile:
    """One file of the release: its name (without ``.gz``), the shape its IDX header declares, and the
    size and sha256 of the gzipped file and of the decompressed bytes (``None``: not checked)."""

    stem: str
    shape: tuple[int, ...]
    gz_size: int | None
    gz_sha256: str | None
    raw_sha256: str | None = None

    @property
    def magic(self) -> int:
        """The IDX magic number: two zero bytes, the type (0x08, unsigned byte) and the number of dimensions."""
        return (_IDX_UBYTE << 8) | len(self.shape)

    @property
    def raw_size(self) -> int:
        """Bytes of the decompressed file: 4 of magic, 4 per dimension, one per value."""
        return 4 + 4 * len(self.shape) + int(np.prod(self.shape))


RELEASE: dict[str, IdxFile] = {
    f.stem: f
    for f in (
        IdxFile(
            "train-images-idx3-ubyte",
            (60000, 28, 28),
            26421856,
            "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        ),
        IdxFile(
            "train-labels-idx1-ubyte",
            (60000,),
            29491,
            "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        ),
        IdxFile(
            "t10k-images-idx3-ubyte",
            (10000, 28, 28),
            4422079,
            "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        ),
        IdxFile(
            "t10k-labels-idx1-ubyte",
            (10000,),
            5125,
            "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ),
    )
}
"""The four files of the original Zalando release (github.com/zalandoresearch/fashion-mnist), which the
Debian package ships unchanged: gzipped size and sha256, and sha256 of the decompressed bytes."""

MANIFEST_ENV = "NORMCORE_FASHION_MNIST_MANIFEST"
"""An environment variable naming a JSON file that replaces :data:`RELEASE` as the expected files (a list of
``{"stem", "shape", "gz_size", "gz_sha256", "raw_sha256"}``). Only the test suite sets it, for the small
generated datasets it writes in the real IDX format; every results file records which files were verified
(``dataset.source``), and a run on such data is never a Fashion-MNIST result."""


def expected_files() -> dict[str, IdxFile]:
    """The files the loader expects: :data:`RELEASE`, or the manifest named by :data:`MANIFEST_ENV`."""
    path = os.environ.get(MANIFEST_ENV)
    if not path:
        return RELEASE
    entries = json.loads(Path(path).read_text(encoding="utf-8"))
    return {
        e["stem"]: IdxFile(e["stem"], tuple(e["shape"]), e["gz_size"], e["gz_sha256"], e.get("raw_sha256"))
        for e in entries
    }


def _how_to_get() -> str:
    return (
        f"Fix: install the Debian/Ubuntu package (sudo apt-get install {APT_PACKAGE}; it puts the four files "
        f"in {DEFAULT_DIR}), or pass --data DIR with the four IDX files of Fashion-MNIST "
        f"({', '.join(RELEASE)}; gzipped or not), or on a machine with internet run python -c "
        f"\"import torchvision; torchvision.datasets.FashionMNIST('DIR', download=True)\" and pass --data DIR."
    )


def _needs_sudo() -> bool:
    return not hasattr(os, "geteuid") or os.geteuid() != 0


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _candidates(root: Path, stem: str) -> list[Path]:
    """Where one file may lie: the folder itself or torchvision's ``FashionMNIST/raw`` below it, gzipped
    first; also the ``train-images.idx3-ubyte`` spelling some mirrors use."""
    out = []
    for folder in (root, root / "FashionMNIST" / "raw"):
        for name in (f"{stem}.gz", stem, stem.replace("-idx", ".idx")):
            out.append(folder / name)
    return out


def find_files(data: str | os.PathLike | None = None, files: Mapping[str, IdxFile] | None = None) -> dict[str, Path]:
    """The path of each of the four files in ``data`` (default :data:`DEFAULT_DIR`); a :class:`DataError`
    that lists the missing ones and how to get them when any is absent."""
    files = expected_files() if files is None else files
    root = DEFAULT_DIR if data is None else Path(data)
    found: dict[str, Path] = {}
    missing = []
    for stem in files:
        hit = next((p for p in _candidates(root, stem) if p.is_file()), None)
        if hit is None:
            missing.append(stem)
        else:
            found[stem] = hit
    if missing:
        what = "not found" if not root.is_dir() else f"holds no {', '.join(missing)} (.gz or decompressed)"
        raise DataError(f"Fashion-MNIST not found: {root} {what}. {_how_to_get()}")
    return found


def _bad(path: Path, problem: str) -> DataError:
    return DataError(
        f"{path} {problem}: it is not the file of the Fashion-MNIST release (truncated, corrupted or a different "
        f"dataset). Fix: delete it and get it again: sudo apt-get install --reinstall "
        f"{APT_PACKAGE} (for {DEFAULT_DIR}), or download the release again "
        f"(torchvision.datasets.FashionMNIST('DIR', download=True), then --data DIR)."
    )


def verify_file(path: str | os.PathLike, spec: IdxFile) -> np.ndarray:
    """Check one file against ``spec`` and return its values as a ``uint8`` array of ``spec.shape``.

    A gzipped file must have the recorded size and sha256 (checked before it is decompressed), a
    decompressed one the size its shape implies. Both must start with the IDX magic number of unsigned bytes
    and decode (the IDX reader of :mod:`reproductions.smallscale.data`) to ``spec.shape``; a decompressed
    file must then have the recorded sha256 of the release's decompressed bytes. Anything else raises a
    :class:`DataError` naming the file and the fix."""
    path = Path(path)
    if path.suffix == ".gz":
        size = path.stat().st_size
        if spec.gz_size is not None and size != spec.gz_size:
            short = " (truncated)" if size < spec.gz_size else ""
            raise _bad(path, f"is {size:,} bytes{short}, the release file {spec.stem}.gz is {spec.gz_size:,}")
        if spec.gz_sha256 is not None and _sha256(path) != spec.gz_sha256:
            raise _bad(path, f"has the right size but the wrong sha256 (expected {spec.gz_sha256})")
    else:
        size = path.stat().st_size
        if size != spec.raw_size:
            short = " (truncated)" if size < spec.raw_size else ""
            raise _bad(
                path,
                f"is {size:,} bytes{short}, the decompressed {spec.stem} of shape {spec.shape} is {spec.raw_size:,}",
            )
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as fh:
            head = fh.read(4)
    except (OSError, EOFError) as err:
        raise _bad(path, f"does not decompress ({type(err).__name__}: {err})") from err
    if len(head) < 4 or struct.unpack(">I", head)[0] != spec.magic:
        got = f"0x{struct.unpack('>I', head)[0]:08x}" if len(head) == 4 else "nothing (the file is too short)"
        raise _bad(
            path, f"has IDX magic number {got}, expected 0x{spec.magic:08x} ({len(spec.shape)}-d unsigned bytes)"
        )
    try:
        arr = _read_idx(path)
    except (OSError, EOFError, ValueError, struct.error) as err:
        raise _bad(path, f"does not decode ({type(err).__name__}: {err})") from err
    if arr.shape != spec.shape:
        raise _bad(path, f"declares shape {arr.shape}, expected {spec.shape}")
    if path.suffix != ".gz" and spec.raw_sha256 is not None and _sha256(path) != spec.raw_sha256:
        raise _bad(path, f"has the right size and shape but the wrong sha256 (expected {spec.raw_sha256})")
    return arr


@dataclass
class FashionMNIST(Dataset):
    """A :class:`~reproductions.smallscale.data.Dataset` with an optional validation set carved from the
    training set (``x_val``/``y_val``; ``None`` when there is none)."""

    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["n_val"] = 0 if self.x_val is None else int(self.x_val.shape[0])
        return out


def _stratified_holdout(y: np.ndarray, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation), both sorted: ``n_val`` indices drawn without replacement within each
    class, in proportion to the class sizes (largest remainders for the rounding, ties to the lower label)."""
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * n_val / len(y)
    take = np.floor(quota).astype(int)
    order = sorted(range(len(classes)), key=lambda i: (-(quota[i] - take[i]), i))
    for i in order[: n_val - int(take.sum())]:
        take[i] += 1
    rng = np.random.default_rng(seed)
    val = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take)])
    mask = np.zeros(len(y), dtype=bool)
    mask[val] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def fashion_mnist(
    data: str | os.PathLike | None = None,
    *,
    validation: int | float = 0,
    flat: bool = True,
    split_seed: int = SPLIT_SEED,
    files: Mapping[str, IdxFile] | None = None,
) -> FashionMNIST:
    """The full Fashion-MNIST as float tensors in [0, 1] (``(N, 784)``, or ``(N, 1, 28, 28)`` with
    ``flat=False``) and int64 labels: the official 60,000 training and 10,000 test images, every file
    verified (:func:`verify_file`).

    ``data``: the folder of the four IDX files (default :data:`DEFAULT_DIR`, the Debian package's).
    ``validation``: a number of training images (an int) or a fraction of them (a float in (0, 1)) held out
    as ``x_val``/``y_val``, stratified by class with the fixed ``split_seed`` (the same for every run seed);
    training and validation images keep the release's order. ``files``: the expected files (default
    :data:`RELEASE`; tests pass their own)."""
    spec = expected_files() if files is None else files
    paths = find_files(data, spec)
    arrays = {stem: verify_file(paths[stem], s) for stem, s in spec.items()}
    xtr, ytr = arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]
    xte, yte = arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"]
    for stem, labels in (("train-labels-idx1-ubyte", ytr), ("t10k-labels-idx1-ubyte", yte)):
        if labels.size and int(labels.max()) >= len(CLASSES):
            raise _bad(paths[stem], f"holds label {int(labels.max())}; Fashion-MNIST has labels 0-9")
    n = len(ytr)
    if isinstance(validation, float) and not isinstance(validation, bool):
        if not 0.0 <= validation < 1.0:
            raise ValueError(f"validation as a fraction must lie in [0, 1), got {validation}")
        n_val = round(validation * n)
    else:
        n_val = int(validation)
    if not 0 <= n_val < n:
        raise ValueError(f"validation must be between 0 and {n - 1} training images, got {validation}")
    shape = (-1, 784) if flat else (-1, 1, 28, 28)
    if xtr.shape[1:] != (28, 28):  # a test's small images
        shape = (-1, int(np.prod(xtr.shape[1:]))) if flat else (-1, 1, *xtr.shape[1:])

    def to_x(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.float32) / 255.0).reshape(shape)

    def to_y(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.int64))

    source = str(Path(paths["train-images-idx3-ubyte"]).parent)
    if n_val == 0:
        return FashionMNIST(to_x(xtr), to_y(ytr), to_x(xte), to_y(yte), "Fashion-MNIST", source, "official 60k/10k")
    tr, va = _stratified_holdout(ytr, n_val, split_seed)
    split = (
        f"official {n:,} train / {len(yte):,} test; {n_val:,} training images held out for validation, "
        f"stratified by class, split seed {split_seed}"
    )
    return FashionMNIST(
        to_x(xtr[tr]), to_y(ytr[tr]), to_x(xte), to_y(yte), "Fashion-MNIST", source, split, to_x(xtr[va]), to_y(ytr[va])
    )


def _present(root: Path, files: Mapping[str, IdxFile]) -> bool:
    try:
        find_files(root, files)
    except DataError:
        return False
    return True


def ensure_fashion_mnist(
    auto_install: bool,
    data: str | os.PathLike | None = None,
    *,
    files: Mapping[str, IdxFile] | None = None,
) -> Path:
    """The folder that holds the four files: ``data`` when given (never installs then), else
    :data:`DEFAULT_DIR`. Where the files are missing there, ``auto_install`` is true, ``apt-get`` exists
    and the user is root, installs :data:`APT_PACKAGE` (``apt-get install -y``; once more after
    ``apt-get update`` if that fails); otherwise, or if the files are still missing, a :class:`DataError`
    naming the package, ``--data DIR`` and torchvision's download. Only checks presence; the loader
    verifies the contents."""
    spec = expected_files() if files is None else files
    if data is not None:
        find_files(data, spec)
        return Path(data)
    if _present(DEFAULT_DIR, spec):
        return DEFAULT_DIR
    if not auto_install:
        raise DataError(f"Fashion-MNIST not found in {DEFAULT_DIR}. {_how_to_get()}")
    apt = shutil.which("apt-get")
    if apt is None:
        raise DataError(f"Fashion-MNIST not found in {DEFAULT_DIR} and this machine has no apt-get. {_how_to_get()}")
    if _needs_sudo():
        raise DataError(
            f"Fashion-MNIST not found in {DEFAULT_DIR}; installing it needs root (this user is not). {_how_to_get()}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "--no-install-recommends", APT_PACKAGE]
    print(f"Fashion-MNIST missing: {' '.join(install)}", file=sys.stderr)
    done = subprocess.run(install, env=env, check=False)
    if done.returncode != 0:
        print(f"{apt} install failed; {apt} update and one more try", file=sys.stderr)
        subprocess.run([apt, "update"], env=env, check=False)
        done = subprocess.run(install, env=env, check=False)
    if done.returncode != 0 or not _present(DEFAULT_DIR, spec):
        why = f"apt-get exited with status {done.returncode}" if done.returncode else f"{DEFAULT_DIR} still lacks files"
        raise DataError(f"installing {APT_PACKAGE} did not provide Fashion-MNIST ({why}). {_how_to_get()}")
    return DEFAULT_DIR


def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reproductions.smallscale.fashion_mnist",
        description="Check (and optionally install) the full Fashion-MNIST and print what was found.",
    )
    parser.add_argument("--data", metavar="DIR", help=f"folder of the four IDX files (default {DEFAULT_DIR})")
    parser.add_argument("--install", action="store_true", help=f"apt-get install {APT_PACKAGE} if missing (root)")
    args = parser.parse_args(argv)
    root = ensure_fashion_mnist(args.install, args.data)
    ds = fashion_mnist(root)
    print(f"Fashion-MNIST verified in {ds.source}: {ds.describe()}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; a missing or wrong file is a user error (exit status 2)."""
    return run_cli(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
