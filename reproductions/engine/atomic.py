"""Atomic file writes: a reader (or a crash) never sees a half-written file.

Each writer writes to a temporary file in the destination folder, flushes and fsyncs it, then renames
it over the destination (``os.replace`` is atomic on POSIX and Windows). A write that fails because
the disk is full (or a quota, or permissions) raises :class:`StorageError` naming the file and the free
space, instead of the serializer's own error (``torch.save`` reports a full disk as "unexpected pos");
a process killed mid-write leaves a ``.NAME.XXXXXXXX.tmp`` file, which :func:`remove_stale_temporaries`
deletes when the next run starts in that folder.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from reproductions.errors import UserError

__all__ = [
    "StorageError",
    "atomic_write",
    "remove_stale_temporaries",
    "storage_error",
    "write_bytes",
    "write_json",
    "write_text",
]

_STORAGE_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded"}
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # mkstemp(prefix=".NAME.", suffix=".tmp")


class StorageError(UserError, OSError):
    """Writing a file failed for a reason outside the program (a full disk, a quota)."""


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(fh)`` on a temporary binary file next to ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        storage = storage_error(err, path)
        if storage is not None:
            raise storage from err
        raise
    return path


def storage_error(err: BaseException, path: Path) -> StorageError | None:
    """The :class:`StorageError` to raise instead of ``err`` when a full disk or quota caused it (``None``
    otherwise), naming ``path`` and the free space."""
    cause = _storage_cause(err)
    return StorageError(_storage_message(path, cause)) if cause is not None else None


def _storage_cause(err: BaseException) -> OSError | None:
    """The full-disk / quota ``OSError`` behind ``err`` (itself or in its ``__cause__``/``__context__``
    chain: ``torch.save`` wraps it in a ``RuntimeError``), if any."""
    seen: set[int] = set()
    node: BaseException | None = err
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if isinstance(node, OSError) and node.errno in _STORAGE_ERRNOS:
            return node
        node = node.__cause__ or node.__context__
    return None


def _storage_message(path: Path, cause: OSError) -> str:
    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:.0f} MiB free there now"
    except OSError:
        free = "free space unknown"
    return (
        f"cannot write {path}: {_STORAGE_ERRNOS[cause.errno]} ({free}). The previous {path.name}, if any, is "
        f"intact. Free some space (or point --out at another disk) and continue with --resume auto."
    )


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that killed :func:`atomic_write` calls left in ``folder``; returns them.
    Call it only when no other process writes into ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = sorted(p for p in folder.iterdir() if p.is_file() and _TEMPORARY.match(p.name))
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda fh: fh.write(data))


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """JSON with sorted-free, stable formatting (keys in insertion order) and a trailing newline."""
    return write_text(path, json.dumps(obj, indent=indent, allow_nan=False, default=_jsonable) + "\n")


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy / torch scalars and arrays
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON: {obj!r}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
