"""Executing the committed notebooks so that unchanged results give unchanged files.

:func:`execute` runs a notebook in a fresh kernel (from ``notebooks/``) and writes it back atomically
after :func:`normalise`: no execution timestamps (nbclient's ``metadata.execution``), no kernel-specific
metadata beyond the kernel name and language, and figures with fixed PNG metadata
(:func:`reproductions.reporting.plots.deterministic_matplotlib`, called when the notebooks import
:mod:`reproductions.reporting.notebook`). Executing a notebook twice on the same results therefore
leaves it byte-identical; ``make notebooks`` only changes a notebook when something it shows changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["execute", "normalise"]

_KEPT_NOTEBOOK_METADATA = ("kernelspec", "language_info")
_KEPT_LANGUAGE_INFO = ("name", "file_extension", "mimetype", "pygments_lexer", "codemirror_mode", "nbconvert_exporter")


def normalise(nb: Any) -> Any:
    """Drop what changes between executions of the same notebook on the same results (in place;
    returns ``nb``): cell execution timestamps and any notebook metadata other than the kernel spec and
    the language (its version is left out, so a patch release of Python does not touch every notebook)."""
    for cell in nb.cells:
        cell.get("metadata", {}).pop("execution", None)
    meta = nb.metadata
    for key in [k for k in meta if k not in _KEPT_NOTEBOOK_METADATA]:
        del meta[key]
    info = meta.get("language_info")
    if info is not None:
        for key in [k for k in info if k not in _KEPT_LANGUAGE_INFO]:
            del info[key]
    return nb


def execute(path: Path, timeout: int = 900) -> Path:
    """Execute the notebook at ``path`` in place (kernel ``python3``, working directory its folder),
    normalised (:func:`normalise`), written atomically."""
    import nbformat
    from nbclient import NotebookClient

    from reproductions.engine.atomic import write_text

    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": str(Path(path).parent)}},
    ).execute()
    return write_text(path, nbformat.writes(normalise(nb)))
