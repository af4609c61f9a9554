"""The environment manifest written beside every result: versions, git commit, machine, config,
timings, and a fingerprint of the code that produced it.

The fingerprint hashes the syntax tree, without docstrings, of every project module that was imported
in the experiment's process when the result was written (``source_files``, paths relative to the
repository): one hash per file (``source_hashes``) and one over all of them (``source_hash``). Each
experiment runs in its own process (``reproductions.run_all`` starts one per paper), so a results file
depends only on the files its experiment imports. A test recomputes the hashes from the working tree and
names the files that were added, removed or edited since (other than comments, docstrings or formatting).

The machine (``machine``: CPU model, instruction-set extensions, cores, torch intra-/inter-op threads,
``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``, and a short :func:`machine_id`) is recorded because CPU-scale
numbers are only bit-identical on the same CPU with the same thread counts. Timings live in ``timings``
(and ``seconds``), outside the hashed ``config``.
"""

from __future__ import annotations

import ast
import datetime as dt
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "REPO_ROOT",
    "build_manifest",
    "config_hash",
    "cpu_description",
    "file_fingerprint",
    "loaded_project_files",
    "machine_id",
    "source_changes",
    "source_fingerprint",
    "source_hashes",
    "stale_reason",
]

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


def _code_dump(rel: str, root: Path = REPO_ROOT) -> str:
    """The syntax tree of a file, without docstrings, as text (what the fingerprints hash)."""
    tree = _strip_docstrings(ast.parse((root / rel).read_text(encoding="utf-8"), filename=rel))
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def source_fingerprint(files: Iterable[str], root: Path = REPO_ROOT) -> str:
    """sha256 over (path, AST without docstrings) of each file, paths relative to the repo root."""
    digest = hashlib.sha256()
    for rel in sorted(set(files)):
        digest.update(rel.encode())
        digest.update(_code_dump(rel, root).encode())
    return digest.hexdigest()


def file_fingerprint(rel: str, root: Path = REPO_ROOT) -> str:
    """sha256 of one file's AST without docstrings (path relative to the repo root)."""
    return hashlib.sha256(_code_dump(rel, root).encode()).hexdigest()


def source_hashes(files: Iterable[str], root: Path = REPO_ROOT) -> dict[str, str]:
    """``{path: file_fingerprint(path)}`` for each file, sorted by path."""
    return {rel: file_fingerprint(rel, root) for rel in sorted(set(files))}


def source_changes(recorded: dict[str, str], root: Path = REPO_ROOT) -> dict[str, list[str]]:
    """What changed in the code since ``recorded`` (a manifest's ``source_hashes``): files ``removed``
    from the tree, files ``edited`` (another fingerprint), and project files ``added`` -- imported now by
    the recorded files (directly, by ``import`` statements) but not recorded. Empty lists: unchanged."""
    removed = sorted(f for f in recorded if not (root / f).is_file())
    edited = sorted(f for f, h in recorded.items() if f not in removed and file_fingerprint(f, root) != h)
    added = sorted({dep for f in recorded if f not in removed for dep in _project_imports(f, root)} - set(recorded))
    return {"added": added, "removed": removed, "edited": edited}


def stale_reason(manifest: dict[str, Any], root: Path = REPO_ROOT) -> str | None:
    """Why a result with this manifest no longer matches the code in ``root``, naming the files that were
    added, removed or edited (None when it matches). A manifest without per-file hashes (made before
    they were recorded) can only say that one of its files changed."""
    files = manifest["source_files"]
    recorded = manifest.get("source_hashes")
    if recorded is None:
        gone = [f for f in files if not (root / f).is_file()]
        if gone:
            return f"removed: {', '.join(gone)}"
        if source_fingerprint(files, root) == manifest["source_hash"]:
            return None
        return (
            f"one or more of its {len(files)} source files changed, and its manifest predates per-file hashes "
            f"(manifest.source_hashes), so it cannot say which: {', '.join(files)}"
        )
    changes = source_changes(recorded, root)
    if not any(changes.values()):
        return None
    return "; ".join(f"{kind}: {', '.join(paths)}" for kind, paths in changes.items() if paths)


def _import_time_nodes(tree: ast.AST):
    """The nodes that run when the module is imported: everything but the bodies of functions (an import
    inside a function runs only if the function is called, and then the module is in the manifest)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(
            child
            for child in ast.iter_child_nodes(node)
            if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        )


def _project_imports(rel: str, root: Path) -> set[str]:
    """Project files that ``rel`` imports by name when it is imported (``import a.b`` / ``from a.b import
    c`` at module level, in class bodies and in module-level ``if``/``try`` blocks)."""
    tree = ast.parse((root / rel).read_text(encoding="utf-8"), filename=rel)
    names: set[str] = set()
    for node in _import_time_nodes(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    found = set()
    for name in names:
        if name.split(".")[0] not in _PROJECT_PACKAGES:
            continue
        base = Path(*name.split("."))
        for cand in (base.with_suffix(".py"), base / "__init__.py"):
            if (root / cand).is_file():
                found.add(cand.as_posix())
    return found


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


_ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "neon", "asimd")
"""Instruction-set extensions that change which kernels torch/oneDNN run (and so the last bits of a result)."""


def cpu_description(cpuinfo: str | None = None) -> dict[str, Any]:
    """The CPU model and which of :data:`_ISA_FLAGS` it has, from ``/proc/cpuinfo`` (Linux; elsewhere
    ``platform.processor()`` and no flags)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    model = fields.get("model name") or fields.get("Model") or platform.processor() or platform.machine()
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    return {"cpu_model": model, "isa": [f for f in _ISA_FLAGS if f in flags]}


def machine_id(machine: dict[str, Any] | None = None) -> str:
    """A short name of the machine that a result's numbers depend on: CPU model and core count, e.g.
    ``amd-epyc-2cores`` (the folder name under ``runs/reproduce/``)."""
    machine = machine if machine is not None else _device_info()
    model = machine.get("cpu_model") or "unknown-cpu"
    slug = re.sub(r"[^a-z0-9]+", "-", re.sub(r"\(r\)|\(tm\)|cpu @.*", "", model.lower())).strip("-")
    return f"{slug or 'unknown-cpu'}-{machine.get('cpu_count') or 0}cores"


def _device_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        **cpu_description(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "thread_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
    }
    if torch.cuda.is_available():
        info["cuda"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    info["id"] = machine_id(info)
    return info


def build_manifest(
    config: Any,
    seconds: float | None = None,
    files: Iterable[str] | None = None,
    command: list[str] | None = None,
    timings: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Everything needed to say how a result was made. ``files`` defaults to the project modules
    imported so far (call this after the run, when they are all loaded). ``timings`` (e.g. CPU seconds)
    are recorded beside ``seconds``, never in the hashed ``config``."""
    files = sorted(files) if files is not None else loaded_project_files()
    hashes = source_hashes(files)
    dirty = _git("status", "--porcelain", "--", *files) if files else ""
    return {
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(dirty),
        "source_files": files,
        "source_hash": source_fingerprint(files),
        "source_hashes": hashes,
        "command": command if command is not None else [Path(sys.argv[0]).name, *sys.argv[1:]],
        "config_hash": config_hash(config),
        "seconds": None if seconds is None else round(float(seconds), 2),
        "timings": {k: round(float(v), 2) for k, v in (timings or {}).items()},
        "versions": _versions(),
        "machine": _device_info(),
    }
