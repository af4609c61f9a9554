"""Small generated datasets in the real on-disk formats, for smoke tests of the full-scale scripts.

:func:`make_image_folder` writes an ImageNet-layout tree (``train/<class>/*.JPEG``,
``val/<class>/*.JPEG``) of tiny JPEGs whose class is visible in the pixels (a per-class colour and
stripe pattern plus noise), so a few epochs of training measurably beat chance.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["TINY_CONFIG", "make_image_folder", "write_config"]


def make_image_folder(
    root: str | os.PathLike,
    *,
    classes: int = 3,
    train_per_class: int = 6,
    val_per_class: int = 2,
    size: int = 40,
    seed: int = 0,
) -> Path:
    """Write ``root/train/class_k/img_i.JPEG`` and ``root/val/...``; returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for k in range(classes):
            folder = root / split / f"class_{k}"
            folder.mkdir(parents=True, exist_ok=True)
            base = np.array([60 + 150 * ((k >> b) & 1) for b in range(3)], dtype=np.float64)
            stripes = 40.0 * np.sin((xx if k % 2 else yy) * (k + 1) * np.pi / size)[..., None]
            for i in range(count):
                noise = rng.normal(0.0, 25.0, size=(size, size, 3))
                pixels = np.clip(base + stripes + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"img_{i}.JPEG", quality=90)
    return root


TINY_CONFIG: dict = {
    "name": "tiny",
    "paper": "test",
    "model": {
        "arch": "small_resnet",
        "norm": "gn",
        "norm_kwargs": {"num_groups": 4},
        "kwargs": {"depth": 8, "width": 8},
    },
    "data": {"dataset": "imagefolder", "batch_size": 4, "workers": 1, "crop_size": 32, "resize_size": 36},
    "train": {"epochs": 2, "log_every": 2, "device": "cpu"},
    "optim": {"lr": 0.05, "reference_batch": None},
    "schedule": {"milestones": [1]},
}
"""A config that trains a 8-layer CIFAR ResNet on :func:`make_image_folder` data in seconds on a CPU."""


def write_config(path: str | os.PathLike, overrides: dict | None = None) -> Path:
    """Write :data:`TINY_CONFIG` merged with ``overrides`` as YAML; returns the path."""
    import yaml

    from reproductions.common.config import merge

    path = Path(path)
    path.write_text(yaml.safe_dump(merge(TINY_CONFIG, overrides or {}), sort_keys=False))
    return path
