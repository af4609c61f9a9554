"""Decode every image of a dataset and compare its size with what the annotations say: what the dataset
``check`` commands run, so that a truncated JPEG or a mask of the wrong size is found before training
(where it would stop a run hours in) and reported with its file.

A check is a list of :class:`ImageCheck` items (a file, the size the annotations give it, and whether it
is a class-index mask); :func:`check_images` decodes them on a few threads (PIL releases the GIL while
decoding) and returns one line per problem; :func:`require_images` raises them as one
:class:`~reproductions.tasks.classification.data.DataError` (:func:`problem_summary`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["ImageCheck", "check_images", "default_check_workers", "problem_summary", "require_images"]

_SHOWN = 10


@dataclass(frozen=True)
class ImageCheck:
    """One file to decode. ``size``: the ``(height, width)`` the annotations give it (``None``: not
    compared). ``mask_check``: for a label mask, ``mask_check(array, mode) -> problem or None`` (its mode
    and values); ``None`` for a photograph, which must decode to RGB."""

    path: Path
    size: tuple[int, int] | None = None
    mask_check: Callable[[np.ndarray, str], str | None] | None = None
    what: str = ""  # e.g. "image id 139" or "mask of 2007_000032"


def add_check_command(subparsers: argparse._SubParsersAction, help: str, *, splits: Sequence[str] = ()):
    """The ``check ROOT [--split S ...] [--no-decode] [--workers N]`` sub-command every dataset reader
    offers (``--split`` only where ``splits``, the default splits, are given); returns its parser."""
    check = subparsers.add_parser("check", help=help)
    check.add_argument("root")
    if splits:
        check.add_argument("--split", action="append", help=f"split(s) to check (default {', '.join(splits)})")
    check.add_argument("--no-decode", action="store_true", help="check the files exist, without decoding them")
    check.add_argument("--workers", type=int, help="decoding threads (default: the CPUs, at most 8)")
    return check


def default_check_workers() -> int:
    """Threads for :func:`check_images`: the CPUs this process may use, at most 8."""
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def _check_one(item: ImageCheck) -> str | None:
    label = f"{item.path}{f' ({item.what})' if item.what else ''}"
    if not item.path.is_file():
        return f"{label}: file not found"
    try:
        with Image.open(item.path) as img:
            img.load()  # decodes every byte: a truncated JPEG or PNG fails here
            mode = img.mode
            width, height = img.size
            array = np.asarray(img) if item.mask_check is not None else None
    except Exception as err:
        return f"{label}: cannot be decoded ({type(err).__name__}: {err}); the file is truncated or not an image"
    if item.size is not None and (height, width) != tuple(item.size):
        return f"{label}: is {width}x{height} but the annotations say {item.size[1]}x{item.size[0]}"
    if item.mask_check is not None and array is not None:
        problem = item.mask_check(array, mode)
        return f"{label}: {problem}" if problem else None
    return None


def check_images(items: Sequence[ImageCheck], *, workers: int | None = None, progress: bool = True) -> list[str]:
    """Decode every item (in parallel) and return one line per problem, in the items' order."""
    from reproductions.engine.logs import progress as bar

    workers = workers or default_check_workers()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(_check_one, items)
        found = [r for r in bar(results, total=len(items), desc="decoding", enabled=progress) if r]
    return found


def problem_summary(kind: str, problems: Iterable[str], fix: str) -> str:
    """``N <kind>:`` and the first few problems, one per line, then the fix."""
    problems = list(problems)
    shown = "\n  - ".join(problems[:_SHOWN])
    more = f"\n  ... and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
    return f"{len(problems)} {kind}:\n  - {shown}{more}\nFix: {fix}"


def require_images(
    items: Sequence[ImageCheck], *, kind: str, fix: str, workers: int | None = None, progress: bool = True
) -> None:
    """:func:`check_images`, raising one ``DataError`` (``N <kind>:``, the problems, the fix) if any fail."""
    from reproductions.tasks.classification.data import DataError

    problems = check_images(items, workers=workers, progress=progress)
    if problems:
        raise DataError(problem_summary(kind, problems, fix))
