"""Speed of every normcore layer as a ratio to its native PyTorch equivalent, measured in the same run.

For ResNet-50 activation shapes (N = 8 by default, ``--batch``; C = 64 and 256 at 56x56, C = 256
and 1024 at 14x14; the 3x3 convs at 64@56x56 and 256@14x14, the widths ResNet-50's 3x3 convs have there), contiguous and
channels_last, it times each normcore layer and its native counterpart, forward and forward+backward
in training mode (and forward under ``no_grad`` in eval mode for the WS conv's cached weight):

===================  =======================================  ============================
normcore             native reference                         target (ratio normcore/native)
===================  =======================================  ============================
BatchNorm            nn.BatchNorm2d                           <= 1.05
GroupNorm(C, 32)     nn.GroupNorm(32, C)                      <= 1.05
LayerNorm            nn.GroupNorm(1, C)                       <= 1.05
InstanceNorm         nn.InstanceNorm2d(affine=True)           <= 1.05
FrozenBatchNorm      nn.BatchNorm2d.eval()                    <= 1.05
BatchChannelNorm     nn.BatchNorm2d then nn.GroupNorm(32, C)  <= 1.00 (no slower)
WSConv2d 3x3         nn.Conv2d 3x3                            <= 1.10 training, <= 1.01 eval
NormPropConv2d 3x3   nn.Conv2d 3x3 then nn.BatchNorm2d        <  1.00 (faster)
===================  =======================================  ============================

Method: each (layer, shape, layout, pass) cell warms both layers up, picks a number of inner
iterations so that one timed block lasts >= 20 ms (CPU) / 5 ms (CUDA), then times ``--repeats``
blocks of each layer, interleaved and in alternating order (ours, native, native, ours, ...) so that
load drift on a shared machine hits both alike. The times are the medians over the repeats, the
ratio is theirs. CUDA timing uses CUDA events after a synchronize; CPU timing the wall
clock by default. On a CPU shared with other jobs, wall time mostly measures how long the process
waited for a core (and intra-op threads fight the other jobs for the cores): there, use
``--threads 1 --clock thread``, which counts only the CPU time of the one computing thread.

Usage::

    python benchmarks/layers.py                      # CPU, float32, all cells (a few minutes)
    python benchmarks/layers.py --quick              # fewer shapes and repeats (~1 minute)
    python benchmarks/layers.py --device cuda --batch 64 --markdown > table.md
    python benchmarks/layers.py --only GroupNorm,WSConv2d --layout channels_last
    python benchmarks/layers.py --threads 1 --clock thread   # on a CPU shared with other jobs
    bash benchmarks/gpu_check.sh                     # GPU: CUDA tests, this benchmark, the engine

Importable: :func:`run` returns the rows, :func:`format_table` / :func:`format_markdown` print them.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

import normcore as nc

BATCH = 8
NORM_SHAPES = [(64, 56), (256, 56), (256, 14), (1024, 14)]
CONV_SHAPES = [(64, 56), (256, 14)]
QUICK_NORM_SHAPES = [(64, 56), (256, 14)]
QUICK_CONV_SHAPES = [(256, 14)]
LAYOUTS = ("contiguous", "channels_last")
MIN_BLOCK_S = {"cpu": 0.02, "cuda": 0.005}


@dataclass(frozen=True)
class Pair:
    """A normcore layer, its native equivalent, the passes to time and the target ratio per pass."""

    layer: str
    reference: str
    build: Callable[[int], tuple[nn.Module, nn.Module]]
    targets: dict[str, float]
    conv: bool = False
    strictly_faster: bool = False
    eval_mode: bool = False

    @property
    def passes(self) -> tuple[str, ...]:
        return tuple(self.targets)


def _frozen_pair(c: int) -> tuple[nn.Module, nn.Module]:
    ref = nn.BatchNorm2d(c)
    with torch.no_grad():
        ref.running_mean.uniform_(-1, 1)
        ref.running_var.uniform_(0.5, 2)
    return nc.FrozenBatchNorm.from_batchnorm(ref), ref


def _conv3x3(c: int) -> nn.Conv2d:
    return nn.Conv2d(c, c, 3, padding=1, bias=False)


NATIVE = 1.05
PAIRS = [
    Pair(
        "BatchNorm",
        "nn.BatchNorm2d",
        lambda c: (nc.BatchNorm(c), nn.BatchNorm2d(c)),
        {"fwd": NATIVE, "fwd+bwd": NATIVE},
    ),
    Pair(
        "GroupNorm",
        "nn.GroupNorm(32, C)",
        lambda c: (nc.GroupNorm(c, 32), nn.GroupNorm(32, c)),
        {"fwd": NATIVE, "fwd+bwd": NATIVE},
    ),
    Pair(
        "LayerNorm",
        "nn.GroupNorm(1, C)",
        lambda c: (nc.LayerNorm(c), nn.GroupNorm(1, c)),
        {"fwd": NATIVE, "fwd+bwd": NATIVE},
    ),
    Pair(
        "InstanceNorm",
        "nn.InstanceNorm2d(affine=True)",
        lambda c: (nc.InstanceNorm(c), nn.InstanceNorm2d(c, affine=True)),
        {"fwd": NATIVE, "fwd+bwd": NATIVE},
    ),
    Pair("FrozenBatchNorm", "nn.BatchNorm2d.eval()", _frozen_pair, {"fwd": NATIVE, "fwd+bwd": NATIVE}, eval_mode=True),
    Pair(
        "BatchChannelNorm",
        "nn.BatchNorm2d + nn.GroupNorm(32, C)",
        lambda c: (nc.BatchChannelNorm(c, 32), nn.Sequential(nn.BatchNorm2d(c), nn.GroupNorm(32, c))),
        {"fwd": 1.0, "fwd+bwd": 1.0},
    ),
    Pair(
        "WSConv2d 3x3",
        "nn.Conv2d 3x3",
        lambda c: (nc.WSConv2d(c, c, 3, padding=1, bias=False), _conv3x3(c)),
        {"fwd": 1.10, "fwd+bwd": 1.10, "eval": 1.01},
        conv=True,
    ),
    Pair(
        "NormPropConv2d 3x3",
        "nn.Conv2d 3x3 + nn.BatchNorm2d",
        lambda c: (nc.NormPropConv2d(c, c, 3, padding=1), nn.Sequential(_conv3x3(c), nn.BatchNorm2d(c))),
        {"fwd": 1.0, "fwd+bwd": 1.0},
        conv=True,
        strictly_faster=True,
    ),
]


@dataclass(frozen=True)
class Row:
    """One measured cell."""

    layer: str
    reference: str
    shape: tuple[int, int, int, int]
    layout: str
    pass_: str
    ours_ms: float
    native_ms: float
    ratio: float
    target: float
    strictly_faster: bool

    @property
    def passed(self) -> bool:
        return self.ratio < self.target if self.strictly_faster else self.ratio <= self.target

    @property
    def target_text(self) -> str:
        return f"{'<' if self.strictly_faster else '<='} {self.target:.2f}"


# --------------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCKS: dict[str, Callable[[], float]] = {
    "wall": time.perf_counter,
    "process": time.process_time,
    "thread": time.thread_time,
}
_clock = CLOCKS["wall"]


def _time_block(step: Callable[[], None], iters: int, device: torch.device) -> float:
    """Seconds per iteration of ``step`` over one block of ``iters`` calls (CUDA events on a GPU,
    else the selected clock)."""
    _sync(device)
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            step()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / iters
    t0 = _clock()
    for _ in range(iters):
        step()
    return (_clock() - t0) / iters


def compare(
    ours: Callable[[], None], native: Callable[[], None], device: torch.device, repeats: int, warmup: int = 3
) -> tuple[float, float, float]:
    """(ours seconds, native seconds, ratio): medians over interleaved repeats, and their ratio."""
    for _ in range(warmup):
        ours()
        native()
    one = max(_time_block(ours, 1, device), _time_block(native, 1, device))
    iters = max(1, math.ceil(MIN_BLOCK_S.get(device.type, 0.02) / max(one, 1e-9)))
    t_ours, t_native = [], []
    for r in range(repeats):
        if r % 2 == 0:
            t_ours.append(_time_block(ours, iters, device))
            t_native.append(_time_block(native, iters, device))
        else:
            t_native.append(_time_block(native, iters, device))
            t_ours.append(_time_block(ours, iters, device))
    ours_s, native_s = statistics.median(t_ours), statistics.median(t_native)
    return ours_s, native_s, ours_s / native_s


def _step(module: nn.Module, x: torch.Tensor, pass_: str) -> Callable[[], None]:
    if pass_ == "eval":

        def step() -> None:
            with torch.no_grad():
                module(x)

        return step
    if pass_ == "fwd":
        return lambda: module(x)
    with torch.no_grad():
        grad = torch.randn_like(module(x))

    def step() -> None:
        module(x).backward(grad)

    return step


# --------------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------------
def cells(
    quick: bool, only: Sequence[str] = (), layouts: Sequence[str] = LAYOUTS
) -> Iterator[tuple[Pair, tuple[int, int], str, str]]:
    """Every (pair, (C, H), layout, pass) to measure."""
    for pair in PAIRS:
        if only and not any(o.lower() in pair.layer.lower() for o in only):
            continue
        shapes = (
            (QUICK_CONV_SHAPES if quick else CONV_SHAPES)
            if pair.conv
            else (QUICK_NORM_SHAPES if quick else NORM_SHAPES)
        )
        for shape in shapes:
            for layout in layouts:
                for pass_ in pair.passes:
                    yield pair, shape, layout, pass_


def measure_cell(
    pair: Pair,
    shape: tuple[int, int],
    layout: str,
    pass_: str,
    device: torch.device,
    dtype: torch.dtype,
    repeats: int,
    batch: int = BATCH,
    compile_: bool = False,
) -> Row:
    c, size = shape
    torch.manual_seed(0)
    ours, native = pair.build(c)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    eval_mode = pair.eval_mode or pass_ == "eval"
    for m in (ours, native):
        m.to(device=device, dtype=dtype, memory_format=fmt).train(not eval_mode)
    x = (torch.randn(batch, c, size, size, device=device, dtype=dtype) * 2 + 1).contiguous(memory_format=fmt)
    x.requires_grad_(pass_ != "eval")
    if compile_:  # both sides alike; the warm-up in compare() triggers the compilation
        ours, native = torch.compile(ours), torch.compile(native)
    t_ours, t_native, ratio = compare(_step(ours, x, pass_), _step(native, x, pass_), device, repeats)
    target = pair.targets[pass_]
    return Row(
        pair.layer, pair.reference, (batch, c, size, size), layout, pass_, t_ours * 1e3, t_native * 1e3, ratio, target,
        pair.strictly_faster,
    )  # fmt: skip


def run(
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    quick: bool = False,
    repeats: int | None = None,
    only: Sequence[str] = (),
    layouts: Sequence[str] = LAYOUTS,
    progress: bool = True,
    clock: str = "wall",
    batch: int = BATCH,
    compile_: bool = False,
) -> list[Row]:
    """Measure every cell and return the rows (see the module docstring for the method)."""
    global _clock
    _clock = CLOCKS[clock]
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    repeats = repeats or (5 if quick else 15)
    todo = list(cells(quick, only, layouts))
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for pair, shape, layout, pass_ in tqdm(todo, desc="cells", disable=not progress, file=sys.stderr):
            rows.append(measure_cell(pair, shape, layout, pass_, dev, dtype, repeats, batch, compile_))
    return rows


# --------------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------------
def machine(device: str, dtype: torch.dtype) -> str:
    """CPU model, threads, torch version (and the GPU), in one line."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    text = (
        f"CPU {cpu}, {torch.get_num_threads()} threads; torch {torch.__version__}; {str(dtype).replace('torch.', '')}"
    )
    if device.startswith("cuda") and torch.cuda.is_available():
        text += (
            f"; GPU {torch.cuda.get_device_name()} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()})"
        )
    return text


