"""COCO evaluation of instance detections with pycocotools' ``COCOeval``: box and mask AP, AP50, AP75
and AP for small, medium and large objects, in percent, as the GN and WS papers report them.

Each rank runs the model on its shard of the validation images (:class:`~reproductions.common.
sampling.ShardSampler`) and turns the detections into COCO result dicts (boxes as x, y, w, h; masks
thresholded at 0.5 and run-length encoded, as Detectron and torchvision's reference scripts do); rank
0 gathers them, runs ``COCOeval`` for each IoU type, and the numbers are broadcast so every rank
returns the same dict (the engine's ``evaluate`` contract).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn

from reproductions.engine.distributed import all_gather_object, broadcast_object, get_env, unwrap_model
from reproductions.engine.logs import progress

__all__ = ["IOU_TYPES", "STAT_NAMES", "detections_to_results", "evaluate_coco", "ground_truth_results", "run_cocoeval"]

IOU_TYPES = ("bbox", "segm")
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
"""The first six numbers of ``COCOeval.stats``: AP at IoU .50:.05:.95, at .50, at .75, and for small,
medium and large objects (all with 100 detections per image)."""


def _encode(mask: np.ndarray) -> dict[str, Any]:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")  # JSON- and pickle-friendly
    return rle


def detections_to_results(
    output: Mapping[str, torch.Tensor],
    image_id: int,
    label_to_cat: Mapping[int, int],
    *,
    mask_threshold: float = 0.5,
) -> list[dict[str, Any]]:
    """One image's Mask R-CNN output (``boxes`` x1, y1, x2, y2 in original pixels, ``labels``,
    ``scores``, optional ``masks`` ``(N, 1, H, W)`` probabilities) as COCO result dicts."""
    boxes = output["boxes"].detach().float().cpu()
    if boxes.numel() == 0:
        return []
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
    scores = output["scores"].detach().float().cpu().tolist()
    labels = output["labels"].detach().cpu().tolist()
    masks = None
    if "masks" in output:
        masks = (output["masks"].detach().float().cpu()[:, 0] > mask_threshold).numpy()
    results = []
    for k, (box, score, label) in enumerate(zip(xywh, scores, labels, strict=True)):
        res = {"image_id": int(image_id), "category_id": int(label_to_cat[int(label)]), "bbox": box, "score": score}
        if masks is not None:
            res["segmentation"] = _encode(masks[k])
        results.append(res)
    return results


def ground_truth_results(coco: COCO, image_ids: Iterable[int] | None = None) -> list[dict[str, Any]]:
    """The ground truth itself as detections with score 1 (non-crowd annotations): a perfect
    prediction, which must score AP = 1 for boxes and masks. Checks the evaluator, not a model."""
    ids = list(image_ids) if image_ids is not None else sorted(coco.imgs)
    results = []
    for image_id in ids:
        info = coco.imgs[image_id]
        for ann in coco.imgToAnns.get(image_id, []):
            if ann.get("iscrowd", 0):
                continue
            rle = coco.annToRLE(ann)
            mask = mask_utils.decode(rle)
            results.append(
                {
                    "image_id": image_id,
                    "category_id": ann["category_id"],
                    "bbox": list(ann["bbox"]),
                    "score": 1.0,
                    "segmentation": _encode(mask.reshape(info["height"], info["width"])),
                }
            )
    return results


def run_cocoeval(
    coco_gt: COCO,
    results: Sequence[Mapping[str, Any]],
    iou_types: Sequence[str] = IOU_TYPES,
    image_ids: Iterable[int] | None = None,
) -> tuple[dict[str, float], str]:
    """``COCOeval`` over ``results`` for each IoU type, restricted to ``image_ids`` when given.

    Returns ``({"bbox_AP": 37.7, "bbox_AP50": ..., "segm_AP": ...}, summary_text)`` in percent; ``None``
    where the split has no object of that size. With no detections at all every AP is 0 (pycocotools
    cannot load an empty result list).
    """
    unknown = [t for t in iou_types if t not in IOU_TYPES]
    if unknown:
        raise ValueError(f"unknown IoU type(s) {unknown}; choose from {IOU_TYPES}")
    metrics: dict[str, float | None] = {}
    text = []
    for iou_type in iou_types:
        if not results:
            metrics.update({f"{iou_type}_{name}": 0.0 for name in STAT_NAMES})
            text.append(f"{iou_type}: no detections, AP = 0")
            continue
        with contextlib.redirect_stdout(io.StringIO()) as captured:
            coco_dt = coco_gt.loadRes([dict(r) for r in results])
            evaluator = COCOeval(coco_gt, coco_dt, iou_type)
            if image_ids is not None:
                evaluator.params.imgIds = sorted(set(image_ids))
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        text.append(
            f"{iou_type}:\n" + "\n".join(line for line in captured.getvalue().splitlines() if "Average" in line)
        )
        for name, value in zip(STAT_NAMES, evaluator.stats[: len(STAT_NAMES)], strict=True):
            # COCOeval writes -1 where an area range has no ground truth: reported as None (JSON null)
            metrics[f"{iou_type}_{name}"] = 100.0 * float(value) if value >= 0 else None
    return metrics, "\n".join(text)


@torch.no_grad()
def evaluate_coco(
    model: nn.Module,
    loader: Iterable[tuple[list[torch.Tensor], list[Mapping[str, torch.Tensor]]]],
    coco_gt: COCO,
    label_to_cat: Mapping[int, int],
    image_ids: Sequence[int],
    *,
    device: torch.device,
    iou_types: Sequence[str] = IOU_TYPES,
    mask_threshold: float = 0.5,
    log: Any = None,
) -> dict[str, float]:
    """Run ``model`` (a torchvision detection model) over this rank's ``loader``, gather every rank's
    results on rank 0, evaluate with COCOeval over ``image_ids``, and return the same metrics on every
    rank. The plain module is used (not DDP: ranks may hold different numbers of images). ``log``
    (a callable taking a string) receives the COCOeval summary on rank 0."""
    env = get_env()
    net = unwrap_model(model)
    net.eval()
    results: list[dict[str, Any]] = []
    bar = progress(total=len(loader) if hasattr(loader, "__len__") else None, desc="COCO eval", enabled=env.is_main)
    for images, targets in loader:
        outputs = net([img.to(device, non_blocking=True) for img in images])
        for out, tgt in zip(outputs, targets, strict=True):
            results += detections_to_results(out, int(tgt["image_id"]), label_to_cat, mask_threshold=mask_threshold)
        bar.update(1)
    bar.close()
    gathered = all_gather_object(results)
    metrics: dict[str, float] | None = None
    if env.is_main:
        merged = [r for part in gathered for r in part]
        metrics, text = run_cocoeval(coco_gt, merged, iou_types, image_ids)
        metrics["detections"] = float(len(merged))
        if log is not None:
            log(text)
    return broadcast_object(metrics)
