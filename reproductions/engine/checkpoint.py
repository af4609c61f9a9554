"""Checkpoints that resume a run exactly, written atomically, loaded with ``weights_only=True``.

A checkpoint is a plain dict of tensors and Python built-ins (so ``torch.load(weights_only=True)``
reads it without executing pickled code): model, optimizer, LR scheduler and GradScaler state dicts,
the epoch and step counters, the metric history, the config, and every random-number generator of
every rank (:func:`capture_rng_state`): Python's ``random``, NumPy's global generator, torch's CPU
generator and each CUDA device's. Loading a file you did not write yourself with
``weights_only=False`` can execute arbitrary code, so the engine only does it when the user passes
``--trusted-checkpoint`` (for old checkpoints holding other objects).

Integrity: :func:`save_checkpoint` stores a SHA-256 digest of the checkpoint's content (every tensor's
dtype, shape and bytes, and every other value, in order: :func:`state_digest`) under ``"integrity"``,
and :func:`load_checkpoint` recomputes it: a flipped byte in the tensor data, which ``torch.load`` would
read without complaint, is a :class:`CheckpointError` that says "corrupt", names the file and the
previous good checkpoint (``checkpoint_previous.pt``, kept by :func:`save_checkpoint` when it replaces
a checkpoint, or an epoch checkpoint), and says how to continue. A file that is empty, truncated or not
a checkpoint at all is reported as corrupt too; only a readable file that holds pickled objects asks for
``--trusted-checkpoint``.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reproductions.engine.atomic import atomic_write
from reproductions.errors import UserError

__all__ = [
    "CHECKPOINT_NAME",
    "INTEGRITY_KEY",
    "PREVIOUS_NAME",
    "CheckpointError",
    "capture_rng_state",
    "load_checkpoint",
    "resolve_resume",
    "restore_rng_state",
    "save_checkpoint",
    "state_digest",
]

CHECKPOINT_NAME = "checkpoint.pt"
"""The latest checkpoint in a run folder; what ``--resume auto`` looks for."""
PREVIOUS_NAME = "checkpoint_previous.pt"
"""The checkpoint that ``checkpoint.pt`` replaced (one epoch older): the fallback if it is damaged."""
INTEGRITY_KEY = "integrity"
_DIGEST = "sha256/state-walk-1"


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that is missing, corrupt, untrusted or does not fit the run."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint where one was asked for."""


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


