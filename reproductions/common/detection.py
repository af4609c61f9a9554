"""COCO instance segmentation on the engine: torchvision's Mask R-CNN with a ResNet-FPN whose
normalization is placed as the GN paper (§4.2, Tables 4-7) and the WS paper (COCO) place it.

What ``train_coco.py`` of the group_norm and weight_standardization reproductions calls::

    python -m reproductions.group_norm.train_coco \\
        --config reproductions/group_norm/configs/coco/table6_r50_gn_2x.yaml \\
        --data /datasets/coco --set model.pretrained=/weights/R-50-GN.pth
    torchrun --nproc_per_node=8 -m reproductions.group_norm.train_coco --config ... --data ...

The model (``model`` section):

* backbone: ``resnet50``/``resnet101`` (or ``resnet18``/``resnet34`` for tests) from
  :mod:`normcore.models` with ``norm`` (``frozen_bn`` = the papers' BN*, ``gn``, ...) and ``conv``
  (``ws``); ImageNet weights from ``pretrained`` (:mod:`reproductions.common.pretrained`);
  ``trainable_layers`` stages train (3 = Detectron's ``FREEZE_AT: 2``; 5 from scratch);
* FPN (P2-P6, 256 channels) with ``fpn_norm`` after its lateral and output convs (Detectron's GN
  FPN); the RPN head has one 3x3 conv and no norm (Detectron's FPN RPN);
* box head ``2fc`` (two 1024-d fc layers, Detectron's default) or ``4conv1fc`` (four 3x3 convs of 256
  channels with ``box_head_norm``, then one fc, GN paper Table 5);
* mask head: four 3x3 convs with ``mask_head_norm``, a 2x deconv and a per-class 1x1 conv (28x28 masks);
* ``conv: ws`` puts WS on every conv that feeds a norm, in the backbone, the FPN and the heads (WS
  paper: "only convolutional layers that are followed by normalization layers").

Training and data follow Detectron (shorter side 800, longer at most 1333, horizontal flips, 2 images
per GPU in its GN configs); schedules are in epochs of train2017 (the configs give Detectron's
iteration counts converted, see their ``notes``). Each evaluation runs COCOeval on val2017 (box and
mask AP, AP50, AP75, APs/m/l).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

import normcore
from reproductions.common import checkpoint as ckpt
from reproductions.common.cli import config_from_args, default_out_dir, engine_parser
from reproductions.common.coco_data import CocoInstances, check_coco, detection_collate
from reproductions.common.coco_eval import IOU_TYPES, evaluate_coco
from reproductions.common.distributed import cleanup, print0
from reproductions.common.logs import RunLog
from reproductions.common.models import norm_name
from reproductions.common.precision import Precision
from reproductions.common.pretrained import backbone_from_config, freeze_resnet_stages
from reproductions.common.recipe import (
    Session,
    describe_run,
    eval_loader,
    optimizer_from_config,
    scheduler_from_config,
    start_session,
    train_loader,
    trainer_from_config,
    write_summary,
)
from reproductions.common.trainer import prepare_model

__all__ = ["BOX_HEADS", "DETECTION_DEFAULTS", "build_detector", "detection_loss", "main"]

BOX_HEADS = ("2fc", "4conv1fc")
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")

DETECTION_DEFAULTS: dict[str, Any] = {
    "model": {
        "backbone": "resnet50",
        "norm": "frozen_bn",  # backbone norm: frozen_bn (BN*), gn, bn, sync_bn, ...
        "norm_kwargs": {},
        "conv": "conv",  # ws: WS on every conv that feeds a norm (backbone, FPN, heads)
        "conv_kwargs": {},
        "fpn_norm": None,  # null = no norm in the FPN (Detectron's BN* models)
        "masks": True,  # false = Faster R-CNN (no mask branch; evaluate bbox only)
        "box_head": "2fc",  # 2fc | 4conv1fc
        "box_head_norm": None,
        "mask_head_norm": None,
        "head_norm_kwargs": {},  # for fpn_norm, box_head_norm and mask_head_norm
        "fpn_channels": 256,
        "head_channels": 256,  # convs of the 4conv1fc box head and of the mask head
        "box_head_fc": 1024,
        "mask_head_convs": 4,
        "pretrained": None,  # ImageNet weights: engine checkpoint or torchvision state_dict file
        "trainable_layers": 3,  # ResNet stages that train: 3 = Detectron FREEZE_AT 2; 5 = all (scratch)
        "zero_init_residual": True,  # only matters from scratch
        "kwargs": {},  # torchvision MaskRCNN keyword arguments (rpn_*, box_*)
    },
    "data": {
        "root": None,
        "train_split": "train2017",
        "val_split": "val2017",
        "batch_size": 2,  # images per GPU
        "eval_batch_size": 2,  # per process
        "workers": 4,
        "min_size": 800,
        "max_size": 1333,
        "flip_prob": 0.5,
        "check_files": True,
        "max_val_images": None,  # evaluate on the first N val images only (quick checks)
    },
    "eval": {"iou_types": list(IOU_TYPES), "mask_threshold": 0.5},
}


def _norm_or_none(spec: Any, kwargs: Mapping[str, Any]) -> Any:
    """A ``num_channels -> Module`` for torchvision's ``norm_layer=``, or ``None`` for no norm (then
    torchvision gives the conv a bias)."""
    if spec is None or norm_name(spec) == "none":
        return None
    return normcore.norm_layer(spec, **dict(kwargs or {}))


def _stage_channels(stage: nn.Module) -> int:
    convs = [m for m in stage.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels


def build_detector(
    model_cfg: Mapping[str, Any],
    num_classes: int,
    *,
    min_size: int = 800,
    max_size: int = 1333,
    sync_bn: bool = False,
    virtual_devices: int = 1,
    trusted: bool = False,
    log: Any = print0,
) -> FasterRCNN:
    """Mask R-CNN (or, with ``masks: false``, Faster R-CNN) with a ResNet-FPN for ``num_classes``
    object classes (plus background), as the ``model`` section describes (see the module docstring).
    ``log`` receives the pretrained-weights report."""
    m = dict(model_cfg)
    if m["backbone"] not in BACKBONES:
        raise ValueError(f"model.backbone={m['backbone']!r}; choose one of {', '.join(BACKBONES)}")
    if m["box_head"] not in BOX_HEADS:
        raise ValueError(f"model.box_head={m['box_head']!r}; choose one of {', '.join(BOX_HEADS)}")
    resnet = backbone_from_config(m, sync_bn=sync_bn, virtual_devices=virtual_devices, trusted=trusted, log=log)
    freeze_resnet_stages(resnet, int(m["trainable_layers"]))
    stages = ("layer1", "layer2", "layer3", "layer4")
    head_kw = m.get("head_norm_kwargs") or {}
    fpn_channels, head_channels = int(m["fpn_channels"]), int(m["head_channels"])
    backbone = BackboneWithFPN(
        resnet,
        return_layers={s: str(i) for i, s in enumerate(stages)},
        in_channels_list=[_stage_channels(getattr(resnet, s)) for s in stages],
        out_channels=fpn_channels,
        norm_layer=_norm_or_none(m.get("fpn_norm"), head_kw),
    )
    fc = int(m["box_head_fc"])
    if m["box_head"] == "2fc":
        if m.get("box_head_norm") not in (None, "none"):
            raise ValueError("model.box_head_norm needs box_head: 4conv1fc (the 2fc head has no convs to normalize)")
        box_head: nn.Module = TwoMLPHead(fpn_channels * 7 * 7, fc)
    else:
        box_head = FastRCNNConvFCHead(
            (fpn_channels, 7, 7), [head_channels] * 4, [fc], norm_layer=_norm_or_none(m.get("box_head_norm"), head_kw)
        )
    parts = [backbone.fpn, box_head]
    kwargs = dict(m.get("kwargs") or {})
    common = {"num_classes": None, "min_size": min_size, "max_size": max_size, "box_head": box_head}
    common["box_predictor"] = FastRCNNPredictor(fc, num_classes + 1)
    if m.get("masks", True):
        mask_head = MaskRCNNHeads(
            fpn_channels,
            [head_channels] * int(m["mask_head_convs"]),
            1,
            norm_layer=_norm_or_none(m.get("mask_head_norm"), head_kw),
        )
        parts.append(mask_head)
        common["mask_head"] = mask_head
        common["mask_predictor"] = MaskRCNNPredictor(head_channels, 256, num_classes + 1)
    conv = m.get("conv") or "conv"
    if conv != "conv" or m.get("conv_kwargs"):
        for part in parts:
            normcore.convert_convs(part, conv, **dict(m.get("conv_kwargs") or {}))
    return (MaskRCNN if m.get("masks", True) else FasterRCNN)(backbone, **common, **kwargs)


def detection_loss(model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The engine's ``loss_fn``: Mask R-CNN's loss dict (RPN objectness and box, classifier, box
    regression, mask) summed, with every term logged."""
    images, targets = batch
    losses = model(images, targets)
    total = sum(losses.values())
    return total, {k: v.detach() for k, v in losses.items()}


