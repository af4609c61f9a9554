"""Run logs: JSONL metrics per epoch, a human-readable line every N steps, tqdm bars on rank 0 only.

Files in the run folder (written by rank 0):

* ``metrics.jsonl``: one JSON object per epoch (``{"epoch": 3, "train_loss": ..., "top1_err": ...}``);
  when training starts (fresh or resumed) it is rewritten from the checkpoint's history, so it never
  holds an epoch the checkpoint does not know.
* ``log.txt``: every human line printed during the run (step lines, epoch summaries, warnings).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from reproductions.engine import atomic

__all__ = ["Meter", "RunLog", "format_metrics", "progress"]


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", enabled: bool = True):
    """A tqdm bar on stderr, shown only when ``enabled`` (rank 0) and ``NORMCORE_NO_PROGRESS`` is not 1."""
    from tqdm.auto import tqdm

    disable = not enabled or os.environ.get("NORMCORE_NO_PROGRESS") == "1"
    return tqdm(iterable, total=total, desc=desc, disable=disable, dynamic_ncols=True, leave=False)


class Meter:
    """Running average over the last ``window`` values and over everything since :meth:`reset`."""

    def __init__(self, window: int = 20) -> None:
        self.recent: deque[float] = deque(maxlen=window)
        self.reset()

    def reset(self) -> None:
        self.recent.clear()
        self.total = 0.0
        self.count = 0

    def update(self, value: float, n: int = 1) -> None:
        self.recent.append(value)
        self.total += value * n
        self.count += n

    @property
    def avg(self) -> float:
        return self.total / self.count if self.count else math.nan

    @property
    def smoothed(self) -> float:
        return sum(self.recent) / len(self.recent) if self.recent else math.nan


def format_metrics(metrics: dict[str, Any]) -> str:
    """``key value`` pairs, floats with 4 significant digits."""
    parts = []
    for key, value in metrics.items():
        parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return "  ".join(parts)


class RunLog:
    """Writes ``metrics.jsonl`` and ``log.txt`` in ``out_dir`` when ``enabled`` (rank 0); prints lines."""

    def __init__(self, out_dir: str | os.PathLike, *, enabled: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self.enabled = enabled
        self.metrics_path = self.out_dir / "metrics.jsonl"
        self.text_path = self.out_dir / "log.txt"
        self.start = time.time()
        if enabled:
            self.out_dir.mkdir(parents=True, exist_ok=True)

    def line(self, text: str) -> None:
        """Print ``text`` (rank 0) and append it to ``log.txt``."""
        if not self.enabled:
            return
        stamp = time.strftime("%H:%M:%S")
        print(f"[{stamp}] {text}", flush=True)
        self._append(self.text_path, f"[{stamp}] {text}\n")

    def epoch(self, record: dict[str, Any]) -> None:
        """Append one epoch's metrics to ``metrics.jsonl``."""
        if not self.enabled:
            return
        self._append(self.metrics_path, json.dumps(record, allow_nan=True) + "\n", sync=True)

    @staticmethod
    def _append(path: Path, text: str, *, sync: bool = False) -> None:
        """Append ``text``; a full disk is a :class:`~reproductions.engine.atomic.StorageError` naming ``path``."""
        try:
            with path.open("a", encoding="utf-8") as fh:
                fh.write(text)
                if sync:
                    fh.flush()
                    os.fsync(fh.fileno())
        except OSError as err:
            storage = atomic.storage_error(err, path)
            if storage is not None:
                raise storage from err
            raise

    def rewrite(self, history: list[dict[str, Any]]) -> None:
        """Replace ``metrics.jsonl`` with ``history`` (atomically), e.g. when resuming."""
        if not self.enabled:
            return
        atomic.write_text(self.metrics_path, "".join(json.dumps(r, allow_nan=True) + "\n" for r in history))
