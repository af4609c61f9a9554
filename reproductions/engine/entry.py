"""The one entry point every full-scale task calls: :func:`run_task`.

A task (classification, detection, segmentation, stylization, video, point clouds) describes itself
with a :class:`Task`: its name, its config defaults, its extra flags, an optional ``prepare`` step
(dataset checks that should fail before any process group or run folder exists) and a ``build``
step that returns the :class:`TaskParts` (model, training set, loss, evaluation, summary). Every
other step is the same for every task and lives here, in this order::

    parse flags -> config (defaults <- --config <- flags <- --set) -> [--print-config: print, stop]
    -> task.prepare -> start the session (process group, seeds, run folder, manifest)
    -> task.build -> model on the device (DDP / compile) -> loaders, optimizer, LR schedule, precision
    -> Trainer -> resume -> [--eval-only: evaluate, stop] -> fit -> summary.json -> end the session once

The session is ended exactly once, by :func:`~reproductions.engine.session.end_session`, which
leaves a process group only if the session created it: a caller that initialised the group itself
(to run several configs in one launch) keeps it.

A task script is then::

    CLASSIFICATION = Task(name="classification", defaults=CLASSIFICATION_DEFAULTS, build=_build, ...)

    def main(argv=None, *, paper, description=""):
        return run_task(CLASSIFICATION, argv, paper=paper, description=description)
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from reproductions.claims.targets import expected_results
from reproductions.engine import checkpoint as ckpt
from reproductions.engine.cli import config_from_args, default_out_dir, engine_parser
from reproductions.engine.config import config_errors
from reproductions.engine.distributed import print0
from reproductions.engine.precision import Precision
from reproductions.engine.session import (
    Session,
    describe_run,
    end_session,
    optimizer_from_config,
    scheduler_from_config,
    start_session,
    train_loader,
    trainer_from_config,
    write_summary,
)
from reproductions.engine.trainer import LossFn, Trainer, prepare_model
from reproductions.errors import run_cli

__all__ = ["RunContext", "Task", "TaskParts", "fmt", "last_results", "published_text", "run_task"]

BOOKKEEPING = ("epoch", "step", "lr", "epoch_seconds", "images_per_second")
"""Per-epoch record keys that are not results (left out of the default summary)."""


@dataclass
class RunContext:
    """What a task's hooks see: the merged config, the parsed flags, the paper, and (from ``build``
    on) the session; ``trainer`` is set once the trainer exists (e.g. for an evaluation that names
    its output after the epoch). ``prepared`` carries whatever ``prepare`` found to ``build``."""

    cfg: dict[str, Any]
    args: argparse.Namespace
    paper: str
    run: Session | None = None
    trainer: Trainer | None = None
    prepared: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskParts:
    """What a task builds for one run (the model on the CPU, not yet prepared for the device).

    ``evaluate(model) -> metrics`` runs after the configured epochs and for ``--eval-only`` (the
    trainer wraps it: eval mode, no gradients, autocast, RNG-neutral). ``summarize(history)`` turns the
    per-epoch records into the metrics of ``summary.json`` (default: the last record's results);
    ``extra_metrics()`` adds to them and to ``--eval-only``'s (e.g. per-class numbers kept out of the
    per-epoch records). ``report(metrics)`` is the human "done" line (default: the metrics)."""

    model: nn.Module
    train_set: Dataset
    loss_fn: LossFn
    evaluate: Callable[[nn.Module], dict[str, Any]] | None = None
    collate_fn: Callable[[list[Any]], Any] | None = None
    images_in_batch: Callable[[Any], int] | None = None
    summarize: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None
    extra_metrics: Callable[[], dict[str, Any]] | None = None
    report: Callable[[dict[str, Any]], str] | None = None


@dataclass(frozen=True)
class Task:
    """A full-scale task as :func:`run_task` runs it.

    Args:
        name: e.g. ``"detection"`` (used in the default description and messages).
        defaults: the task's config sections (merged over the engine's and the metadata defaults).
        build: ``build(ctx) -> TaskParts``, called inside the session (``ctx.run`` is set).
        description: the ``--help`` text when the script passes none.
        add_arguments: ``add_arguments(parser)`` adds the task's own flags.
        flag_keys: which config key each task flag sets (``{"style": "data.style_image"}``; a flag
            left at ``None`` leaves the config alone).
        prepare: ``prepare(ctx)`` before the session (data checks; it may edit ``ctx.cfg``, e.g. the
            run name, and store results in ``ctx.prepared``).
        eval_only: whether ``--eval-only`` makes sense for the task.
    """

    name: str
    defaults: Mapping[str, Any]
    build: Callable[[RunContext], TaskParts]
    description: str = ""
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    flag_keys: Mapping[str, str] = field(default_factory=dict)
    prepare: Callable[[RunContext], None] | None = None
    eval_only: bool = True


def run_task(
    task: Task, argv: Sequence[str] | None = None, *, paper: str, description: str = ""
) -> dict[str, Any] | None:
    """Parse ``argv``, train and evaluate one config of ``task`` (module docstring); returns the
    summary metrics on rank 0 (``None`` elsewhere and for ``--print-config``). A user error (a config
    value, a dataset, a checkpoint, a used run folder: :class:`~reproductions.errors.UserError`) ends
    the command with its ``error:`` paragraph and exit status 2; ``--debug`` shows its traceback."""
    return run_cli(lambda args: _run_task(task, args, paper=paper, description=description), argv)


def _run_task(task: Task, argv: Sequence[str], *, paper: str, description: str) -> dict[str, Any] | None:
    parser = engine_parser(description or f"{paper}: {task.description or 'full-scale ' + task.name}")
    if task.add_arguments is not None:
        task.add_arguments(parser)
    args = parser.parse_args(argv)
    for flag, key in task.flag_keys.items():
        if getattr(args, flag, None) is not None:
            args.set.append(f"{key}={json.dumps(getattr(args, flag))}")
    cfg = config_from_args(args, task.defaults)
    cfg["paper"] = cfg.get("paper") or paper
    if args.print_config:
        import yaml

        print(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
        return None
    if args.eval_only and not task.eval_only:
        parser.error(f"--eval-only is not available for {task.name}")
    ctx = RunContext(cfg=cfg, args=args, paper=paper)
    if task.prepare is not None:
        with config_errors(f"the {task.name} inputs cannot be prepared from this config"):
            task.prepare(ctx)
    ctx.run = start_session(
        cfg,
        args.out or default_out_dir(cfg, args.config),
        resume=args.resume,
        move_old_run=args.move_old_run,
        eval_only=args.eval_only,
    )
    try:
        return _run(task, ctx)
    finally:
        end_session(ctx.run)


def _run(task: Task, ctx: RunContext) -> dict[str, Any] | None:
    cfg, args, run = ctx.cfg, ctx.args, ctx.run
    assert run is not None
    train_cfg = cfg["train"]
    with config_errors(f"the {task.name} model and data cannot be built from this config"):
        parts = task.build(ctx)
    describe_run(run, cfg, parts.model)
    channels_last = bool(train_cfg["channels_last"])
    model = prepare_model(parts.model, run.env, channels_last=channels_last, compile=bool(train_cfg["compile"]))
    loader = train_loader(parts.train_set, run, collate_fn=parts.collate_fn)
    optimizer = optimizer_from_config(cfg, model, run.total_batch)
    scheduler = scheduler_from_config(cfg, optimizer, loader.batch_sampler.steps_per_epoch)
    precision = Precision(str(train_cfg["amp"]), run.env.device)
    extra = {"images_in_batch": parts.images_in_batch} if parts.images_in_batch is not None else {}
    trainer = trainer_from_config(
        cfg, run, model=model, optimizer=optimizer, scheduler=scheduler, precision=precision,
        train_loader=loader, loss_fn=parts.loss_fn, evaluate=parts.evaluate, **extra,
    )  # fmt: skip
    ctx.trainer = trainer
    resume = ckpt.resolve_resume(args.resume, run.out_dir)  # start_session checked it (and --eval-only's need)
    trainer.resume(resume, trusted=args.trusted_checkpoint)
    if args.eval_only:
        metrics = {**trainer.evaluate(model), **(parts.extra_metrics() if parts.extra_metrics else {})}
        print0(f"evaluation of {resume}: {_report(parts, metrics)}")
        return metrics if run.env.is_main else None
    history = trainer.fit()
    metrics = parts.summarize(history) if parts.summarize else last_results(history)
    if cfg.get("published"):  # which published values may decide: only "target" ones, "unverified" never
        metrics.setdefault("expected", expected_results(cfg))
    if parts.extra_metrics is not None:
        metrics.update(parts.extra_metrics())
    write_summary(run, cfg, history, metrics)
    published = published_text(cfg)
    print0(f"done: {_report(parts, metrics)}" + (f"; published {published}" if published else ""))
    return metrics if run.env.is_main else None


def last_results(history: Sequence[Mapping[str, Any]], keep: Callable[[str], bool] | None = None) -> dict[str, Any]:
    """The last epoch's results: its keys for which ``keep(key)`` holds (default: all but the
    bookkeeping ones, :data:`BOOKKEEPING`); ``{}`` when no epoch ran."""
    last = history[-1] if history else {}
    return {k: v for k, v in last.items() if (keep(k) if keep is not None else k not in BOOKKEEPING)}


def _report(parts: TaskParts, metrics: Mapping[str, Any]) -> str:
    if parts.report is not None:
        return parts.report(dict(metrics))
    shown = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    return ", ".join(f"{k} {v:.4g}" for k, v in shown.items()) or "no metrics"


def published_text(cfg: Mapping[str, Any]) -> str:
    """The config's published value(s) and row as one phrase, e.g. ``"24.1 (Table 2, GN)"`` or
    ``"bbox_AP 40.8, segm_AP 36.1 (Table 6)"``; empty when the config has none."""
    published = cfg.get("published") or {}
    if not isinstance(published, Mapping) or not published:
        return ""
    if "value" in published:
        values = str(published.get("value"))
    else:
        values = ", ".join(f"{k} {v.get('value')}" for k, v in published.items() if isinstance(v, Mapping))
    ref = cfg.get("paper_ref")
    return values + (f" ({ref})" if ref else "")


def fmt(value: Any, spec: str = ".2f") -> str:
    """``value`` formatted with ``spec``, or ``n/a`` when it is ``None`` (no epoch reported it)."""
    return "n/a" if value is None else format(value, spec)
