"""ImageNet-pretrained backbones for the dense tasks: read a classification-engine checkpoint or a
torchvision-format ``state_dict`` file with ``torch.load(weights_only=True)``, load it into a ResNet,
and report what did not match, layer by layer.

Accepted files:

* a checkpoint of this engine (``checkpoint.pt`` of a ``train_imagenet.py`` run): its ``model``;
* a plain ``state_dict`` (torchvision's ``resnet50-*.pth``), or a dict holding one under
  ``state_dict`` or ``model`` (the official WS/BCN ``.pth.tar`` files); ``module.`` and
  ``_orig_mod.`` prefixes (DDP, ``torch.compile``) are stripped.

* ``torchvision:<Enum>.<member>``, e.g. ``torchvision:ResNet50_Weights.IMAGENET1K_V1``: torchvision's
  weights, pinned by enum member (``DEFAULT`` is refused: it moves between releases, and ResNet-50's
  ``IMAGENET1K_V2``, 80.9 % top-1, would inflate a BN* baseline that the papers ran on a ~76 % model);
  torchvision loads them from its cache (``$TORCH_HOME``) or downloads them.

The classifier (``fc.*``) is never loaded: detection and segmentation drop it.

Which weights a dense-task config fine-tunes from (:func:`resolve_pretrained`): ``model.pretrained`` is
the file or pinned enum to load; ``model.pretrained_name`` says, in words, which weights the paper's row
starts from (set in every fine-tuning config); ``model.from_scratch`` (``--from-scratch``) trains from
random weights on purpose. A config that names weights but gets no file stops with an error that says
what to pass, instead of silently training from random weights (with BN* frozen at identity statistics).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reproductions.engine.checkpoint import load_checkpoint
from reproductions.engine.trainer import CHECKPOINT_FORMAT
from reproductions.tasks.models import build_model

__all__ = [
    "TORCHVISION_PREFIX",
    "LoadReport",
    "PretrainedWeightsError",
    "backbone_from_config",
    "freeze_resnet_stages",
    "load_backbone_weights",
    "pretrained_state_dict",
    "read_state_dict",
    "resolve_pretrained",
    "torchvision_weights",
]

_PREFIXES = ("module.", "_orig_mod.")
RESNET_STAGES = ("conv1", "layer1", "layer2", "layer3", "layer4")
"""torchvision ResNet stages from the input on (``conv1`` includes ``bn1``)."""


def read_state_dict(path: str | os.PathLike, *, trusted: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (see the module docstring), loaded with ``weights_only=True``
    unless ``trusted``."""
    state: Any = load_checkpoint(path, trusted=trusted, map_location="cpu")
    if isinstance(state, Mapping) and state.get("format") == CHECKPOINT_FORMAT:
        state = state["model"]
    elif isinstance(state, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), Mapping):
                state = state[key]
                break
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state_dict (a dict of tensors), got {type(state).__name__}")
    out = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        for prefix in _PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix) :]
        out[key] = value
    if not out:
        raise ValueError(f"{path} holds no tensors; is it a weights file?")
    return out


TORCHVISION_PREFIX = "torchvision:"


class PretrainedWeightsError(ValueError):
    """A fine-tuning config without its weights, or weights that cannot be pinned or do not fit."""


