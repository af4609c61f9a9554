"""Image classification on the engine: ImageNet (folder layout), CIFAR-10/100, SVHN, any ImageFolder.

Every paper's ``train_imagenet.py`` (and NormProp's ``train_cifar.py``) is ``main(argv, paper=...)``::

    python -m reproductions.group_norm.train_imagenet --config reproductions/group_norm/configs/table2_gn_2img.yaml \\
        --data /datasets/imagenet
    torchrun --nproc_per_node=8 -m reproductions.group_norm.train_imagenet --config ... --data ...

Per epoch: train, evaluate top-1/top-5 error on center crops of the whole validation set (summed
over ranks), write ``metrics.jsonl`` and ``checkpoint.pt``. At the end ``summary.json`` holds the final,
best and median-of-last-N top-1 error (``eval.median_last``, 5 as the GN paper reports), next to the
published value of the row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reproductions.claims.targets import reported_top1_err
from reproductions.engine.distributed import all_reduce_sum, print0
from reproductions.engine.entry import RunContext, Task, TaskParts, fmt, run_task
from reproductions.engine.session import eval_loader, median_of_last
from reproductions.tasks.classification.data import build_classification_datasets
from reproductions.tasks.models import build_model

__all__ = ["CLASSIFICATION", "CLASSIFICATION_DEFAULTS", "build_from_config", "evaluate_topk", "main", "topk_correct"]

CLASSIFICATION_DEFAULTS: dict[str, Any] = {
    "model": {
        "arch": "resnet50",
        "norm": "bn",
        "norm_kwargs": {},
        "conv": "conv",
        "conv_kwargs": {},
        "num_classes": None,  # null = the dataset's number of classes
        "zero_init_residual": True,
        "kwargs": {},
        "activation": "relu",
        "inception_kwargs": {},  # bn_inception: first_conv, depth_multiplier, lrn (tasks/classification/inception.py)
    },
    "data": {
        "dataset": "imagenet",
        "root": None,
        "download": False,
        "batch_size": 32,  # images per device
        "eval_batch_size": None,  # per process; null = the training process batch
        "workers": 8,
        "crop_size": 224,
        "resize_size": 256,
    },
    "augment": {
        "min_scale": 0.08,
        "color_jitter": 0.4,
        "lighting": 0.1,
        "cifar_crop": True,
        "flip": True,
    },
    "loss": {"label_smoothing": 0.0},
    # median_last: report the median top-1 error of the last N epochs (GN paper §4.1: N = 5);
    # target_top1_err: report the first epoch/step whose top-1 error is at most this (BN paper Fig. 3,
    # "steps to 72.2%" accuracy = 27.8% error).
    # report: which number is the run's result: median_last (GN paper), best (the best epoch: BN paper Fig. 3's
    # maximum accuracy, the WS code's best_acc) or final (the last epoch).
    "eval": {"median_last": 5, "target_top1_err": None, "report": "median_last"},
}


def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks: Sequence[int] = (1, 5)) -> list[torch.Tensor]:
    """Number of samples whose target is among the top-k logits, for each k (clipped to the class count)."""
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices
    hits = top.eq(target.view(-1, 1))
    return [hits[:, : min(k, kmax)].any(dim=1).sum() for k in ks]


@torch.no_grad()
def evaluate_topk(model: nn.Module, loader: Any, device: torch.device, channels_last: bool) -> dict[str, float]:
    """Top-1 / top-5 error (%) and loss over the loader's samples, summed over all ranks."""
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=device)  # correct@1, correct@5, loss sum, count
    for images, target in loader:
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        target = target.to(device, non_blocking=True)
        logits = model(images).float()
        c1, c5 = topk_correct(logits, target)
        totals += torch.stack(
            [c1.double(), c5.double(), F.cross_entropy(logits, target, reduction="sum").double(),
             torch.tensor(float(target.numel()), dtype=torch.float64, device=device)]
        )  # fmt: skip
    all_reduce_sum(totals)
    n = max(totals[3].item(), 1.0)
    return {
        "top1_err": 100.0 * (1.0 - totals[0].item() / n),
        "top5_err": 100.0 * (1.0 - totals[1].item() / n),
        "val_loss": totals[2].item() / n,
        "val_images": int(totals[3].item()),
    }


