"""ModelNet40 point-cloud classification on the engine: DGCNN with BN, BN+WS, GN or GN+WS, as the WS
paper's point-cloud code (csrhddlam/dgcnn, TensorFlow) trains it.

What ``train_pointcloud.py`` of the weight_standardization reproduction calls::

    python -m reproductions.weight_standardization.train_pointcloud \\
        --config reproductions/weight_standardization/configs/pointcloud/dgcnn_gn_ws.yaml \\
        --data /datasets/modelnet40_ply_hdf5_2048

Sections: ``model`` (:func:`~reproductions.tasks.pointcloud.dgcnn.build_dgcnn`), ``data``
(:mod:`~reproductions.tasks.pointcloud.modelnet`), ``loss`` (label smoothing 0.2, as the official
``get_loss``) and the engine's. Metrics (the official ``eval_one_epoch``): overall accuracy, the share
of test shapes classified right, and mean class accuracy, the mean over classes of each class's
accuracy, both in % and summed over all ranks before dividing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reproductions.engine.distributed import all_reduce_sum, print0
from reproductions.engine.entry import RunContext, Task, TaskParts, fmt, run_task
from reproductions.engine.session import eval_loader
from reproductions.tasks.pointcloud.dgcnn import build_dgcnn
from reproductions.tasks.pointcloud.modelnet import ModelNet40

__all__ = ["POINTCLOUD", "POINTCLOUD_DEFAULTS", "accuracy_from_counts", "evaluate_pointcloud", "main"]

POINTCLOUD_DEFAULTS: dict[str, Any] = {
    "model": {
        "k": 20,
        "norm": "gn",
        "norm_kwargs": {"num_groups": 16},
        "ws": True,
        "ws_variant": "official_tf",
        "emb_dims": 1024,
        "dropout": 0.5,
        "transform_net": True,
    },
    "data": {
        "root": None,
        "num_points": 1024,
        "batch_size": 32,
        "eval_batch_size": 32,
        "workers": 4,
        "max_test_shapes": None,
    },
    "loss": {"label_smoothing": 0.2},
}


def accuracy_from_counts(correct: torch.Tensor, seen: torch.Tensor) -> dict[str, float]:
    """Overall and mean class accuracy (%) from per-class correct and seen counts; classes with no test
    shape are left out of the mean."""
    present = seen > 0
    per_class = correct[present].double() / seen[present].double()
    return {
        "overall_acc": 100.0 * correct.sum().item() / max(seen.sum().item(), 1),
        "mean_class_acc": 100.0 * per_class.mean().item() if present.any() else 0.0,
    }


@torch.no_grad()
def evaluate_pointcloud(model: nn.Module, loader: Any, device: torch.device, num_classes: int) -> dict[str, float]:
    """Overall and mean class accuracy (%) and loss over the loader's shapes, summed over all ranks."""
    model.eval()
    correct = torch.zeros(num_classes, dtype=torch.float64, device=device)
    seen = torch.zeros_like(correct)
    loss = torch.zeros(1, dtype=torch.float64, device=device)
    for points, target in loader:
        points, target = points.to(device, non_blocking=True), target.to(device, non_blocking=True)
        scores = model(points).float()
        loss += F.cross_entropy(scores, target, reduction="sum").double()
        ones = torch.ones_like(target, dtype=torch.float64)
        seen.index_add_(0, target, ones)
        correct.index_add_(0, target, (scores.argmax(dim=1) == target).double())
    for t in (correct, seen, loss):
        all_reduce_sum(t)
    return {
        **accuracy_from_counts(correct, seen),
        "val_loss": loss.item() / max(seen.sum().item(), 1),
        "test_shapes": int(seen.sum().item()),
    }


def _prepare(ctx: RunContext) -> None:
    """Read (and check) the HDF5 files before the session starts."""
    data = ctx.cfg["data"]
    if not data.get("root"):
        raise SystemExit("no dataset: pass --data /path/to/modelnet40_ply_hdf5_2048")
    n = int(data["num_points"])
    ctx.prepared["train_set"] = ModelNet40(data["root"], "train", train=True, num_points=n)
    ctx.prepared["test_set"] = ModelNet40(
        data["root"], "test", train=False, num_points=n, max_shapes=data.get("max_test_shapes")
    )


def _build(ctx: RunContext) -> TaskParts:
    cfg, run = ctx.cfg, ctx.run
    assert run is not None
    train_set, test_set = ctx.prepared["train_set"], ctx.prepared["test_set"]
    print0(
        f"data: ModelNet40, {len(train_set)} training and {len(test_set)} test shapes, "
        f"{train_set.num_points} points each, {train_set.num_classes} classes"
    )
    model_cfg = dict(cfg["model"])
    if cfg["train"]["sync_bn"] or int(cfg["train"].get("virtual_devices", 1)) > 1:
        raise SystemExit("--sync-bn / --virtual-devices are not wired into DGCNN: the official runs use one GPU")
    model = build_dgcnn(model_cfg, train_set.num_classes)
    test_loader = eval_loader(test_set, run, batch_size=cfg["data"].get("eval_batch_size"))
    smoothing = float(cfg["loss"]["label_smoothing"])

    def loss_fn(m: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        points, target = batch
        return F.cross_entropy(m(points).float(), target, label_smoothing=smoothing), {}

    def summarize(history: list[dict[str, Any]]) -> dict[str, Any]:
        last = history[-1] if history else {}
        return {k: last.get(k) for k in ("overall_acc", "mean_class_acc")}

    return TaskParts(
        model=model,
        train_set=train_set,
        loss_fn=loss_fn,
        evaluate=lambda m: evaluate_pointcloud(m, test_loader, run.env.device, train_set.num_classes),
        summarize=summarize,
        report=lambda mt: (
            f"overall accuracy {fmt(mt.get('overall_acc'))}%  mean class accuracy {fmt(mt.get('mean_class_acc'))}%"
        ),
    )


POINTCLOUD = Task(
    name="pointcloud",
    defaults=POINTCLOUD_DEFAULTS,
    build=_build,
    prepare=_prepare,
    description="DGCNN point-cloud classification on ModelNet40 (full scale)",
)
"""The ModelNet40 task as :func:`~reproductions.engine.entry.run_task` runs it."""


def main(argv: Sequence[str] | None = None, *, paper: str, description: str = "") -> dict[str, Any] | None:
    """Train and evaluate one config; returns the final metrics on rank 0 (``None`` elsewhere)."""
    return run_task(POINTCLOUD, argv, paper=paper, description=description)
