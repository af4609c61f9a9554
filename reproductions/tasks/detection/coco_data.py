"""COCO instance segmentation data for Mask R-CNN: the folder check, annotation validation with errors
that name the file, the annotation and the fix, and the training/evaluation dataset.

Layout (what ``--data PATH`` points at; the official archives unpacked side by side)::

    PATH/annotations/instances_train2017.json   118,287 images (117,266 with at least one object)
    PATH/annotations/instances_val2017.json     5,000 images
    PATH/train2017/000000000009.jpg ...
    PATH/val2017/000000000139.jpg ...

Any other split name works the same way (``instances_<split>.json`` and ``<split>/``), which is how the
tests run the real loader on a generated COCO file.

Targets follow Detectron's training rules, which the GN paper's Mask R-CNN runs used: crowd regions
are not trained on (torchvision's Mask R-CNN has no ignore regions, so they are dropped), boxes are
clipped to the image and dropped when empty, training images left without an object are skipped, and
the only augmentation is a horizontal flip with probability 0.5; resizing (shorter side 800, longer
at most 1333) happens in the model (``GeneralizedRCNNTransform``). Category ids are mapped to
contiguous labels ``1..K`` (0 is background) and back for evaluation.

Command line: ``python -m reproductions.tasks.detection.coco_data check PATH [--split val2017]`` validates an
annotation file, decodes every image and compares its size with the annotations, and prints what it
found (each problem with its file; exit status 2 if any).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch.utils.data import Dataset
from torchvision.transforms import functional as TF

from reproductions.errors import run_cli
from reproductions.tasks.classification.data import DataError, _load_image
from reproductions.tasks.image_check import ImageCheck, add_check_command, require_images

__all__ = [
    "CocoInstances",
    "annotation_mask",
    "check_coco",
    "check_coco_images",
    "coco_paths",
    "detection_collate",
    "load_coco_api",
    "validate_coco",
]

_DOWNLOAD_HINT = (
    "download train2017.zip, val2017.zip and annotations_trainval2017.zip from https://cocodataset.org/#download "
    "and unpack all three into the same folder"
)
_FORMAT_HINT = "see the 'Object Detection' format at https://cocodataset.org/#format-data"
_MAX_LISTED = 5
_EDGE = 1.0
"""How far (pixels) a polygon vertex may lie outside the image: COCO outlines trace pixel borders, so a
vertex on the far edge of the last pixel column sits at ``width`` and rounding can add a little."""


def coco_paths(root: str | os.PathLike, split: str) -> tuple[Path, Path]:
    """``(annotation_file, image_folder)`` of ``split`` under ``root``."""
    root = Path(root)
    return root / "annotations" / f"instances_{split}.json", root / split


def check_coco(root: str | os.PathLike | None, splits: Sequence[str]) -> None:
    """Raise :class:`DataError` naming the missing path and the fix when ``root`` lacks a split's
    annotation file or image folder."""
    if not root:
        raise DataError("no COCO path given: pass --data PATH (the folder holding annotations/ and train2017/)")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"COCO folder not found: {root}. Point --data at it; to get COCO, {_DOWNLOAD_HINT}.")
    for split in splits:
        ann, images = coco_paths(root, split)
        if not ann.is_file():
            present = sorted(p.name for p in (root / "annotations").glob("*.json")) if ann.parent.is_dir() else []
            raise DataError(
                f"{ann} not found (annotations/ holds: {', '.join(present) or 'nothing'}). The '{split}' split needs "
                f"annotations/instances_{split}.json; {_DOWNLOAD_HINT}."
            )
        if not images.is_dir():
            raise DataError(f"image folder {images} not found for split '{split}'; {_DOWNLOAD_HINT}.")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as err:
        raise DataError(
            f"{path} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); the file is truncated "
            f"or corrupt: re-extract it from annotations_trainval2017.zip"
        ) from err
    if not isinstance(data, dict):
        raise DataError(f"{path}: a COCO annotation file is a JSON object, got {type(data).__name__}; {_FORMAT_HINT}")
    return data


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_id(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _polygon_area(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The shoelace formula: the area a closed polygon encloses."""
    n = len(xs)
    return abs(sum(xs[i] * ys[(i + 1) % n] - xs[(i + 1) % n] * ys[i] for i in range(n))) / 2.0


