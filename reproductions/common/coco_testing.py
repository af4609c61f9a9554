"""A small generated COCO dataset in the real on-disk format, for end-to-end tests of the detection
pipeline (loader, Mask R-CNN training, COCOeval).

:func:`make_coco_dataset` writes ``root/annotations/instances_<split>.json`` and ``root/<split>/*.jpg``:
each image shows a few filled shapes on a noisy background (squares, triangles and discs of a
per-class colour), each annotated with a polygon, its bounding box and its area, so the json exercises
the polygon path of pycocotools and a few iterations of training have something learnable.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["SHAPES", "make_coco_dataset"]

SHAPES = ("square", "triangle", "disc")
_COLOURS = ((220, 40, 40), (40, 200, 60), (50, 80, 230))


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[float]:
    if shape == "square":
        pts = [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    elif shape == "triangle":
        pts = [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    else:
        pts = [(cx + r * math.cos(t), cy + r * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 16, endpoint=False)]
    return [round(float(v), 2) for p in pts for v in p]


def make_coco_dataset(
    root: str | os.PathLike,
    *,
    splits: dict[str, int] | None = None,
    size: tuple[int, int] = (64, 80),
    max_objects: int = 3,
    seed: int = 0,
) -> Path:
    """Write a COCO tree under ``root`` with ``splits`` (name -> number of images, default
    ``{"train": 6, "val": 3}``) of ``size`` = (height, width) images; returns ``root``.

    Categories: ``square`` (id 1), ``triangle`` (id 2), ``disc`` (id 5: non-contiguous on purpose, as
    COCO's ids are). Every image has 1..``max_objects`` non-overlapping shapes.
    """
    root = Path(root)
    splits = splits or {"train": 6, "val": 3}
    cat_ids = (1, 2, 5)
    rng = np.random.default_rng(seed)
    height, width = size
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    ann_id = 1
    for split, count in splits.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        for i in range(count):
            image_id = 100 * (list(splits).index(split) + 1) + i
            background = rng.normal(120, 20, size=(height, width, 3)).clip(0, 255).astype(np.uint8)
            img = Image.fromarray(background)
            draw = ImageDraw.Draw(img)
            n = int(rng.integers(1, max_objects + 1))
            # one column band per object, so shapes never overlap
            band = width / n
            for k in range(n):
                kind = int(rng.integers(len(SHAPES)))
                r = float(rng.uniform(0.22, 0.4) * min(band, height))
                cx = float(band * k + band / 2 + rng.uniform(-0.1, 0.1) * band)
                cy = float(rng.uniform(r + 1, height - r - 1))
                poly = _polygon(SHAPES[kind], cx, cy, r)
                draw.polygon(list(zip(poly[0::2], poly[1::2], strict=True)), fill=_COLOURS[kind])
                xs, ys = poly[0::2], poly[1::2]
                x0, y0 = min(xs), min(ys)
                area = 0.5 * abs(sum(xs[j] * ys[j - 1] - xs[j - 1] * ys[j] for j in range(len(xs))))
                annotations.append(
                    {
                        "id": ann_id,
                        "image_id": image_id,
                        "category_id": cat_ids[kind],
                        "segmentation": [poly],
                        "bbox": [x0, y0, max(xs) - x0, max(ys) - y0],
                        "area": area,
                        "iscrowd": 0,
                    }
                )
                ann_id += 1
            name = f"{image_id:012d}.jpg"
            img.save(root / split / name, quality=95)
            images.append({"id": image_id, "file_name": name, "height": height, "width": width})
        data = {
            "info": {"description": "generated test data in the COCO format"},
            "images": images,
            "annotations": annotations,
            "categories": [
                {"id": c, "name": s, "supercategory": "shape"} for c, s in zip(cat_ids, SHAPES, strict=True)
            ],
        }
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data), encoding="utf-8")
    return root
