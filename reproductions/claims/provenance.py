"""The environment manifest written beside every result: versions, git commit, machine, config,
seconds taken, and a fingerprint of the code that produced it.

The fingerprint (``source_hash``) hashes the syntax tree, without docstrings, of every project module
that was imported when the result was written (``source_files``). A test recomputes it from the
working tree: if the code that produced a committed result has changed since (other than comments,
docstrings or formatting), the result is stale and the test says which command regenerates it.
"""

from __future__ import annotations

import ast
import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["REPO_ROOT", "build_manifest", "config_hash", "loaded_project_files", "source_fingerprint"]

REPO_ROOT = Path(__file__).resolve().parents[2]
_PROJECT_PACKAGES = ("normcore", "reproductions")


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return tree


def source_fingerprint(files: Iterable[str]) -> str:
    """sha256 over (path, AST without docstrings) of each file, paths relative to the repo root."""
    digest = hashlib.sha256()
    for rel in sorted(set(files)):
        path = REPO_ROOT / rel
        tree = _strip_docstrings(ast.parse(path.read_text(encoding="utf-8"), filename=rel))
        digest.update(rel.encode())
        digest.update(ast.dump(tree, annotate_fields=False, include_attributes=False).encode())
    return digest.hexdigest()


def loaded_project_files() -> list[str]:
    """Repo-relative paths of the project's modules imported in this process."""
    files = set()
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if not file or not file.endswith(".py"):
            continue
        path = Path(file).resolve()
        try:
            rel = path.relative_to(REPO_ROOT)
        except ValueError:
            continue
        if rel.parts and rel.parts[0] in _PROJECT_PACKAGES:
            files.add(rel.as_posix())
    return sorted(files)


def config_hash(config: Any) -> str:
    """Short sha256 of a JSON-serialisable config (key order independent)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in ("torch", "torchvision", "numpy", "scikit-learn", "scikit-image", "mlxtend", "pycocotools"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            continue
    return out


def _device_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["cuda"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def build_manifest(
    config: Any, seconds: float | None = None, files: Iterable[str] | None = None, command: list[str] | None = None
) -> dict[str, Any]:
    """Everything needed to say how a result was made. ``files`` defaults to the project modules
    imported so far (call this after the run, when they are all loaded)."""
    files = sorted(files) if files is not None else loaded_project_files()
    dirty = _git("status", "--porcelain", "--", *files) if files else ""
    return {
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(dirty),
        "source_files": files,
        "source_hash": source_fingerprint(files),
        "command": command if command is not None else [Path(sys.argv[0]).name, *sys.argv[1:]],
        "config_hash": config_hash(config),
        "seconds": None if seconds is None else round(float(seconds), 2),
        "versions": _versions(),
        "machine": _device_info(),
    }
