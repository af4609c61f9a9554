"""Plots of the experiments and notebooks: a mean ± std band over seeds, and PNG files whose bytes
depend only on the figure (no matplotlib version or date in the metadata), so that rerunning on
unchanged numbers leaves committed figures byte-identical."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PNG_METADATA", "deterministic_matplotlib", "plot_band", "save_figure"]

PNG_METADATA = {"Software": "normcore"}
"""Fixed PNG metadata (matplotlib writes its version by default)."""


def deterministic_matplotlib() -> None:
    """In a notebook kernel, make matplotlib's figures depend on the figure only: PNG outputs with
    :data:`PNG_METADATA` (no matplotlib version) and a fixed SVG hash salt (:func:`save_figure` does the
    same for files). Does nothing outside a kernel."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and hasattr(shell, "kernel"):  # an executing notebook: its inline figures
        import matplotlib

        matplotlib.rcParams["svg.hashsalt"] = "normcore"
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("png", bbox_inches="tight", metadata=dict(PNG_METADATA))


def plot_band(ax: Any, x: Sequence[float], per_seed: Any, label: str, color: Any) -> None:
    """Plot the mean over seeds (rows of ``per_seed``) with a ±1 sample-std band."""
    ys = np.asarray(per_seed, dtype=float)
    mean = ys.mean(0)
    std = ys.std(0, ddof=1) if ys.shape[0] > 1 else np.zeros_like(mean)
    ax.plot(x, mean, label=label, color=color)
    ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)


def save_figure(fig: Any, path: Path) -> str:
    """Save a matplotlib figure atomically as PNG (dpi 120, fixed metadata) and close it; returns the
    file name."""
    import matplotlib.pyplot as plt

    from reproductions.engine.atomic import write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight", metadata=dict(PNG_METADATA))
    plt.close(fig)
    write_bytes(path, buf.getvalue())
    return path.name
