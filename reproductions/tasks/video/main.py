"""Something-Something video recognition on the engine: TSM ResNet-50 with BN, BN+WS, GN or GN+WS, as the
WS paper (arXiv 1903.10520, video recognition) trains it with the official TSM recipe
(mit-han-lab/temporal-shift-module README, "To train on Something-Something").

What ``train_video.py`` of the weight_standardization reproduction calls::

    python -m reproductions.weight_standardization.train_video \\
        --config reproductions/weight_standardization/configs/video/tsm_r50_gn_ws.yaml \\
        --data /datasets/something-something-v1 --set model.pretrained=/weights/R-50-GN-WS.pth.tar

Sections: ``model`` (:func:`~reproductions.tasks.video.tsm.build_tsm`), ``data`` (version, segments,
crops, evaluation views: :mod:`~reproductions.tasks.video.something`), and the engine's. Loss:
cross-entropy on the clip scores. Metric: top-1 and top-5 accuracy (%) over every validation video
(the scores of a video's views averaged first), summed over all ranks.
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
from reproductions.tasks.classification.main import topk_correct
from reproductions.tasks.video.something import SomethingSomething
from reproductions.tasks.video.tsm import build_tsm

__all__ = ["VIDEO", "VIDEO_DEFAULTS", "evaluate_video", "main"]

VIDEO_DEFAULTS: dict[str, Any] = {
    "model": {
        "backbone": "resnet50",
        "norm": "bn",
        "norm_kwargs": {},
        "conv": "conv",
        "conv_kwargs": {},
        "pretrained": None,  # ImageNet weights of the same norm (TSM trains Something-Something from ImageNet)
        "zero_init_residual": True,  # only matters without pretrained weights
        "num_segments": 8,
        "shift": True,
        "shift_div": 8,  # 1/8 of the channels each way
        "dropout": 0.5,
    },
    "data": {
        "root": None,
        "version": "v1",  # v1 (JPEG frames) or v2 (WebM videos)
        "train_split": "train",
        "val_split": "validation",
        "batch_size": 8,  # clips per GPU (TSM: 64 over 8 GPUs)
        "eval_batch_size": 4,
        "workers": 8,
        "crop_size": 224,
        "scale_size": 256,
        "scales": [1.0, 0.875, 0.75, 0.66],
        "max_val_videos": None,
    },
    "eval": {"clips": 1, "crops": 1},  # 1x1: TSM's "efficient" setting; 2 clips x 3 crops: "accurate"
}


@torch.no_grad()
def evaluate_video(model: nn.Module, loader: Any, device: torch.device) -> dict[str, float]:
    """Top-1 / top-5 accuracy (%) and loss over the loader's videos (all views of a video averaged),
    summed over all ranks."""
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=device)  # correct@1, correct@5, loss sum, count
    for clips, target in loader:
        clips, target = clips.to(device, non_blocking=True), target.to(device, non_blocking=True)
        scores = model(clips).float()
        c1, c5 = topk_correct(scores, target)
        loss = F.cross_entropy(scores, target, reduction="sum")
        totals += torch.stack(
            [
                c1.double(),
                c5.double(),
                loss.double(),
                torch.tensor(float(target.numel()), device=device, dtype=torch.float64),
            ]
        )
    all_reduce_sum(totals)
    n = max(totals[3].item(), 1.0)
    return {
        "top1_acc": 100.0 * totals[0].item() / n,
        "top5_acc": 100.0 * totals[1].item() / n,
        "val_loss": totals[2].item() / n,
        "val_videos": int(totals[3].item()),
    }


def _datasets(cfg: dict[str, Any]) -> tuple[SomethingSomething, SomethingSomething]:
    data, ev = cfg["data"], cfg["eval"]
    if not data.get("root"):
        raise SystemExit("no dataset: pass --data /path/to/something-something-v1 (or v2 with --set data.version=v2)")
    common = {
        "num_segments": int(cfg["model"]["num_segments"]),
        "crop_size": int(data["crop_size"]),
        "scale_size": int(data["scale_size"]),
    }
    train = SomethingSomething(
        data["root"], data["version"], data["train_split"], train=True, scales=data["scales"], **common
    )
    val = SomethingSomething(
        data["root"],
        data["version"],
        data["val_split"],
        train=False,
        clips=int(ev["clips"]),
        crops=int(ev["crops"]),
        max_videos=data.get("max_val_videos"),
        **common,
    )
    return train, val


def _prepare(ctx: RunContext) -> None:
    """Check the dataset folder (every listed video present) before the session starts."""
    ctx.prepared["train_set"], ctx.prepared["val_set"] = _datasets(ctx.cfg)


def _build(ctx: RunContext) -> TaskParts:
    cfg, run = ctx.cfg, ctx.run
    assert run is not None
    train_set, val_set = ctx.prepared["train_set"], ctx.prepared["val_set"]
    print0(
        f"data: Something-Something {train_set.version.upper()}, {len(train_set)} training and "
        f"{len(val_set)} validation videos, {train_set.num_classes} classes; evaluation "
        f"{cfg['eval']['clips']} clip(s) x {cfg['eval']['crops']} crop(s)"
    )
    train_cfg = cfg["train"]
    model = build_tsm(
        cfg["model"],
        train_set.num_classes,
        sync_bn=bool(train_cfg["sync_bn"]),
        virtual_devices=int(train_cfg.get("virtual_devices", 1)),
        trusted=ctx.args.trusted_checkpoint,
        log=print0,
    )
    val_loader = eval_loader(val_set, run, batch_size=cfg["data"].get("eval_batch_size"))

    def loss_fn(m: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        clips, target = batch
        return F.cross_entropy(m(clips).float(), target), {}

    def summarize(history: list[dict[str, Any]]) -> dict[str, Any]:
        last = history[-1] if history else {}
        return {k: last.get(k) for k in ("top1_acc", "top5_acc")}

    return TaskParts(
        model=model,
        train_set=train_set,
        loss_fn=loss_fn,
        evaluate=lambda m: evaluate_video(m, val_loader, run.env.device),
        summarize=summarize,
        images_in_batch=lambda batch: int(batch[0].shape[0]),  # clips
        report=lambda mt: f"top-1 {fmt(mt.get('top1_acc'))}%  top-5 {fmt(mt.get('top5_acc'))}%",
    )


VIDEO = Task(
    name="video",
    defaults=VIDEO_DEFAULTS,
    build=_build,
    prepare=_prepare,
    description="TSM video recognition on Something-Something (full scale)",
)
"""The Something-Something task as :func:`~reproductions.engine.entry.run_task` runs it."""


def main(argv: Sequence[str] | None = None, *, paper: str, description: str = "") -> dict[str, Any] | None:
    """Train and evaluate one config; returns the final metrics on rank 0 (``None`` elsewhere)."""
    return run_task(VIDEO, argv, paper=paper, description=description)
