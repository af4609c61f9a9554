r"""Load the checkpoints people hold into normcore models: :func:`load_checkpoint_into`.

A checkpoint is a state dict in some framework's layout. This module maps the known layouts onto
normcore's (which is torchvision's: ``conv1``, ``bn1``, ``layer1.0.conv1``, ``downsample.0/1``, ``fc``)
and reports every step, so that nothing is dropped or renamed silently:

=================  ==========================================================================  ==============
layout             what it is (recognised by)                                                  WS formula
=================  ==========================================================================  ==============
``normcore``       normcore's and torchvision's own keys (also timm models, same architecture)  --
``ws_official``    the WS paper's released models (pytorch-classification): ``{"state_dict"}``  ``official``
                   wrapper, ``module.`` prefix (only when named: the keys are torchvision's)
``bcn_imagenet``   the BCN repository's ImageNet models (``rn50_bcn_ws.pth``, ...): the batch  ``bcn``
                   stage under ``pbn.`` (keys ``*.pbn.*``, no ``aspp.``)
``bcn_deeplab``    the BCN repository's DeepLabV3 ``PBCNorm`` (``*.pbn.*`` and ``aspp.*``)      ``official``
``detectron2``     detectron2 ResNet names (``stem.conv1``, ``res2.0.conv1.norm``, ``shortcut``)  --
``caffe2``         Caffe2/Detectron ``.pkl`` names (``conv1_w``, ``res2_0_branch2a_bn_s``)      --
``timm``           timm models with ``StdConv2d`` (only when named: keys are timm's own)         ``biased``,
                                                                                               eps 1e-6
=================  ==========================================================================  ==============

Every layout also unwraps ``{"state_dict": ...}``, ``{"model": ...}`` and Caffe2's ``{"blobs": ...}``,
strips a ``module.`` prefix (``DataParallel``/DDP), turns NumPy arrays into tensors and drops
non-tensor entries (``__author__``). Frozen BN entries with ``weight`` and ``bias`` only (Caffe2's
``AffineChannel``) get the statistics of the identity (:class:`normcore.FrozenBatchNorm`). When the
layout implies a WS formula and the model's WS convolutions use another, the report says so: the
weights were trained with that formula, and the divisor differs by up to 3.4 % in wide layers
(field notes §2.1), which :class:`normcore.WSConv2d` cannot detect from a state dict without metadata.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from normcore.batchnorm import FrozenBatchNorm
from normcore.functional import ws_formula
from normcore.ws import WSConvMixin

__all__ = ["LAYOUTS", "LoadReport", "load_checkpoint_into"]

LAYOUTS: dict[str, tuple[str, float] | None] = {
    "normcore": None,
    "ws_official": ("official", 1e-5),
    "bcn_imagenet": ("bcn", 1e-5),
    "bcn_deeplab": ("official", 1e-5),
    "detectron2": None,
    "caffe2": None,
    "timm": ("biased", 1e-6),
}
"""Every layout :func:`load_checkpoint_into` knows, with the WS formula (variant, eps) its models were
trained with, where it implies one."""

_WRAPPERS = ("state_dict", "model", "blobs")
_PREFIX = "module."


@dataclass
class LoadReport:
    """What :func:`load_checkpoint_into` did. ``ok`` is True when every model key was loaded and every
    checkpoint tensor was used."""

    layout: str
    source: str
    unwrapped: list[str] = field(default_factory=list)
    stripped_prefix: str | None = None
    renamed: dict[str, str] = field(default_factory=dict)
    filled: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unexpected

    def __str__(self) -> str:
        def some(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f", ... ({len(keys)} in all)" if len(keys) > 5 else "")

        lines = [f"load_checkpoint_into: {self.source} as layout {self.layout!r}"]
        if self.unwrapped:
            lines.append(f"  unwrapped: {' -> '.join(repr(k) for k in self.unwrapped)}")
        if self.stripped_prefix:
            lines.append(f"  stripped prefix {self.stripped_prefix!r}")
        if self.renamed:
            pairs = [f"{a} -> {b}" for a, b in self.renamed.items()]
            lines.append(f"  renamed {len(pairs)} keys: {some(pairs)}")
        for label, keys in (
            ("filled (frozen BN statistics of weight/bias-only entries)", self.filled),
            ("skipped (not tensors, or beside the unwrapped state dict)", self.skipped),
            ("missing (kept their initial values)", self.missing),
            ("unexpected (not loaded)", self.unexpected),
        ):
            if keys:
                lines.append(f"  {label}: {some(keys)}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------------
def _read(path: str | os.PathLike) -> Any:
    """A checkpoint file: ``.safetensors`` (needs the safetensors package), ``.pkl`` (Caffe2/Detectron;
    plain pickle: load only files you trust), anything else with ``torch.load(weights_only=True)``."""
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        try:
            from safetensors.torch import load_file
        except ImportError as err:
            raise ImportError(f"{path}: reading safetensors needs the package: pip install safetensors") from err
        return load_file(path)
    if path.endswith(".pkl"):
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path} holds more than tensors (torch.load(weights_only=True) refused it: {err}). If you trust "
            f"the file, load it yourself with torch.load(path, weights_only=False) and pass the state dict."
        ) from err


def _tensors(obj: Any, report: LoadReport) -> dict[str, torch.Tensor]:
    """Unwrap known wrappers and keep the tensor entries (NumPy arrays become tensors)."""
    while isinstance(obj, Mapping):
        inner = next((k for k in _WRAPPERS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        report.unwrapped.append(inner)
        report.skipped += [str(k) for k in obj if k != inner]  # epoch, optimizer, __author__, ...
        obj = obj[inner]
    if not isinstance(obj, Mapping):
        raise TypeError(f"load_checkpoint_into expects a state dict or a path to one, got {type(obj).__name__}")
    out = {}
    for key, value in obj.items():
        if isinstance(value, torch.Tensor):
            out[key] = value
        elif type(value).__module__ == "numpy" and hasattr(value, "shape"):
            out[key] = torch.as_tensor(value)
        else:
            report.skipped.append(str(key))
    if not out:
        raise TypeError(
            f"load_checkpoint_into found no tensors in the checkpoint (top-level keys: {list(obj)[:8]}); it "
            f"unwraps {list(_WRAPPERS)}: pass the state dict itself if it sits under another key"
        )
    return out


# --------------------------------------------------------------------------------------------------
# key maps, one per layout
# --------------------------------------------------------------------------------------------------
_C2_SUFFIX = [  # Caffe2 blob suffix -> detectron2 parameter name
    ("_bn_s", ".norm.weight"),
    ("_bn_b", ".norm.bias"),
    ("_bn_rm", ".norm.running_mean"),
    ("_bn_riv", ".norm.running_var"),
    ("_gn_s", ".norm.weight"),
    ("_gn_b", ".norm.bias"),
    ("_w", ".weight"),
    ("_b", ".bias"),
]
_C2_BODY = [  # Caffe2 blob stem -> detectron2 module name
    (r"^res_conv1$", "stem.conv1"),
    (r"^conv1$", "stem.conv1"),
    (r"^res(\d)_(\d+)_branch1$", r"res\1.\2.shortcut"),
    (r"^res(\d)_(\d+)_branch2a$", r"res\1.\2.conv1"),
    (r"^res(\d)_(\d+)_branch2b$", r"res\1.\2.conv2"),
    (r"^res(\d)_(\d+)_branch2c$", r"res\1.\2.conv3"),
]


def _caffe2_to_detectron2(key: str) -> str:
    for suffix, name in _C2_SUFFIX:
        if key.endswith(suffix):
            body = key[: -len(suffix)]
            for pattern, repl in _C2_BODY:
                if re.match(pattern, body):
                    return re.sub(pattern, repl, body) + name
            return body + name
    return key


def _stage(match: re.Match) -> str:
    return f"layer{int(match.group(1)) - 1}.{match.group(2)}."


_D2_TO_TV = [  # detectron2 ResNet name -> torchvision ResNet name
    (r"^stem\.conv1\.norm\.", "bn1."),
    (r"^stem\.conv1\.", "conv1."),
    (r"^res(\d)\.(\d+)\.conv(\d)\.norm\.", lambda m: _stage(m) + f"bn{m.group(3)}."),
    (r"^res(\d)\.(\d+)\.conv(\d)\.", lambda m: _stage(m) + f"conv{m.group(3)}."),
    (r"^res(\d)\.(\d+)\.shortcut\.norm\.", lambda m: _stage(m) + "downsample.1."),
    (r"^res(\d)\.(\d+)\.shortcut\.", lambda m: _stage(m) + "downsample.0."),
    (r"^(fc1000|linear)\.", "fc."),
]


def _detectron2_to_torchvision(key: str) -> str:
    bare = key.removeprefix("backbone.bottom_up.")
    for pattern, repl in _D2_TO_TV:
        if re.match(pattern, bare):
            return re.sub(pattern, repl, bare, count=1)
    return key


def _official_bcn(key: str) -> str:
    return re.sub(r"(^|\.)pbn\.", r"\1bn.", key)


def _rename(layout: str, key: str) -> str:
    if layout == "caffe2":
        return _detectron2_to_torchvision(_caffe2_to_detectron2(key))
    if layout == "detectron2":
        return _detectron2_to_torchvision(key)
    if layout in ("bcn_imagenet", "bcn_deeplab"):
        return _official_bcn(key)
    return key


def detect_layout(keys: list[str]) -> str:
    """The layout that a checkpoint's (unwrapped, unprefixed) keys show; ``"normcore"`` if none."""
    if any(re.match(r"^(conv1_w|res_conv1_bn_s|res\d_\d+_branch)", k) for k in keys):
        return "caffe2"
    if any(re.match(r"^(backbone\.bottom_up\.)?(stem\.conv1\.|res[2-5]\.\d+\.)", k) for k in keys):
        return "detectron2"
    if any(re.search(r"(^|\.)pbn\.", k) for k in keys):
        return "bcn_deeplab" if any(k.startswith("aspp.") for k in keys) else "bcn_imagenet"
    return "normcore"


