"""Checkpoints that resume a run exactly, written atomically, loaded with ``weights_only=True``.

A checkpoint is a plain dict of tensors and Python built-ins (so ``torch.load(weights_only=True)``
reads it without executing pickled code): model, optimizer, LR scheduler and GradScaler state dicts,
the epoch and step counters, the metric history, the config, and every random-number generator of
every rank (:func:`capture_rng_state`): Python's ``random``, NumPy's global generator, torch's CPU
generator and each CUDA device's. Loading a file you did not write yourself with
``weights_only=False`` can execute arbitrary code, so the engine only does it when the user passes
``--trusted-checkpoint`` (for old checkpoints holding other objects).
"""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reproductions.engine.atomic import atomic_write

__all__ = [
    "CHECKPOINT_NAME",
    "capture_rng_state",
    "load_checkpoint",
    "resolve_resume",
    "restore_rng_state",
    "save_checkpoint",
]

CHECKPOINT_NAME = "checkpoint.pt"
"""The latest checkpoint in a run folder; what ``--resume auto`` looks for."""


def capture_rng_state() -> dict[str, Any]:
    """Every global RNG of this process as tensors and built-ins (``weights_only``-loadable)."""
    version, mt_state, gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": [version, list(mt_state), gauss],
        "numpy": {
            "kind": np_kind,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    npst = state["numpy"]
    np.random.set_state(
        (npst["kind"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["gauss"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        if torch.cuda.is_available() and len(state["cuda"]) <= torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        else:
            warnings.warn(
                "the checkpoint holds CUDA RNG states that this machine cannot restore (no or fewer GPUs); "
                "dropout and other CUDA randomness will differ from the uninterrupted run",
                stacklevel=2,
            )


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """``torch.save(state)`` atomically: the file is either the previous checkpoint or the new one,
    never half-written (a crash or SIGKILL during the write leaves the old one)."""
    return atomic_write(path, lambda fh: torch.save(state, fh))


def load_checkpoint(path: str | os.PathLike, *, trusted: bool = False, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (tensors and built-ins only), or, with
    ``trusted=True``, as a full pickle. The error says which flag to pass when a file needs it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=not trusted)
    except Exception as err:
        if trusted:
            raise
        raise RuntimeError(
            f"{path} could not be loaded with weights_only=True ({type(err).__name__}: {err}). Checkpoints "
            f"written by this engine always can; a file from elsewhere may hold pickled objects. If you "
            f"trust its origin, pass --trusted-checkpoint (it can execute code from the file)."
        ) from err


def resolve_resume(resume: str | None, out_dir: str | os.PathLike) -> Path | None:
    """``None`` -> fresh start; ``"auto"`` -> ``out_dir/checkpoint.pt`` if it exists (else fresh);
    a path -> that file, which must exist (a folder means its ``checkpoint.pt``)."""
    if not resume:
        return None
    if resume == "auto":
        candidate = Path(out_dir) / CHECKPOINT_NAME
        return candidate if candidate.is_file() else None
    path = Path(resume)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"--resume {resume}: no checkpoint at {path}. Use --resume auto to continue the run in --out if "
            f"it has one (and start fresh otherwise)."
        )
    return path
