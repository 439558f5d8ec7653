"""Typed, documented config fields: the ``setting`` helper, range checks, type checks of YAML
values against field annotations, and help text.

The machinery behind :mod:`ad.config`'s dataclasses, apart from what the sections hold.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import field
from typing import Any, Literal

from ad.errors import UserError
from envs.base import is_int


def setting(default: Any, help: str) -> Any:
    """A config field: its default and the help text ``--help-config`` prints (mutable defaults
    are copied per instance)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


def section(cls: type, help: str) -> Any:
    """A nested config section (a dataclass field defaulting to ``cls()``) with its help text."""
    return field(default_factory=cls, metadata={"help": help})


def replace_section(cfg: Any, name: str, **changes: Any) -> Any:
    """``cfg`` with fields of its section ``name`` changed (``dataclasses.replace`` one level
    down), e.g. ``replace_section(cfg.train, "data", subsample_every=5)``."""
    return dataclasses.replace(cfg, **{name: dataclasses.replace(getattr(cfg, name), **changes)})


def check(ok: bool, message: str) -> None:
    """A range check of a config value: a one-line UserError naming the key and the fix."""
    if not ok:
        raise UserError(f"{message}; fix the config file or its --set override")


def check_min(section: str, name: str, value: Any, minimum: float) -> None:
    check(value >= minimum, f"{section}.{name} must be >= {minimum}, got {value!r}")


def check_fraction(section: str, name: str, value: float) -> None:
    check(0 <= value < 1, f"{section}.{name} must be in [0, 1), got {value!r}")


# YAML 1.1 (PyYAML) reads 1e-3, without a dot, as a string.
_YAML_FLOAT = re.compile(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+")


def yaml_floats(value: Any) -> Any:
    """``value`` with every string that spells a float in exponent notation made a float, at any
    depth (``policy_kwargs: {optimizer_kwargs: {eps: 1e-5}}``)."""
    if isinstance(value, dict):
        return {key: yaml_floats(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(yaml_floats(item) for item in value)
    if isinstance(value, str) and _YAML_FLOAT.fullmatch(value):
        return float(value)
    return value


def check_type(value: Any, annotation: Any, where: str) -> Any:
    """Check (and lightly coerce) one value against a field annotation."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return check_type(value, arg, where)
            except UserError as e:
                errors.append(str(e))
        raise UserError(errors[0] if errors else f"{where}: may not be null")
    if origin is Literal:
        if isinstance(value, bool) and {"yes", "no"} <= set(args):
            value = "yes" if value else "no"  # YAML 1.1 reads yes/no as booleans
        if value not in args:
            raise UserError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation is int:
        if not is_int(value):
            raise UserError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        value = yaml_floats(value)  # YAML 1.1 reads 1e-6 (no dot) as a string
        if not is_number(value):
            raise UserError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise UserError(f"{where}: expected a string, got {value!r}")
        return value
    if annotation is list or origin is list:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: expected a list, got {value!r}")
        return list(value)
    if annotation is dict or origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping, got {value!r}")
        return yaml_floats(dict(value))  # kwargs reach SB3 and families as numbers
    return value


def build(cls: type, data: Any, where: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{where or 'config'}: expected a mapping of {cls.__name__} fields")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        inside = [
            f"{prefix}{name}.{unknown[0]}"
            for name, hint in typing.get_type_hints(cls).items()
            if dataclasses.is_dataclass(hint) and unknown[0] in _field_names(hint)
        ]
        hint = f" (did you mean {inside[0]}?)" if inside else ""
        raise UserError(
            f"unknown config key {prefix}{unknown[0]}{hint}; valid keys: "
            + ", ".join(sorted(fields))
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = build(hint, value, key)
        else:
            kwargs[name] = check_type(value, hint, key)
    return cls(**kwargs)


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def describe_fields(cls: type, prefix: str = "") -> str:
    """Every field of a config dataclass (recursively) with its default and help text."""
    lines = []
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            lines.append(f"\n[{prefix}{f.name}]  {f.metadata.get('help', '')}")
            lines.append(describe_fields(hint, f"{prefix}{f.name}."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        lines.append(f"  {prefix}{f.name} = {default!r}\n      {f.metadata.get('help', '')}")
    return "\n".join(lines)
