"""The command line every training script shares, and the engine's config sections.

A config has the engine's sections (``train``, ``optim``, ``schedule``), the task's (for
classification: ``model``, ``data``, ``augment``, ``eval``) and metadata naming the paper-table row it
reproduces (``name``, ``paper``, ``paper_ref``, ``published``, ``notes``). Flags are shortcuts for
config keys (``--batch-size 32`` is ``--set data.batch_size=32``); anything else goes through ``--set``.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reproductions.claims.provenance import REPO_ROOT
from reproductions.engine import config as config_mod
from reproductions.engine.optim import OPTIMIZERS
from reproductions.engine.precision import AMP_CHOICES
from reproductions.engine.schedules import KINDS as SCHEDULE_KINDS
from reproductions.engine.schema import Spec, boolean, choice, integer, keyword_specs, number, numbers, string

__all__ = [
    "ENGINE_DEFAULTS",
    "ENGINE_SCHEMA",
    "FLAG_TO_KEY",
    "METADATA_DEFAULTS",
    "config_from_args",
    "default_out_dir",
    "engine_parser",
]

METADATA_DEFAULTS: dict[str, Any] = {
    "name": None,  # short id of the row, e.g. gn_table2_gn_2img
    "paper": None,  # package name under reproductions/, e.g. group_norm
    "paper_ref": None,  # human text: "Table 2, GN, 2 images/GPU"
    "published": None,  # {value, metric, source, tag, id}
    "notes": None,  # how this config deviates from, or fills gaps in, the paper's setting
}

ENGINE_DEFAULTS: dict[str, Any] = {
    "train": {
        "epochs": 100,
        "accum_steps": 1,  # micro-batches per optimizer step
        "virtual_devices": 1,  # per-device BN statistics simulated inside one process
        "sync_bn": False,
        "paper_devices": None,  # devices the paper trained on (information: the engine prints the comparison)
        "amp": "none",
        "channels_last": False,
        "compile": False,
        "seed": 0,
        "log_every": 100,
        "eval_every": 1,
        "clip_grad_norm": None,
        "keep_epoch_checkpoints": False,
        "device": "auto",
    },
    "optim": {
        "name": "sgd",
        "lr": 0.1,  # at reference_batch images per step
        "reference_batch": 256,  # linear scaling: lr * total_batch / reference_batch; null = no scaling
        "momentum": 0.9,
        "nesterov": False,
        "weight_decay": 1e-4,
        "norm_weight_decay": None,  # null = weight_decay (GN paper: decay on gamma and beta too)
        "bias_weight_decay": None,
        "bias_lr_factor": 1.0,  # Detectron / maskrcnn-benchmark: 2 (and bias_weight_decay 0)
        "norm_bias_rule": "norm",  # norm: a norm's beta with gamma; bias: beta follows the bias rule (by name)
        "betas": [0.9, 0.999],
        "eps": 1e-8,
        "alpha": 0.99,
    },
    "schedule": {
        "kind": "step",  # step | exponential | cosine | poly | constant
        "milestones": [30, 60, 90],
        "milestones_unit": "epoch",  # epoch | step
        "gamma": 0.1,
        "decay_every": 0,  # exponential: decay by gamma every this many (decay_unit)
        "decay_unit": "epoch",
        "power": 0.9,
        "warmup": 0,
        "warmup_unit": "epoch",
        "warmup_start_factor": 0.1,
    },
}

_EPOCHS_HINT = "to evaluate a checkpoint without training, pass --eval-only --resume CHECKPOINT"
ENGINE_SCHEMA: dict[str, Spec] = {
    "train.epochs": integer(1, hint=_EPOCHS_HINT),
    "train.accum_steps": integer(1),
    "train.virtual_devices": integer(1),
    "train.sync_bn": boolean(),
    "train.paper_devices": integer(1, nullable=True),
    "train.amp": choice(*AMP_CHOICES),
    "train.channels_last": boolean(),
    "train.compile": boolean(),
    "train.seed": integer(0),
    "train.log_every": integer(1),
    "train.eval_every": integer(1),
    "train.clip_grad_norm": number(0, low_open=True, nullable=True),
    "train.keep_epoch_checkpoints": boolean(),
    "train.device": string(),
    "optim.name": choice(*OPTIMIZERS),
    "optim.lr": number(0, low_open=True),
    "optim.reference_batch": integer(1, nullable=True, hint="null = no linear scaling"),
    "optim.momentum": number(0, 1),
    "optim.nesterov": boolean(),
    "optim.weight_decay": number(0),
    "optim.norm_weight_decay": number(0, nullable=True),
    "optim.bias_weight_decay": number(0, nullable=True),
    "optim.bias_lr_factor": number(0, low_open=True),
    "optim.norm_bias_rule": choice("norm", "bias"),
    "optim.betas": numbers(2),
    "optim.eps": number(0, low_open=True),
    "optim.alpha": number(0, 1),
    "schedule.kind": choice(*SCHEDULE_KINDS),
    "schedule.milestones": numbers(nullable=True),
    "schedule.milestones_unit": choice("epoch", "step"),
    "schedule.gamma": number(0, low_open=True),
    "schedule.decay_every": number(0),
    "schedule.decay_unit": choice("epoch", "step"),
    "schedule.power": number(0),
    "schedule.warmup": number(0, nullable=True),
    "schedule.warmup_unit": choice("epoch", "step"),
    "schedule.warmup_start_factor": number(0, 1),
    "data.batch_size": integer(1),
    "data.workers": integer(0),
    "data.root": string(nullable=True),
    "data.download": boolean(),
}
"""Types and ranges of the engine's keys (and the ``data`` keys every task has); the task's own keys
are checked against its schema or the types of its defaults (:mod:`reproductions.engine.schema`)."""

FLAG_TO_KEY: dict[str, str] = {
    "data": "data.root",
    "batch_size": "data.batch_size",
    "workers": "data.workers",
    "download": "data.download",
    "epochs": "train.epochs",
    "accum_steps": "train.accum_steps",
    "virtual_devices": "train.virtual_devices",
    "sync_bn": "train.sync_bn",
    "amp": "train.amp",
    "channels_last": "train.channels_last",
    "compile": "train.compile",
    "seed": "train.seed",
    "log_every": "train.log_every",
    "device": "train.device",
    "lr": "optim.lr",
    "from_scratch": "model.from_scratch",
}
"""Which config key each shortcut flag sets (flags left at ``None`` leave the config alone)."""


def engine_parser(description: str, *, config_required: bool = True) -> argparse.ArgumentParser:
    """The shared flags; a task adds its own to the returned parser."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=config_required, help="YAML config (one per paper-table row)")
    p.add_argument("--data", help="dataset folder (sets data.root)")
    p.add_argument("--out", help="run folder for checkpoints and logs (default runs/<paper>/<config name>)")
    p.add_argument("--resume", help="checkpoint file or run folder to continue; 'auto' = --out's if present")
    p.add_argument(
        "--trusted-checkpoint",
        action="store_true",
        help="load checkpoints as full pickles (weights_only=False); only for files you trust",
    )
    p.add_argument("--batch-size", type=int, help="images per device (the papers' images/GPU)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float, help="learning rate at optim.reference_batch images (linear scaling)")
    p.add_argument("--workers", type=int, help="data loader processes per training process")
    p.add_argument("--accum-steps", type=int, help="gradient accumulation: micro-batches per optimizer step")
    p.add_argument(
        "--virtual-devices",
        type=int,
        help="simulate D devices' per-device BN statistics in one process (batch = D x --batch-size)",
    )
    p.add_argument("--sync-bn", action="store_const", const=True, help="synchronized BN over all processes")
    p.add_argument("--amp", choices=AMP_CHOICES, help="mixed precision: bf16, or fp16 with a GradScaler")
    p.add_argument("--channels-last", action="store_const", const=True, help="channels_last memory format")
    p.add_argument("--compile", action="store_const", const=True, help="torch.compile the model")
    p.add_argument("--seed", type=int)
    p.add_argument("--log-every", type=int, help="a human log line every N optimizer steps")
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--download", action="store_const", const=True, help="let torchvision download CIFAR/SVHN")
    p.add_argument(
        "--from-scratch",
        action="store_const",
        const=True,
        help="detection/segmentation: train from random weights although the config fine-tunes from ImageNet "
        "weights (model.pretrained_name); the run is then not the paper's row",
    )
    p.add_argument(
        "--move-old-run",
        action="store_true",
        help="if --out holds an earlier run, rename it to <out>.old-N and start afresh (default: refuse)",
    )
    p.add_argument("--eval-only", action="store_true", help="evaluate the checkpoint given by --resume and exit")
    p.add_argument("--print-config", action="store_true", help="print the merged config and exit")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="override any config key")
    p.add_argument(
        "--debug", action="store_true", help="show the traceback of errors in the input (config, data, flags)"
    )
    return p


