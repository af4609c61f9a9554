"""Training throughput of ResNet-50 with BN, GN, GN+WS and BCN+WS: images/s of full training steps
(forward, cross-entropy, backward, SGD step with momentum and weight decay) at the same batch, as
ratios to BN, in the contiguous (NCHW) and channels_last memory formats.

The models are the engine's (``reproductions.tasks.models.build_model``: ``normcore.models.resnet50``
with the registry norm; GN and BCN with 32 groups; WS with the official formula for GN+WS and the BCN
repository's for BCN+WS, as the configs of the WS paper). Method: each configuration is built and
warmed up, then ``--rounds`` rounds each time ``--steps`` steps of every configuration, in an order
that alternates between rounds so that load drift hits all alike; images/s is the median over rounds,
and the ratio is the median of the per-round ratios to BN in the same memory format. CUDA steps are
timed with ``torch.cuda.synchronize()`` on both ends of each timed block.

Usage::

    python benchmarks/train_throughput.py                                   # CPU: 32x32 images, batch 8
    python benchmarks/train_throughput.py --device cuda --amp bf16          # 224x224, batch 64, both formats
    python benchmarks/train_throughput.py --device cuda --amp bf16 --channels-last --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reproductions.engine.optim import build_optimizer
from reproductions.engine.precision import AMP_CHOICES, Precision
from reproductions.tasks.models import build_model

CONFIGS: dict[str, dict[str, Any]] = {
    "BN": {"norm": "bn"},
    "GN": {"norm": "gn", "norm_kwargs": {"num_groups": 32}},
    "GN+WS": {"norm": "gn", "norm_kwargs": {"num_groups": 32}, "conv": "ws", "conv_kwargs": {"variant": "official"}},
    "BCN+WS": {"norm": "bcn", "norm_kwargs": {"num_groups": 32}, "conv": "ws", "conv_kwargs": {"variant": "bcn"}},
}


class Runner:
    """One model, optimizer and fixed batch; :meth:`steps` runs and times n training steps."""

    def __init__(self, norm_cfg: dict[str, Any], args: argparse.Namespace, channels_last: bool) -> None:
        self.device = torch.device(args.device)
        torch.manual_seed(0)
        model = build_model({"arch": args.arch, "num_classes": 1000, **norm_cfg}).to(self.device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = torch.compile(model) if args.compile else model
        self.optimizer = build_optimizer(model, name="sgd", lr=0.01, weight_decay=1e-4, momentum=0.9)
        self.precision = Precision(args.amp, self.device)
        x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=self.device)
        self.x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        self.y = torch.randint(0, 1000, (args.batch_size,), device=self.device)
        self.batch = args.batch_size

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def steps(self, n: int) -> float:
        """Images/s over ``n`` training steps."""
        self.model.train()
        self._sync()
        start = time.perf_counter()
        for _ in range(n):
            with self.precision.autocast():
                loss = F.cross_entropy(self.model(self.x).float(), self.y)
            self.precision.scaler.scale(loss).backward()
            self.precision.scaler.step(self.optimizer)
            self.precision.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
        self._sync()
        return n * self.batch / (time.perf_counter() - start)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    formats = ["channels_last"] if args.channels_last else args.formats
    rows = []
    for fmt in formats:
        runners = {name: Runner(cfg, args, fmt == "channels_last") for name, cfg in CONFIGS.items()}
        for runner in runners.values():
            runner.steps(args.warmup)
        per_round: dict[str, list[float]] = {name: [] for name in runners}
        names = list(runners)
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else reversed(names):
                per_round[name].append(runners[name].steps(args.steps))
        for name in names:
            ratios = [v / b for v, b in zip(per_round[name], per_round["BN"])]
            rows.append(
                {
                    "format": fmt,
                    "config": name,
                    "images_per_s": statistics.median(per_round[name]),
                    "ratio_to_bn": statistics.median(ratios),
                    "rounds": per_round[name],
                }
            )
        del runners
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    return rows


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def markdown(rows: Sequence[dict[str, Any]], args: argparse.Namespace) -> str:
    head = (
        f"{args.arch}, batch {args.batch_size}, {args.image_size}x{args.image_size}, amp {args.amp}"
        f"{', torch.compile' if args.compile else ''}; {device_name(args.device)}; torch {torch.__version__}; "
        f"median of {args.rounds} rounds x {args.steps} steps\n\n"
    )
    lines = ["| memory format | norm | images/s | ratio to BN |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['format']} | {r['config']} | {r['images_per_s']:.1f} | {r['ratio_to_bn']:.2f} |")
    return head + "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", choices=AMP_CHOICES, default="none")
    p.add_argument("--channels-last", action="store_true", help="only channels_last (default: both formats)")
    p.add_argument(
        "--formats", nargs="+", default=["contiguous", "channels_last"], choices=["contiguous", "channels_last"]
    )
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--batch-size", type=int, default=None, help="default 64 on CUDA, 8 on CPU")
    p.add_argument("--image-size", type=int, default=None, help="default 224 on CUDA, 32 on CPU")
    p.add_argument("--steps", type=int, default=None, help="timed steps per round (default 20 CUDA, 2 CPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 10 CUDA, 1 CPU)")
    p.add_argument("--rounds", type=int, default=None, help="default 5 CUDA, 3 CPU")
    p.add_argument("--compile", action="store_true", help="torch.compile each model")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--json", help="also write the rows to this file")
    args = p.parse_args(argv)
    cuda = args.device.startswith("cuda")
    args.batch_size = args.batch_size or (64 if cuda else 8)
    args.image_size = args.image_size or (224 if cuda else 32)
    args.steps = args.steps or (20 if cuda else 2)
    args.warmup = args.warmup or (10 if cuda else 1)
    args.rounds = args.rounds or (5 if cuda else 3)
    if args.threads:
        torch.set_num_threads(args.threads)
    if cuda:
        torch.backends.cudnn.benchmark = True
    rows = run(args)
    print(markdown(rows, args))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "device": device_name(args.device), "rows": rows}))
    return rows


if __name__ == "__main__":
    main()
