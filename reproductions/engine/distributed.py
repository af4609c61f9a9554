"""Process-group setup for one process or many (``torchrun``), and the few collectives the engine needs.

One code path for every launch:

* ``python -m reproductions.<paper>.train_imagenet ...``: one process, no process group
  (``world_size == 1``); the device is ``cuda`` when available.
* ``torchrun --nproc_per_node=G -m reproductions.<paper>.train_imagenet ...`` (and multi-node
  ``torchrun --nnodes=N --node_rank=i --rdzv_endpoint=host:port ...``): torchrun sets ``RANK``,
  ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; each process takes GPU
  ``LOCAL_RANK`` and joins an NCCL group (gloo on CPU).

Only rank 0 prints (:func:`print0`), writes logs and checkpoints; every rank computes.
"""

from __future__ import annotations

import datetime as dt
import gc
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "DistEnv",
    "all_gather_object",
    "all_reduce_sum",
    "barrier",
    "broadcast_object",
    "cleanup",
    "get_env",
    "init_distributed",
    "print0",
    "unwrap_model",
    "warn0",
]


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands: ``rank`` of ``world_size`` processes, ``local_rank`` on its node,
    and the ``device`` it computes on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


_ENV = DistEnv()


def get_env() -> DistEnv:
    """The :class:`DistEnv` set by :func:`init_distributed` (a single CPU process before that)."""
    return _ENV


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as err:
        raise ValueError(f"environment variable {name}={value!r} is not an integer (set by torchrun?)") from err


def _pick_device(requested: str, local_rank: int) -> torch.device:
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda was requested but torch.cuda.is_available() is False")
        if requested == "cuda":
            count = torch.cuda.device_count()
            if local_rank >= count:
                raise RuntimeError(
                    f"LOCAL_RANK={local_rank} but this node has {count} GPU(s); "
                    f"launch with torchrun --nproc_per_node={count} or fewer"
                )
            device = torch.device("cuda", local_rank)
        else:
            device = torch.device(requested)
        torch.cuda.set_device(device)
        return device
    return torch.device(requested)


def init_distributed(device: str = "auto", backend: str | None = None, timeout_min: float = 30.0) -> DistEnv:
    """Read torchrun's environment, pick the device, join the process group if ``WORLD_SIZE > 1``.

    ``device`` is ``"auto"`` (CUDA if available), ``"cuda"``, ``"cuda:1"`` or ``"cpu"``; ``backend``
    defaults to NCCL on CUDA and gloo on CPU. Safe to call in a plain single process (no group is
    created). Returns the :class:`DistEnv`, also available later from :func:`get_env`.
    """
    global _ENV
    rank = _env_int("RANK", 0)
    world = _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0)
    if world > 1 and ("MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ):
        raise RuntimeError(
            f"WORLD_SIZE={world} but MASTER_ADDR/MASTER_PORT are not set: launch with "
            f"`torchrun --nproc_per_node=N -m ...` (it sets them), or run one process without WORLD_SIZE"
        )
    dev = _pick_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
        kwargs: dict[str, Any] = {"backend": backend, "timeout": dt.timedelta(minutes=timeout_min)}
        if dev.type == "cuda":
            kwargs["device_id"] = dev
        dist.init_process_group(rank=rank, world_size=world, **kwargs)
    _ENV = DistEnv(rank=rank, world_size=world, local_rank=local_rank, device=dev)
    return _ENV


def cleanup() -> None:
    """Leave the process group (no-op in a single process).

    Unreachable DistributedDataParallel reducers are collected first: they hold the process group
    through reference cycles, and a gloo group torn down only at interpreter exit can abort the
    process ("terminate called without an active exception") after the run's work is done."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


def print0(*args: Any, **kwargs: Any) -> None:
    """``print`` on rank 0 only (flushes, so logs interleave correctly under torchrun)."""
    if _ENV.is_main:
        print(*args, **kwargs, flush=True)


def warn0(message: str) -> None:
    """``warnings.warn`` on rank 0 only."""
    if _ENV.is_main:
        warnings.warn(message, stacklevel=2)


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if _active():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (identity in a single process); returns it."""
    if _active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` in a single process."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under ``torch.compile`` (``_orig_mod``) and DDP (``module``) wrappers: the one
    whose ``state_dict`` keys are those of the model definition."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod  # type: ignore[assignment]
        elif isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model
