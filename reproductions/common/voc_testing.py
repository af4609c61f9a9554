"""A small generated PASCAL VOC 2012 tree in the real format, for end-to-end tests of the segmentation
pipeline: ``JPEGImages/*.jpg``, ``SegmentationClass/*.png`` (palette PNGs with the VOC palette and
255-valued object borders, as VOC draws them), ``ImageSets/Segmentation/{train,val}.txt`` and,
optionally, ``SegmentationClassAug/*.png`` (grayscale index PNGs, as the SBD conversion ships them).

Each image is a noisy background (class 0) with a few filled rectangles and discs; an object's class
sets its colour, so a few iterations of training have something learnable.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from reproductions.common.voc_data import IGNORE_INDEX, voc_palette

__all__ = ["make_voc_dataset"]


def _colour(cls: int) -> np.ndarray:
    rng = np.random.default_rng(1000 + cls)
    return rng.integers(30, 226, size=3).astype(np.float64)


def make_voc_dataset(
    root: str | os.PathLike,
    *,
    train: int = 6,
    val: int = 3,
    size: tuple[int, int] = (48, 64),
    classes: tuple[int, ...] = (1, 7, 15),
    with_sbd: bool = True,
    extra_sbd: int = 2,
    seed: int = 0,
) -> Path:
    """Write ``root/VOC2012/...``; returns ``root`` (the ``VOCdevkit`` folder).

    ``train``/``val`` images go to ``SegmentationClass`` and the split lists; with ``with_sbd`` every
    one of them plus ``extra_sbd`` SBD-only images also gets a ``SegmentationClassAug`` mask, so
    ``train_aug`` = train + extra (val excluded), as in the real 10,582-image set.
    """
    voc = Path(root) / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    if with_sbd:
        (voc / "SegmentationClassAug").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    height, width = size
    yy, xx = np.mgrid[0:height, 0:width]
    palette = voc_palette()
    names: dict[str, list[str]] = {"train": [], "val": [], "sbd": []}
    for split, count in (("train", train), ("val", val), ("sbd", extra_sbd if with_sbd else 0)):
        for i in range(count):
            name = f"2012_{split}{i:04d}"
            pixels = rng.normal(110, 15, size=(height, width, 3))
            label = np.zeros((height, width), dtype=np.uint8)
            for _ in range(int(rng.integers(1, 3))):
                cls = int(rng.choice(classes))
                cy, cx = rng.uniform(0.25, 0.75) * height, rng.uniform(0.2, 0.8) * width
                r = rng.uniform(0.15, 0.3) * min(height, width)
                if rng.random() < 0.5:
                    inside = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
                else:
                    inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
                pixels[inside] = _colour(cls) + rng.normal(0, 8, size=(int(inside.sum()), 3))
                label[inside] = cls
            # VOC marks a 1-pixel band around each object as 'ignore'
            border = np.zeros_like(label, dtype=bool)
            border[:, 1:] |= label[:, 1:] != label[:, :-1]
            border[1:, :] |= label[1:, :] != label[:-1, :]
            voc_label = label.copy()
            voc_label[border] = IGNORE_INDEX
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(voc / "JPEGImages" / f"{name}.jpg", quality=95)
            if split != "sbd":
                png = Image.fromarray(voc_label)
                png.putpalette(palette)  # turns the L image into a palette (P) image
                png.save(voc / "SegmentationClass" / f"{name}.png")
            if with_sbd:
                Image.fromarray(label).save(voc / "SegmentationClassAug" / f"{name}.png")
            names[split].append(name)
    for split in ("train", "val"):
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(names[split]) + "\n")
    return Path(root)
