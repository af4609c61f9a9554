"""PASCAL VOC 2012 semantic segmentation with the SBD-augmented training set, as DeepLabv3 and the
WS/BCN paper's VOC experiment use it (joe-siyuan-qiao/Batch-Channel-Normalization:DeepLabV3, built on
chenxi116/DeepLabv3.pytorch).

Layout (``--data`` points at ``VOCdevkit`` or at ``VOCdevkit/VOC2012``)::

    VOC2012/JPEGImages/2007_000032.jpg ...                 17,125 images
    VOC2012/SegmentationClass/2007_000032.png ...          2,913 palette PNGs (train + val), 255 = ignore
    VOC2012/ImageSets/Segmentation/{train,val}.txt         1,464 / 1,449 image names
    VOC2012/SegmentationClassAug/2007_000032.png ...       12,031 index PNGs: VOC + SBD (Hariharan et al. 2011)
    VOC2012/ImageSets/Segmentation/train_aug.txt           optional: the 10,582 training names

``train_aug`` (the papers' training set) is the names in ``train_aug.txt``, or, without that file,
every ``SegmentationClassAug`` mask not in ``val.txt`` (12,031 - 1,449 = 10,582), labels read from
``SegmentationClassAug``; ``train`` and ``val`` read ``SegmentationClass``. Masks are single-channel
PNGs whose values are class indices 0..20, 255 for "ignore" (VOC's object borders).

Training augmentation, as chenxi116/DeepLabv3.pytorch ``utils.preprocess``: horizontal flip with
probability 0.5, a random scale in [0.5, 2] (uniform in log2), ImageNet mean/std normalization, padding
to the crop size (image 0 after normalization, label 255), a random ``crop_size`` crop (513). Evaluation
uses the whole image.

Command line: ``python -m reproductions.tasks.segmentation.voc_data check PATH`` lists the splits found,
decodes every image and mask (a mask must be a class-index PNG of its image's size) and reports each
problem with its file (exit status 2 if any).
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import functional as TF

from reproductions.errors import run_cli
from reproductions.tasks.classification.data import DataError, _load_image
from reproductions.tasks.image_check import ImageCheck, add_check_command, require_images
from reproductions.tasks.imagenet_stats import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "IGNORE_INDEX",
    "TRAIN_AUG_SIZE",
    "VOC_CLASSES",
    "VOCSegmentation",
    "check_voc_files",
    "mask_problem",
    "pad_collate",
    "read_mask",
    "resolve_voc_root",
    "split_names",
    "voc_palette",
]

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
IGNORE_INDEX = 255
TRAIN_AUG_SIZE = 10582
_SBD_HINT = (
    "SegmentationClassAug not found in {root}: the 10,582-image train_aug set needs the SBD annotations "
    "(Hariharan et al. 2011) converted to index PNGs in VOC2012/SegmentationClassAug; see "
    "reproductions/weight_standardization/README.md ('PASCAL VOC'). To train on the 1,464 VOC images only, "
    "pass --set data.train_split=train"
)


def voc_palette() -> list[int]:
    """The 256-colour VOC palette (the devkit's ``labelcolormap``: the bits of the class index spread
    over R, G, B from the most significant bit down), flattened for ``Image.putpalette``."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette += [r, g, b]
    return palette


