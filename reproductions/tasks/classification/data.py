"""Classification data: ImageNet in the folder layout, CIFAR-10/100 and SVHN through torchvision, and
any ImageFolder tree; their transforms; checks that name the path and the fix.

ImageNet layout (what ``--data PATH`` points at)::

    PATH/train/n01440764/n01440764_10026.JPEG ...   1000 class folders, 1,281,167 images
    PATH/val/n01440764/ILSVRC2012_val_00000293.JPEG  the same 1000 class folders, 50,000 images

The ILSVRC2012 validation tarball unpacks *flat* (``val/ILSVRC2012_val_00000001.JPEG`` ...); the check
detects it and prints the fix, which :func:`sort_flat_val` performs given the ground truth
(``python -m reproductions.tasks.classification.data sort-val PATH/val LOC_val_solution.csv``).

Augmentation (``augment`` section of a config):

* ImageNet training, "GoogLeNet-style" as fb.resnet.torch implements it (the GN paper's §4.1 setting):
  a random crop of 8%-100% of the area and aspect ratio 3/4-4/3 resized to ``crop_size``, colour jitter
  (brightness, contrast, saturation 0.4, random order), AlexNet-style PCA lighting noise (std 0.1), a
  horizontal flip, then per-channel normalization. ``color_jitter: 0`` and ``lighting: 0`` give the
  lighter augmentation of torchvision's reference recipe (and the BN paper's "fewer photometric
  distortions", §4.2.1).
* ImageNet evaluation: resize the short side to ``resize_size`` (256), center crop ``crop_size`` (224).
* CIFAR/SVHN: optional 4-pixel zero-padded random crops and flips (``augment.cifar_crop``/``flip``),
  per-channel normalization with the mean and std of the training images, computed when the dataset
  is loaded (NormProp normalizes its input with global dataset statistics).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets as tvd
from torchvision import transforms as T

from reproductions.errors import DataError, run_cli
from reproductions.tasks.imagenet_stats import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DataError",
    "Lighting",
    "build_classification_datasets",
    "channel_stats",
    "check_image_folder",
    "eval_transform",
    "sort_flat_val",
    "train_transform",
]

# PCA of ImageNet RGB pixels (Krizhevsky et al. 2012, §4.1), the values fb.resnet.torch uses.
_PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
_PCA_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
DATASETS = ("imagenet", "imagefolder", "cifar10", "cifar100", "svhn")


class Lighting:
    r"""AlexNet-style PCA lighting noise (Krizhevsky et al. 2012, §4.1) on a ``(3, H, W)`` tensor in
    [0, 1]: add :math:`\sum_i \alpha_i \lambda_i v_i` with :math:`\alpha_i \sim N(0, \sigma^2)`, the same
    for every pixel."""

    def __init__(self, std: float) -> None:
        self.std = std
        self.eigval = torch.tensor(_PCA_EIGVAL)
        self.eigvec = torch.tensor(_PCA_EIGVEC)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if self.std == 0:
            return img
        alpha = torch.randn(3) * self.std
        rgb = self.eigvec @ (alpha * self.eigval)
        return img + rgb.view(3, 1, 1)

    def __repr__(self) -> str:
        return f"Lighting(std={self.std})"


Stats = tuple[tuple[float, ...], tuple[float, ...]]


def train_transform(dataset: str, aug: Mapping[str, Any], crop_size: int, stats: Stats | None = None) -> T.Compose:
    """The training transform of ``dataset`` with the ``augment`` settings (see the module docstring);
    ``stats`` = (mean, std) per channel, default ImageNet's."""
    mean, std = stats or (IMAGENET_MEAN, IMAGENET_STD)
    if dataset in ("imagenet", "imagefolder"):
        steps: list[Any] = [
            T.RandomResizedCrop(crop_size, scale=(float(aug.get("min_scale", 0.08)), 1.0)),
            T.RandomHorizontalFlip(),
        ]
        jitter = float(aug.get("color_jitter", 0.4))
        if jitter > 0:
            steps.append(T.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter))
        steps.append(T.ToTensor())
        if float(aug.get("lighting", 0.1)) > 0:
            steps.append(Lighting(float(aug.get("lighting", 0.1))))
        steps.append(T.Normalize(mean, std))
        return T.Compose(steps)
    steps = []
    if aug.get("cifar_crop", True):
        steps.append(T.RandomCrop(crop_size, padding=4))
    if aug.get("flip", dataset != "svhn"):
        steps.append(T.RandomHorizontalFlip())
    return T.Compose([*steps, T.ToTensor(), T.Normalize(mean, std)])