def torchvision_weights(spec: str, backbone: str | None = None) -> Any:
    """The torchvision weights enum member named by ``"torchvision:<Enum>.<member>"``. Refuses
    ``DEFAULT`` or a missing member (the version must be pinned) and, when ``backbone`` is given, weights
    of another architecture (ResNet-50 weights would half-load into a ResNet-101 without an error)."""
    import torchvision.models

    name = spec[len(TORCHVISION_PREFIX) :] if spec.startswith(TORCHVISION_PREFIX) else spec
    enum_name, _, member = name.partition(".")
    if not member or member.upper() == "DEFAULT":
        raise PretrainedWeightsError(
            f"pretrained {spec!r}: pin the weights version, e.g. "
            f"torchvision:{enum_name or 'ResNet50_Weights'}.IMAGENET1K_V1 (DEFAULT changes between torchvision "
            "releases; for ResNet-50 it is IMAGENET1K_V2, 80.9 % top-1)"
        )
    try:
        weights = torchvision.models.get_weight(name)
    except (ValueError, KeyError, AttributeError) as err:
        raise PretrainedWeightsError(
            f"pretrained {spec!r} is not a torchvision weights enum member ({err}); write it as "
            "torchvision:ResNet50_Weights.IMAGENET1K_V1"
        ) from None
    arch = type(weights).__name__.removesuffix("_Weights").lower()
    if backbone is not None and arch != backbone.lower():
        raise PretrainedWeightsError(
            f"pretrained {spec!r} holds {arch} weights but model.backbone is {backbone!r}; use the enum of {backbone}"
        )
    return weights


