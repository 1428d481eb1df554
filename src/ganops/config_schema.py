"""How params.yaml is read into the config dataclasses: type checks, unknown keys, per-field rules.

Knows nothing about any section: config.py declares the fields, their rules (in field metadata, built
with the helpers below) and each section's cross-field `check()`; this module applies them.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Callable, Literal

import yaml

from ganops.errors import ConfigError

RULE = "rule"
ONE_OF = "one_of"


def rule(ok: Callable[[Any], bool], allowed: str) -> dict[str, Any]:
    """Field metadata: `ok(value)` must hold, else '<key>: <value> is not allowed (<allowed>)'."""
    return {RULE: (ok, allowed)}


def one_of(names: Callable[[], typing.Sequence[str]]) -> dict[str, Any]:
    """Field metadata: the value must be one of `names()`, checked like a Literal (with the types, first).

    For names a registry owns (data sources, FID extractors): asked at load time, so a source
    registered after this module was imported is allowed too.
    """
    return {ONE_OF: names}


def positive() -> dict[str, Any]:
    return rule(lambda v: v > 0, "must be > 0")


def at_least(low: int) -> dict[str, Any]:
    return rule(lambda v: v >= low, f"must be >= {low}")


def require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {value!r} is not allowed ({allowed})")


def validate_section(name: str, section: Any) -> None:
    """Each field's rule, in field order, then the section's cross-field `check()` if it has one."""
    for f in dataclasses.fields(section):
        if RULE in f.metadata:
            ok, allowed = f.metadata[RULE]
            value = getattr(section, f.name)
            require(ok(value), f"{name}.{f.name}", value, allowed)
    check = getattr(section, "check", None)
    if check is not None:
        check()


def yaml_problem(exc: yaml.YAMLError) -> str:
    """What PyYAML found wrong and where (line and column counted from 1), on one line."""
    problem = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def keys(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def reject_unknown(values: dict[str, Any], allowed: typing.Iterable[str], where: str) -> None:
    allowed = list(allowed)
    for key in values:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"unknown key '{where}.{key}'{hint} (allowed: {', '.join(allowed)})")


def build_section(name: str, cls: type, values: dict[str, Any], require_all: bool) -> Any:
    hints = typing.get_type_hints(cls)
    reject_unknown(values, hints, where=name)
    kwargs = {}
    for f in dataclasses.fields(cls):
        key = f"{name}.{f.name}"
        if f.name not in values:
            if require_all:
                raise ConfigError(f"missing params key '{key}'")
            continue
        if ONE_OF in f.metadata:
            kwargs[f.name] = check_choice(key, values[f.name], f.metadata[ONE_OF]())
        else:
            kwargs[f.name] = check_type(key, values[f.name], hints[f.name])
    return cls(**kwargs)


def check_choice(key: str, value: Any, allowed: typing.Sequence[Any]) -> Any:
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not allowed (allowed: {', '.join(map(str, allowed))})")
    return value


def check_type(key: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return check_type(key, value, inner[0])
    if origin is Literal:
        return check_choice(key, value, args)
    if origin is list:
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{key}: {value!r} must be a non-empty list")
        return [check_type(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value)]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: {value!r} must be true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: {value!r} must be a whole number")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML reads 2e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{key}: {value!r} must be a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: {value!r} must be a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key}: {value!r} must be a non-empty string")
        return value
    raise TypeError(f"unhandled type {hint} for {key}")  # a programming error, not a user's