# --------------------------------------------------------------------------------------------------
# the loader
# --------------------------------------------------------------------------------------------------
def _fill_frozen_statistics(model: nn.Module, state: dict[str, torch.Tensor], report: LoadReport) -> None:
    """Affine-only frozen BN entries: the statistics of the identity (what FrozenBatchNorm's own loader
    fills in too; done here so that the report lists them)."""
    for name, module in model.named_modules():
        if not isinstance(module, FrozenBatchNorm):
            continue
        prefix = f"{name}." if name else ""
        stats = (prefix + "running_mean", prefix + "running_var")
        if prefix + "weight" in state and not any(k in state for k in stats):
            state[stats[0]] = torch.zeros_like(module.running_mean)
            state[stats[1]] = torch.full_like(module.running_var, 1.0 - module.eps)
            report.filled += list(stats)


def _ws_notes(model: nn.Module, layout: str) -> list[str]:
    """A note when the layout's WS formula differs from that of the model's WS convs."""
    implied = LAYOUTS[layout]
    if implied is None:
        return []
    variant, eps = implied
    differ = [
        f"{name} ({m.variant}, eps {ws_formula(m.variant).eps if m.ws_eps is None else m.ws_eps:g})"
        for name, m in model.named_modules()
        if isinstance(m, WSConvMixin)
        and (m.variant != variant or (ws_formula(m.variant).eps if m.ws_eps is None else m.ws_eps) != eps)
    ]
    if not differ:
        return []
    return [
        f"layout {layout!r} was trained with WS variant {variant!r}, "
        f"{dataclasses.replace(ws_formula(variant), eps=eps).describe()}, but {len(differ)} WS conv(s) of "
        f"the model use another formula (first: {differ[0]}); "
        f"the outputs differ from the original model's. Build the model with "
        f"conv={{'name': 'ws', 'variant': {variant!r}, 'eps': {eps:g}}}."
    ]


