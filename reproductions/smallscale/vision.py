r"""Shared training loop of the Group Normalization and WS/BCN CPU experiments: a small ResNet trained on
Fashion-MNIST with D **virtual devices** (per-device BN statistics, as D GPUs with unsynchronized BN), run
over settings and seeds on a pool of worker processes, with a pilot that sets the number of seeds. (The
statistics and verdict rules: :mod:`reproductions.claims.paired`.)

The protocol follows the GN paper's ImageNet recipe (Wu & He 2018, §4.1), scaled down:

* D = 8 devices with ``images_per_device`` images each: a forward pass sees :math:`8b` images, and
  batch-dependent norms compute their statistics per device (``virtual_devices=D``; BN's running
  statistics are those of device 0, what DDP keeps: :func:`reproductions.tasks.models.build_model`);
* SGD with momentum 0.9, weight decay 1e-4 on **every** parameter including :math:`\gamma, \beta`;
* the paper's LR rule :math:`\eta = 0.1 \cdot B / 256` for B images per optimizer step (§4.1: "0.1 for 32
  images/GPU ... linear scaling"), the **same number of epochs for every batch size** (small batches take
  more steps), step decay ÷10 at 30%, 60% and 90% of training (the paper's epochs 30, 60, 90 of 100);
* He init and :math:`\gamma = 0` in the last norm of each residual block (``zero_init_residual``);
* no data augmentation.

Gradient accumulation (``ClassifierSchedule.effective_batch``), the WS paper's micro-batch protocol: each
optimizer step accumulates the gradients of ``effective_batch / (8b)`` micro-batches of :math:`8b` images
(the official WS README: "batch size 256 and iteration size 1" is equivalent to "batch size 1 and
iteration size 256" for batch-independent norms). For norms whose forward pass does not depend on the
batch (GN, LN, IN, with or without WS) the micro-batches are one forward pass of ``effective_batch``
images, which is the same computation; BN and BCN (whose batch stage uses the micro-batch, or updates
its running estimates from it) run the micro-batches one after the other.

**Pairing.** Every setting of a seed starts from the same conv and linear weights (:func:`build_paired`)
and draws its data order from a generator seeded with the seed: the same permutation of the training images
every epoch, cut into steps of each setting's size (the last partial step dropped).

**Data** (:class:`ImageData`): Fashion-MNIST (:func:`reproductions.smallscale.fashion_mnist.fashion_mnist`),
a class-stratified subset of the training images (fixed split seed, the same for every run) and every test
image, average-pooled ``pool x pool`` (28 -> 14 pixels at ``pool=2``). Worker processes load it themselves
from the data folder (once per process); jobs carry only the :class:`ImageData` description.

Each run records the training loss (mean over the steps of each of ``loss_points`` equal windows) and the
test error at ``error_points`` evenly spaced steps; the reported error is the test error after the last
step. Every run uses one thread, so a run gives the same numbers whichever worker executes it.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import normcore
from reproductions.claims.paired import plan_seeds
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
    "ImageData",
    "RunRecord",
    "build_paired",
    "by_seed",
    "error_stats",
    "loss_stats",
    "paired_errors",
    "pilot_then_run",
    "run_curves",
    "train_classifier",
    "train_many",
]

SUBSET_SEED = 20180322
"""Fixed seed of the stratified training subset (the same images for every run seed and setting)."""


@dataclass(frozen=True)
class ImageData:
    """Which images an experiment trains on: the Fashion-MNIST folder (``None``: the Debian package's), the
    number of training images (a class-stratified subset with :data:`SUBSET_SEED`; ``None``: all) and the
    average-pooling factor. Small and picklable: worker processes load the tensors themselves (:meth:`load`)."""

    data: str | None
    n_train: int | None
    pool: int = 2

    def load(self) -> Dataset:
        """The ``(N, 1, 28/pool, 28/pool)`` images, cached per process."""
        if self not in _LOADED:
            _LOADED.clear()
            _LOADED[self] = _load(self)
        return _LOADED[self]


_LOADED: dict[ImageData, Dataset] = {}


def _stratified_subset(y: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` indices of ``y`` with the classes in proportion (round-robin over per-class permutations)."""
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(y.numpy() == c)) for c in np.unique(y.numpy())]
    picked = [idx[k] for k in range(max(map(len, per_class))) for idx in per_class if k < len(idx)][:n]
    return torch.from_numpy(np.sort(np.asarray(picked, dtype=np.int64)))


