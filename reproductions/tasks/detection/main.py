"""COCO instance segmentation on the engine: torchvision's Mask R-CNN with a ResNet-FPN whose
normalization is placed as the GN paper (§4.2, Tables 4-7) and the WS paper (COCO) place it.

What ``train_coco.py`` of the group_norm and weight_standardization reproductions calls::

    python -m reproductions.group_norm.train_coco \\
        --config reproductions/group_norm/configs/coco/table6_r50_gn_2x.yaml \\
        --data /datasets/coco --set model.pretrained=/weights/R-50-GN.pth
    torchrun --nproc_per_node=8 -m reproductions.group_norm.train_coco --config ... --data ...

The model (``model`` section), ``backbone_type: fpn`` (the default; GN paper Tables 5-7, WS paper):

* backbone: ``resnet50``/``resnet101``, ``resnext50_32x4d``/``resnext101_32x4d`` (or ``resnet18``/``resnet34``
  for tests) from :mod:`normcore.models` with ``norm`` (``frozen_bn`` = the papers' BN*, ``gn``, ...) and
  ``conv`` (``ws``); ImageNet weights from ``pretrained`` (:mod:`reproductions.tasks.pretrained`);
  ``trainable_layers`` stages train (3 = Detectron's ``FREEZE_AT: 2``; 5 from scratch);
* FPN (P2-P6, 256 channels) with ``fpn_norm`` after its lateral and output convs (Detectron's GN
  FPN); the RPN head has one 3x3 conv and no norm (Detectron's FPN RPN);
* box head ``2fc`` (two 1024-d fc layers, Detectron's default) or ``4conv1fc`` (four 3x3 convs of 256
  channels with ``box_head_norm``, then one fc, GN paper Table 5);
* mask head: four 3x3 convs with ``mask_head_norm``, a 2x deconv and a per-class 1x1 conv (28x28 masks);
* ``conv: ws`` puts WS on every conv that feeds a norm, in the backbone, the FPN and the heads (WS
  paper: "only convolutional layers that are followed by normalization layers").

``backbone_type: c4`` (GN paper Table 4; Detectron's ``e2e_mask_rcnn_R-50-C4`` design, see
:func:`c4_detector_parts`): the ResNet up to res4 (stride 16) is the backbone, the RPN (one 3x3 conv, 15
anchors of sizes 32-512 and ratios 0.5/1/2) runs on it, RoIAlign 14x14 feeds ``box_head: res5`` (the
ResNet's res5 stage per RoI, then average pooling), and the mask branch runs the same res5 weights on the
positive RoIs, then a 2x2 deconv of 256 channels and a per-class 1x1 conv (14x14 masks). Backbone and res5
head both carry ``norm`` (GN paper §4.2: both come from the pre-trained ResNet, with its normalization layers).

Training and data follow Detectron (shorter side 800, longer at most 1333, horizontal flips, 2 images
per GPU in its GN configs); schedules are in epochs of train2017 (the configs give Detectron's
iteration counts converted, see their ``notes``). Each evaluation runs COCOeval on val2017 (box and
mask AP, AP50, AP75, APs/m/l).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

import normcore
from reproductions.engine.distributed import print0
from reproductions.engine.entry import RunContext, Task, TaskParts, last_results, run_task
from reproductions.engine.logs import RunLog
from reproductions.engine.session import eval_loader
from reproductions.tasks.detection.coco_data import CocoInstances, check_coco, detection_collate
from reproductions.tasks.detection.coco_eval import IOU_TYPES, evaluate_coco
from reproductions.tasks.imagenet_stats import IMAGENET_MEAN, IMAGENET_STD
from reproductions.tasks.models import norm_name
from reproductions.tasks.pretrained import backbone_from_config, freeze_resnet_stages

__all__ = [
    "BACKBONES",
    "BACKBONE_TYPES",
    "BOX_HEADS",
    "DETECTION",
    "DETECTION_DEFAULTS",
    "ResNetConv5Head",
    "build_detector",
    "c4_detector_parts",
    "detection_loss",
    "fpn_detector_parts",
    "main",
]

BACKBONE_TYPES = ("fpn", "c4")
BOX_HEADS = {"fpn": ("2fc", "4conv1fc"), "c4": ("res5",)}
"""The box heads each backbone type accepts."""
BACKBONES = normcore.models.TORCHVISION_RESNETS
C4_ANCHOR_SIZES = (32, 64, 128, 256, 512)
"""Detectron's ``RPN.SIZES`` of its C4 configs (one feature map at stride 16, 3 aspect ratios each)."""