def _segmentation_problem(seg: Any, height: int, width: int) -> str | None:
    """Why ``seg`` is not a usable COCO segmentation (``None`` if it is)."""
    if isinstance(seg, list):
        if not seg:
            return "'segmentation' is an empty list (give at least one polygon [x1, y1, x2, y2, x3, y3, ...])"
        for k, poly in enumerate(seg):
            if not isinstance(poly, list) or not all(_is_number(v) for v in poly):
                return f"polygon {k} is not a flat list of numbers [x1, y1, x2, y2, ...]"
            if len(poly) % 2:
                return f"polygon {k} has an odd number of coordinates ({len(poly)}); it needs x, y pairs"
            if len(poly) < 6:
                return (
                    f"polygon {k} has {len(poly) // 2} point(s); a polygon needs at least 3 "
                    f"(pycocotools would read 4 numbers as a box)"
                )
            xs, ys = poly[0::2], poly[1::2]
            if min(xs) < -_EDGE or min(ys) < -_EDGE or max(xs) > width + _EDGE or max(ys) > height + _EDGE:
                return (
                    f"polygon {k} reaches outside the {width}x{height} image (x {min(xs):g}..{max(xs):g}, "
                    f"y {min(ys):g}..{max(ys):g})"
                )
            if _polygon_area(xs, ys) == 0.0:
                return f"polygon {k} encloses no area (its {len(xs)} points lie on one line or repeat)"
        return None
    if isinstance(seg, Mapping):
        if "counts" not in seg or "size" not in seg:
            return "an RLE 'segmentation' needs 'counts' and 'size'"
        size = seg["size"]
        if not (isinstance(size, list) and len(size) == 2 and list(size) == [height, width]):
            return f"RLE size {size} differs from the image's [height, width] = [{height}, {width}]"
        return None
    return f"'segmentation' must be a list of polygons or an RLE dict, got {type(seg).__name__}"