def build_from_config(cfg: Mapping[str, Any], num_classes: int | None = None) -> nn.Module:
    """The config's model (``model`` section, with ``train.sync_bn`` / ``train.virtual_devices``)."""
    model_cfg = dict(cfg["model"])
    if model_cfg.get("num_classes") is None:
        model_cfg["num_classes"] = num_classes or 1000
    train = cfg["train"]
    return build_model(
        model_cfg, sync_bn=bool(train.get("sync_bn")), virtual_devices=int(train.get("virtual_devices", 1))
    )


def main(argv: Sequence[str] | None = None, *, paper: str, description: str = "") -> dict[str, Any] | None:
    """Train and evaluate one config; returns the summary metrics on rank 0 (``None`` elsewhere)."""
    return run_task(CLASSIFICATION, argv, paper=paper, description=description)


def _build(ctx: RunContext) -> TaskParts:
    cfg, run = ctx.cfg, ctx.run
    assert run is not None
    train_set, val_set, num_classes = build_classification_datasets(
        cfg["data"], cfg["augment"], download=bool(cfg["data"].get("download"))
    )
    print0(f"data: {len(train_set)} training and {len(val_set)} validation images, {num_classes} classes")
    val_loader = eval_loader(val_set, run, batch_size=cfg["data"].get("eval_batch_size"))
    channels_last = bool(cfg["train"]["channels_last"])
    smoothing = float(cfg["loss"]["label_smoothing"])
    n = int(cfg["eval"]["median_last"])

    def loss_fn(m: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        images, target = batch
        logits = m(images)
        return F.cross_entropy(logits.float(), target, label_smoothing=smoothing), {}

    def summarize(history: list[dict[str, Any]]) -> dict[str, Any]:
        metrics = {
            "top1_err_final": history[-1].get("top1_err") if history else None,
            "top5_err_final": history[-1].get("top5_err") if history else None,
            f"top1_err_median_last{n}": median_of_last(history, "top1_err", n),
            f"top5_err_median_last{n}": median_of_last(history, "top5_err", n),
            "top1_err_best": min((r["top1_err"] for r in history if "top1_err" in r), default=None),
        }
        metrics["reported_as"] = str(cfg["eval"]["report"])
        metrics["top1_err_reported"] = reported_top1_err(metrics, metrics["reported_as"], n)
        target = cfg["eval"].get("target_top1_err")
        if target is not None:
            hit = next((r for r in history if r.get("top1_err") is not None and r["top1_err"] <= target), None)
            metrics["target_top1_err"] = target
            metrics["epoch_at_target"] = hit["epoch"] if hit else None
            metrics["step_at_target"] = hit["step"] if hit else None
        return metrics

    def report(metrics: dict[str, Any]) -> str:
        if "top1_err" in metrics:  # --eval-only
            return f"top-1 error {fmt(metrics['top1_err'])}%  top-5 error {fmt(metrics['top5_err'])}%"
        return (
            f"top-1 error {fmt(metrics['top1_err_final'])}% "
            f"(median of last {n}: {fmt(metrics[f'top1_err_median_last{n}'])}%)"
        )

    return TaskParts(
        model=build_from_config(cfg, num_classes),
        train_set=train_set,
        loss_fn=loss_fn,
        evaluate=lambda m: evaluate_topk(m, val_loader, run.env.device, channels_last),
        summarize=summarize,
        report=report,
    )


CLASSIFICATION = Task(
    name="classification",
    defaults=CLASSIFICATION_DEFAULTS,
    build=_build,
    description="full-scale image classification training",
)
"""The classification task as :func:`~reproductions.engine.entry.run_task` runs it."""
