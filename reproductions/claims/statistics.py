r"""Descriptive statistics of a results file: per-seed summaries (mean, sample std) and curves over seeds.
The paired statistics that decide claims are in :mod:`reproductions.claims.power`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["curve_stats", "stat"]


def _finite(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def stat(values: Sequence[float], unit: str = "", higher_is_better: bool | None = None) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof=1; 0.0 for a single value) of per-seed values.
    Non-finite values (a diverged run) are kept as ``null`` and make mean/std ``null``."""
    vals = [_finite(float(v)) for v in values]
    ok = [v for v in vals if v is not None]
    n = len(vals)
    if len(ok) != n or n == 0:
        mean = std = None
    else:
        mean = sum(ok) / n
        std = math.sqrt(sum((v - mean) ** 2 for v in ok) / (n - 1)) if n > 1 else 0.0
    out: dict[str, Any] = {"mean": mean, "std": std, "n": max(n, 1), "values": vals}
    if unit:
        out["unit"] = unit
    if higher_is_better is not None:
        out["higher_is_better"] = higher_is_better
    return out


def curve_stats(per_seed: Sequence[Sequence[float]], keep_seeds: bool = False) -> dict[str, Any]:
    """Mean and sample std over seeds at every point of equally long per-seed curves, in the form
    the results schema's ``curves.<name>.series.<series>`` expects (``None`` where undefined); with
    ``keep_seeds`` also every seed's curve (``per_seed``, for plots with one line per seed)."""
    lengths = {len(c) for c in per_seed}
    if len(lengths) != 1:
        raise ValueError(f"curves of different lengths {sorted(lengths)}: evaluate every seed at the same steps")
    points = [stat(vals) for vals in zip(*per_seed)]
    out: dict[str, Any] = {"mean": [p["mean"] for p in points], "std": [p["std"] for p in points]}
    if keep_seeds:
        out["per_seed"] = [[_finite(float(v)) for v in curve] for curve in per_seed]
    return out