def pretrained_state_dict(source: str | os.PathLike, *, trusted: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of ``source``: a weights file (:func:`read_state_dict`) or a pinned torchvision enum
    member (``torchvision:ResNet50_Weights.IMAGENET1K_V1``, loaded through torchvision's cache)."""
    if isinstance(source, str) and source.startswith(TORCHVISION_PREFIX):
        weights = torchvision_weights(source)
        return dict(weights.get_state_dict(progress=True, check_hash=True))
    return read_state_dict(source, trusted=trusted)


def resolve_pretrained(model_cfg: Mapping[str, Any], *, log: Any = print) -> str | None:
    """The weights source a dense task loads (``None``: random initialization), from the ``model``
    section's ``pretrained``, ``pretrained_name`` and ``from_scratch`` (module docstring).

    * ``from_scratch: true`` (``--from-scratch``) wins: nothing is loaded; if the config names weights,
      ``log`` is told that the run is not the paper's fine-tuned row.
    * otherwise ``pretrained`` (a file or a pinned torchvision enum member) is loaded;
    * a config that names weights (``pretrained_name``) but has no ``pretrained`` stops with
      :class:`PretrainedWeightsError`, saying which weights to pass and how.
    """
    source, needed = model_cfg.get("pretrained"), model_cfg.get("pretrained_name")
    if model_cfg.get("from_scratch"):
        if needed or source:
            log(
                f"--from-scratch: random initial weights; the paper's row fine-tunes from {needed or source}, "
                "so this run is not that row"
            )
        return None
    if source:
        if isinstance(source, str) and source.startswith(TORCHVISION_PREFIX):
            torchvision_weights(source, model_cfg.get("backbone"))
        return str(source)
    if needed:
        raise PretrainedWeightsError(
            f"this config fine-tunes from ImageNet weights: {needed}. Pass them with --set model.pretrained=PATH "
            "(a weights file or checkpoint; or torchvision:<Enum>.<member> for torchvision's pinned weights), or "
            "add --from-scratch to train from random weights on purpose (then the run is not the paper's row)"
        )
    return None


def _by_layer(keys: Iterable[str]) -> list[str]:
    groups: dict[str, list[str]] = defaultdict(list)
    for key in keys:
        layer, _, name = key.rpartition(".")
        groups[layer].append(name)
    return [f"{layer or '<root>'} ({', '.join(names)})" for layer, names in groups.items()]


@dataclass
class LoadReport:
    """What :func:`load_backbone_weights` did: loaded keys, and the mismatches grouped by layer."""

    path: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatch: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"pretrained backbone {self.path}: loaded {self.loaded} tensors"]
        if self.missing:
            out.append(f"  not in the file (kept at initialization): {'; '.join(_by_layer(self.missing))}")
        if self.unexpected:
            out.append(f"  in the file but not in the model (ignored): {'; '.join(_by_layer(self.unexpected))}")
        if self.shape_mismatch:
            out.append(f"  shape differs (kept at initialization): {'; '.join(self.shape_mismatch)}")
        return out


def load_backbone_weights(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    trusted: bool = False,
    ignore_prefixes: tuple[str, ...] = ("fc.",),
) -> LoadReport:
    """Load ``path`` (a file or ``torchvision:<Enum>.<member>``) into ``model`` (a torchvision-layout
    ResNet or ResNeXt), skipping ``ignore_prefixes`` and
    tensors whose shape differs. Raises if no tensor matches (the wrong file or architecture);
    otherwise returns a :class:`LoadReport` naming every missing or unexpected tensor by layer (e.g. a
    BN checkpoint in a GN model: ``running_mean``/``running_var`` unexpected)."""
    state = {k: v for k, v in pretrained_state_dict(path, trusted=trusted).items() if not k.startswith(ignore_prefixes)}
    own = model.state_dict()
    report = LoadReport(path if isinstance(path, str) and path.startswith(TORCHVISION_PREFIX) else str(Path(path)))
    usable = {}
    for key, value in state.items():
        if key not in own:
            report.unexpected.append(key)
        elif own[key].shape != value.shape:
            report.shape_mismatch.append(
                f"{key} {tuple(value.shape)} in the file, {tuple(own[key].shape)} in the model"
            )
        else:
            usable[key] = value
    report.missing = [k for k in own if k not in usable and not k.startswith(ignore_prefixes) and k not in state]
    if not usable:
        raise ValueError(
            f"{path}: none of its {len(state)} tensors matches the model (first keys: {list(state)[:3]}; the model "
            f"has {list(own)[:3]}). Is it a ResNet (or ResNeXt) of the same depth and width in torchvision's layout?"
        )
    model.load_state_dict(usable, strict=False)
    report.loaded = len(usable)
    return report


def freeze_resnet_stages(model: nn.Module, trainable_stages: int) -> None:
    """Stop gradients in all but the last ``trainable_stages`` of the 5 ResNet stages (torchvision's
    ``trainable_layers``; Detectron's ``FREEZE_AT: 2`` = 3 trainable stages; 5 = train everything, as
    from scratch). Frozen norms keep their mode: batch norms that must not update statistics should
    be :class:`normcore.FrozenBatchNorm` (BN*)."""
    if not 0 <= trainable_stages <= len(RESNET_STAGES):
        raise ValueError(f"trainable_layers must be in 0..5, got {trainable_stages}")
    trainable = RESNET_STAGES[len(RESNET_STAGES) - trainable_stages :]
    for name, param in model.named_parameters():
        stage = "conv1" if name.startswith("bn1.") else name.split(".")[0]
        if stage in RESNET_STAGES and stage not in trainable:
            param.requires_grad_(False)


def backbone_from_config(
    model_cfg: Mapping[str, Any],
    *,
    sync_bn: bool = False,
    virtual_devices: int = 1,
    trusted: bool = False,
    log: Any = print,
) -> nn.Module:
    """The ResNet or ResNeXt a dense task's ``model`` section asks for (``backbone``: any
    :data:`reproductions.tasks.models.ARCHITECTURES` ResNet name; ``norm``, ``norm_kwargs``,
    ``conv``, ``conv_kwargs``, ``zero_init_residual``), built by
    :func:`reproductions.tasks.models.build_model` (so ``sync_bn`` and virtual devices apply as in
    classification), with the weights :func:`resolve_pretrained` picks loaded; ``log`` receives the load
    report."""
    resnet = build_model(
        {
            "arch": model_cfg["backbone"],
            "norm": model_cfg["norm"],
            "norm_kwargs": model_cfg.get("norm_kwargs") or {},
            "conv": model_cfg.get("conv") or "conv",
            "conv_kwargs": model_cfg.get("conv_kwargs") or {},
            "num_classes": 1000,
            "zero_init_residual": bool(model_cfg.get("zero_init_residual", True)),
        },
        sync_bn=sync_bn,
        virtual_devices=virtual_devices,
    )
    source = resolve_pretrained(model_cfg, log=log)
    if source:
        for line in load_backbone_weights(resnet, source, trusted=trusted).lines():
            log(line)
    return resnet
