"""ImageNet's per-channel RGB mean and standard deviation (of pixels in [0, 1]): the input normalization
of every ImageNet-pretrained backbone here, hence of every full-scale task (classification, detection,
segmentation, the stylization loss network). One definition, imported everywhere."""

from __future__ import annotations

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
