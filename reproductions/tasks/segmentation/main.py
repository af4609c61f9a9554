r"""PASCAL VOC semantic segmentation on the engine: torchvision's DeepLabv3 with any normcore norm, as
the WS/BCN paper's VOC experiment (joe-siyuan-qiao/Batch-Channel-Normalization:DeepLabV3, a fork of
chenxi116/DeepLabv3.pytorch) trains it.

What ``train_voc.py`` of the weight_standardization reproduction calls::

    python -m reproductions.weight_standardization.train_voc \\
        --config reproductions/weight_standardization/configs/voc/r101_gn_ws.yaml \\
        --data /datasets/VOCdevkit --set model.pretrained=/weights/R-101-GN-WS.pth.tar

The model (``model`` section): a ResNet-50/101 from :mod:`normcore.models` with ``norm`` and ``conv``
(``ws``), ImageNet weights from ``pretrained``; atrous convolution in the last stage(s) for an
``output_stride`` of 16 (layer4 dilated by 2) or 8 (layer3 by 2, layer4 by 4); optional multi-grid
unit rates in layer4 (DeepLabv3 §3.2; the official WS/BCN code uses none, i.e. (1, 1, 1)); and the
DeepLabv3 head: ASPP (a 1x1 conv, three 3x3 atrous convs at ``aspp_rates`` and image pooling, each
with a norm, concatenated and projected by a 1x1 conv + norm) and a 1x1 classifier. torchvision's ASPP
hard-codes BatchNorm; :func:`normcore.convert_norms` swaps in ``head_norm`` (default: the backbone's),
and ``conv: ws`` standardizes every conv that feeds a norm. ``eval.output_stride`` may differ from
training (DeepLabv3 §4.1 trains at 16 and evaluates at 8, doubling the ASPP rates); the weights are
the same, only strides, dilations and paddings change (:func:`set_output_stride`).

Loss: per-pixel cross-entropy, label 255 ignored. Metric: mean IoU over the 21 classes from a
confusion matrix summed over all validation pixels and all ranks,

.. math:: \mathrm{IoU}_c = \frac{n_{cc}}{\sum_j n_{cj} + \sum_i n_{ic} - n_{cc}}, \qquad
          \mathrm{mIoU} = \frac{1}{|C'|} \sum_{c \in C'} \mathrm{IoU}_c,

with :math:`n_{ij}` the pixels of class i predicted as j and :math:`C'` the classes present in the
ground truth or the prediction (all 21 on VOC val).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation.deeplabv3 import ASPP, DeepLabV3

import normcore
from reproductions.engine.distributed import all_reduce_sum, get_env, print0, unwrap_model
from reproductions.engine.entry import RunContext, Task, TaskParts, fmt, last_results, run_task
from reproductions.engine.logs import RunLog, progress
from reproductions.engine.session import eval_loader
from reproductions.tasks.models import norm_info_or_none
from reproductions.tasks.pretrained import backbone_from_config
from reproductions.tasks.segmentation.voc_data import (
    IGNORE_INDEX,
    TRAIN_AUG_SIZE,
    VOC_CLASSES,
    VOCSegmentation,
    pad_collate,
)

__all__ = [
    "SEGMENTATION",
    "SEGMENTATION_DEFAULTS",
    "build_deeplabv3",
    "confusion_matrix",
    "evaluate_miou",
    "iou_from_confusion",
    "main",
    "segmentation_loss",
    "set_output_stride",
]

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")

SEGMENTATION_DEFAULTS: dict[str, Any] = {
    "model": {
        "backbone": "resnet101",
        "norm": "bn",
        "norm_kwargs": {},
        "conv": "conv",
        "conv_kwargs": {},
        "head_norm": None,  # null = the backbone's norm
        "head_norm_kwargs": None,  # null = the backbone's norm_kwargs
        "output_stride": 16,  # training
        "multi_grid": None,  # e.g. [1, 2, 4]: layer4 unit rates (DeepLabv3 §3.2); null = torchvision/official layout
        "aspp_rates": [6, 12, 18],  # at output stride 16 (doubled at 8)
        "aspp_channels": 256,
        "aspp_dropout": 0.0,  # torchvision's ASPP has 0.5; the official DeepLabV3 code has none
        "head_init": "torchvision",  # torchvision | official: every head conv N(0, sqrt(2 / (k*k*out))) (deeplab.py)
        "align_corners": False,  # final logits upsampling; the official deeplab.py uses True
        "pretrained": None,  # ImageNet weights: a file, or torchvision:<Enum>.<member> (pinned)
        "pretrained_name": None,  # the weights the paper's row fine-tunes from (in words); set = required
        "from_scratch": False,  # --from-scratch: random initial weights on purpose
        "zero_init_residual": True,
    },
    "data": {
        "root": None,
        "train_split": "train_aug",
        "val_split": "val",
        "batch_size": 16,  # images per GPU
        "eval_batch_size": 1,  # whole images, per process
        "workers": 4,
        "crop_size": 513,
        "scale_min": 0.5,
        "scale_max": 2.0,
        "flip": True,
        "max_val_images": None,
    },
    # pad_to: pad every validation image (bottom/right; label 255, ignored) to at least this size, as the official
    # code evaluates 513x513 inputs; null = each image at its own size
    "eval": {"output_stride": 16, "pad_to": None},
}

HEAD_INITS = ("torchvision", "official")


class AlignedDeepLabV3(DeepLabV3):
    """torchvision's DeepLabV3 whose final bilinear upsampling of the logits uses ``align_corners`` (the
    official DeepLabv3.pytorch code: ``True``; torchvision: ``False``). The ASPP image-pooling branch
    upsamples a 1x1 map, which gives the same constant either way, so it is left as torchvision's."""

    def __init__(self, backbone: nn.Module, classifier: nn.Module, *, align_corners: bool) -> None:
        super().__init__(backbone, classifier, None)
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        logits = self.classifier(self.backbone(x)["out"])
        return {"out": F.interpolate(logits, size=size, mode="bilinear", align_corners=self.align_corners)}