def validate_coco(data: Mapping[str, Any], path: str | os.PathLike, image_dir: str | os.PathLike | None = None) -> None:
    """Check a COCO instances dict and raise one :class:`DataError` listing every problem found (the
    first few of each kind, with annotation and image ids) and how to fix it.

    Checked: the top-level lists; ids and fields of images, categories and annotations; that every
    annotation points at an existing image and category; ``bbox`` is 4 finite numbers with
    non-negative width and height; ``segmentation`` is polygons of at least 3 points or an RLE of the
    image's size; and, with ``image_dir``, that every image file exists.
    """
    path = Path(path)
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise DataError(
                f"{path}: missing top-level key '{key}'. A COCO instances file has 'images', 'annotations' and "
                f"'categories' lists; {_FORMAT_HINT}"
            )
        if not isinstance(data[key], list):
            raise DataError(f"{path}: '{key}' must be a list, got {type(data[key]).__name__}")
    problems: list[str] = []

    def report(kind: str, items: list[str], fix: str) -> None:
        if items:
            shown = "; ".join(items[:_MAX_LISTED]) + (
                f"; ... ({len(items)} in all)" if len(items) > _MAX_LISTED else ""
            )
            problems.append(f"{kind}: {shown}. Fix: {fix}")

    images: dict[int, Mapping[str, Any]] = {}
    bad_images = []
    for k, img in enumerate(data["images"]):
        missing = [f for f in ("id", "file_name", "height", "width") if not isinstance(img, Mapping) or f not in img]
        if missing:
            bad_images.append(f"images[{k}] lacks {', '.join(missing)}")
        elif not _is_id(img["id"]):
            bad_images.append(f"images[{k}] has id {img['id']!r}; COCO ids are integers")
        elif not (
            isinstance(img["height"], int) and isinstance(img["width"], int) and img["height"] > 0 < img["width"]
        ):
            bad_images.append(f"image id {img['id']} has height/width {img['height']}/{img['width']}")
        elif img["id"] in images:
            bad_images.append(f"image id {img['id']} appears twice")
        else:
            images[img["id"]] = img
    report(
        "bad image entries", bad_images, "every image needs a unique 'id', 'file_name' and positive 'height', 'width'"
    )

    categories = set()
    bad_cats = []
    for k, cat in enumerate(data["categories"]):
        if not isinstance(cat, Mapping) or "id" not in cat or "name" not in cat:
            bad_cats.append(f"categories[{k}] lacks 'id' or 'name'")
        elif not _is_id(cat["id"]):
            bad_cats.append(f"categories[{k}] has id {cat['id']!r}; COCO ids are integers")
        elif cat["id"] in categories:
            bad_cats.append(f"category id {cat['id']} appears twice")
        else:
            categories.add(cat["id"])
    report("bad categories", bad_cats, "every category needs a unique 'id' and a 'name'")
    if not categories and not bad_cats:
        problems.append("no categories: the file defines no object classes")

    bad_keys, bad_refs, bad_boxes, bad_segs = [], [], [], []
    seen_ids: set[Any] = set()
    for k, ann in enumerate(data["annotations"]):
        required = ("id", "image_id", "category_id", "bbox", "segmentation")
        missing = [f for f in required if not isinstance(ann, Mapping) or f not in ann]
        if missing:
            label = f"annotation id {ann['id']}" if isinstance(ann, Mapping) and "id" in ann else f"annotations[{k}]"
            bad_keys.append(f"{label} lacks {', '.join(missing)}")
            continue
        where = f"annotation id {ann['id']} (image {ann['image_id']})"
        if ann["id"] in seen_ids:
            bad_keys.append(f"annotation id {ann['id']} appears twice")
        seen_ids.add(ann["id"])
        if ann["image_id"] not in images:
            bad_refs.append(f"{where}: {_missing_ref('image', ann['image_id'], images)}")
            continue
        if ann["category_id"] not in categories:
            bad_refs.append(f"{where}: {_missing_ref('category', ann['category_id'], categories)}")
        box = ann["bbox"]
        if (
            not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box))
            or box[2] < 0
            or box[3] < 0
        ):
            bad_boxes.append(f"{where}: bbox {box!r}")
        img = images[ann["image_id"]]
        problem = _segmentation_problem(ann["segmentation"], img["height"], img["width"])
        if problem:
            bad_segs.append(f"{where}: {problem}")
    report("annotations with missing keys", bad_keys, f"each annotation needs {', '.join(required)}; {_FORMAT_HINT}")
    report("annotations pointing nowhere", bad_refs, "remove them or add the image/category they refer to")
    report("bad boxes", bad_boxes, "'bbox' is [x, y, width, height] in pixels with width, height >= 0")
    report("bad segmentations", bad_segs, "fix or remove these annotations")

    if image_dir is not None and images:
        image_dir = Path(image_dir)
        absent = [f"{img['file_name']} (image id {i})" for i, img in images.items()
                  if not (image_dir / img["file_name"]).is_file()]  # fmt: skip
        report(
            f"image files missing from {image_dir}",
            absent,
            "unpack the split's image archive there, or point --data at the folder that holds it",
        )
    if problems:
        raise DataError(f"{path}: {len(problems)} kind(s) of problem:\n  - " + "\n  - ".join(problems))


def _missing_ref(kind: str, ref: Any, known: Iterable[Any]) -> str:
    """Why ``ref`` names no known id: a number written as a string is said so."""
    if isinstance(ref, str) and ref.strip().lstrip("-").isdigit() and int(ref) in set(known):
        return f"{kind}_id is the string {ref!r}; COCO ids are integers: write {int(ref)} without quotes"
    return f"no {kind} with id {ref!r}"


