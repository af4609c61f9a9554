"""Write, read and validate results files (``results_schema.json``: one schema for the project).

A results file holds what an experiment measured over its seeds (mean and sample std, ddof=1), the
published number it is compared with, the verdict and the rule that produced it, the figures, and the
environment manifest (:mod:`reproductions.claims.provenance`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from reproductions.claims.verdicts import VERDICTS
from reproductions.engine import atomic

__all__ = [
    "RESULTS_ROOT_ENV",
    "SCHEMA_PATH",
    "VERDICTS",
    "errors_by_label",
    "load_results",
    "validate_results",
    "write_results",
]

SCHEMA_PATH = Path(__file__).with_name("results_schema.json")
RESULTS_ROOT_ENV = "NORMCORE_RESULTS_ROOT"
"""Environment variable naming another folder to hold the committed ``<paper>/results/`` folders: the
experiments' ``--update-committed`` writes there and the notebooks read from there (the tests use it, and a
notebook can be tried on a quick run without touching the committed results)."""


@cache
def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


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


def errors_by_label(metrics: Mapping[str, Mapping[str, Any]]) -> dict[str, list[float]]:
    """Per-seed test errors by setting label, read back from a results file's ``test_error.<label>``
    metrics (what the small-ResNet experiments' verdict rules and plots take)."""
    return {k.removeprefix("test_error."): list(v["values"]) for k, v in metrics.items() if k.startswith("test_error.")}
