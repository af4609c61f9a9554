r"""Shared training loop of the Group Normalization and WS/BCN CPU experiments: a small ResNet trained on
small images with D **virtual devices** (per-device BN statistics, as D GPUs with unsynchronized BN),
run over settings and seeds on a pool of worker processes. (Their data: :mod:`reproductions.smallscale.data`;
the statistics and verdict rules: :mod:`reproductions.claims`.)

The protocol follows the GN paper's ImageNet recipe (Wu & He 2018, §4.1), scaled down:

* D = 8 devices with ``images_per_device`` images each: a forward pass sees :math:`8b` images, and
  batch-dependent norms compute their statistics per device (``virtual_devices=D``; BN's running
  statistics are those of device 0, what DDP keeps: :func:`reproductions.tasks.models.build_model`);
* SGD with momentum 0.9, weight decay 1e-4 on **every** parameter including :math:`\gamma, \beta`;
* linear LR scaling (Goyal et al. 2017, §2.1), :math:`\eta = \eta_{256} \cdot B / 256` for B images per
  optimizer step, the **same number of epochs for every batch size** (small batches take more steps),
  step decay ÷10 at 30%, 60% and 90% of training (the paper's epochs 30, 60, 90 of 100);
* He init and :math:`\gamma = 0` in the last norm of each residual block (``zero_init_residual``);
* the reported error is the **median of the test errors of the final 5 epochs** (the paper's protocol);
* no data augmentation (the paper's GoogLeNet-style crops do not apply to 8x8 digits).

Gradient accumulation (``ClassifierSchedule.effective_batch``), the WS paper's micro-batch protocol: each
optimizer step accumulates the gradients of ``effective_batch / (8b)`` micro-batches of :math:`8b` images
(the official WS README: "batch size 256 and iteration size 1" is equivalent to "batch size 1 and
iteration size 256" for batch-independent norms). For norms whose forward pass does not depend on the
batch (GN, LN, IN, with or without WS) the micro-batches are one forward pass of ``effective_batch``
images, which is the same computation; BN and BCN (whose batch stage uses the micro-batch, or updates
its running estimates from it) run the micro-batches one after the other.

Each minibatch is a tensor slice of a per-epoch permutation (no DataLoader), dropping the last partial
batch so that every device holds exactly ``images_per_device`` images. Every run uses one thread, so a
run gives the same numbers whichever worker executes it (:func:`train_many` runs two at a time on the
two-core reference machine).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import normcore
from reproductions.claims.statistics import curve_stats, stat
from reproductions.engine.optim import build_optimizer
from reproductions.engine.schedules import build_scheduler, scaled_lr
from reproductions.smallscale.data import Dataset
from reproductions.smallscale.parallel import one_thread, parallel_map
from reproductions.smallscale.training import Timer, seed_everything, test_error
from reproductions.tasks.models import build_model

__all__ = [
    "ClassifierSchedule",
    "ClassifierSetup",
    "RunRecord",
    "error_stats",
    "run_curves",
    "train_classifier",
    "train_many",
]


@dataclass(frozen=True)
class ClassifierSchedule:
    """Training hyper-parameters shared by every setting of an experiment (see the module docstring).

    ``effective_batch=None`` trains with one optimizer step per forward pass of ``devices x
    images_per_device`` images (the GN paper); an integer accumulates micro-batches up to that many images
    per step (the WS paper's micro-batch protocol)."""

    epochs: int
    devices: int = 8
    base_lr: float = 0.1
    reference_batch: int = 256
    momentum: float = 0.9
    weight_decay: float = 1e-4
    milestones: tuple[float, ...] = (0.3, 0.6, 0.9)
    depth: int = 8
    width: int = 16
    eval_last: int = 5
    effective_batch: int | None = None

    def describe(self) -> dict[str, Any]:
        """The fields as plain JSON values (for the results file's config)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class ClassifierSetup:
    """One row of a table: a norm (registry name and keyword arguments), a conv choice (``"ws"`` for
    weight standardization) and the number of images per device. ``label`` names it in results."""

    label: str
    norm: str
    images_per_device: int
    norm_kwargs: Mapping[str, Any] = field(default_factory=dict)
    conv: str = "conv"

    def describe(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "norm": self.norm,
            "norm_kwargs": dict(self.norm_kwargs),
            "conv": self.conv,
            "images_per_device": self.images_per_device,
        }


@dataclass
class RunRecord:
    """What one (setting, seed) run measured: per-epoch curves (mean training loss over the epoch's
    steps, test error in % after the epoch) and the reported test error (median of the last epochs)."""

    label: str
    seed: int
    test_error: float
    train_loss: list[float]
    test_errors: list[float]
    steps: int
    lr: float
    seconds: float
    cpu_seconds: float


def _build(setup: ClassifierSetup, schedule: ClassifierSchedule, in_channels: int, num_classes: int) -> nn.Module:
    devices = schedule.devices if normcore.norm_info(setup.norm, **setup.norm_kwargs).uses_batch_statistics else 1
    cfg = {
        "arch": "small_resnet",
        "norm": setup.norm,
        "norm_kwargs": dict(setup.norm_kwargs),
        "conv": setup.conv,
        "num_classes": num_classes,
        "kwargs": {"depth": schedule.depth, "width": schedule.width, "in_channels": in_channels},
    }
    return build_model(cfg, virtual_devices=devices)


def _step_sizes(setup: ClassifierSetup, schedule: ClassifierSchedule) -> tuple[int, int]:
    """(images per optimizer step, images per forward pass)."""
    micro = setup.images_per_device * schedule.devices
    if schedule.effective_batch is None:
        return micro, micro
    if schedule.effective_batch % micro:
        raise ValueError(
            f"{setup.label}: effective_batch={schedule.effective_batch} is not a multiple of the micro-batch "
            f"{micro} ({schedule.devices} devices x {setup.images_per_device} images)"
        )
    batch_dependent = normcore.norm_info(setup.norm, **setup.norm_kwargs).batch_dependent
    forward = micro if batch_dependent else schedule.effective_batch
    return schedule.effective_batch, forward


def train_classifier(
    setup: ClassifierSetup,
    schedule: ClassifierSchedule,
    data: Dataset,
    seed: int,
    *,
    tick: Callable[[int], Any] | None = None,
) -> RunRecord:
    """Train one setting with one seed (model init and data order both from ``seed``) on one thread (so a run
    gives the same numbers in any worker process) and return its curves and reported test error. ``data``
    holds ``(N, C, H, W)`` images (:func:`~reproductions.smallscale.data.image_dataset`); ``tick(1)`` is
    called after every epoch (a progress bar's ``update``)."""
    with one_thread():
        return _train(setup, schedule, data, seed, tick)


def _train(
    setup: ClassifierSetup,
    schedule: ClassifierSchedule,
    data: Dataset,
    seed: int,
    tick: Callable[[int], Any] | None,
) -> RunRecord:
    if data.x_train.dim() != 4:
        raise ValueError(f"train_classifier needs (N, C, H, W) images, got shape {tuple(data.x_train.shape)}")
    step_batch, forward_batch = _step_sizes(setup, schedule)
    n = data.x_train.shape[0]
    steps_per_epoch = n // step_batch
    if steps_per_epoch < 1:
        raise ValueError(
            f"{setup.label}: {step_batch} images per optimizer step is more than the {n} training images; "
            f"use fewer images per device (or a smaller effective_batch)"
        )
    generator = seed_everything(seed)
    model = _build(setup, schedule, data.x_train.shape[1], int(data.y_train.max()) + 1)
    lr = scaled_lr(schedule.base_lr, step_batch, schedule.reference_batch)
    optimizer = build_optimizer(
        model, name="sgd", lr=lr, momentum=schedule.momentum, weight_decay=schedule.weight_decay
    )
    milestones = [m * schedule.epochs for m in schedule.milestones]
    scheduler = build_scheduler(optimizer, kind="step", steps_per_epoch=steps_per_epoch, milestones=milestones)
    train_loss: list[float] = []
    test_errors: list[float] = []
    steps = 0
    model.train()
    cpu_start = time.process_time()
    with Timer() as timer:
        for _ in range(schedule.epochs):
            order = torch.randperm(n, generator=generator)[: steps_per_epoch * step_batch]
            order = order.view(steps_per_epoch, step_batch)
            total = torch.zeros(())
            for idx in order:
                optimizer.zero_grad(set_to_none=True)
                for part in idx.split(forward_batch):
                    # Each micro-batch's mean loss, weighted by its share: the gradient of the step's mean loss.
                    loss = F.cross_entropy(model(data.x_train[part]), data.y_train[part]) * (len(part) / step_batch)
                    loss.backward()
                    total += loss.detach()
                optimizer.step()
                scheduler.step()
                steps += 1
            train_loss.append(float(total) / len(order))
            test_errors.append(test_error(model, data.x_test, data.y_test))
            if tick is not None:
                tick(1)
            if not math.isfinite(train_loss[-1]):
                break
    if len(train_loss) < schedule.epochs:  # diverged: the curves end in NaN and the run reports no error
        missing = schedule.epochs - len(train_loss)
        train_loss += [math.nan] * missing
        test_errors += [math.nan] * missing
        final = math.nan
    else:
        final = statistics.median(test_errors[-schedule.eval_last :])
    cpu_seconds = time.process_time() - cpu_start
    return RunRecord(setup.label, seed, final, train_loss, test_errors, steps, lr, timer.seconds, cpu_seconds)


def _train_job(job: tuple[ClassifierSetup, ClassifierSchedule, Dataset, int], tick: Callable[[int], Any]) -> RunRecord:
    setup, schedule, data, seed = job
    return train_classifier(setup, schedule, data, seed, tick=tick)


def _cost(setup: ClassifierSetup, schedule: ClassifierSchedule, n: int) -> float:
    """Rough relative cost of a run (forward passes, each with a fixed overhead), to start long runs first."""
    step_batch, forward_batch = _step_sizes(setup, schedule)
    return (n // step_batch) * (step_batch / forward_batch) * (1.0 + forward_batch / 64)


def train_many(
    setups: Sequence[ClassifierSetup],
    seeds: Sequence[int],
    schedule: ClassifierSchedule,
    data: Dataset,
    *,
    workers: int | None = None,
    desc: str = "runs",
) -> dict[str, list[RunRecord]]:
    """Train every setting with every seed, one thread per run, on ``workers`` processes
    (:func:`reproductions.smallscale.parallel.parallel_map`, longest runs first, one progress bar in epochs); returns
    ``{label: [record per seed, in seed order]}`` and prints a one-line summary per setting."""
    labels = [s.label for s in setups]
    if len(set(labels)) != len(labels):
        raise ValueError(f"setting labels must be unique, got {labels}")
    jobs = sorted(
        ((s, schedule, data, seed) for s in setups for seed in seeds),
        key=lambda job: -_cost(job[0], schedule, len(data.x_train)),
    )
    records = parallel_map(_train_job, jobs, workers=workers, desc=desc, total=len(jobs) * schedule.epochs)
    by_key = {(r.label, r.seed): r for r in records}
    out = {label: [by_key[label, seed] for seed in seeds] for label in labels}
    for label, recs in out.items():
        errs = [r.test_error for r in recs]
        sd = statistics.stdev(errs) if len(errs) > 1 else 0.0
        cpu_s = sum(r.cpu_seconds for r in recs)
        print(f"  {label:24s} test error {statistics.fmean(errs):6.2f} ± {sd:4.2f} %  (cpu {cpu_s:6.1f} s)")
    return out


def error_stats(records: Sequence[RunRecord]) -> dict[str, Any]:
    """The reported test error over seeds (mean, sample std, values), in %."""
    return stat([r.test_error for r in records], unit="%", higher_is_better=False)


def run_curves(records: Mapping[str, Sequence[RunRecord]], epochs: int) -> dict[str, Any]:
    """The results file's ``curves``: training loss and test error per epoch, mean and std over seeds, one
    series per setting label."""
    return {
        key: {
            "x": list(range(1, epochs + 1)),
            "x_label": "epoch",
            "y_label": ylabel,
            "series": {label: curve_stats([getattr(r, attr) for r in recs]) for label, recs in records.items()},
        }
        for key, attr, ylabel in (
            ("train_loss", "train_loss", "training loss (mean over the epoch's steps, train mode)"),
            ("test_error", "test_errors", "test error (%)"),
        )
    }
