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
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import functional as TF

from reproductions.tasks.classification.data import DataError, _load_image
from reproductions.tasks.imagenet_stats import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "IGNORE_INDEX",
    "TRAIN_AUG_SIZE",
    "VOC_CLASSES",
    "VOCSegmentation",
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
        return sorted(p.stem for p in masks.glob("*.png") if p.stem not in val), masks
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
    if mode not in ("P", "L"):
        raise DataError(
            f"mask {path} is a {mode} image; VOC masks are single-channel PNGs (palette or grayscale) whose pixel "
            f"values are class indices 0..{num_classes - 1} and {IGNORE_INDEX} for 'ignore', not colours"
        )
    bad = np.setdiff1d(np.unique(arr), [*range(num_classes), IGNORE_INDEX])
    if bad.size:
        raise DataError(
            f"mask {path} has values {bad.tolist()[:10]} outside 0..{num_classes - 1} and {IGNORE_INDEX}; "
            f"it is not a VOC class-index mask"
        )
    return arr


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check a VOC 2012 (+ SBD) folder for semantic segmentation")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="list the splits found and what is missing")
    check.add_argument("root")
    args = parser.parse_args(argv)
    failed = False
    for split in ("train_aug", "train", "val"):
        try:
            ds = VOCSegmentation(args.root, split, train=False)
            note = "" if split != "train_aug" or len(ds) == TRAIN_AUG_SIZE else f" (the papers use {TRAIN_AUG_SIZE})"
            print(f"{split}: {len(ds)} images{note}: OK")
        except DataError as err:
            failed = True
            print(f"{split}: {err}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
