"""Pieces the dense tasks (detection, segmentation, stylization) share on top of the engine."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch
from torch import nn

from reproductions.common.distributed import get_env, print0
from reproductions.common.recipe import Session
from reproductions.common.trainer import Trainer, batch_report

__all__ = ["describe_run", "rng_neutral", "trainer_from_config"]

T = TypeVar("T")


def describe_run(run: Session, cfg: Mapping[str, Any], model: nn.Module) -> None:
    """Print the batch arithmetic (:func:`~reproductions.common.trainer.batch_report`) and how the run's
    devices compare with the paper's (``train.paper_devices``)."""
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
    if paper_devices and devices * run.accum_steps != paper_devices:
        print0(
            f"note: the paper trained on {paper_devices} GPUs x {run.per_device_batch} images; this run has "
            f"{devices} device(s) (total batch {run.total_batch}); the learning rate follows by linear scaling"
        )


def rng_neutral(fn: Callable[..., T]) -> Callable[..., T]:
    """Run ``fn`` under :func:`torch.random.fork_rng`, so it leaves torch's CPU (and this rank's CUDA)
    random state as it found it.

    Evaluation draws from the global generator (every DataLoader iterator takes a base seed from it),
    and the trainer evaluates after the last epoch of each invocation. Without this, a run split by a
    resume (evaluated after epoch k) and an uninterrupted one (not evaluated there) would continue with
    different random streams (e.g. Mask R-CNN's proposal sampling), and resume would not be exact."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        device = get_env().device
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            return fn(*args, **kwargs)

    return wrapper


def trainer_from_config(cfg: Mapping[str, Any], run: Session, **parts: Any) -> Trainer:
    """A :class:`~reproductions.common.trainer.Trainer` whose loop settings come from the config's
    ``train`` section and the session (epochs, evaluation period, accumulation, logging, clipping,
    channels_last, epoch checkpoints); ``parts`` are the task's pieces (model, optimizer, scheduler,
    precision, train_loader, loss_fn, evaluate, ...)."""
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