def config_from_args(
    args: argparse.Namespace,
    task_defaults: Mapping[str, Any],
    *,
    free: Sequence[str] = ("published",),
    schema: Mapping[str, Spec] | None = None,
) -> dict[str, Any]:
    """Defaults (metadata + engine + task) <- ``--config`` <- shortcut flags <- ``--set``, checked
    against :data:`ENGINE_SCHEMA` and the task's ``schema`` (see :func:`~reproductions.engine.config.load_config`)."""
    defaults = config_mod.merge(config_mod.merge(METADATA_DEFAULTS, ENGINE_DEFAULTS), task_defaults)
    given = [(attr, key) for attr, key in FLAG_TO_KEY.items() if getattr(args, attr, None) is not None]
    flags = [f"{key}={_yaml_scalar(getattr(args, attr))}" for attr, key in given]
    sources = [f"--{attr.replace('_', '-')} {getattr(args, attr)}" for attr, _ in given]
    return config_mod.load_config(
        args.config,
        defaults,
        [*flags, *args.set],
        free=free,
        schema={**ENGINE_SCHEMA, **keyword_specs(defaults), **(schema or {})},
        override_sources=[*sources, *(f"--set {item}" for item in args.set)],
    )


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def default_out_dir(cfg: Mapping[str, Any], config_path: str | None) -> Path:
    """``runs/<paper>/<name>`` under the repository (``runs/`` is git-ignored)."""
    name = cfg.get("name") or (Path(config_path).stem if config_path else "run")
    return REPO_ROOT / "runs" / str(cfg.get("paper") or "misc") / str(name)
