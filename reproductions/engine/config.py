"""YAML configs with inheritance, checked against the task's defaults, and ``key.sub=value`` overrides.

A config is a nested ``dict``. A file may start from another with ``_base_: other.yaml`` (a path
relative to the file; a list of bases merges left to right), so each paper-table row is a few lines on
top of the paper's base config. Loading merges, in order: the task's ``defaults``, the base files, the
file itself, then command-line overrides (``--set optim.lr=0.05 model.norm_kwargs.num_groups=16``,
values parsed as YAML). Sections merge key by key, but ``*kwargs`` mappings are replaced whole (a
row's ``norm_kwargs`` is the complete argument list of its norm). Every key must exist in
``defaults`` (a typo is an error that suggests the nearest key), except under keys that end in
``kwargs`` or are listed in ``free``: those hold arbitrary keyword arguments.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from reproductions.engine.schema import Spec, lookup, validate
from reproductions.errors import UserError

__all__ = [
    "ConfigError",
    "apply_overrides",
    "config_errors",
    "get",
    "load_config",
    "load_yaml",
    "merge",
    "parse_yaml",
    "set_value",
]

BASE_KEY = "_base_"


class _Loader(yaml.SafeLoader):
    """YAML 1.1's float rule needs a dot ("1e-4" would load as a string); accept exponent-only floats."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` that also reads ``1e-4`` as a float."""
    return yaml.load(text, Loader=_Loader)


class ConfigError(UserError, ValueError):
    """A config that cannot be used; the message says which key in which file, and what to do."""


@contextlib.contextmanager
def config_errors(what: str) -> Iterator[None]:
    """Report a ``ValueError``, ``TypeError`` or ``KeyError`` raised while ``what`` (e.g. building the
    model from the config's sections) as a :class:`ConfigError`: the inputs there are the config's
    values, so such an error (an unknown norm name, a group count that does not divide the channels, a
    keyword argument the layer does not take) is the user's to fix. The original stays the ``__cause__``
    (``--debug`` shows its traceback)."""
    try:
        yield
    except UserError:
        raise
    except (ValueError, TypeError, KeyError) as err:
        text = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise ConfigError(
            f"{what}: {text} (check the config with --print-config; --debug shows where this was raised)"
        ) from err


def load_yaml(path: str | os.PathLike, origins: dict[str, str] | None = None) -> dict[str, Any]:
    """One YAML file as a dict, following ``_base_`` (without defaults or checks). An empty file is an
    error (a config that sets nothing would train with silent defaults). ``origins``, when given,
    receives the file that set each dotted key (a row's own keys override its bases')."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = parse_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    if data is None or data == {}:
        raise ConfigError(
            f"{path} is empty: a config names at least the settings of its paper-table row (start from one in "
            f"reproductions/<paper>/configs/, or inherit one with '_base_: other.yaml')"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping at the top level, got {type(data).__name__}")
    bases = data.pop(BASE_KEY, None)
    merged: dict[str, Any] = {}
    for base in [] if bases is None else [bases] if isinstance(bases, str) else list(bases):
        merged = merge(merged, load_yaml(path.parent / base, origins))
    if origins is not None:
        origins.update(dict.fromkeys(_dotted_keys(data), str(path)))
    return merge(merged, data) if merged else data


def _dotted_keys(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys of ``data``'s values (sections opened, keyword-argument mappings kept whole)."""
    keys = []
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and not str(key).endswith("kwargs"):
            keys += _dotted_keys(value, dotted)
        else:
            keys.append(dotted)
    return keys


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: sections merge key by key; anything else in ``update`` replaces ``base``'s value.
    Keyword-argument mappings (keys ending in ``kwargs``) are replaced whole, so a row that says
    ``norm_kwargs: {}`` really passes no arguments, whatever its base file had."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and not key.endswith("kwargs"):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _is_free(key: str, free: Iterable[str]) -> bool:
    return key.endswith("kwargs") or key in free


def _check_keys(cfg: Mapping[str, Any], defaults: Mapping[str, Any], where: str, free: tuple[str, ...]) -> None:
    for key, value in cfg.items():
        path = f"{where}.{key}" if where else key
        if key not in defaults:
            close = difflib.get_close_matches(key, list(defaults), n=3)
            hint = f" Did you mean {', '.join(repr(f'{where}.{c}' if where else c) for c in close)}?" if close else ""
            raise ConfigError(f"unknown config key {path!r}.{hint} Known keys here: {', '.join(sorted(defaults))}")
        if _is_free(key, free):
            if value is not None and not isinstance(value, Mapping):
                raise ConfigError(f"config key {path!r} holds keyword arguments and must be a mapping, got {value!r}")
            continue
        if isinstance(defaults[key], Mapping):
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key {path!r} must be a mapping (section), got {value!r}")
            _check_keys(value, defaults[key], path, free)


def get(cfg: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    """``get(cfg, "optim.lr")`` (``default`` when a part is missing)."""
    return lookup(cfg, dotted, default)


def set_value(cfg: dict[str, Any], dotted: str, value: Any) -> None:
    """``set_value(cfg, "optim.lr", 0.05)`` (creates intermediate sections, also in place of a ``null``:
    ``model.head_norm_kwargs.num_groups=16`` where ``head_norm_kwargs`` defaults to ``null``)."""
    parts = dotted.split(".")
    node = cfg
    for part in parts[:-1]:
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {dotted!r}: {part!r} is not a section")
    node[parts[-1]] = value


def apply_overrides(cfg: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings (value parsed as YAML: ``0.1``, ``[30, 60]``, ``null``, ``gn``)."""
    out = copy.deepcopy(cfg)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key.sub=value (e.g. optim.lr=0.05)")
        try:
            value = parse_yaml(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({err})") from err
        set_value(out, key.strip(), value)
    return out


def load_config(
    path: str | os.PathLike | None,
    defaults: Mapping[str, Any],
    overrides: Iterable[str] = (),
    free: Iterable[str] = (),
    schema: Mapping[str, Spec] | None = None,
    override_sources: Sequence[str] | None = None,
) -> dict[str, Any]:
    """``defaults`` <- ``path`` (with its ``_base_`` chain) <- ``overrides``, checked against ``defaults``:
    unknown keys are errors, and every value must fit its :class:`~reproductions.engine.schema.Spec`
    (``schema``, else the type of its default); one :class:`ConfigError` lists every wrong value with the
    file or flag that set it.

    ``free`` names keys (besides ``*kwargs``) whose contents are not checked (e.g. ``published``).
    ``override_sources`` says where each override came from, for the errors (default ``--set ITEM``).
    """
    origins: dict[str, str] = {}
    cfg = merge(defaults, load_yaml(path, origins)) if path is not None else copy.deepcopy(dict(defaults))
    overrides = list(overrides)
    cfg = apply_overrides(cfg, overrides)
    sources = list(override_sources) if override_sources is not None else [f"--set {o}" for o in overrides]
    for item, source in zip(overrides, sources, strict=True):
        origins[item.partition("=")[0].strip()] = source
    try:
        _check_keys(cfg, defaults, "", tuple(free))
    except ConfigError as err:
        raise ConfigError(f"{path or '<defaults>'}: {err}") from None
    problems = validate(cfg, defaults, schema, origins)
    if problems:
        raise ConfigError(
            f"{len(problems)} config value(s) of {path or '<defaults>'} have the wrong type or range:\n  - "
            + "\n  - ".join(problems)
        )
    return cfg