def _shape_text(row: Row) -> str:
    return "x".join(map(str, row.shape))


def format_table(rows: Sequence[Row]) -> str:
    head = (
        f"{'layer':<19} {'native':<37} {'shape':<13} {'layout':<13} {'pass':<7} "
        f"{'ours ms':>9} {'native ms':>9} {'ratio':>6}  target   result"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.layer:<19} {r.reference:<37} {_shape_text(r):<13} {r.layout:<13} {r.pass_:<7} "
            f"{r.ours_ms:9.3f} {r.native_ms:9.3f} {r.ratio:6.3f}  {r.target_text:<7}  {'PASS' if r.passed else 'FAIL'}"
        )
    failed = sum(not r.passed for r in rows)
    lines.append(f"{len(rows) - failed}/{len(rows)} cells within target")
    return "\n".join(lines)


NOTES = {
    "BN/GN/LN/IN on CPU": "normcore checks each call's statistics for a mean large against the spread "
    "(|mean|/std > 1e3, normcore.functional.SHIFT_RATIO) and then renormalizes from x minus a constant (the native "
    "kernels are off by up to 2.4e-3 contiguous and 1.3e-2 channels-last for mean 1e4, std 1 in float32); the check "
    "is one small reduction and a host read per call, a fixed cost of tens of microseconds that shows at the "
    "smallest shapes. CUDA: no check (it would synchronize).",
    "channels_last on CPU": "the native CPU channels-last kernels accumulate naively (GN/LN/IN: variance as "
    "E[x^2] - E[x]^2, output off by ~1e3 at mean 1e4), so normcore always shifts channels-last input first: one "
    "extra elementwise pass, the cost in these rows.",
    "channels_last GN/LN/IN/BCN on CUDA": "the native CUDA group-norm kernel returns NCHW for channels_last input "
    "(pytorch/pytorch#111824); normcore normalizes in the contiguous layout and returns channels_last, so its time "
    "includes the two layout conversions that the native reference skips (its NCHW output would cost the next "
    "conv one instead).",
    "small shapes on CUDA": "at N = 8, and at 14x14 with N = 64, one layer's kernels run for tens of microseconds, "
    "about the time it takes to launch them from Python: there the ratio measures Python and launch overhead "
    "(normcore's input checks; the several small kernels of WS and BCN), not kernel time.",
    "WSConv2d training": "the official WS formula, op for op (per-filter mean and Welford std, kept for bit-exactness "
    "with the released code), then a hand-derived backward: on CPU the std kernel dominates for large weights "
    "(256x256x3x3); on CUDA each of its ~15 small kernels costs a launch.",
    "WSConv2d eval": "under no_grad in eval mode the standardized weight is cached, so the conv is nn.Conv2d's; "
    "any ratio away from 1 there is timing noise.",
}


