"""The photographs of the CPU-scale stylization experiment (``reproductions/instance_norm/cpu.py``): images
that ship with scikit-image (nothing is downloaded), resized, center-cropped, and random training crops."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from reproductions.tasks.stylization.losses import resize_short_side

__all__ = [
    "NATURAL_PHOTOGRAPHS",
    "Photograph",
    "alternate_split",
    "center_crop",
    "load_photograph",
    "random_crops",
    "resize_short_side",
]

NATURAL_PHOTOGRAPHS = (
    "astronaut",
    "brick",
    "camera",
    "cell",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "moon",
    "page",
    "retina",
    "rocket",
    "stereo_motorcycle",
    "text",
)
"""Every photograph that ships inside scikit-image's wheel (no download, no ``pooch``) with a short side of
at least 128 px, in alphabetical order. Left out: ``immunohistochemistry`` (the stylization experiment's
style image), ``cat`` (the same picture as ``chelsea``), synthetic images (``checkerboard``, ``colorwheel``,
``logo``, ``shepp_logan_phantom``, ``binary_blobs``), the binary silhouette ``horse``, ``microaneurysms``
(102 px) and ``lfw_subset`` (25 px faces)."""


@dataclass(frozen=True)
class Photograph:
    """A named image as a ``(3, H, W)`` float tensor in [0, 1]."""

    name: str
    image: torch.Tensor


def load_photograph(name: str) -> Photograph:
    """An image of ``skimage.data`` by name (``"astronaut"``, ``"camera"``, ...) as RGB in [0, 1]; grayscale
    images are repeated to three channels, an alpha channel is dropped, stereo pairs give the left image."""
    import skimage.data

    loader = getattr(skimage.data, name, None)
    if loader is None or not callable(loader):
        raise ValueError(f"skimage.data has no image {name!r}")
    arr = loader()
    if isinstance(arr, tuple):  # stereo_motorcycle: (left, right, disparity)
        arr = arr[0]
    arr = np.asarray(arr)
    if arr.dtype == bool:
        arr = arr.astype(np.float32)
    elif arr.dtype != np.float32 and arr.dtype != np.float64:
        arr = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    image = torch.from_numpy(np.ascontiguousarray(arr[..., :3], dtype=np.float32)).permute(2, 0, 1)
    return Photograph(name, image.clamp(0, 1))


def alternate_split(names: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A split fixed by a rule rather than by choice: sort ``names`` alphabetically and put every second one
    (positions 1, 3, 5, ...) in the held-out part. Returns ``(train, held_out)``."""
    ordered = sorted(names)
    return tuple(ordered[0::2]), tuple(ordered[1::2])


def center_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size x size`` crop of a ``(C, H, W)`` image."""
    h, w = image.shape[-2:]
    if min(h, w) < size:
        raise ValueError(f"cannot crop {size}x{size} from an image of {h}x{w}")
    top, left = (h - size) // 2, (w - size) // 2
    return image[..., top : top + size, left : left + size]


def random_crops(images: Sequence[torch.Tensor], size: int, batch: int, generator: torch.Generator) -> torch.Tensor:
    """``batch`` random ``size x size`` crops, each from a random image of ``images`` (``(3, H, W)`` each)
    with a random horizontal flip: a ``(batch, 3, size, size)`` tensor."""
    picks = torch.randint(len(images), (batch,), generator=generator).tolist()
    crops = []
    for k in picks:
        image = images[k]
        h, w = image.shape[-2:]
        top = int(torch.randint(h - size + 1, (1,), generator=generator))
        left = int(torch.randint(w - size + 1, (1,), generator=generator))
        crop = image[:, top : top + size, left : left + size]
        if bool(torch.randint(2, (1,), generator=generator)):
            crop = crop.flip(-1)
        crops.append(crop)
    return torch.stack(crops)