def load_coco_api(ann_file: str | os.PathLike, image_dir: str | os.PathLike | None = None) -> COCO:
    """Read, validate (:func:`validate_coco`) and index an annotation file with pycocotools, filling in
    a missing ``area`` from the segmentation (COCOeval needs it) and ``iscrowd`` as 0."""
    ann_file = Path(ann_file)
    data = _read_json(ann_file)
    validate_coco(data, ann_file, image_dir)
    heights = {img["id"]: (img["height"], img["width"]) for img in data["images"]}
    for ann in data["annotations"]:
        ann.setdefault("iscrowd", 0)
        if "area" not in ann:
            h, w = heights[ann["image_id"]]
            ann["area"] = float(mask_utils.area(_to_rle(ann["segmentation"], h, w)))
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints "creating index..."
        coco.createIndex()
    return coco


def _to_rle(seg: Any, height: int, width: int) -> dict[str, Any]:
    if isinstance(seg, list):
        return mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    if isinstance(seg["counts"], list):  # uncompressed RLE
        return mask_utils.frPyObjects(seg, height, width)
    return seg


def annotation_mask(seg: Any, height: int, width: int) -> np.ndarray:
    """The binary ``(height, width)`` uint8 mask of a COCO segmentation (polygons or RLE)."""
    return mask_utils.decode(_to_rle(seg, height, width))


class CocoInstances(Dataset):
    """One COCO split as ``(image, target)`` pairs for torchvision's Mask R-CNN.

    ``image`` is a float ``(3, H, W)`` tensor in [0, 1]; ``target`` holds ``boxes`` (``(N, 4)``
    x1, y1, x2, y2), ``labels`` (contiguous 1..K), ``masks`` (``(N, H, W)`` uint8), ``image_id``,
    ``area`` and ``iscrowd``. With ``train=True`` crowd annotations and empty boxes are dropped,
    images without objects are skipped, and images are flipped with probability ``flip_prob`` (drawn
    from torch's RNG, so :class:`~reproductions.engine.sampling.SeededDataset` makes it reproducible).

    Args:
        root: the COCO folder; split: e.g. ``train2017``.
        check_files: verify that every image file exists (one ``stat`` per image).
        max_images: keep only the first N images (quick checks).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        *,
        train: bool,
        flip_prob: float = 0.5,
        check_files: bool = True,
        max_images: int | None = None,
    ) -> None:
        check_coco(root, [split])
        ann_file, self.image_dir = coco_paths(root, split)
        self.coco = load_coco_api(ann_file, self.image_dir if check_files else None)
        self.train = train
        self.flip_prob = flip_prob if train else 0.0
        self.cat_ids = sorted(self.coco.getCatIds())
        self.cat_to_label = {c: i + 1 for i, c in enumerate(self.cat_ids)}
        self.label_to_cat = {i: c for c, i in self.cat_to_label.items()}
        ids = sorted(self.coco.imgs)
        if train:
            ids = [i for i in ids if self._objects(i)]
            if not ids:
                raise DataError(f"{ann_file}: no training image has a non-crowd object with a non-empty box")
        self.ids = ids[:max_images] if max_images else ids

    @property
    def num_classes(self) -> int:
        """Object categories (without the background)."""
        return len(self.cat_ids)

    @property
    def category_names(self) -> list[str]:
        return [self.coco.cats[c]["name"] for c in self.cat_ids]

    def _objects(self, image_id: int) -> list[tuple[dict[str, Any], list[float]]]:
        """The annotations used as targets with their clipped x1, y1, x2, y2 boxes."""
        info = self.coco.imgs[image_id]
        out = []
        for ann in self.coco.imgToAnns.get(image_id, []):
            if self.train and ann.get("iscrowd", 0):
                continue
            x, y, w, h = ann["bbox"]
            x1, y1 = max(0.0, x), max(0.0, y)
            x2, y2 = min(float(info["width"]), x + w), min(float(info["height"]), y + h)
            if x2 > x1 and y2 > y1:
                out.append((ann, [x1, y1, x2, y2]))
        return out

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image_id = self.ids[index]
        info = self.coco.imgs[image_id]
        image = TF.pil_to_tensor(_load_image(str(self.image_dir / info["file_name"]))).float().div_(255.0)
        height, width = image.shape[-2:]
        if (height, width) != (info["height"], info["width"]):
            raise DataError(
                f"{self.image_dir / info['file_name']} is {width}x{height} but the annotation file says "
                f"{info['width']}x{info['height']} (image id {image_id}); the image or the json is from another "
                f"release: re-extract both from the same COCO archives"
            )
        objects = self._objects(image_id)
        masks = np.stack([annotation_mask(a["segmentation"], height, width) for a, _ in objects]) if objects else None
        target = {
            "boxes": torch.tensor([b for _, b in objects], dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([self.cat_to_label[a["category_id"]] for a, _ in objects], dtype=torch.int64),
            "masks": torch.from_numpy(masks) if masks is not None else torch.zeros(0, height, width, dtype=torch.uint8),
            "image_id": torch.tensor(image_id, dtype=torch.int64),
            "area": torch.tensor([float(a["area"]) for a, _ in objects], dtype=torch.float32),
            "iscrowd": torch.tensor([int(a.get("iscrowd", 0)) for a, _ in objects], dtype=torch.int64),
        }
        if self.flip_prob > 0 and float(torch.rand(())) < self.flip_prob:
            image, target = hflip(image, target)
        return image, target


def hflip(image: torch.Tensor, target: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mirror an image and its boxes and masks left-right."""
    width = image.shape[-1]
    out = dict(target)
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
    out["boxes"] = boxes
    out["masks"] = target["masks"].flip(-1)
    return image.flip(-1), out


