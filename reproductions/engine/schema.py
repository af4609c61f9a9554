"""The typed schema that a merged config is checked against before anything is loaded or built.

Every key of a config has a :class:`Spec`: the kind of value (integer, number, boolean, string, list),
whether ``null`` is allowed, a range, or a list of choices. Most specs are inferred from the task's
defaults (``epochs: 100`` makes ``train.epochs`` an integer, ``lr: 0.1`` a number, ``amp: none`` a
string); a task's ``schema`` adds what a default cannot say (``train.epochs`` is at least 1,
``optim.momentum`` lies in [0, 1], ``model.norm`` names a registered norm, a key whose default is
``null`` still has a type). :func:`validate` reports every wrong value at once, each with its key, the
expected type, the value and the file (or command-line flag) that set it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "NORM_KWARGS",
    "Spec",
    "boolean",
    "choice",
    "infer_spec",
    "integer",
    "keyword_specs",
    "lookup",
    "number",
    "numbers",
    "string",
    "strings",
    "validate",
]

_KIND_TEXT = {
    "int": "an integer",
    "number": "a number",
    "bool": "true or false",
    "str": "a string",
    "list": "a list",
    "any": "a value",
}
_PLURAL = {
    "int": "integers",
    "number": "numbers",
    "bool": "booleans",
    "str": "strings",
    "list": "lists",
    "any": "values",
}


@dataclass(frozen=True)
class Spec:
    """What one config value may be.

    Args:
        kind: ``int``, ``number`` (int or float), ``bool``, ``str``, ``list`` or ``any``.
        nullable: ``null`` is allowed.
        low, high: inclusive bounds (numbers); ``low_open``: the lower bound itself is excluded.
        choices: the allowed values (strings are compared case-insensitively).
        items: the kind of each list item; ``length``: the list's exact length.
        check: ``check(value) -> problem or None`` for what the fields above cannot say (e.g. a
            registered norm name).
        hint: appended to the error (what to do instead).
    """

    kind: str
    nullable: bool = False
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[Any, ...] | None = None
    items: str | None = None
    length: int | None = None
    check: Callable[[Any], str | None] | None = field(default=None, compare=False)
    hint: str = ""

    def describe(self) -> str:
        """``an integer >= 1``, ``a number in [0, 1]``, ``one of 'step', 'cosine'``, ``a list of 2 numbers``."""
        if self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.kind == "list":
            count = f"{self.length} " if self.length is not None else ""
            text = f"a list of {count}{_PLURAL[self.items]}" if self.items else "a list"
        else:
            text = _KIND_TEXT[self.kind]
            if self.low is not None and self.high is not None:
                text += f" in {'(' if self.low_open else '['}{_num(self.low)}, {_num(self.high)}]"
            elif self.low is not None:
                text += f" {'>' if self.low_open else '>='} {_num(self.low)}"
            elif self.high is not None:
                text += f" <= {_num(self.high)}"
        return text + (", or null" if self.nullable else "")

    def problem(self, value: Any) -> str | None:
        """Why ``value`` does not fit (``None`` if it does)."""
        if value is None:
            return None if self.nullable else "null is not allowed"
        if not _is_kind(value, self.kind):
            return "wrong type"
        if self.choices is not None and _fold(value) not in {_fold(c) for c in self.choices}:
            return "not one of the choices"
        if self.kind in ("int", "number"):
            if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
                return "out of range"
            if self.high is not None and value > self.high:
                return "out of range"
        if self.kind == "list":
            if self.length is not None and len(value) != self.length:
                return f"has {len(value)} item(s)"
            if self.items and not all(_is_kind(v, self.items) for v in value):
                return "has an item of the wrong type"
        return self.check(value) if self.check else None


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _fold(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _is_kind(value: Any, kind: str) -> bool:
    if kind == "any":
        return True
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
    if kind == "str":
        return isinstance(value, str)
    if kind == "list":
        return isinstance(value, (list, tuple))
    raise ValueError(f"unknown spec kind {kind!r}")


def integer(low: int | None = None, high: int | None = None, *, nullable: bool = False, hint: str = "") -> Spec:
    return Spec("int", nullable=nullable, low=low, high=high, hint=hint)


def number(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    nullable: bool = False,
    hint: str = "",
) -> Spec:
    return Spec("number", nullable=nullable, low=low, high=high, low_open=low_open, hint=hint)


def boolean(*, nullable: bool = False) -> Spec:
    return Spec("bool", nullable=nullable)


def string(*, nullable: bool = False, check: Callable[[Any], str | None] | None = None, hint: str = "") -> Spec:
    return Spec("str", nullable=nullable, check=check, hint=hint)


def choice(*choices: Any, nullable: bool = False, hint: str = "") -> Spec:
    return Spec("str", nullable=nullable, choices=tuple(choices), hint=hint)


def numbers(length: int | None = None, *, nullable: bool = False) -> Spec:
    return Spec("list", nullable=nullable, items="number", length=length)


def strings(*, nullable: bool = False, choices: Sequence[str] | None = None) -> Spec:
    check = None
    if choices is not None:
        allowed = tuple(choices)

        def check(values: Any) -> str | None:
            bad = [v for v in values if v not in allowed]
            return f"{', '.join(map(repr, bad))} not among {', '.join(map(repr, allowed))}" if bad else None

    return Spec("list", nullable=nullable, items="str", check=check)


def infer_spec(default: Any) -> Spec | None:
    """The spec a default value implies (``None`` for a ``null`` default: unchecked unless the schema
    says otherwise). Integer and float defaults both admit numbers of their kind; a list default admits
    lists of numbers or strings like its items."""
    if isinstance(default, bool):
        return boolean()
    if isinstance(default, int):
        return integer()
    if isinstance(default, float):
        return number()
    if isinstance(default, str):
        return string()
    if isinstance(default, (list, tuple)):
        if default and all(_is_kind(v, "number") for v in default):
            return numbers()
        if default and all(isinstance(v, str) for v in default):
            return strings()
        return Spec("list")
    return None


def _leaves(defaults: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in defaults.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and not str(key).endswith("kwargs"):
            out.update(_leaves(value, dotted))
        else:
            out[dotted] = value
    return out


def validate(
    cfg: Mapping[str, Any],
    defaults: Mapping[str, Any],
    schema: Mapping[str, Spec] | None = None,
    origins: Mapping[str, str] | None = None,
) -> list[str]:
    """Every value of ``cfg`` that does not fit its spec, as ``key: expected ..., got VALUE (set in
    FILE)`` lines (empty if all fit). Specs: ``schema[key]``, else inferred from ``defaults``.
    ``origins`` maps dotted keys (or their sections) to the file or flag that set them."""
    specs = {key: infer_spec(value) for key, value in _leaves(defaults).items()}
    specs.update(schema or {})
    problems = []
    for key, spec in specs.items():
        if spec is None:
            continue
        value = lookup(cfg, key, _MISSING)
        if value is _MISSING:
            continue
        why = spec.problem(value)
        if why is None:
            continue
        detail = f" ({why})" if why not in ("wrong type", "out of range", "not one of the choices") else ""
        where = _origin(key, origins or {})
        hint = f"; {spec.hint}" if spec.hint else ""
        problems.append(
            f"{key}: expected {spec.describe()}, got {value!r} ({type(value).__name__}){detail}"
            f"{f' [from {where}]' if where else ''}{hint}"
        )
    return problems


_MISSING = object()


def lookup(cfg: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    """``cfg["optim"]["lr"]`` for ``"optim.lr"``; ``default`` when a part is missing."""
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def _origin(key: str, origins: Mapping[str, str]) -> str | None:
    parts = key.split(".")
    for n in range(len(parts), 0, -1):
        where = origins.get(".".join(parts[:n]))
        if where:
            return where
    return None


NORM_KWARGS: dict[str, Spec] = {
    "num_groups": integer(1, nullable=True, hint="GN/BCN: a whole number of groups that divides the channels"),
    "group_size": integer(1, nullable=True, hint="GN: a whole number of channels per group"),
    "eps": number(0, low_open=True, hint="the small constant added to the variance"),
    "momentum": number(0, 1, nullable=True, hint="running-statistics momentum; null = cumulative average"),
    "virtual_devices": integer(1),
    "affine": boolean(),
    "track_running_stats": boolean(),
}
"""Types and ranges of the normalization-layer arguments a config may give in ``model.norm_kwargs`` (and
every other ``*norm_kwargs`` mapping); other arguments go to the layer unchecked."""


def keyword_specs(
    defaults: Mapping[str, Any], suffix: str = "norm_kwargs", specs: Mapping[str, Spec] = NORM_KWARGS
) -> dict[str, Spec]:
    """Dotted-key specs (``model.norm_kwargs.num_groups``, ...) for the arguments of every mapping in
    ``defaults`` whose key ends in ``suffix``: keyword-argument mappings are free-form, but the arguments
    that ``specs`` knows are still checked before anything is built."""
    keys = [key for key in _leaves(defaults) if key.endswith(suffix)]
    return {f"{key}.{name}": spec for key in keys for name, spec in specs.items()}