DETECTION_DEFAULTS: dict[str, Any] = {
    "model": {
        "backbone": "resnet50",
        "backbone_type": "fpn",  # fpn | c4 (ResNet up to res4, res5 as the per-RoI head; GN paper Table 4)
        "norm": "frozen_bn",  # backbone norm: frozen_bn (BN*), gn, bn, sync_bn, ...
        "norm_kwargs": {},
        "conv": "conv",  # ws: WS on every conv that feeds a norm (backbone, FPN, heads)
        "conv_kwargs": {},
        "fpn_norm": None,  # null = no norm in the FPN (Detectron's BN* models); FPN only
        "masks": True,  # false = Faster R-CNN (no mask branch; evaluate bbox only)
        "box_head": "2fc",  # 2fc | 4conv1fc (FPN); res5 (C4)
        "box_head_norm": None,  # FPN only (the C4 res5 head carries the backbone's norm)
        "mask_head_norm": None,  # FPN only
        "head_norm_kwargs": {},  # for fpn_norm, box_head_norm and mask_head_norm
        "fpn_channels": 256,  # FPN only, like the next three
        "head_channels": 256,  # convs of the 4conv1fc box head and of the mask head
        "box_head_fc": 1024,
        "mask_head_convs": 4,
        "pretrained": None,  # ImageNet weights: a file, or torchvision:<Enum>.<member> (pinned)
        "pretrained_name": None,  # the weights the paper's row fine-tunes from (in words); set = required
        "from_scratch": False,  # --from-scratch: random initial weights on purpose (GN Table 7)
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


class ResNetConv5Head(nn.Module):
    """Detectron's "ResNet conv5 head" (``add_ResNet_roi_conv5_head``) of the C4 design: the ResNet's res5
    stage applied to each RoI's 14x14 features (its first block has stride 2: 7x7 out), then 7x7 average
    pooling to one ``out_channels``-d vector per RoI (2048 for ResNet-50)."""

    def __init__(self, res5: nn.Module) -> None:
        super().__init__()
        self.res5 = res5
        self.out_channels = _stage_channels(res5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res5(x).mean(dim=(2, 3))


def c4_detector_parts(resnet: nn.Module, m: Mapping[str, Any], num_classes: int) -> tuple[nn.Module, dict[str, Any]]:
    """The C4 Mask R-CNN of Detectron (``configs/12_2017_baselines/e2e_mask_rcnn_R-50-C4_*.yaml``), the GN
    paper's Table 4 model, from ``resnet`` (already built with its norm, conv and weights): returns the
    backbone and torchvision ``MaskRCNN`` keyword arguments.

    * backbone: stem + res2-res4 (``conv1`` ... ``layer3``), stride 16, 1024 channels for ResNet-50; the
      RPN on it: torchvision's ``RPNHead`` (a 3x3 conv keeping the width, ReLU, 1x1 objectness and box
      convs), 15 anchors per position (sizes 32-512 x ratios 0.5, 1, 2: Detectron's ``RPN.SIZES``);
    * box branch: RoIAlign 14x14 (sampling ratio 0 = adaptive, Detectron's default) on the stride-16
      map, :class:`ResNetConv5Head` (res5, stride 2, then average pooling) and a linear classifier and box
      regressor;
    * mask branch (Detectron's ``mask_rcnn_fcn_head_v0upshare``): the **same** res5 module (shared weights)
      on the positive RoIs' 14x14 features, then ``MaskRCNNPredictor``: a 2x2 stride-2 deconv of 256
      channels, ReLU and a per-class 1x1 conv: 14x14 mask logits (Detectron's ``MRCNN.RESOLUTION: 14``).

    Detectron slices the positive RoIs out of the box head's res5 output during training; here res5 runs
    again on them. With a per-sample norm (GN, LN, IN) or a frozen one (BN*) every RoI's features do not
    depend on the others, so this computes the same values and gradients (at twice the res5 cost for the
    positives); with a training-mode BN (``norm: bn``) the mask branch's batch statistics would come from
    the positives only. At test time Detectron runs res5 again on the detected boxes, as here.
    Differences: torchvision's v1.5 bottleneck (stride of the first res5 block on its 3x3 conv; Detectron's
    MSRA ResNet strides the 1x1), anchors that cross the image border are kept (Detectron drops them for
    the RPN loss: ``RPN_STRADDLE_THRESH 0``), the predictors keep torchvision's init.
    """
    for key in ("fpn_norm", "box_head_norm", "mask_head_norm"):
        if m.get(key) not in (None, "none"):
            raise ValueError(
                f"model.{key}={m[key]!r} applies to backbone_type: fpn; the C4 model has no FPN or conv heads "
                f"(its res5 head carries model.norm): set model.{key}: null"
            )
    stem_to_res4 = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3")
    backbone = nn.Sequential(OrderedDict((name, getattr(resnet, name)) for name in stem_to_res4))
    backbone.out_channels = _stage_channels(resnet.layer3)  # torchvision's MaskRCNN reads it
    box_head = ResNetConv5Head(resnet.layer4)
    parts: dict[str, Any] = {
        "rpn_anchor_generator": AnchorGenerator((C4_ANCHOR_SIZES,), ((0.5, 1.0, 2.0),)),
        "box_roi_pool": MultiScaleRoIAlign(["0"], output_size=14, sampling_ratio=0),
        "box_head": box_head,
        "box_predictor": FastRCNNPredictor(box_head.out_channels, num_classes + 1),
    }
    if m.get("masks", True):
        parts["mask_roi_pool"] = MultiScaleRoIAlign(["0"], output_size=14, sampling_ratio=0)
        parts["mask_head"] = box_head.res5
        parts["mask_predictor"] = MaskRCNNPredictor(box_head.out_channels, 256, num_classes + 1)
    return backbone, parts


def fpn_detector_parts(resnet: nn.Module, m: Mapping[str, Any], num_classes: int) -> tuple[nn.Module, dict[str, Any]]:
    """The ResNet-FPN Mask R-CNN of the module docstring from ``resnet``: returns the ``BackboneWithFPN`` and
    torchvision ``MaskRCNN`` keyword arguments (heads and predictors), with ``conv: ws`` applied to the
    FPN and the heads (the backbone already has it)."""
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
    parts: dict[str, Any] = {"box_head": box_head, "box_predictor": FastRCNNPredictor(fc, num_classes + 1)}
    normed = [backbone.fpn, box_head]
    if m.get("masks", True):
        mask_head = MaskRCNNHeads(
            fpn_channels,
            [head_channels] * int(m["mask_head_convs"]),
            1,
            norm_layer=_norm_or_none(m.get("mask_head_norm"), head_kw),
        )
        normed.append(mask_head)
        parts["mask_head"] = mask_head
        parts["mask_predictor"] = MaskRCNNPredictor(head_channels, 256, num_classes + 1)
    conv = m.get("conv") or "conv"
    if conv != "conv" or m.get("conv_kwargs"):
        for part in normed:
            normcore.convert_convs(part, conv, **dict(m.get("conv_kwargs") or {}))
    return backbone, parts


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
    """Mask R-CNN (or, with ``masks: false``, Faster R-CNN) with a ResNet-FPN or a ResNet-C4 backbone for
    ``num_classes`` object classes (plus background), as the ``model`` section describes (see the module
    docstring). ``log`` receives the pretrained-weights report."""
    m = dict(model_cfg)
    if m["backbone"] not in BACKBONES:
        raise ValueError(f"model.backbone={m['backbone']!r}; choose one of {', '.join(BACKBONES)}")
    kind = m.get("backbone_type", "fpn")
    if kind not in BACKBONE_TYPES:
        raise ValueError(f"model.backbone_type={kind!r}; choose one of {', '.join(BACKBONE_TYPES)}")
    if m["box_head"] not in BOX_HEADS[kind]:
        raise ValueError(
            f"model.box_head={m['box_head']!r} does not fit backbone_type: {kind}; choose one of "
            + "; ".join(f"{', '.join(heads)} (backbone_type: {k})" for k, heads in BOX_HEADS.items())
        )
    resnet = backbone_from_config(m, sync_bn=sync_bn, virtual_devices=virtual_devices, trusted=trusted, log=log)
    freeze_resnet_stages(resnet, int(m["trainable_layers"]))
    backbone, parts = (c4_detector_parts if kind == "c4" else fpn_detector_parts)(resnet, m, num_classes)
    kwargs = dict(m.get("kwargs") or {})
    detector = MaskRCNN if m.get("masks", True) else FasterRCNN
    kwargs.setdefault("image_mean", list(IMAGENET_MEAN))
    kwargs.setdefault("image_std", list(IMAGENET_STD))
    return detector(backbone, num_classes=None, min_size=min_size, max_size=max_size, **parts, **kwargs)


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
    return run_task(DETECTION, argv, paper=paper, description=description)


def _prepare(ctx: RunContext) -> None:
    """Check the annotation files and image folders before the session starts."""
    data = ctx.cfg["data"]
    check_coco(data["root"], [data["train_split"], data["val_split"]])


def _build(ctx: RunContext) -> TaskParts:
    cfg, run = ctx.cfg, ctx.run
    assert run is not None
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
        trusted=ctx.args.trusted_checkpoint,
        log=log.line,
    )
    val_loader = eval_loader(val_set, run, batch_size=data.get("eval_batch_size"), collate_fn=detection_collate)
    ev = cfg["eval"]
    iou_types = [t for t in ev["iou_types"] if t != "segm" or cfg["model"].get("masks", True)]

    def evaluate(m: nn.Module) -> dict[str, float]:
        return evaluate_coco(
            m, val_loader, val_set.coco, val_set.label_to_cat, val_set.ids, device=run.env.device,
            iou_types=iou_types, mask_threshold=float(ev["mask_threshold"]), log=log.line,
        )  # fmt: skip

    def report(metrics: dict[str, Any]) -> str:
        shown = [f"{k} {metrics[k]:.1f}" for k in ("bbox_AP", "segm_AP") if metrics.get(k) is not None]
        return ", ".join(shown) or "no AP (no evaluation ran)"

    return TaskParts(
        model=model,
        train_set=train_set,
        loss_fn=detection_loss,
        evaluate=evaluate,
        collate_fn=detection_collate,
        images_in_batch=_images_in_batch,
        summarize=lambda history: last_results(history, lambda k: k.startswith(tuple(f"{t}_" for t in IOU_TYPES))),
        report=report,
    )


DETECTION = Task(
    name="detection",
    defaults=DETECTION_DEFAULTS,
    build=_build,
    prepare=_prepare,
    description="Mask R-CNN on COCO (full scale)",
)
"""The COCO instance-segmentation task as :func:`~reproductions.engine.entry.run_task` runs it."""