def state_digest(state: Mapping[str, Any]) -> str:
    """SHA-256 over a checkpoint's content in order, without its ``"integrity"`` entry: each tensor's
    dtype, shape and raw bytes (on the CPU), each other value's type and ``repr``, and the keys and
    lengths of the containers, so a change anywhere (a tensor byte, the epoch, a history entry) changes
    the digest."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in state.items() if k != INTEGRITY_KEY})
    return h.hexdigest()


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(obj.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().data)
    elif isinstance(obj, Mapping):
        h.update(f"{{{len(obj)}".encode())
        for key, value in obj.items():
            _feed(h, key)
            _feed(h, value)
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__[0]}{len(obj)}".encode())
        for value in obj:
            _feed(h, value)
    else:
        h.update(f"{type(obj).__name__}:{obj!r};".encode())


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any], *, keep_previous: bool = False) -> Path:
    """``torch.save(state)`` atomically, with its :func:`state_digest` under ``"integrity"``: the file is
    either the previous checkpoint or the new one, never half-written (a crash or SIGKILL during the
    write leaves the old one). ``keep_previous``: the file being replaced stays as
    ``checkpoint_previous.pt`` in the same folder (a hard link, so no copy is written)."""
    path = Path(path)
    state = {**state, INTEGRITY_KEY: {"digest": _DIGEST, "value": state_digest(state)}}
    if keep_previous and path.is_file():
        _link_previous(path)
    return atomic_write(path, lambda fh: torch.save(state, fh))


def _link_previous(path: Path) -> None:
    previous = path.with_name(PREVIOUS_NAME)
    staging = path.with_name(f".{PREVIOUS_NAME}.linking")
    staging.unlink(missing_ok=True)
    try:
        os.link(path, staging)
    except OSError:  # a filesystem without hard links: keep no previous checkpoint
        return
    os.replace(staging, previous)


def load_checkpoint(
    path: str | os.PathLike, *, trusted: bool = False, map_location: Any = "cpu", verify: bool = True
) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (tensors and built-ins only), or, with
    ``trusted=True``, as a full pickle, and check its digest (``verify``; files without one, e.g.
    foreign weights, load unchecked). Errors (:class:`CheckpointError`) say whether the file is missing,
    corrupt or needs ``--trusted-checkpoint``, and name the previous good checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(_corrupt(path, "the file is empty (a write that never happened)"))
    try:
        state = torch.load(path, map_location=map_location, weights_only=not trusted)
    except pickle.UnpicklingError as err:
        if trusted or "weights only load failed" not in str(err).lower():
            raise CheckpointError(_corrupt(path, f"it cannot be unpickled ({_first_line(err)})")) from err
        raise CheckpointError(
            f"{path} holds pickled Python objects, which weights_only=True refuses ({_first_line(err)}). "
            f"Checkpoints written by this engine never do; a file from elsewhere may. If you trust its origin, "
            f"pass --trusted-checkpoint (loading it can execute code from the file)."
        ) from err
    except Exception as err:  # torch.load's errors for a damaged file: RuntimeError, KeyError, EOFError, ...
        raise CheckpointError(_corrupt(path, f"torch.load cannot read it ({_first_line(err)})")) from err
    if verify and not _digest_matches(state):
        raise CheckpointError(
            _corrupt(
                path, "its content does not match the SHA-256 digest stored with it (damaged after it was written)"
            )
        )
    return state


def _digest_matches(state: Any) -> bool:
    """False only for a checkpoint of this engine whose content differs from its stored digest."""
    if not (isinstance(state, Mapping) and isinstance(state.get(INTEGRITY_KEY), Mapping)):
        return True
    stored = state[INTEGRITY_KEY]
    return stored.get("digest") != _DIGEST or stored.get("value") == state_digest(state)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def _corrupt(path: Path, why: str) -> str:
    return f"corrupt checkpoint {path}: {why}. {_alternatives(path)}"


def _alternatives(path: Path) -> str:
    """Where to continue from when ``path`` is unusable: the newest other checkpoint of its folder that
    loads and matches its digest (epoch checkpoints by epoch, then the others by modification time)."""
    others = [p for p in path.parent.glob("checkpoint*.pt") if p.is_file() and p.resolve() != path.resolve()]

    def order(p: Path) -> tuple[int, float]:
        m = re.fullmatch(r"checkpoint_epoch(\d+)\.pt", p.name)
        return (int(m.group(1)) if m else -1, p.stat().st_mtime)

    for candidate in sorted(others, key=order, reverse=True):
        try:
            state = torch.load(candidate, map_location="cpu", weights_only=True)
        except Exception:
            continue
        if _digest_matches(state):
            epoch = state.get("epoch") if isinstance(state, Mapping) else None
            done = f", {epoch} epoch(s) done" if epoch is not None else ""
            return f"The last good checkpoint is {candidate}{done}: continue with --resume {candidate}."
    return (
        f"{path.parent} holds no other good checkpoint: start again with a fresh --out (or add --move-old-run to "
        f"keep this folder aside and start again in it)."
    )


def resolve_resume(resume: str | None, out_dir: str | os.PathLike, *, flag: str = "--resume") -> Path | None:
    """``None`` -> fresh start; ``"auto"`` -> ``out_dir/checkpoint.pt`` if it exists (else fresh);
    a path -> that file, which must exist (a folder means its ``checkpoint.pt``). ``flag`` names the
    option in the error."""
    if not resume:
        return None
    if resume == "auto":
        candidate = Path(out_dir) / CHECKPOINT_NAME
        return candidate if candidate.is_file() else None
    path = Path(resume)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        hint = (
            " Use --resume auto to continue the run in --out if it has one (and start fresh otherwise)."
            if flag == "--resume"
            else ""
        )
        raise CheckpointNotFoundError(f"{flag} {resume}: no checkpoint at {path}.{hint}")
    return path