def _load(spec: ImageData) -> Dataset:
    from reproductions.smallscale.fashion_mnist import fashion_mnist

    full = fashion_mnist(spec.data, flat=False)
    x_train, y_train = full.x_train, full.y_train
    n_all = len(y_train)
    if spec.n_train is not None and spec.n_train < n_all:
        idx = _stratified_subset(y_train, spec.n_train, SUBSET_SEED)
        x_train, y_train = x_train[idx], y_train[idx]

    def pool(x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, spec.pool) if spec.pool > 1 else x

    side = x_train.shape[-1] // spec.pool
    split = (
        f"{full.split}; training on {len(y_train):,} of the {n_all:,} training images (class-stratified, subset "
        f"seed {SUBSET_SEED}), every test image; images average-pooled {spec.pool}x{spec.pool} to {side}x{side}"
    )
    return Dataset(pool(x_train), y_train, pool(full.x_test), full.y_test, full.name, full.source, split)


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
    width: int = 8
    effective_batch: int | None = None
    loss_points: int = 20
    error_points: int = 5

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
    """What one (setting, seed) run measured: the training-loss curve (mean over each window of steps, in
    train mode), the test-error curve (%, at evenly spaced steps, the last after the final step), the
    reported test error (the final one; NaN if the run diverged) and the final training loss (the last
    window's mean)."""

    label: str
    seed: int
    test_error: float
    final_train_loss: float
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


def build_paired(
    setup: ClassifierSetup, schedule: ClassifierSchedule, in_channels: int, num_classes: int, seed: int
) -> nn.Module:
    """The model of ``setup`` with the initial weights every setting of ``seed`` shares: seeded right before
    it is built, and with a conv choice other than plain (WS) it takes the weights of the plain-conv model of
    the same seed (swapping the conv class draws its weights again), so WS convs start from the same raw
    weights as plain ones. The norms' parameters are constants, so a norm swap changes nothing else."""
    seed_everything(seed)
    plain = _build(replace(setup, conv="conv"), schedule, in_channels, num_classes)
    if setup.conv == "conv":
        return plain
    model = _build(setup, schedule, in_channels, num_classes)
    model.load_state_dict(plain.state_dict())
    return model


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


def _points(total: int, k: int) -> list[int]:
    """``k`` evenly spaced step counts in ``1..total``, the last being ``total`` (``total >= k``)."""
    if total < k:
        raise ValueError(f"{total} training steps cannot hold {k} evaluation points; train longer or use fewer points")
    return [round(total * (i + 1) / k) for i in range(k)]