def resolve_voc_root(root: str | os.PathLike | None) -> Path:
    """The ``VOC2012`` folder (given it or the ``VOCdevkit`` above it); clear error if absent."""
    if not root:
        raise DataError("no VOC path given: pass --data PATH (VOCdevkit or VOCdevkit/VOC2012)")
    root = Path(root)
    for candidate in (root, root / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    if not root.is_dir():
        raise DataError(f"VOC folder not found: {root}. Point --data at VOCdevkit (from VOCtrainval_11-May-2012.tar)")
    raise DataError(
        f"{root} holds no JPEGImages/ (nor VOC2012/JPEGImages/): point --data at VOCdevkit or VOCdevkit/VOC2012, "
        f"unpacked from VOCtrainval_11-May-2012.tar"
    )


def _read_names(path: Path) -> list[str]:
    names = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if not parts:
            continue
        # a name, or a chenxi116-style pair "/JPEGImages/x.jpg /SegmentationClassAug/x.png"
        names.append(Path(parts[0]).stem)
    return names


def split_names(voc: Path, split: str) -> tuple[list[str], Path]:
    """``(image names, mask folder)`` of ``split`` (``train_aug``, ``train``, ``val``, ``trainval``)."""
    sets = voc / "ImageSets" / "Segmentation"
    if split == "train_aug":
        masks = voc / "SegmentationClassAug"
        if not masks.is_dir():
            raise DataError(_SBD_HINT.format(root=voc))
        listed = sets / "train_aug.txt"
        if listed.is_file():
            return _read_names(listed), masks
        val = set(_read_names(sets / "val.txt")) if (sets / "val.txt").is_file() else set()
        # VOC's own training images belong to train_aug whether or not SBD gave them a mask: one without
        # its SegmentationClassAug mask is then reported as missing, not silently left out
        train = set(_read_names(sets / "train.txt")) if (sets / "train.txt").is_file() else set()
        return sorted(({p.stem for p in masks.glob("*.png")} | train) - val), masks
    listed = sets / f"{split}.txt"
    if not listed.is_file():
        raise DataError(f"{listed} not found: the '{split}' split of VOC 2012 segmentation lists its image names there")
    return _read_names(listed), voc / "SegmentationClass"


def read_mask(path: str | os.PathLike, num_classes: int = len(VOC_CLASSES)) -> np.ndarray:
    """A class-index mask as ``(H, W)`` uint8; errors name the file for colour PNGs and bad values."""
    try:
        with Image.open(path) as img:
            mode = img.mode
            arr = np.array(img)
    except FileNotFoundError:
        raise DataError(f"mask {path} not found; the split lists an image whose annotation is missing") from None
    except Exception as err:
        raise DataError(f"cannot read mask {path}: {type(err).__name__}: {err}") from err
    problem = mask_problem(arr, mode, num_classes)
    if problem:
        raise DataError(f"mask {path} {problem}")
    return arr


def mask_problem(arr: np.ndarray, mode: str, num_classes: int = len(VOC_CLASSES)) -> str | None:
    """Why a decoded mask is not a VOC class-index mask (``None`` if it is): a colour image, or values
    other than the class indices and 255."""
    if mode not in ("P", "L"):
        return (
            f"is a {mode} image; VOC masks are single-channel PNGs (palette or grayscale) whose pixel "
            f"values are class indices 0..{num_classes - 1} and {IGNORE_INDEX} for 'ignore', not colours"
        )
    bad = np.setdiff1d(np.unique(arr), [*range(num_classes), IGNORE_INDEX])
    if bad.size:
        return (
            f"has values {bad.tolist()[:10]} outside 0..{num_classes - 1} and {IGNORE_INDEX}; "
            f"it is not a VOC class-index mask"
        )
    return None


class VOCSegmentation(Dataset):
    """One VOC split as ``(image, label)`` pairs: ``image`` a normalized float ``(3, H, W)`` tensor,
    ``label`` an int64 ``(H, W)`` tensor of class indices with 255 = ignore. With ``train=True`` the
    augmentation of the module docstring, drawn from torch's RNG (reproducible under
    :class:`~reproductions.engine.sampling.SeededDataset`), and every sample is ``crop_size`` square."""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        *,
        train: bool,
        crop_size: int = 513,
        scale_range: tuple[float, float] = (0.5, 2.0),
        flip: bool = True,
        num_classes: int = len(VOC_CLASSES),
        max_images: int | None = None,
    ) -> None:
        self.voc = resolve_voc_root(root)
        names, self.mask_dir = split_names(self.voc, split)
        if not names:
            raise DataError(f"the '{split}' split of {self.voc} lists no images")
        missing = [n for n in names if not (self.voc / "JPEGImages" / f"{n}.jpg").is_file()]
        missing += [f"{n} (mask)" for n in names if not (self.mask_dir / f"{n}.png").is_file()]
        if missing:
            raise DataError(
                f"{len(missing)} file(s) of the '{split}' split are missing under {self.voc} (first: "
                f"{', '.join(missing[:5])}); re-extract the VOC (and SBD) archives"
            )
        self.split = split
        self.names = names[:max_images] if max_images else names
        self.train = train
        self.crop_size = crop_size
        self.scale_range = scale_range
        self.flip = flip
        self.num_classes = num_classes

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        name = self.names[index]
        image = TF.pil_to_tensor(_load_image(str(self.voc / "JPEGImages" / f"{name}.jpg"))).float().div_(255.0)
        label = torch.from_numpy(read_mask(self.mask_dir / f"{name}.png", self.num_classes).astype(np.int64))
        if image.shape[-2:] != label.shape:
            raise DataError(f"{name}: image {tuple(image.shape[-2:])} and mask {tuple(label.shape)} differ in size")
        if self.train:
            image, label = self._augment(image, label)
        return TF.normalize(image, IMAGENET_MEAN, IMAGENET_STD), label

    def _augment(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.flip and float(torch.rand(())) < 0.5:
            image, label = image.flip(-1), label.flip(-1)
        lo, hi = (math.log2(s) for s in self.scale_range)
        scale = 2.0 ** (lo + float(torch.rand(())) * (hi - lo))
        h, w = label.shape
        size = [max(1, round(h * scale)), max(1, round(w * scale))]
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
        label = F.interpolate(label[None, None].float(), size=size, mode="nearest")[0, 0].long()
        crop = self.crop_size
        pad_h, pad_w = max(0, crop - size[0]), max(0, crop - size[1])
        # pad after normalization in the original code: the image pads with the per-channel mean
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        image = F.pad(image - mean, (0, pad_w, 0, pad_h)) + mean
        label = F.pad(label, (0, pad_w, 0, pad_h), value=IGNORE_INDEX)
        top = int(torch.randint(0, label.shape[0] - crop + 1, ()))
        left = int(torch.randint(0, label.shape[1] - crop + 1, ()))
        return image[:, top : top + crop, left : left + crop], label[top : top + crop, left : left + crop]


def pad_collate(
    batch: Sequence[tuple[torch.Tensor, torch.Tensor]], min_size: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack images of different sizes by padding at the bottom and right (image 0, label 255), so
    evaluation can batch whole images; padded pixels are ignored by the metric. ``min_size`` pads to at
    least that height and width (the official DeepLabv3.pytorch evaluates 513x513 inputs)."""
    h = max(min_size, *(img.shape[-2] for img, _ in batch))
    w = max(min_size, *(img.shape[-1] for img, _ in batch))
    images = torch.stack([F.pad(img, (0, w - img.shape[-1], 0, h - img.shape[-2])) for img, _ in batch])
    labels = torch.stack(
        [F.pad(lab, (0, w - lab.shape[-1], 0, h - lab.shape[-2]), value=IGNORE_INDEX) for _, lab in batch]
    )
    return images, labels


def check_voc_files(ds: VOCSegmentation, *, workers: int | None = None, progress: bool = True) -> None:
    """Decode every image and mask of ``ds``: a mask must be a single-channel class-index PNG of its
    image's size. One :class:`DataError` lists every file that fails, with the problem."""
    items = []
    for name in ds.names:
        image = ds.voc / "JPEGImages" / f"{name}.jpg"
        items.append(ImageCheck(image, what=name))
        items.append(
            ImageCheck(
                ds.mask_dir / f"{name}.png",
                _header_size(image),
                mask_check=lambda arr, mode: mask_problem(arr, mode, ds.num_classes),
                what=f"mask of {name}, whose image sets the expected size",
            )
        )
    require_images(
        items,
        kind=f"file(s) of the '{ds.split}' split are unusable",
        fix="re-extract the VOC (and SBD) archives; masks are the index PNGs of SegmentationClass(Aug)",
        workers=workers,
        progress=progress,
    )


def _header_size(path: Path) -> tuple[int, int] | None:
    """``(height, width)`` from an image's header (no decoding), ``None`` if it cannot be read."""
    try:
        with Image.open(path) as img:
            return img.size[1], img.size[0]
    except Exception:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """``check ROOT [--no-decode]``: every split, with what is missing or unusable; exit status 2 (and
    an ``error:`` paragraph) if a split fails."""
    return run_cli(_main, argv)


def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(description="Check a VOC 2012 (+ SBD) folder for semantic segmentation")
    sub = parser.add_subparsers(dest="command", required=True)
    add_check_command(
        sub, "list the splits found, decode every image and mask, report problems", splits=("train_aug", "train", "val")
    )
    args = parser.parse_args(argv)
    failures = []
    for split in args.split or ["train_aug", "train", "val"]:
        try:
            ds = VOCSegmentation(args.root, split, train=False)
            if not args.no_decode:
                check_voc_files(ds, workers=args.workers)
        except DataError as err:
            failures.append(f"{split}: {err}")
            continue
        note = "" if split != "train_aug" or len(ds) == TRAIN_AUG_SIZE else f" (the papers use {TRAIN_AUG_SIZE})"
        decoded = "" if args.no_decode else ", every image and mask decoded"
        print(f"{split}: {len(ds)} images{note}{decoded}: OK")
    if failures:
        raise DataError(f"{len(failures)} split(s) failed the check:\n" + "\n".join(failures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
