"""The task-agnostic training loop: DDP, AMP, channels_last, torch.compile, gradient accumulation,
per-epoch evaluation, exact checkpoint/resume and logs.

A task (classification, detection, segmentation, stylization) supplies four things and gets the rest:

* a model (on the device: :func:`prepare_model` wraps it in DDP / compile),
* ``loss_fn(model, batch) -> (loss, {"name": float_tensor_or_number, ...})``, called under autocast;
  the batch is already on the device (moved by ``to_device``, default :func:`move_to_device`),
* a ``train_loader`` whose batch sampler is a :class:`~reproductions.engine.sampling.GlobalBatchSampler`
  (the trainer calls ``set_epoch`` on it),
* optionally ``evaluate(model) -> {"metric": float}`` run after each epoch (every rank calls it; it
  must return the same reduced numbers on every rank, e.g. with
  :func:`~reproductions.engine.distributed.all_reduce_sum`).

Gradient accumulation: ``accum_steps`` micro-batches per optimizer step, each loss divided by
``accum_steps`` (so the gradient is the mean over the whole step's images), DDP's all-reduce skipped
(``no_sync``) on all but the last. It enlarges the *gradient* batch, not the batch each BN layer
normalizes over (:func:`batch_report` says so).

Checkpoint every epoch (rank 0 writes; every rank's RNG state is gathered into it): see
:mod:`reproductions.engine.checkpoint`. Resuming restores model, optimizer, scheduler, scaler, RNGs,
the step counter and the metric history, and continues with the next epoch: the result is
bit-identical to an uninterrupted run (the sampler's order and every sample's augmentation depend only
on seed, epoch and index).
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

import normcore
from reproductions.engine import checkpoint as ckpt
from reproductions.engine.distributed import (
    DistEnv,
    all_gather_object,
    all_reduce_sum,
    barrier,
    unwrap_model,
)
from reproductions.engine.logs import RunLog, format_metrics, progress
from reproductions.engine.precision import Precision
from reproductions.engine.sampling import GlobalBatchSampler
from reproductions.engine.seeding import seed_all

__all__ = [
    "CHECKPOINT_FORMAT",
    "NonFiniteLossError",
    "Trainer",
    "batch_report",
    "move_to_device",
    "prepare_model",
    "seed_all",
]

CHECKPOINT_FORMAT = "normcore-engine/1"

LossFn = Callable[[nn.Module, Any], tuple[torch.Tensor, Mapping[str, Any]]]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


def move_to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Tensors (in tuples, lists and dicts, recursively) to ``device``; 4-D float tensors to
    channels_last when asked. ``non_blocking`` copies from pinned memory."""
    if isinstance(batch, torch.Tensor):
        out = batch.to(device, non_blocking=True)
        if channels_last and out.dim() == 4 and out.is_floating_point():
            out = out.contiguous(memory_format=torch.channels_last)
        return out
    if isinstance(batch, Mapping):
        return {k: move_to_device(v, device, channels_last) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [move_to_device(v, device, channels_last) for v in batch]
        return type(batch)(moved) if isinstance(batch, tuple) and not hasattr(batch, "_fields") else moved
    return batch


def prepare_model(
    model: nn.Module,
    env: DistEnv,
    *,
    channels_last: bool = False,
    compile: bool = False,
    find_unused_parameters: bool = False,
) -> nn.Module:
    """Move to the device, optionally to channels_last, wrap in DDP when distributed (BN buffers of
    rank 0 are broadcast each step, PyTorch's default), optionally ``torch.compile``. Returns the
    module to train; :func:`~reproductions.engine.distributed.unwrap_model` gives back the plain one."""
    model = model.to(env.device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if env.distributed:
        device_ids = [env.device.index] if env.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=device_ids, find_unused_parameters=find_unused_parameters
        )
    if compile:
        model = torch.compile(model)
    return model


def batch_report(
    model: nn.Module,
    *,
    per_device_batch: int,
    virtual_devices: int,
    world_size: int,
    accum_steps: int,
) -> list[str]:
    """Human lines stating the per-device, per-process and total batch and, for every batch-dependent
    norm in ``model``, the number of images its statistics are computed over."""
    process_batch = per_device_batch * virtual_devices
    total = process_batch * world_size * accum_steps
    devices = world_size * virtual_devices
    lines = [
        f"batch: {per_device_batch} images/device x {devices} device(s) "
        f"({world_size} process(es) x {virtual_devices} virtual device(s) each)"
        f"{f' x {accum_steps} accumulation steps' if accum_steps > 1 else ''} = {total} images per optimizer step"
    ]
    stats = set()
    uses_batch = normcore.module_uses_batch_statistics  # normcore decides which layers use batch statistics
    for m in model.modules():
        if not uses_batch(m) or any(uses_batch(c) for c in m.children()):  # a BCN counts as its BN
            continue
        if isinstance(m, (nn.SyncBatchNorm, normcore.SyncBatchNorm)):
            stats.add((type(m).__name__, process_batch * world_size if world_size > 1 else process_batch))
        else:
            stats.add((type(m).__name__, process_batch // max(1, getattr(m, "virtual_devices", 1))))
    if not stats:
        lines.append("BN statistics batch: none (no batch-dependent normalization in the model)")
        return lines
    for name, size in sorted(stats):
        lines.append(f"BN statistics batch ({name}): {size} images")
    if accum_steps > 1:
        lines.append(
            "note: gradient accumulation does not enlarge the BN statistics batch: each micro-batch is "
            "normalized on its own"
        )
    return lines


class Trainer:
    """Runs epochs of training and evaluation, logs, checkpoints and resumes. See the module docstring.

    Args:
        model: the module to train, as returned by :func:`prepare_model`.
        optimizer, scheduler: the scheduler is stepped after every optimizer step.
        precision: autocast and GradScaler (:class:`~reproductions.engine.precision.Precision`).
        env: the process's :class:`~reproductions.engine.distributed.DistEnv`.
        train_loader: its ``batch_sampler`` must be a ``GlobalBatchSampler``.
        loss_fn: ``loss_fn(model, batch) -> (loss, metrics)``.
        epochs: total epochs.
        out_dir: run folder (checkpoint, logs).
        config: the run's config (stored in the checkpoint and manifest).
        evaluate: ``evaluate(model) -> dict`` after each ``eval_every`` epochs and after the last.
        accum_steps: micro-batches per optimizer step (must match the sampler's).
        log_every: a human line every this many optimizer steps.
        clip_grad_norm: clip the global gradient norm (``None``: no clipping).
        channels_last: convert 4-D input tensors (with the default ``to_device``).
        to_device: ``to_device(batch) -> batch`` on the device (default: :func:`move_to_device`).
        keep_epoch_checkpoints: also keep ``checkpoint_epoch{N}.pt`` for every epoch.
        images_in_batch: ``images_in_batch(batch) -> int`` for the throughput figure (default: the
            first dimension of the first tensor).
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        precision: Precision,
        env: DistEnv,
        train_loader: torch.utils.data.DataLoader,
        loss_fn: LossFn,
        epochs: int,
        out_dir: str | Path,
        config: Mapping[str, Any] | None = None,
        evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
        eval_every: int = 1,
        accum_steps: int = 1,
        log_every: int = 100,
        clip_grad_norm: float | None = None,
        channels_last: bool = False,
        to_device: Callable[[Any], Any] | None = None,
        keep_epoch_checkpoints: bool = False,
        images_in_batch: Callable[[Any], int] | None = None,
    ) -> None:
        sampler = train_loader.batch_sampler
        if not isinstance(sampler, GlobalBatchSampler):
            raise TypeError("Trainer needs a DataLoader whose batch_sampler is a GlobalBatchSampler")
        if sampler.accum_steps != accum_steps:
            raise ValueError(f"sampler accum_steps={sampler.accum_steps} but Trainer accum_steps={accum_steps}")
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.precision = precision
        self.env = env
        self.loader = train_loader
        self.sampler = sampler
        self.loss_fn = loss_fn
        self.epochs = epochs
        self.out_dir = Path(out_dir)
        self.config = dict(config or {})
        self.evaluate_fn = evaluate
        self.eval_every = max(1, eval_every)
        self.accum_steps = accum_steps
        self.log_every = max(1, log_every)
        self.clip_grad_norm = clip_grad_norm
        self.to_device = to_device or (lambda b: move_to_device(b, env.device, channels_last))
        self.keep_epoch_checkpoints = keep_epoch_checkpoints
        self.images_in_batch = images_in_batch or _first_dim
        self.log = RunLog(self.out_dir, enabled=env.is_main)
        self.start_epoch = 0
        self.global_step = 0
        self.history: list[dict[str, Any]] = []

    # ----------------------------------------------------------------------------------------------
    # state
    # ----------------------------------------------------------------------------------------------
    @property
    def raw_model(self) -> nn.Module:
        return unwrap_model(self.model)

    def state_dict(self, epochs_done: int) -> dict[str, Any]:
        """The checkpoint (call on every rank: RNG states are gathered)."""
        rng = all_gather_object(ckpt.capture_rng_state())
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": epochs_done,
            "global_step": self.global_step,
            "model": self.raw_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.precision.scaler.state_dict(),
            "rng": rng,
            "world_size": self.env.world_size,
            "sampler": {"seed": self.sampler.seed, "next_epoch": epochs_done},
            "history": self.history,
            "config": self.config,
        }

    def save(self, epochs_done: int) -> None:
        state = self.state_dict(epochs_done)
        if self.env.is_main:
            ckpt.save_checkpoint(self.out_dir / ckpt.CHECKPOINT_NAME, state, keep_previous=True)
            if self.keep_epoch_checkpoints:
                ckpt.save_checkpoint(self.out_dir / f"checkpoint_epoch{epochs_done}.pt", state)
        barrier()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a checkpoint written by :meth:`save` (the model must have the same architecture)."""
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(
                f"not a checkpoint of this engine (format {state.get('format')!r}, expected {CHECKPOINT_FORMAT!r}); "
                f"to start from foreign weights, load them into the model before training instead of --resume"
            )
        self._load_model_state(state)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.precision.scaler.load_state_dict(state["scaler"])
        self.start_epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.history = list(state["history"])
        if state["sampler"]["seed"] != self.sampler.seed:
            warnings.warn(
                f"resuming with data seed {self.sampler.seed}, but the checkpoint was written with "
                f"{state['sampler']['seed']}: the data order will differ from the original run",
                stacklevel=2,
            )
        rngs = state["rng"]
        if len(rngs) == self.env.world_size:
            ckpt.restore_rng_state(rngs[self.env.rank])
        else:
            warnings.warn(
                f"the checkpoint was written by {len(rngs)} process(es), this run has {self.env.world_size}: "
                f"random states are not restored, so the continuation is not bit-identical",
                stacklevel=2,
            )
        self._warn_config_changes(state.get("config") or {})

    def _load_model_state(self, state: Mapping[str, Any]) -> None:
        """Load the model weights; a mismatch says which model settings differ from the checkpoint's."""
        try:
            self.raw_model.load_state_dict(state["model"])
        except RuntimeError as err:
            old = (state.get("config") or {}).get("model")
            changed = _diff(old, self.config.get("model"), "model") if old is not None else []
            why = (
                "this run's model settings differ from the checkpoint's: " + "; ".join(changed)
                if changed
                else "the checkpoint's weights do not fit this model"
            )
            missing = _count_keys(str(err), "Missing key(s)")
            unexpected = _count_keys(str(err), "Unexpected key(s)")
            raise ckpt.CheckpointError(
                f"cannot resume: {why} ({missing} missing and {unexpected} unexpected weight name(s), size "
                f"mismatches: {'yes' if 'size mismatch' in str(err) else 'no'}). Resume with the checkpoint's "
                f"settings (the config it was written with is stored in it), or start a new run with a fresh --out."
            ) from err

    def _warn_config_changes(self, old: Mapping[str, Any]) -> None:
        changed = _diff(old, self.config)
        if changed and self.env.is_main:
            self.log.line("warning: resuming with a config that differs from the checkpoint's: " + "; ".join(changed))

    def resume(self, path: Path | None, *, trusted: bool = False) -> None:
        """Load ``path`` if given (see :func:`~reproductions.engine.checkpoint.resolve_resume`)."""
        if path is None:
            return
        state = ckpt.load_checkpoint(path, trusted=trusted, map_location="cpu")
        try:
            self.load_state_dict(state)
        except ckpt.CheckpointError as err:
            raise ckpt.CheckpointError(f"{path}: {err}") from err.__cause__
        self.log.line(f"resumed from {path}: {self.start_epoch} epoch(s) done, step {self.global_step}")

    # ----------------------------------------------------------------------------------------------
    # loop
    # ----------------------------------------------------------------------------------------------
    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        model, opt, scaler = self.model, self.optimizer, self.precision.scaler
        model.train()
        self.sampler.set_epoch(epoch)
        sums = _WindowSums()
        images, start = 0, time.perf_counter()
        steps = self.sampler.steps_per_epoch
        bar = progress(total=steps, desc=f"epoch {epoch + 1}/{self.epochs}", enabled=self.env.is_main)
        opt.zero_grad(set_to_none=True)
        ddp = model._orig_mod if hasattr(model, "_orig_mod") else model
        is_ddp = isinstance(ddp, nn.parallel.DistributedDataParallel)
        for micro, batch in enumerate(self.loader):
            last = (micro + 1) % self.accum_steps == 0
            batch = self.to_device(batch)
            sync = ddp.no_sync() if (is_ddp and not last) else contextlib.nullcontext()
            with sync:
                with self.precision.autocast():
                    loss, metrics = self.loss_fn(model, batch)
                scaler.scale(loss / self.accum_steps).backward()
            sums.add({"loss": loss, **metrics})
            images += self.images_in_batch(batch)
            if not last:
                continue
            if self.clip_grad_norm is not None:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(self.raw_model.parameters(), self.clip_grad_norm)
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
            self.scheduler.step()
            self.global_step += 1
            step_in_epoch = (micro + 1) // self.accum_steps
            bar.update(1)
            if step_in_epoch % self.log_every == 0 or step_in_epoch == steps:
                window = sums.flush()
                if not math.isfinite(window["loss"]):
                    raise NonFiniteLossError(
                        f"training loss is {window['loss']} at epoch {epoch + 1}, step {step_in_epoch}: lower "
                        f"the learning rate, add warmup, or use --amp bf16 instead of fp16"
                    )
                elapsed = time.perf_counter() - start
                self.log.line(
                    f"epoch {epoch + 1}/{self.epochs} step {step_in_epoch}/{steps} {format_metrics(window)} "
                    f"lr {opt.param_groups[0]['lr']:.4g} {images * self.env.world_size / max(elapsed, 1e-9):.1f} img/s"
                )
        bar.close()
        elapsed = time.perf_counter() - start
        out = {f"train_{k}": v for k, v in _mean_over_ranks(sums.epoch_means(), self.env).items()}
        out.update(
            {
                "lr": opt.param_groups[0]["lr"],
                "epoch_seconds": elapsed,
                "images_per_second": images * self.env.world_size / max(elapsed, 1e-9),
            }
        )
        return out

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Run ``evaluate`` in eval mode, without gradients, under autocast, and RNG-neutral: torch's CPU
        and this device's CUDA generators are restored afterwards (evaluation loaders draw worker seeds
        from them), so whether and when a run evaluates never changes its training randomness."""
        model.eval()
        devices = [self.env.device] if self.env.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad(), self.precision.autocast():
            return self.evaluate_fn(model) if self.evaluate_fn is not None else {}

    def fit(self) -> list[dict[str, Any]]:
        """Train from ``start_epoch`` to ``epochs``; returns the per-epoch history. ``metrics.jsonl`` first
        becomes the history so far (the resumed checkpoint's, or nothing), so an epoch logged by a run
        that died before its checkpoint is never listed twice."""
        self.log.rewrite(self.history)
        for epoch in range(self.start_epoch, self.epochs):
            record: dict[str, Any] = {"epoch": epoch + 1, **self.train_one_epoch(epoch), "step": self.global_step}
            if self.evaluate_fn is not None and ((epoch + 1) % self.eval_every == 0 or epoch + 1 == self.epochs):
                record.update(self.evaluate(self.model))
            self.history.append(record)
            self.log.epoch(record)
            shown = {k: v for k, v in record.items() if k not in ("epoch", "step")}
            self.log.line(f"epoch {epoch + 1}/{self.epochs} done: {format_metrics(shown)}")
            self.save(epoch + 1)
        return self.history


class _WindowSums:
    """Sums of per-micro-batch metrics kept on the device (no host sync per step), turned into means
    every log line (:meth:`flush`) and for the whole epoch (:meth:`epoch_means`)."""

    def __init__(self) -> None:
        self.window: dict[str, torch.Tensor | float] = {}
        self.count = 0
        self.totals: dict[str, float] = {}
        self.total_count = 0

    def add(self, metrics: Mapping[str, Any]) -> None:
        for key, value in metrics.items():
            value = value.detach().float() if isinstance(value, torch.Tensor) else float(value)
            self.window[key] = self.window[key] + value if key in self.window else value
        self.count += 1

    def flush(self) -> dict[str, float]:
        means = {k: float(v) / self.count for k, v in self.window.items()} if self.count else {}
        for key, value in self.window.items():
            self.totals[key] = self.totals.get(key, 0.0) + float(value)
        self.total_count += self.count
        self.window, self.count = {}, 0
        return means

    def epoch_means(self) -> dict[str, float]:
        if self.count:
            self.flush()
        return {k: v / self.total_count for k, v in self.totals.items()} if self.total_count else {}


def _mean_over_ranks(values: dict[str, float], env: DistEnv) -> dict[str, float]:
    """Average per-rank epoch means over ranks (every rank ran the same number of micro-batches)."""
    if not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=env.device)
    all_reduce_sum(t)
    return {k: float(v) / env.world_size for k, v in zip(keys, t.tolist())}


def _first_dim(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    if isinstance(batch, Mapping):
        batch = list(batch.values())
    if isinstance(batch, Sequence) and batch:
        return _first_dim(batch[0])
    return 0


def _count_keys(message: str, label: str) -> int:
    """How many names ``load_state_dict``'s error lists after ``label`` ("Missing key(s)")."""
    start = message.find(label)
    if start < 0:
        return 0
    line = message[start:].split("\n", 1)[0].split(":", 1)[-1].split(". ")[0]
    return line.count('"') // 2


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += _diff(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else str(key))
        return out
    return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]