def format_markdown(rows: Sequence[Row], description: str) -> str:
    lines = [
        f"Measured on {description}. Ratio = normcore time / native time (medians of interleaved repeats).",
        "",
        "| Layer | Native reference | Shape | Layout | Pass | normcore (ms) | native (ms) | Ratio | Target | |",
        "|---|---|---|---|---|--:|--:|--:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.layer} | {r.reference} | {_shape_text(r)} | {r.layout} | {r.pass_} | {r.ours_ms:.3f} | "
            f"{r.native_ms:.3f} | {r.ratio:.3f} | {r.target_text} | {'PASS' if r.passed else 'FAIL'} |"
        )
    lines += ["", *(f"- {k}: {v}" for k, v in NOTES.items())]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--quick", action="store_true", help="fewer shapes and repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timed blocks per layer (default 15, quick 5)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--only", default="", help="comma-separated layer names to run (substring match)")
    parser.add_argument("--layout", choices=[*LAYOUTS, "both"], default="both")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="CPU timer: wall (default), process CPU time, or this thread's CPU time (needs --threads 1); "
        "on a machine shared with other jobs use --threads 1 --clock thread",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=BATCH,
        help=f"N of every shape (default {BATCH}); on a GPU use 64 or more: at N = 8 a layer's few "
        "kernels take less time than launching them from Python, and the ratio measures that overhead",
    )
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile both layers of every cell (slow: use --only)"
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table with the machine")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "thread" and torch.get_num_threads() != 1:
        parser.error("--clock thread counts only the calling thread's CPU time: add --threads 1")
    dtype = getattr(torch, args.dtype)
    layouts = LAYOUTS if args.layout == "both" else (args.layout,)
    only = [o.strip() for o in args.only.split(",") if o.strip()]
    rows = run(
        args.device, dtype, args.quick, args.repeats, only, layouts, clock=args.clock, batch=args.batch,
        compile_=args.compile,
    )  # fmt: skip
    description = machine(args.device, dtype) + ("; torch.compile" if args.compile else "")
    if not args.device.startswith("cuda"):
        description += f"; {args.clock} clock"
    print(format_markdown(rows, description) if args.markdown else f"{description}\n{format_table(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