def load_checkpoint_into(
    model: nn.Module,
    state_or_path: Mapping[str, Any] | str | os.PathLike,
    layout: str = "auto",
    *,
    strict: bool = True,
) -> LoadReport:
    """Load a checkpoint of a known layout into ``model`` and report what was mapped.

    Args:
        model: a normcore or torchvision-layout model (``normcore.models.resnet50(...)``, a torchvision
            model after :func:`normcore.convert_norms`, ...).
        state_or_path: a state dict (possibly wrapped, prefixed, with NumPy values) or a file: ``.pth``
            / ``.pt`` / ``.tar`` (``torch.load(weights_only=True)``), ``.safetensors``, or ``.pkl``
            (Caffe2/Detectron; plain pickle, so only files you trust).
        layout: one of :data:`LAYOUTS`, or ``"auto"`` to recognise it from the keys (``ws_official``
            and ``timm`` have torchvision's/timm's own keys, so name them to get the WS-formula check).
        strict: raise ``RuntimeError`` (with the report) when a model key stays missing or a checkpoint
            tensor is unused; ``False`` loads what matches and reports the rest.

    Returns:
        :class:`LoadReport` (``print(report)`` for a summary).

    >>> report = normcore.load_checkpoint_into(normcore.models.resnet50(norm="bcn", conv={"name": "ws",
    ...     "variant": "bcn"}), "rn50_bcn_ws.pth")          # doctest: +SKIP
    """
    if layout != "auto" and layout not in LAYOUTS:
        raise ValueError(f"unknown checkpoint layout {layout!r}; choose 'auto' or one of {sorted(LAYOUTS)}")
    source = "<state dict>" if isinstance(state_or_path, Mapping) else os.fspath(state_or_path)
    report = LoadReport(layout=layout, source=source)
    obj = state_or_path if isinstance(state_or_path, Mapping) else _read(state_or_path)
    state = _tensors(obj, report)
    if state and all(k.startswith(_PREFIX) for k in state):
        state = {k[len(_PREFIX) :]: v for k, v in state.items()}
        report.stripped_prefix = _PREFIX
    report.layout = detect_layout(list(state)) if layout == "auto" else layout
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = _rename(report.layout, key)
        if new != key:
            report.renamed[key] = new
        mapped[new] = value
    _fill_frozen_statistics(model, mapped, report)
    result = model.load_state_dict(mapped, strict=False)
    report.missing, report.unexpected = list(result.missing_keys), list(result.unexpected_keys)
    report.notes += _ws_notes(model, report.layout)
    if strict and not report.ok:
        raise RuntimeError(f"{report}\n(strict=True: pass strict=False to keep what loaded)")
    return report