def _fractions(k: int, epochs: int) -> list[float]:
    """The epochs (fractional) at the ``k`` points of :func:`_points`, the same for every batch size."""
    return [round(epochs * (i + 1) / k, 4) for i in range(k)]


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
    holds ``(N, C, H, W)`` images; ``tick(1)`` is called after every epoch (a progress bar's ``update``)."""
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
    total_steps = steps_per_epoch * schedule.epochs
    loss_at = _points(total_steps, schedule.loss_points)
    error_at = _points(total_steps, schedule.error_points)
    model = build_paired(setup, schedule, data.x_train.shape[1], int(data.y_train.max()) + 1, seed)
    generator = torch.Generator().manual_seed(seed)  # the data order: the same for every setting of a seed
    lr = scaled_lr(schedule.base_lr, step_batch, schedule.reference_batch)
    optimizer = build_optimizer(
        model, name="sgd", lr=lr, momentum=schedule.momentum, weight_decay=schedule.weight_decay
    )
    milestones = [m * schedule.epochs for m in schedule.milestones]
    scheduler = build_scheduler(optimizer, kind="step", steps_per_epoch=steps_per_epoch, milestones=milestones)
    train_loss: list[float] = []
    test_errors: list[float] = []
    window, window_steps, steps = torch.zeros(()), 0, 0
    diverged = False
    model.train()
    cpu_start = time.process_time()
    with Timer() as timer:
        for _ in range(schedule.epochs):
            order = torch.randperm(n, generator=generator)[: steps_per_epoch * step_batch]
            for idx in order.view(steps_per_epoch, step_batch):
                optimizer.zero_grad(set_to_none=True)
                for part in idx.split(forward_batch):
                    # Each micro-batch's mean loss, weighted by its share: the gradient of the step's mean loss.
                    loss = F.cross_entropy(model(data.x_train[part]), data.y_train[part]) * (len(part) / step_batch)
                    loss.backward()
                    window += loss.detach()
                optimizer.step()
                scheduler.step()
                steps += 1
                window_steps += 1
                if steps == loss_at[len(train_loss)]:
                    train_loss.append(float(window) / window_steps)
                    window, window_steps = torch.zeros(()), 0
                    diverged = not math.isfinite(train_loss[-1])
                if steps in error_at:
                    test_errors.append(test_error(model, data.x_test, data.y_test))
                if diverged:
                    break
            if tick is not None:
                tick(1)
            if diverged:
                break
    train_loss += [math.nan] * (len(loss_at) - len(train_loss))
    test_errors += [math.nan] * (len(error_at) - len(test_errors))
    final = math.nan if diverged else test_errors[-1]
    cpu_seconds = time.process_time() - cpu_start
    return RunRecord(
        setup.label, seed, final, train_loss[-1], train_loss, test_errors, steps, lr, timer.seconds, cpu_seconds
    )


def _train_job(
    job: tuple[ClassifierSetup, ClassifierSchedule, ImageData, int], tick: Callable[[int], Any]
) -> RunRecord:
    setup, schedule, images, seed = job
    return train_classifier(setup, schedule, images.load(), seed, tick=tick)


def _cost(setup: ClassifierSetup, schedule: ClassifierSchedule) -> float:
    """Rough relative cost of a run per training image (forward passes with a fixed overhead each), to
    start long runs first."""
    _, forward_batch = _step_sizes(setup, schedule)
    batch_stats = normcore.norm_info(setup.norm, **setup.norm_kwargs).uses_batch_statistics
    return (1.0 + 64 / forward_batch) * (2.0 if batch_stats else 1.0)


def train_many(
    setups: Sequence[ClassifierSetup],
    seeds: Sequence[int],
    schedule: ClassifierSchedule,
    images: ImageData,
    *,
    workers: int | None = None,
    desc: str = "runs",
) -> dict[str, list[RunRecord]]:
    """Train every setting with every seed, one thread per run, on ``workers`` processes
    (:func:`reproductions.smallscale.parallel.parallel_map`, longest runs first, one progress bar in epochs
    with its ETA); returns ``{label: [record per seed, in seed order]}`` and prints a line per setting."""
    labels = [s.label for s in setups]
    if len(set(labels)) != len(labels):
        raise ValueError(f"setting labels must be unique, got {labels}")
    jobs = sorted(
        ((s, schedule, images, seed) for s in setups for seed in seeds), key=lambda job: -_cost(job[0], schedule)
    )
    records = parallel_map(_train_job, jobs, workers=workers, desc=desc, total=len(jobs) * schedule.epochs)
    by_key = {(r.label, r.seed): r for r in records}
    out = {label: [by_key[label, seed] for seed in seeds] for label in labels}
    for label, recs in out.items():
        errs = [r.test_error for r in recs]
        sd = statistics.stdev(errs) if len(errs) > 1 else 0.0
        cpu_s = sum(r.cpu_seconds for r in recs)
        loss = statistics.fmean(r.final_train_loss for r in recs)
        print(
            f"  {label:22s} test error {statistics.fmean(errs):6.2f} ± {sd:4.2f} %, final train loss {loss:.3f} "
            f"(cpu {cpu_s:6.1f} s)"
        )
    return out


def by_seed(records: Mapping[str, Sequence[RunRecord]], attr: str = "test_error") -> dict[str, dict[int, float]]:
    """``{label: {seed: value}}`` of one field of the records (the form the paired claims take)."""
    return {label: {r.seed: float(getattr(r, attr)) for r in recs} for label, recs in records.items()}


def pilot_then_run(
    setups: Sequence[ClassifierSetup],
    schedule: ClassifierSchedule,
    images: ImageData,
    planned: Callable[[dict[str, dict[int, float]]], list[dict[str, Any]]],
    *,
    seeds: Sequence[int] | None,
    pilot_seeds: Sequence[int],
    maximum: int,
    minimum: int,
    workers: int,
    desc: str,
) -> tuple[dict[str, list[RunRecord]], list[int], dict[str, Any]]:
    """The runs of an experiment and the plan that chose their seeds. With ``seeds`` given: those seeds, no
    pilot (``{"skipped": "--seeds given"}``). Otherwise every setting runs on ``pilot_seeds`` first,
    ``planned(pilot test errors by label and seed)`` lists the planned claims (``claim``, ``test``,
    ``effect``, ``a``, ``b``), :func:`reproductions.claims.paired.plan_seeds` picks the number of fresh
    seeds (from 0) for 80 % power, between ``minimum`` and ``maximum``, and every setting runs on them.
    Returns (records, seeds, pilot)."""
    if seeds is not None:
        return (
            train_many(setups, seeds, schedule, images, workers=workers, desc=desc),
            list(seeds),
            {"skipped": "--seeds given"},
        )
    pilot_records = train_many(setups, pilot_seeds, schedule, images, workers=workers, desc=f"{desc} (pilot)")
    pilot_errors = by_seed(pilot_records)
    plan = plan_seeds(planned(pilot_errors), maximum=maximum, minimum=minimum, first_seed=0)
    print(f"  pilot: {plan['n']} seeds planned ({plan['rule']}; needed {plan['needed']}, capped {plan['capped']})")
    records = train_many(setups, plan["seeds"], schedule, images, workers=workers, desc=desc)
    pilot = {**plan, "values": {label: {str(s): v for s, v in vals.items()} for label, vals in pilot_errors.items()}}
    return records, plan["seeds"], pilot


def paired_errors(errors: Mapping[str, Mapping[int, float]], a: ClassifierSetup, b: ClassifierSetup) -> dict[str, Any]:
    """The ``a``, ``b`` (seed -> test error) and ``labels`` of a claim comparing setting ``a`` with setting ``b``
    (d = a - b), from ``errors`` keyed by setting label: the keys of
    :func:`reproductions.claims.paired.paired_comparison` that name the two settings."""
    return {"a": errors[a.label], "b": errors[b.label], "labels": (a.label, b.label)}


def error_stats(records: Sequence[RunRecord]) -> dict[str, Any]:
    """The reported test error over seeds (mean, sample std, values), in %."""
    return stat([r.test_error for r in records], unit="%", higher_is_better=False)


def loss_stats(records: Sequence[RunRecord]) -> dict[str, Any]:
    """The final training loss over seeds (mean of the last window of steps; mean, sample std, values)."""
    return stat([r.final_train_loss for r in records], unit="nats", higher_is_better=False)


def run_curves(records: Mapping[str, Sequence[RunRecord]], schedule: ClassifierSchedule) -> dict[str, Any]:
    """The results file's ``curves``: training loss and test error against training epochs (fractional; the
    same axis for every batch size), mean and std over seeds and every seed's curve, one series per label."""

    return {
        key: {
            "x": _fractions(k, schedule.epochs),
            "x_label": "epoch",
            "y_label": ylabel,
            "series": {
                label: curve_stats([getattr(r, attr) for r in recs], keep_seeds=True) for label, recs in records.items()
            },
        }
        for key, attr, ylabel, k in (
            (
                "train_loss",
                "train_loss",
                "training loss (mean over each window of steps, train mode)",
                schedule.loss_points,
            ),
            ("test_error", "test_errors", "test error (%)", schedule.error_points),
        )
    }