def _images_in_batch(batch: Any) -> int:
    return len(batch[0])


def main(argv: Sequence[str] | None = None, *, paper: str, description: str = "") -> dict[str, Any] | None:
    """Train and evaluate one config; returns the final metrics on rank 0 (``None`` elsewhere)."""
    parser = engine_parser(description or f"{paper}: Mask R-CNN on COCO (full scale)")
    args = parser.parse_args(argv)
    cfg = config_from_args(args, DETECTION_DEFAULTS)
    cfg["paper"] = cfg.get("paper") or paper
    if args.print_config:
        import yaml

        print(yaml.safe_dump(cfg, sort_keys=False))
        return None
    data = cfg["data"]
    check_coco(data["root"], [data["train_split"], data["val_split"]])
    out_dir = args.out or default_out_dir(cfg, args.config)
    run = start_session(cfg, out_dir)
    try:
        return _train(cfg, args, run)
    finally:
        cleanup()


def _train(cfg: dict[str, Any], args: Any, run: Session) -> dict[str, Any] | None:
    train_cfg, data = cfg["train"], cfg["data"]
    train_set = CocoInstances(
        data["root"], data["train_split"], train=True, flip_prob=float(data["flip_prob"]),
        check_files=bool(data["check_files"]),
    )  # fmt: skip
    val_set = CocoInstances(
        data["root"], data["val_split"], train=False, check_files=bool(data["check_files"]),
        max_images=data.get("max_val_images"),
    )  # fmt: skip
    if val_set.cat_ids != train_set.cat_ids:
        raise ValueError(
            f"the {data['train_split']} and {data['val_split']} annotation files define different categories "
            f"({train_set.cat_ids[:5]}... vs {val_set.cat_ids[:5]}...); use files from the same release"
        )
    print0(
        f"data: {len(train_set)} training images with objects, {len(val_set)} validation images, "
        f"{train_set.num_classes} categories"
    )
    log = RunLog(run.out_dir, enabled=run.env.is_main)
    model = build_detector(
        cfg["model"],
        train_set.num_classes,
        min_size=int(data["min_size"]),
        max_size=int(data["max_size"]),
        sync_bn=bool(train_cfg["sync_bn"]),
        virtual_devices=int(train_cfg.get("virtual_devices", 1)),
        trusted=args.trusted_checkpoint,
        log=log.line,
    )
    describe_run(run, cfg, model)
    channels_last = bool(train_cfg["channels_last"])
    model = prepare_model(model, run.env, channels_last=channels_last, compile=bool(train_cfg["compile"]))
    loader = train_loader(train_set, run, collate_fn=detection_collate)
    val_loader = eval_loader(val_set, run, batch_size=data.get("eval_batch_size"), collate_fn=detection_collate)
    optimizer = optimizer_from_config(cfg, model, run.total_batch)
    scheduler = scheduler_from_config(cfg, optimizer, loader.batch_sampler.steps_per_epoch)
    precision = Precision(str(train_cfg["amp"]), run.env.device)
    ev = cfg["eval"]

    iou_types = [t for t in ev["iou_types"] if t != "segm" or cfg["model"].get("masks", True)]

    def evaluate(m: nn.Module) -> dict[str, float]:
        return evaluate_coco(
            m, val_loader, val_set.coco, val_set.label_to_cat, val_set.ids, device=run.env.device,
            iou_types=iou_types, mask_threshold=float(ev["mask_threshold"]), log=log.line,
        )  # fmt: skip

    trainer = trainer_from_config(
        cfg,
        run,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        precision=precision,
        train_loader=loader,
        loss_fn=detection_loss,
        evaluate=evaluate,
        images_in_batch=_images_in_batch,
    )
    trainer.resume(ckpt.resolve_resume(args.resume, run.out_dir), trusted=args.trusted_checkpoint)
    if args.eval_only:
        if args.resume is None:
            raise SystemExit("--eval-only needs --resume CHECKPOINT (the weights to evaluate)")
        with torch.no_grad(), precision.autocast():
            metrics = evaluate(model)
        return metrics if run.env.is_main else None
    history = trainer.fit()
    last = history[-1] if history else {}
    metrics = {k: v for k, v in last.items() if k.startswith(tuple(f"{t}_" for t in IOU_TYPES))}
    write_summary(run, cfg, history, metrics)
    published = cfg.get("published") or {}
    shown = ", ".join(f"{k} {metrics[k]:.1f}" for k in ("bbox_AP", "segm_AP") if metrics.get(k) is not None)
    paper_vals = ", ".join(f"{k} {v.get('value')}" for k, v in published.items() if isinstance(v, Mapping))
    print0(f"done: {shown}" + (f"; published {paper_vals} ({cfg.get('paper_ref')})" if paper_vals else ""))
    return metrics if run.env.is_main else None