def eval_transform(dataset: str, crop_size: int, resize_size: int, stats: Stats | None = None) -> T.Compose:
    """Center-crop evaluation (ImageNet: resize the short side, then crop); CIFAR/SVHN: none."""
    mean, std = stats or (IMAGENET_MEAN, IMAGENET_STD)
    if dataset in ("imagenet", "imagefolder"):
        return T.Compose([T.Resize(resize_size), T.CenterCrop(crop_size), T.ToTensor(), T.Normalize(mean, std)])
    return T.Compose([T.ToTensor(), T.Normalize(mean, std)])


def channel_stats(images: Any, channels_last: bool, chunk: int = 4096) -> Stats:
    """Per-channel mean and (population) std of uint8 images ``(N, H, W, C)`` or ``(N, C, H, W)``,
    scaled to [0, 1]. The sums of values and of squares are exact integers (int64, by chunks), so
    ``E[x^2] - E[x]^2`` has no rounding to cancel."""
    images = np.asarray(images)
    axis = 3 if channels_last else 1
    sums = np.zeros(images.shape[axis], dtype=np.int64)
    squares = np.zeros_like(sums)
    other = tuple(d for d in range(4) if d != axis)
    for start in range(0, len(images), chunk):
        block = images[start : start + chunk].astype(np.int64)
        sums += block.sum(axis=other)
        squares += (block * block).sum(axis=other)
    n = images.size // images.shape[axis]
    mean = sums / n
    std = np.sqrt(squares / n - mean**2)
    return tuple((mean / 255.0).tolist()), tuple((std / 255.0).tolist())


# --------------------------------------------------------------------------------------------------
# ImageNet / ImageFolder
# --------------------------------------------------------------------------------------------------
def _images_in(folder: Path, limit: int | None = None) -> list[Path]:
    found = []
    for entry in os.scandir(folder):
        if entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS):
            found.append(Path(entry.path))
            if limit is not None and len(found) >= limit:
                break
    return found