def init_head_official(head: nn.Module) -> None:
    """The official DeepLabv3.pytorch init of the head: every conv weight from N(0, sqrt(2 / n)) with
    n = k_h * k_w * out_channels, conv biases 0; norms keep weight 1 and bias 0."""
    for m in head.modules():
        if isinstance(m, nn.Conv2d):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            with torch.no_grad():
                m.weight.normal_(0.0, math.sqrt(2.0 / n))
                if m.bias is not None:
                    m.bias.zero_()


# --------------------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------------------
def _set_conv_geometry(conv: nn.Conv2d, *, stride: int | None = None, dilation: int | None = None) -> None:
    if stride is not None:
        conv.stride = (stride, stride)
    if dilation is not None and conv.kernel_size[0] > 1:
        conv.dilation = (dilation, dilation)
        conv.padding = (dilation * (conv.kernel_size[0] - 1) // 2,) * 2


def set_output_stride(model: nn.Module, output_stride: int, multi_grid: Sequence[int] | None = None) -> None:
    """Make a DeepLabv3 built by :func:`build_deeplabv3` (or a torchvision ResNet) run at
    ``output_stride`` 8, 16 or 32 without changing its weights: the first block of a dilated stage has
    stride 1 and the previous dilation (torchvision's ``replace_stride_with_dilation`` layout), its
    other blocks the stage's rate (times ``multi_grid[i]`` in layer4, where, as in DeepLabv3 §3.2, the
    first block also takes ``rate * multi_grid[0]``); ASPP rates scale by 16 / output_stride."""
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    resnet = model.backbone if hasattr(model, "backbone") else model
    rates = {"layer3": 2 if output_stride == 8 else 1, "layer4": {8: 4, 16: 2, 32: 1}[output_stride]}
    previous = 1
    for stage in ("layer3", "layer4"):
        rate = rates[stage]
        blocks = list(getattr(resnet, stage))
        grid = list(multi_grid) if stage == "layer4" and multi_grid else None
        if grid is not None and len(grid) != len(blocks):
            raise ValueError(f"multi_grid needs one rate per layer4 block ({len(blocks)}), got {grid}")
        for i, block in enumerate(blocks):
            if grid is not None:
                dilation = rate * grid[i]
            else:
                dilation = previous if i == 0 else rate
            conv = block.conv2 if hasattr(block, "conv3") else block.conv1  # the 3x3 conv of a block
            if i == 0:
                _set_conv_geometry(conv, stride=1 if rate > 1 else 2, dilation=dilation)
                if block.downsample is not None:
                    block.downsample[0].stride = (1, 1) if rate > 1 else (2, 2)
            else:
                _set_conv_geometry(conv, dilation=dilation)
            if not hasattr(block, "conv3"):  # BasicBlock: second 3x3 conv shares the rate
                _set_conv_geometry(block.conv2, dilation=dilation)
        previous = rate
    head = getattr(model, "classifier", None)
    if head is not None:
        aspp = head[0]
        base = aspp.base_rates
        for branch, r in zip(aspp.convs[1:-1], base, strict=True):
            _set_conv_geometry(branch[0], dilation=r * 16 // output_stride)
    if hasattr(model, "output_stride"):
        model.output_stride = output_stride


def _head_norm(m: Mapping[str, Any], sync_bn: bool, virtual_devices: int) -> tuple[Any, dict[str, Any]]:
    spec = m.get("head_norm") or m["norm"]
    kwargs = dict(m["head_norm_kwargs"] if m.get("head_norm_kwargs") is not None else m.get("norm_kwargs") or {})
    info = norm_info_or_none(spec, kwargs)
    if sync_bn and info is not None and info.name == "bn":
        spec = "sync_bn"
    if virtual_devices > 1 and info is not None and info.uses_batch_statistics:
        kwargs["virtual_devices"] = virtual_devices
    return spec, kwargs


def build_deeplabv3(
    model_cfg: Mapping[str, Any],
    num_classes: int,
    *,
    sync_bn: bool = False,
    virtual_devices: int = 1,
    trusted: bool = False,
    log: Any = print0,
) -> DeepLabV3:
    """DeepLabv3 for ``num_classes`` classes as the ``model`` section describes (module docstring)."""
    m = dict(model_cfg)
    if m["backbone"] not in BACKBONES:
        raise ValueError(f"model.backbone={m['backbone']!r}; choose one of {', '.join(BACKBONES)}")
    resnet = backbone_from_config(m, sync_bn=sync_bn, virtual_devices=virtual_devices, trusted=trusted, log=log)
    in_channels = [c for c in resnet.layer4.modules() if isinstance(c, nn.Conv2d)][-1].out_channels
    aspp = ASPP(in_channels, list(m["aspp_rates"]), int(m["aspp_channels"]))
    aspp.base_rates = tuple(int(r) for r in m["aspp_rates"])
    aspp.project[-1].p = float(m["aspp_dropout"])
    head = nn.Sequential(aspp, nn.Conv2d(int(m["aspp_channels"]), num_classes, 1))
    spec, kwargs = _head_norm(m, sync_bn, virtual_devices)
    head = normcore.convert_norms(head, spec, source=(nn.BatchNorm2d,), **kwargs)
    conv = m.get("conv") or "conv"
    if conv != "conv" or m.get("conv_kwargs"):
        normcore.convert_convs(head, conv, **dict(m.get("conv_kwargs") or {}))
    head_init = str(m.get("head_init") or "torchvision")
    if head_init not in HEAD_INITS:
        raise ValueError(f"model.head_init={head_init!r}; choose one of {', '.join(HEAD_INITS)}")
    if head_init == "official":
        init_head_official(head)
    body = IntermediateLayerGetter(resnet, {"layer4": "out"})
    model = AlignedDeepLabV3(body, head, align_corners=bool(m.get("align_corners", False)))
    model.output_stride = 32
    model.multi_grid = tuple(m["multi_grid"]) if m.get("multi_grid") else None
    set_output_stride(model, int(m["output_stride"]), model.multi_grid)
    return model


# --------------------------------------------------------------------------------------------------
# loss and metric
# --------------------------------------------------------------------------------------------------
def segmentation_loss(model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
    """The engine's ``loss_fn``: per-pixel cross-entropy over the labelled pixels (255 ignored)."""
    images, labels = batch
    logits = model(images)["out"]
    return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX), {}


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(C, C)`` int64 counts: row = true class, column = predicted class, over pixels whose target
    is not 255."""
    valid = target != IGNORE_INDEX
    idx = target[valid].long() * num_classes + pred[valid].long()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


def iou_from_confusion(conf: torch.Tensor) -> tuple[float, list[float | None]]:
    """``(mIoU, per-class IoU)`` in percent; a class absent from ground truth and prediction has IoU
    ``None`` and is left out of the mean."""
    conf = conf.double()
    inter = conf.diag()
    union = conf.sum(0) + conf.sum(1) - inter
    per_class = [100.0 * float(i / u) if u > 0 else None for i, u in zip(inter, union, strict=True)]
    present = [v for v in per_class if v is not None]
    return (sum(present) / len(present) if present else 0.0), per_class


@torch.no_grad()
def evaluate_miou(
    model: nn.Module,
    loader: Any,
    num_classes: int,
    *,
    device: torch.device,
    output_stride: int | None = None,
    class_names: Sequence[str] = VOC_CLASSES,
) -> dict[str, Any]:
    """mIoU of ``model`` over this rank's ``loader``, the confusion matrix summed over ranks (every rank
    returns the same numbers). ``output_stride`` switches the model for evaluation and back."""
    net = unwrap_model(model)
    net.eval()
    train_stride = getattr(net, "output_stride", None)
    if output_stride and train_stride and output_stride != train_stride:
        set_output_stride(net, output_stride, getattr(net, "multi_grid", None))
    conf = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    env = get_env()
    try:
        for images, labels in progress(loader, desc="VOC eval", enabled=env.is_main):
            logits = net(images.to(device, non_blocking=True))["out"]
            conf += confusion_matrix(logits.argmax(1), labels.to(device, non_blocking=True), num_classes)
    finally:
        if output_stride and train_stride and output_stride != train_stride:
            set_output_stride(net, train_stride, getattr(net, "multi_grid", None))
    all_reduce_sum(conf)
    miou, per_class = iou_from_confusion(conf.cpu())
    total = conf.sum().item()
    out: dict[str, Any] = {"mIoU": miou, "pixel_acc": 100.0 * conf.diag().sum().item() / max(total, 1)}
    out.update({f"IoU_{n}": v for n, v in zip(class_names, per_class, strict=False)})
    return out


# --------------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None, *, paper: str, description: str = "") -> dict[str, Any] | None:
    """Train and evaluate one config; returns the final metrics on rank 0 (``None`` elsewhere)."""
    return run_task(SEGMENTATION, argv, paper=paper, description=description)


def _prepare(ctx: RunContext) -> None:
    """Read (and check) the VOC splits before the session starts."""
    data = ctx.cfg["data"]
    ctx.prepared["train_set"] = VOCSegmentation(
        data["root"], data["train_split"], train=True, crop_size=int(data["crop_size"]),
        scale_range=(float(data["scale_min"]), float(data["scale_max"])), flip=bool(data["flip"]),
    )  # fmt: skip
    ctx.prepared["val_set"] = VOCSegmentation(
        data["root"], data["val_split"], train=False, max_images=data.get("max_val_images")
    )


def _build(ctx: RunContext) -> TaskParts:
    cfg, run = ctx.cfg, ctx.run
    assert run is not None
    train_cfg = cfg["train"]
    train_set, val_set = ctx.prepared["train_set"], ctx.prepared["val_set"]
    note = ""
    if train_set.split == "train_aug" and len(train_set) != TRAIN_AUG_SIZE:
        note = f" (the papers' train_aug has {TRAIN_AUG_SIZE})"
    print0(f"data: {len(train_set)} training images ({train_set.split}){note}, {len(val_set)} validation images")
    log = RunLog(run.out_dir, enabled=run.env.is_main)
    num_classes = train_set.num_classes
    model = build_deeplabv3(
        cfg["model"], num_classes, sync_bn=bool(train_cfg["sync_bn"]),
        virtual_devices=int(train_cfg.get("virtual_devices", 1)), trusted=ctx.args.trusted_checkpoint, log=log.line,
    )  # fmt: skip
    collate = functools.partial(pad_collate, min_size=int(cfg["eval"].get("pad_to") or 0))
    val_loader = eval_loader(val_set, run, batch_size=cfg["data"].get("eval_batch_size"), collate_fn=collate)
    eval_stride = int(cfg["eval"]["output_stride"])
    per_class: dict[str, Any] = {}

    def evaluate(m: nn.Module) -> dict[str, Any]:
        out = evaluate_miou(m, val_loader, num_classes, device=run.env.device, output_stride=eval_stride)
        per_class.clear()
        per_class.update({k: out.pop(k) for k in list(out) if k.startswith("IoU_")})  # summary only, not per epoch
        return out

    return TaskParts(
        model=model,
        train_set=train_set,
        loss_fn=segmentation_loss,
        evaluate=evaluate,
        summarize=lambda history: last_results(history, lambda k: k in ("mIoU", "pixel_acc")),
        extra_metrics=lambda: dict(per_class),
        report=lambda metrics: f"mIoU {fmt(metrics.get('mIoU'))}% (output stride {eval_stride})",
    )


SEGMENTATION = Task(
    name="segmentation",
    defaults=SEGMENTATION_DEFAULTS,
    build=_build,
    prepare=_prepare,
    description="DeepLabv3 on PASCAL VOC 2012 (full scale)",
)
"""The VOC segmentation task as :func:`~reproductions.engine.entry.run_task` runs it."""
