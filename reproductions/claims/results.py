"""Write, read and validate results files (``results_schema.json``: one schema for the project).

A results file holds what an experiment measured over its seeds (mean and sample std, ddof=1), the
published number it is compared with, the verdict and the rule that produced it, the figures, and the
environment manifest (:mod:`reproductions.claims.provenance`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from reproductions.engine import atomic

__all__ = ["SCHEMA_PATH", "VERDICTS", "load_results", "stat", "validate_results", "write_results"]

SCHEMA_PATH = Path(__file__).with_name("results_schema.json")
VERDICTS = ("reproduced", "partly reproduced", "not reproduced", "not testable at this scale")


@cache
def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


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


def validate_results(results: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` (with the failing path) if ``results`` breaks the schema."""
    import jsonschema

    jsonschema.validate(results, _schema())


def write_results(path: str | Path, results: dict[str, Any]) -> Path:
    """Validate, then write atomically."""
    validate_results(results)
    return atomic.write_json(path, results)


def load_results(path: str | Path) -> dict[str, Any]:
    """Read and validate a results file."""
    results = json.loads(Path(path).read_text())
    validate_results(results)
    return results
