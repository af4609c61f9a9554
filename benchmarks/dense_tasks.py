"""Seconds per training iteration of Mask R-CNN (ResNet-FPN) and DeepLabv3 with each normalization
choice of the GN and WS papers, as ratios to BN* (frozen BN), measured in the same run.

Configurations (the same architecture in each task, only the normalization changes):

=========  ==================================================================================
BN*        backbone BN frozen (``normcore.FrozenBatchNorm``), no norm in the FPN/heads (Mask R-CNN)
           or frozen BN in the ASPP head too (DeepLabv3)
BN         trainable BN with batch statistics (DeepLabv3 only: Mask R-CNN trains BN*)
GN         GN (32 groups) in the backbone, the FPN, the 4conv1fc box head and the mask head / ASPP
GN+WS      GN with weight standardization on every conv that feeds a norm
BCN+WS     batch-channel norm + WS (DeepLabv3 only, the BCN paper's VOC model)
=========  ==================================================================================

One training iteration = forward with the loss, backward, SGD step, on fixed synthetic inputs (Mask R-CNN:
images with 3 boxes and masks each; DeepLabv3: square crops with random labels). Method: each
configuration is warmed up, then ``--rounds`` rounds each time one iteration of every configuration,
in an order that alternates between rounds, so load drift on a shared machine hits all alike; the
seconds shown are medians, the ratio is the median of the per-round ratios to BN*. CUDA iterations are
timed after ``torch.cuda.synchronize()`` on both ends.

Usage::

    python benchmarks/dense_tasks.py                          # CPU, small inputs (a few minutes on 2 cores)
    python benchmarks/dense_tasks.py --device cuda --amp bf16 --full-size   # the papers' sizes
    python benchmarks/dense_tasks.py --tasks deeplabv3 --rounds 5 --json out.json

Small (CPU) sizes: Mask R-CNN R-50-FPN on 2 images of 128x160 (shorter side 128; 500 proposals and 128
sampled RoIs per image instead of 2000 and 512, so the box head does not dominate), DeepLabv3 R-50 at
output stride 16 on 2 crops of 129x129. Full size: Mask R-CNN R-50-FPN on 2 images of 800x1333 per
GPU (Detectron's 2 images/GPU), DeepLabv3 R-101 on 16 crops of 513x513 at output stride 16 (the
official WS/BCN VOC setting on one device).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reproductions.tasks.detection.main import DETECTION_DEFAULTS, build_detector
from reproductions.tasks.segmentation.main import SEGMENTATION_DEFAULTS, build_deeplabv3

GN = {"norm": "gn", "norm_kwargs": {"num_groups": 32}}
DETECTION_CONFIGS = {
    "BN*": {"norm": "frozen_bn"},
    "GN": {**GN, "fpn_norm": "gn", "box_head_norm": "gn", "mask_head_norm": "gn"},
    "GN+WS": {**GN, "fpn_norm": "gn", "box_head_norm": "gn", "mask_head_norm": "gn", "conv": "ws"},
}
SEGMENTATION_CONFIGS = {
    "BN*": {"norm": "frozen_bn"},
    "BN": {"norm": "bn"},
    "GN": dict(GN),
    "GN+WS": {**GN, "conv": "ws"},
    "BCN+WS": {"norm": "bcn", "norm_kwargs": {"num_groups": 32}, "conv": "ws"},
}


@dataclass
class Result:
    task: str
    config: str
    seconds: float  # median seconds per training iteration
    ratio: float  # median of per-round ratios to BN*
    setting: str


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _detection_case(full: bool, device: torch.device) -> tuple[str, dict[str, Callable[[], nn.Module]], Callable]:
    size, batch = ((800, 1333), 2) if full else ((128, 160), 2)
    gen = torch.Generator().manual_seed(0)
    images = [torch.rand(3, *size, generator=gen).to(device) for _ in range(batch)]
    targets = []
    for _ in range(batch):
        h, w = size
        x1 = torch.rand(3, generator=gen) * w * 0.5
        y1 = torch.rand(3, generator=gen) * h * 0.5
        boxes = torch.stack([x1, y1, x1 + w * 0.3, y1 + h * 0.3], dim=1)
        masks = torch.zeros(3, h, w, dtype=torch.uint8)
        for k, (a, b, c, d) in enumerate(boxes.long().tolist()):
            masks[k, b:d, a:c] = 1
        targets.append({"boxes": boxes.to(device), "labels": torch.tensor([1, 2, 3], device=device),
                        "masks": masks.to(device)})  # fmt: skip

    def factory(overrides: dict) -> Callable[[], nn.Module]:
        def build() -> nn.Module:
            cfg = copy.deepcopy(DETECTION_DEFAULTS["model"])
            cfg.update(box_head="4conv1fc", head_norm_kwargs={"num_groups": 32}, **overrides)
            if not full:  # fewer RoIs at the small size, or the box head dominates every configuration alike
                cfg["kwargs"] = {"rpn_post_nms_top_n_train": 500, "box_batch_size_per_image": 128}
            return build_detector(cfg, 80, min_size=size[0], max_size=size[1], log=lambda s: None)

        return build

    def step(model: nn.Module) -> torch.Tensor:
        return sum(model(images, targets).values())

    rois = "" if full else ", 128 RoIs/image"
    setting = f"Mask R-CNN R-50-FPN 4conv1fc, {batch} images {size[0]}x{size[1]}{rois}"
    return setting, {name: factory(o) for name, o in DETECTION_CONFIGS.items()}, step


def _segmentation_case(full: bool, device: torch.device) -> tuple[str, dict[str, Callable[[], nn.Module]], Callable]:
    backbone, crop, batch = ("resnet101", 513, 16) if full else ("resnet50", 129, 2)
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, crop, crop, generator=gen).to(device)
    labels = torch.randint(0, 21, (batch, crop, crop), generator=gen).to(device)

    def factory(overrides: dict) -> Callable[[], nn.Module]:
        def build() -> nn.Module:
            cfg = copy.deepcopy(SEGMENTATION_DEFAULTS["model"])
            cfg.update(backbone=backbone, **overrides)
            return build_deeplabv3(cfg, 21, log=lambda s: None)

        return build

    def step(model: nn.Module) -> torch.Tensor:
        return nn.functional.cross_entropy(model(images)["out"].float(), labels, ignore_index=255)

    setting = f"DeepLabv3 {backbone} OS16, {batch} crops {crop}x{crop}"
    return setting, {name: factory(o) for name, o in SEGMENTATION_CONFIGS.items()}, step


CASES = {"maskrcnn": _detection_case, "deeplabv3": _segmentation_case}


def _iteration(model: nn.Module, opt: torch.optim.Optimizer, step: Callable, dev: torch.device, dtype) -> float:
    """Seconds of one training iteration (forward with loss, backward, SGD step), synchronized on CUDA."""
    _sync(dev)
    start = time.perf_counter()
    with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
        loss = step(model)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    _sync(dev)
    return time.perf_counter() - start


def _measure(
    task: str,
    builders: dict[str, Callable[[], nn.Module]],
    step: Callable,
    dev: torch.device,
    dtype: torch.dtype | None,
    *,
    warmup: int,
    rounds: int,
    channels_last: bool,
    log: Callable[[str], None],
) -> dict[str, list[float]]:
    runs = {}
    for name, build in builders.items():
        torch.manual_seed(0)
        model = build().to(dev).train()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
        runs[name] = (model, opt)
        for _ in range(warmup):
            _iteration(model, opt, step, dev, dtype)
        log(f"{task}: {name} warmed up")
    names = list(runs)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            times[name].append(_iteration(*runs[name], step, dev, dtype))
    return times


def run(
    tasks: Sequence[str] = tuple(CASES),
    *,
    device: str = "cpu",
    amp: str = "none",
    full_size: bool = False,
    warmup: int = 2,
    rounds: int = 5,
    channels_last: bool = False,
    log: Callable[[str], None] = print,
) -> list[Result]:
    """Measure every configuration of every task; returns one :class:`Result` per (task, config)."""
    dev = torch.device(device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    results = []
    for task in tasks:
        setting, builders, step = CASES[task](full_size, dev)
        times = _measure(
            task, builders, step, dev, dtype, warmup=warmup, rounds=rounds, channels_last=channels_last, log=log
        )
        for name, values in times.items():
            ratios = [t / b for t, b in zip(values, times["BN*"], strict=True)]
            results.append(Result(task, name, statistics.median(values), statistics.median(ratios), setting))
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return results


def machine(device: str, amp: str) -> str:
    if device.startswith("cuda"):
        where = torch.cuda.get_device_name(torch.device(device))
    else:
        where = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s)"
    return f"{where}; torch {torch.__version__}; amp {amp}"


def format_table(results: Sequence[Result]) -> str:
    lines = [f"{'task':<10} {'norm':<7} {'s/iter':>9} {'x BN*':>7}  setting"]
    for r in results:
        lines.append(f"{r.task:<10} {r.config:<7} {r.seconds:>9.4f} {r.ratio:>7.2f}  {r.setting}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tasks", default=",".join(CASES), help="comma-separated: maskrcnn,deeplabv3")
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none")
    p.add_argument("--full-size", action="store_true", help="the papers' input sizes (for a GPU)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in CASES]
    if unknown:
        p.error(f"unknown task(s) {unknown}; choose from {', '.join(CASES)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        results = run(
            tasks,
            device=args.device,
            amp=args.amp,
            full_size=args.full_size,
            warmup=args.warmup,
            rounds=args.rounds,
            channels_last=args.channels_last,
            log=lambda s: print(s, file=sys.stderr),
        )
    header = f"# {machine(args.device, args.amp)}; {args.rounds} rounds after {args.warmup} warm-up iteration(s)"
    print(header)
    print(format_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": header, "results": [asdict(r) for r in results]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
