"""A run folder is never overwritten: a new run claims an empty folder, continues its own run, or moves
the earlier run aside when asked to.

A folder "holds a run" when it has a checkpoint, a ``summary.json`` or a non-empty ``metrics.jsonl``
(:func:`run_results`). Starting there without ``--resume`` would replace the checkpoint and summary of
that run and mix two runs' epochs in its metrics, so :func:`claim_run_folder` refuses, naming the three
ways on: ``--resume auto`` (continue it), a fresh ``--out``, or ``--move-old-run`` (rename the folder
to ``<name>.old-<N>`` and start again in an empty one). ``--resume auto`` in a folder whose run died
before its first checkpoint (a partial ``metrics.jsonl`` only) starts again there: the trainer rewrites
the metrics from the (empty) history. Temporary files that a killed checkpoint write left behind are
deleted when the folder is claimed.
"""

from __future__ import annotations

import os
from pathlib import Path

from reproductions.engine.atomic import remove_stale_temporaries
from reproductions.engine.checkpoint import CHECKPOINT_NAME, PREVIOUS_NAME
from reproductions.errors import UserError

__all__ = ["RunFolderError", "aside_name", "claim_run_folder", "run_results"]

_RESULTS = (CHECKPOINT_NAME, PREVIOUS_NAME, "summary.json", "metrics.jsonl")


class RunFolderError(UserError):
    """The run folder holds another run's results."""


def run_results(out_dir: str | os.PathLike) -> list[str]:
    """The files of ``out_dir`` that belong to an earlier run (checkpoints, summary, non-empty metrics)."""
    out = Path(out_dir)
    if not out.is_dir():
        return []
    found = [n for n in _RESULTS if (out / n).is_file() and (out / n).stat().st_size > 0]
    return found + sorted(p.name for p in out.glob("checkpoint_epoch*.pt"))


def aside_name(out_dir: Path) -> Path:
    """``<out>.old-1`` (or the first ``.old-<N>`` that does not exist yet)."""
    n = 1
    while (candidate := out_dir.with_name(f"{out_dir.name}.old-{n}")).exists():
        n += 1
    return candidate


def claim_run_folder(
    out_dir: str | os.PathLike,
    *,
    resume: Path | None,
    resume_auto: bool = False,
    move_old_run: bool = False,
) -> list[str]:
    """Make ``out_dir`` ready for this run (call once, on rank 0, before anything is written there) and
    return what was done, as lines for the log.

    ``resume`` is the checkpoint being continued (``None`` for a fresh start); a checkpoint inside
    ``out_dir`` continues that folder's run. ``resume_auto``: ``--resume auto`` was given (a folder
    whose run never checkpointed may then start again). Raises :class:`RunFolderError` when the folder
    holds another run and ``move_old_run`` is false."""
    out = Path(out_dir)
    notes: list[str] = []
    found = run_results(out)
    continuing = resume is not None and resume.resolve().parent == out.resolve()
    never_checkpointed = resume is None and resume_auto and found == ["metrics.jsonl"]
    if found and not continuing:
        if never_checkpointed:
            notes.append(f"{out} has no checkpoint (its run died in the first epoch): starting again there")
        elif move_old_run:
            aside = aside_name(out)
            out.rename(aside)
            notes.append(f"moved the earlier run in {out} to {aside} (--move-old-run)")
        else:
            source = f"from {resume} " if resume is not None else ""
            if resume_auto:  # --resume auto found no checkpoint.pt: there is nothing to continue
                how = f"It has no {CHECKPOINT_NAME} to continue from (--resume PATH names another checkpoint)."
            else:
                how = "To continue that run, add --resume auto."
            raise RunFolderError(
                f"{out} already holds a run ({', '.join(found)}); starting a new run {source}there would overwrite "
                f"it. {how} To start a new one, pass a fresh --out, or add --move-old-run to move the earlier run "
                f"to {aside_name(out)} first."
            )
    stale = remove_stale_temporaries(out)
    if stale:
        notes.append(
            f"removed {len(stale)} temporary file(s) left by a killed write: {', '.join(p.name for p in stale)}"
        )
    return notes
