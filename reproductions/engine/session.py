"""Config sections -> engine objects: the session (process group, seed, run folder), data loaders, the
optimizer with the linearly scaled LR, the LR scheduler, and the run summary.

A task script is then a few lines (see :mod:`reproductions.tasks.classification.main`)::

    run = start_session(cfg, out_dir)                       # distributed setup, seed, batch sizes
    model = prepare_model(build(cfg), run.env, channels_last=..., compile=...)
    loader = train_loader(dataset, run)                     # GlobalBatchSampler + SeededDataset
    optimizer = optimizer_from_config(cfg, model, run.total_batch)
    scheduler = scheduler_from_config(cfg, optimizer, loader.batch_sampler.steps_per_epoch)
    trainer = Trainer(...); trainer.resume(...); history = trainer.fit()
    write_summary(run, cfg, history, {...}); end_session(run)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from reproductions.claims.provenance import build_manifest
from reproductions.engine import atomic
from reproductions.engine.checkpoint import CHECKPOINT_NAME, CheckpointError, resolve_resume
from reproductions.engine.distributed import DistEnv, broadcast_object, cleanup, init_distributed, print0
from reproductions.engine.optim import build_optimizer
from reproductions.engine.run_folder import RunFolderError, claim_run_folder
from reproductions.engine.sampling import GlobalBatchSampler, SeededDataset, ShardSampler
from reproductions.engine.schedules import build_scheduler, scaled_lr
from reproductions.engine.trainer import Trainer, batch_report, seed_all
from reproductions.errors import UserError

__all__ = [
    "Session",
    "describe_run",
    "end_session",
    "eval_loader",
    "median_of_last",
    "optimizer_from_config",
    "scheduler_from_config",
    "start_session",
    "train_loader",
    "trainer_from_config",
    "write_summary",
]


@dataclass
class Session:
    """One training run: where it runs, its folder, and its batch arithmetic."""

    env: DistEnv
    out_dir: Path
    per_device_batch: int
    virtual_devices: int
    accum_steps: int
    workers: int
    seed: int
    started: float
    owns_process_group: bool = False  # created here: end_session() destroys it

    @property
    def process_batch(self) -> int:
        """Images per micro-batch in this process (per-device batch x virtual devices)."""
        return self.per_device_batch * self.virtual_devices

    @property
    def total_batch(self) -> int:
        """Images per optimizer step over all processes and accumulation steps."""
        return self.process_batch * self.env.world_size * self.accum_steps


def start_session(
    cfg: Mapping[str, Any],
    out_dir: str | Path,
    *,
    batch_key: str = "data.batch_size",
    resume: str | None = None,
    move_old_run: bool = False,
    eval_only: bool = False,
) -> Session:
    """Join the process group (torchrun) or run alone, seed every RNG with ``train.seed``, claim
    ``out_dir`` for this run and write ``manifest.json`` there (rank 0).

    Claiming (:func:`~reproductions.engine.run_folder.claim_run_folder`) refuses a folder that holds
    another run unless ``resume`` (the ``--resume`` value) continues it or ``move_old_run`` moves it
    aside. ``eval_only`` writes nothing and needs a checkpoint to evaluate."""
    import torch.distributed as dist

    from reproductions.engine.config import get

    train = cfg["train"]
    owns = not (dist.is_available() and dist.is_initialized())
    env = init_distributed(str(train.get("device", "auto")))
    owns = owns and env.distributed
    out = Path(out_dir)
    try:
        checkpoint = resolve_resume(resume, out)
        if eval_only and checkpoint is None:
            where = f"--resume auto found no {CHECKPOINT_NAME} in {out}" if resume else "no --resume was given"
            raise CheckpointError(f"--eval-only evaluates a checkpoint, but {where}; pass --resume CHECKPOINT")
        _claim(cfg, out, env, checkpoint, resume_auto=resume == "auto", move_old_run=move_old_run, eval_only=eval_only)
    except BaseException:
        if owns:
            cleanup()
        raise
    seed_all(int(train["seed"]))
    per_device = int(get(cfg, batch_key))
    virtual = int(train.get("virtual_devices", 1))
    accum = int(train.get("accum_steps", 1))
    if min(per_device, virtual, accum) < 1:
        raise ValueError(
            f"batch size, virtual devices and accumulation steps must be >= 1: {per_device=} {virtual=} {accum=}"
        )
    workers = int(get(cfg, "data.workers", 4) or 0)
    return Session(env, out, per_device, virtual, accum, workers, int(train["seed"]), time.time(), owns)


def _claim(
    cfg: Mapping[str, Any],
    out: Path,
    env: DistEnv,
    checkpoint: Path | None,
    *,
    resume_auto: bool,
    move_old_run: bool,
    eval_only: bool,
) -> None:
    """Rank 0 claims the run folder and writes the manifest; every rank raises if it could not."""
    failure: UserError | None = None
    if env.is_main and not eval_only:
        try:
            for note in claim_run_folder(out, resume=checkpoint, resume_auto=resume_auto, move_old_run=move_old_run):
                print0(note)
            out.mkdir(parents=True, exist_ok=True)
            atomic.write_json(out / "manifest.json", build_manifest(dict(cfg)))
        except UserError as err:
            failure = err
    message = broadcast_object(str(failure) if failure is not None else None)
    if failure is not None:
        raise failure
    if message is not None:
        raise RunFolderError(message)


def end_session(run: Session) -> None:
    """Leave the process group if :func:`start_session` created it (a caller that initialised the group
    itself, e.g. to run several configs in one launch, keeps it)."""
    if run.owns_process_group:
        cleanup()


def train_loader(
    dataset: Dataset,
    run: Session,
    *,
    collate_fn: Callable | None = None,
    shuffle: bool = True,
) -> DataLoader:
    """Training loader: :class:`SeededDataset` (per-sample augmentation seeds) under a
    :class:`GlobalBatchSampler` (this rank's slice of each global batch)."""
    sampler = GlobalBatchSampler(
        len(dataset),  # type: ignore[arg-type]
        run.process_batch,
        world_size=run.env.world_size,
        rank=run.env.rank,
        accum_steps=run.accum_steps,
        shuffle=shuffle,
        seed=run.seed,
    )
    return DataLoader(
        SeededDataset(dataset, run.seed),
        batch_sampler=sampler,
        num_workers=run.workers,
        pin_memory=run.env.device.type == "cuda",
        collate_fn=collate_fn,
        persistent_workers=False,
    )


def eval_loader(dataset: Dataset, run: Session, *, batch_size: int | None = None, collate_fn: Callable | None = None):
    """Evaluation loader over this rank's shard (every sample once over all ranks, in order)."""
    return DataLoader(
        dataset,
        batch_size=batch_size or run.process_batch,
        sampler=ShardSampler(len(dataset), world_size=run.env.world_size, rank=run.env.rank),  # type: ignore[arg-type]
        num_workers=run.workers,
        pin_memory=run.env.device.type == "cuda",
        collate_fn=collate_fn,
    )


def optimizer_from_config(cfg: Mapping[str, Any], model: nn.Module, total_batch: int) -> torch.optim.Optimizer:
    """The ``optim`` section's optimizer with ``lr`` scaled linearly from ``reference_batch`` to
    ``total_batch`` (printed on rank 0)."""
    o = cfg["optim"]
    lr = scaled_lr(float(o["lr"]), total_batch, o.get("reference_batch"))
    ref = o.get("reference_batch")
    print0(
        f"learning rate: {lr:.6g}"
        + (f" = {o['lr']} x {total_batch} / {ref} (linear scaling)" if ref else " (no linear scaling)")
    )
    return build_optimizer(
        model,
        name=o["name"],
        lr=lr,
        weight_decay=float(o["weight_decay"]),
        norm_weight_decay=o.get("norm_weight_decay"),
        bias_weight_decay=o.get("bias_weight_decay"),
        bias_lr_factor=float(o.get("bias_lr_factor", 1.0)),
        norm_bias_rule=str(o.get("norm_bias_rule", "norm")),
        momentum=float(o["momentum"]),
        nesterov=bool(o["nesterov"]),
        betas=tuple(o["betas"]),
        eps=float(o["eps"]),
        alpha=float(o["alpha"]),
    )


def scheduler_from_config(
    cfg: Mapping[str, Any], optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The ``schedule`` section as a per-step ``LambdaLR`` over ``train.epochs`` epochs."""
    s = cfg["schedule"]
    return build_scheduler(
        optimizer,
        kind=s["kind"],
        steps_per_epoch=steps_per_epoch,
        epochs=float(cfg["train"]["epochs"]),
        milestones=s.get("milestones") or (),
        milestones_unit=s.get("milestones_unit", "epoch"),
        gamma=float(s["gamma"]),
        power=float(s["power"]),
        warmup=float(s.get("warmup") or 0),
        warmup_unit=s.get("warmup_unit", "epoch"),
        warmup_start_factor=float(s["warmup_start_factor"]),
        decay_every=float(s.get("decay_every") or 0),
        decay_unit=s.get("decay_unit", "epoch"),
    )


def describe_run(run: Session, cfg: Mapping[str, Any], model: nn.Module) -> None:
    """Print (rank 0) the batch arithmetic and BN statistics batch (:func:`batch_report`), and how the
    run's devices compare with the paper's (``train.paper_devices``)."""
    for line in batch_report(
        model,
        per_device_batch=run.per_device_batch,
        virtual_devices=run.virtual_devices,
        world_size=run.env.world_size,
        accum_steps=run.accum_steps,
    ):
        print0(line)
    paper_devices = cfg["train"].get("paper_devices")
    devices = run.env.world_size * run.virtual_devices
    if paper_devices and devices != paper_devices:
        hint = max(1, paper_devices // run.env.world_size)
        print0(
            f"note: the paper used {paper_devices} devices x {run.per_device_batch} images; this run has {devices} "
            f"device(s) (total batch {run.total_batch} vs {paper_devices * run.per_device_batch}); the LR follows "
            f"by linear scaling. For the paper's per-device BN statistics and total batch, add --virtual-devices {hint}"
        )


def trainer_from_config(cfg: Mapping[str, Any], run: Session, **parts: Any) -> Trainer:
    """A :class:`Trainer` whose loop settings come from the config's ``train`` section and the session
    (epochs, evaluation period, accumulation, logging, clipping, channels_last, epoch checkpoints);
    ``parts`` are the task's pieces: ``model``, ``optimizer``, ``scheduler``, ``precision``,
    ``train_loader``, ``loss_fn``, ``evaluate`` (and optionally ``to_device``, ``images_in_batch``)."""
    train = cfg["train"]
    return Trainer(
        env=run.env,
        epochs=int(train["epochs"]),
        out_dir=run.out_dir,
        config=dict(cfg),
        eval_every=int(train["eval_every"]),
        accum_steps=run.accum_steps,
        log_every=int(train["log_every"]),
        clip_grad_norm=train.get("clip_grad_norm"),
        channels_last=bool(train["channels_last"]),
        keep_epoch_checkpoints=bool(train["keep_epoch_checkpoints"]),
        **parts,
    )


def median_of_last(history: Sequence[Mapping[str, Any]], key: str, n: int) -> float | None:
    """Median of ``key`` over the last ``n`` epochs that report it (GN paper §4.1: "the median error of
    the final 5 epochs"); ``None`` if no epoch does. Fewer than ``n`` epochs: the median of those."""
    values = [float(r[key]) for r in history if r.get(key) is not None]
    return statistics.median(values[-n:]) if values else None


def write_summary(run: Session, cfg: Mapping[str, Any], history: Sequence[Mapping[str, Any]], metrics: dict) -> Path:
    """``summary.json`` in the run folder (rank 0): the row it reproduces, the published value, the
    measured metrics, the last epoch's record, and the environment manifest."""
    path = run.out_dir / "summary.json"
    if not run.env.is_main:
        return path
    summary = {
        "name": cfg.get("name"),
        "paper": cfg.get("paper"),
        "paper_ref": cfg.get("paper_ref"),
        "published": cfg.get("published"),
        "metrics": metrics,
        "epochs_completed": len(history),
        "last_epoch": dict(history[-1]) if history else None,
        "batch": {
            "per_device": run.per_device_batch,
            "devices": run.env.world_size * run.virtual_devices,
            "processes": run.env.world_size,
            "virtual_devices": run.virtual_devices,
            "accum_steps": run.accum_steps,
            "total": run.total_batch,
        },
        "manifest": build_manifest(dict(cfg), time.time() - run.started),
    }
    return atomic.write_json(path, summary)