def detection_collate(batch: Iterable[tuple[torch.Tensor, dict[str, torch.Tensor]]]) -> tuple[list, list]:
    """``[(image, target), ...] -> ([images], [targets])``: detection images keep their own sizes."""
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)


def check_coco_images(ds: CocoInstances, *, workers: int | None = None, progress: bool = True) -> None:
    """Decode every image of ``ds`` and compare its size with the annotation file's ``height``/``width``;
    one :class:`DataError` lists every image that fails (truncated, unreadable, another size)."""
    items = [
        ImageCheck(ds.image_dir / info["file_name"], (info["height"], info["width"]), what=f"image id {image_id}")
        for image_id, info in sorted(ds.coco.imgs.items())
    ]
    require_images(
        items,
        kind=f"image(s) of {ds.image_dir} do not match {ds.image_dir.parent / 'annotations'}",
        fix="re-extract the images and the annotation file from the same COCO release",
        workers=workers,
        progress=progress,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``check ROOT [--split S ...] [--no-decode]``; exit status 0 when every split is usable, 2 (with
    an ``error:`` paragraph on stderr) when not."""
    return run_cli(_main, argv)


def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(description="Check a COCO folder: annotation file and images of a split")
    sub = parser.add_subparsers(dest="command", required=True)
    add_check_command(
        sub, "validate annotations/instances_<split>.json and decode every image", splits=("train2017", "val2017")
    )
    args = parser.parse_args(argv)
    for split in args.split or ["train2017", "val2017"]:
        ds = CocoInstances(args.root, split, train=False)
        if not args.no_decode:
            check_coco_images(ds, workers=args.workers)
        n_ann = len(ds.coco.anns)
        decoded = "files present" if args.no_decode else "every image decoded at its annotated size"
        print(f"{split}: {len(ds)} images, {n_ann} annotations, {ds.num_classes} categories, {decoded}: OK")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