def _class_dirs(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def check_image_folder(root: str | os.PathLike, splits: Sequence[str] = ("train", "val")) -> dict[str, list[str]]:
    """Check the ``root/<split>/<class>/<image>`` layout; return each split's class names.

    Raises :class:`DataError` naming the path and the fix for: a missing root or split, a flat
    ``val/`` (the ILSVRC2012 tarball's layout), a split without class folders, a class folder without
    images, and splits whose class lists differ.
    """
    root = Path(root)
    layout = "ROOT/train/<class>/*.JPEG and ROOT/val/<class>/*.JPEG (see reproductions/README.md, 'Data')"
    if not root.is_dir():
        raise DataError(f"dataset folder not found: {root}. Point --data at the folder that holds {layout}.")
    classes: dict[str, list[str]] = {}
    for split in splits:
        folder = root / split
        if not folder.is_dir():
            present = ", ".join(sorted(p.name for p in root.iterdir())[:10]) or "nothing"
            raise DataError(f"{folder} does not exist ({root} holds: {present}). Expected {layout}.")
        names = _class_dirs(folder)
        loose = _images_in(folder, limit=1)
        if loose and not names:
            count = len(_images_in(folder))
            raise DataError(
                f"{folder} holds {count} images directly, without class folders: this is the flat layout of the "
                f"ILSVRC2012 validation tarball. Sort it into class folders with the ground truth, e.g.\n"
                f"  python -m reproductions.tasks.classification.data sort-val {folder} LOC_val_solution.csv\n"
                f"(LOC_val_solution.csv from the Kaggle ImageNet download, or any 'filename,wnid' CSV)."
            )
        if not names:
            raise DataError(f"{folder} has no class folders; expected {layout}.")
        empty = [n for n in names if not _images_in(folder / n, limit=1)]
        if empty:
            raise DataError(
                f"{len(empty)} class folder(s) of {folder} hold no images (first: {folder / empty[0]}); "
                f"image files must end in one of {', '.join(IMAGE_EXTENSIONS)}. Re-extract the dataset."
            )
        classes[split] = names
    first = splits[0]
    for split in splits[1:]:
        if classes[split] != classes[first]:
            only_a = sorted(set(classes[first]) - set(classes[split]))[:5]
            only_b = sorted(set(classes[split]) - set(classes[first]))[:5]
            raise DataError(
                f"{root / first} and {root / split} have different class folders ({len(classes[first])} vs "
                f"{len(classes[split])}; only in {first}: {only_a}, only in {split}: {only_b}). Labels would "
                f"not match; make both splits hold the same class folders."
            )
    return classes


def _load_image(path: str) -> Image.Image:
    """PIL loader whose error names the file."""
    try:
        with open(path, "rb") as fh:
            img = Image.open(fh)
            return img.convert("RGB")
    except Exception as err:
        raise DataError(
            f"cannot read image {path}: {type(err).__name__}: {err}. The file is corrupt or not an image; "
            f"re-extract it from the original archive or delete it."
        ) from err


def image_folder(root: Path, transform: Any) -> tvd.ImageFolder:
    return tvd.ImageFolder(str(root), transform=transform, loader=_load_image)


# --------------------------------------------------------------------------------------------------
# CIFAR / SVHN
# --------------------------------------------------------------------------------------------------
_TV_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python", "svhn": "train_32x32.mat"}


def _torchvision_dataset(name: str, root: Path, train: bool, download: bool) -> Dataset:
    if not root.is_dir() and not download:
        raise DataError(f"{name} folder not found: {root}. Create it and pass --download, or point --data at it.")
    try:
        if name == "cifar10":
            return tvd.CIFAR10(str(root), train=train, download=download)
        if name == "cifar100":
            return tvd.CIFAR100(str(root), train=train, download=download)
        return tvd.SVHN(str(root), split="train" if train else "test", download=download)
    except OSError as err:  # urllib's URLError (no network) and socket errors are OSErrors
        raise DataError(
            f"could not download {name} into {root} ({type(err).__name__}: {getattr(err, 'reason', err)}); this "
            f"machine may have no network. Fetch the archive elsewhere (torchvision's {name} URL), unpack it into "
            f"{root} so that {root / _TV_FOLDERS[name]} exists, and run without --download."
        ) from err
    except RuntimeError as err:
        raise DataError(
            f"{name} not found or corrupt under {root} (expected {root / _TV_FOLDERS[name]}"
            f"{' and test_32x32.mat' if name == 'svhn' else ''}). Pass --download to fetch it (needs network), "
            f"or point --data at the folder that holds it. torchvision said: {err}"
        ) from err


def build_classification_datasets(
    data_cfg: Mapping[str, Any], aug: Mapping[str, Any], *, download: bool = False
) -> tuple[Dataset, Dataset, int]:
    """``(train, val, num_classes)`` for ``data_cfg["dataset"]`` at ``data_cfg["root"]``."""
    name = str(data_cfg.get("dataset", "imagenet")).lower()
    if name not in DATASETS:
        raise DataError(f"data.dataset={name!r} is not supported; choose one of {', '.join(DATASETS)}")
    if not data_cfg.get("root"):
        raise DataError("no dataset path given: pass --data PATH (or set data.root in the config)")
    root = Path(data_cfg["root"]).expanduser()
    crop, resize = int(data_cfg.get("crop_size", 224)), int(data_cfg.get("resize_size", 256))
    if name in ("imagenet", "imagefolder"):
        classes = check_image_folder(root)
        train = image_folder(root / "train", train_transform(name, aug, crop))
        val = image_folder(root / "val", eval_transform(name, crop, resize))
        return train, val, len(classes["train"])
    train = _torchvision_dataset(name, root, True, download)
    val = _torchvision_dataset(name, root, False, download)
    stats = channel_stats(train.data, channels_last=name != "svhn")  # type: ignore[attr-defined]
    train.transform = train_transform(name, aug, crop, stats)  # type: ignore[attr-defined]
    val.transform = eval_transform(name, crop, resize, stats)  # type: ignore[attr-defined]
    return train, val, 100 if name == "cifar100" else 10


# --------------------------------------------------------------------------------------------------
# fixing a flat ILSVRC2012 val folder
# --------------------------------------------------------------------------------------------------
def _read_val_labels(labels: Path) -> dict[str, str]:
    """``{image stem: wnid}`` from Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString`` with
    the wnid first) or any two-column ``filename,wnid`` / ``filename wnid`` file."""
    mapping: dict[str, str] = {}
    with labels.open(newline="") as fh:
        sample = fh.read(2048)
        fh.seek(0)
        delimiter = "," if "," in sample else None
        rows = csv.reader(fh, delimiter=",") if delimiter else (line.split() for line in fh)
        for row in rows:
            if len(row) < 2 or row[0] in ("ImageId", "filename"):
                continue
            mapping[Path(row[0].strip()).stem] = row[1].split()[0]
    if not mapping:
        raise DataError(f"{labels}: no 'filename,wnid' rows found")
    return mapping


def sort_flat_val(val_dir: str | os.PathLike, labels: str | os.PathLike, *, dry_run: bool = False) -> int:
    """Move each ``val_dir/<image>`` into ``val_dir/<wnid>/`` using the ``labels`` file; returns how many
    images were (or, with ``dry_run``, would be) moved. Images without a label are reported."""
    val_dir, labels = Path(val_dir), Path(labels)
    mapping = _read_val_labels(labels)
    images = _images_in(val_dir)
    missing = [p.name for p in images if p.stem not in mapping]
    if missing:
        raise DataError(f"{len(missing)} image(s) of {val_dir} have no label in {labels} (first: {missing[0]})")
    for path in images:
        if not dry_run:
            target = val_dir / mapping[path.stem]
            target.mkdir(exist_ok=True)
            shutil.move(str(path), target / path.name)
    return len(images)


def check_image_files(
    root: str | os.PathLike, classes: Mapping[str, Sequence[str]], *, workers: int | None = None
) -> int:
    """Decode every image of ``root/<split>/<class>/`` (``classes`` as :func:`check_image_folder` returns
    them); returns how many, or raises one :class:`DataError` listing each file that fails."""
    from reproductions.tasks.image_check import ImageCheck, require_images

    root = Path(root)
    items = [
        ImageCheck(path)
        for split, names in classes.items()
        for name in names
        for path in _images_in(root / split / name)
    ]
    require_images(
        items,
        kind="image file(s) cannot be used",
        fix="re-extract them, or delete them from the folder",
        workers=workers,
    )
    return len(items)


def main(argv: Sequence[str] | None = None) -> int:
    """``check ROOT [--no-decode]`` and ``sort-val``; a problem is one ``error:`` paragraph, exit status 2."""
    return run_cli(_main, argv)


def _main(argv: Sequence[str] | None) -> int:
    from reproductions.tasks.image_check import add_check_command

    parser = argparse.ArgumentParser(description="Dataset utilities: check an ImageNet folder, sort a flat val/.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    add_check_command(sub, "check ROOT/train and ROOT/val and decode every image")
    sort = sub.add_parser("sort-val", help="move flat val images into class folders")
    sort.add_argument("val_dir")
    sort.add_argument("labels", help="LOC_val_solution.csv or a 'filename,wnid' file")
    sort.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    if args.cmd == "check":
        classes = check_image_folder(args.root)
        decoded = "" if args.no_decode else f"; {check_image_files(args.root, classes, workers=args.workers)} decoded"
        print(f"ok: {len(classes['train'])} classes in train/ and val/{decoded}")
    else:
        n = sort_flat_val(args.val_dir, args.labels, dry_run=args.dry_run)
        print(f"{'would move' if args.dry_run else 'moved'} {n} images into class folders")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
