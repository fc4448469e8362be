"""Typed YAML: nested dataclasses read from YAML files with strict checks, and ``base:``
inheritance between files.

Nothing here knows what the dataclasses mean (``dpot_lab.train.config`` holds the run schema).
A mistake names the file, the key path and the expected type::

    configs/x.yaml: optim.lr: expected float, got str 'fast'
    configs/x.yaml: unknown key 'optim.lrr' (known keys: accumulate, betas, ...)

A file may start from another: ``base: other.yaml`` (a path relative to the file) takes every key
of ``other.yaml`` and then the file's own keys over them; mappings merge key by key, any other
value (a list, a number, null) replaces the base's. A base may have a base.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

BASE_KEY = "base"


class ConfigError(ValueError):
    """A config that does not fit the schema; the message names the source, key path and type."""


def read_yaml(path: str | os.PathLike) -> dict:
    """The mapping in a YAML file with its ``base:`` chain resolved (no ``base`` key left).

    ``1e-3`` is read as a float (plain YAML 1.1 wants ``1.0e-3``); an empty file, a repeated key,
    a missing base file and a cycle of bases are errors naming the file."""
    return _read_with_bases(Path(path), ())


def _read_with_bases(path: Path, chain: tuple[Path, ...]) -> dict:
    where = f"{chain[-1]}: {BASE_KEY}: " if chain else ""
    if not path.is_file():
        what = "is a folder, not a YAML file" if path.is_dir() else "does not exist"
        if chain:
            raise ConfigError(f"{where}base file {path} {what}")
        raise FileNotFoundError(f"config file {path} {what}")
    if path.resolve() in [p.resolve() for p in chain]:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise ConfigError(f"{where}the bases form a cycle: {cycle}")
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.load(f, Loader=_Loader)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(err)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a YAML file (not UTF-8 text)") from None
    if raw is None:
        raise ConfigError(f"{path}: the file is empty; expected a mapping of config keys")
    if not isinstance(raw, dict) or BASE_KEY not in raw:
        return raw
    base = raw.pop(BASE_KEY)
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{path}: {BASE_KEY}: expected the path of a YAML file, got {base!r}")
    return merge(_read_with_bases(path.parent / base, (*chain, path)), raw)


def merge(base: dict, over: dict) -> dict:
    """``base`` with ``over``'s keys put over it: mappings merged key by key, other values
    replaced. Neither input is changed."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_setting(text: str) -> tuple[str, Any]:
    """``key=value`` from a command line: a dotted key and a YAML value, read as config files
    are (``optim.lr=1e-4``, ``eval.every=0``, ``data.sources=[a.h5, b.h5]``)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"{text!r}: expected KEY=VALUE, e.g. optim.lr=1e-4")
    try:
        return key.strip(), yaml.load(raw, Loader=_Loader)
    except yaml.YAMLError as err:
        raise ValueError(f"{text!r}: the value is not valid YAML ({err.problem})") from None


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-3`` and ``1E+4`` as floats (YAML 1.1 wants ``1.0e-3``) and
    refuses a key given twice in one mapping (YAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value != "<<":
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        problem=f"duplicate key {key_node.value!r}",
                        problem_mark=key_node.start_mark,
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _yaml_problem(err: yaml.YAMLError) -> str:
    """Where and what, on one line (PyYAML's own message spans several)."""
    mark = getattr(err, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    return where + " ".join(str(getattr(err, "problem", None) or err).split())


def set_dotted(d: dict, changes: dict[str, Any], source: str = "config") -> None:
    """Set dotted (or ``__``-joined) keys of the nested dict ``d`` in place; a part that is a
    whole number indexes a list (``data.sources.0``). A missing section is created; an index out
    of range or a path through a value that is neither a mapping nor a list is a ConfigError
    naming ``source`` and the key (a change is never dropped)."""
    for key, value in changes.items():
        parts = key.replace("__", ".").split(".")
        node: Any = d
        for depth, part in enumerate(parts):
            here = ".".join(parts[:depth]) or "<top level>"
            last = depth == len(parts) - 1
            if isinstance(node, dict):
                if last:
                    node[part] = value
                elif part not in node and parts[depth + 1].isdigit():
                    raise ConfigError(
                        f"{source}: cannot set {key}: {'.'.join(parts[: depth + 1])} is not "
                        "given there, so there is no list to index; set the whole list"
                    )
                else:
                    node = node.setdefault(part, {})
            elif isinstance(node, list):
                if not re.fullmatch(r"\d+", part) or int(part) >= len(node):
                    span = f"0..{len(node) - 1}" if node else "none: the list is empty"
                    raise ConfigError(
                        f"{source}: cannot set {key}: {here} is a list of {len(node)} entries, "
                        f"so {part!r} is no index of it (indices: {span})"
                    )
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            else:
                got = "null" if node is None else f"{type(node).__name__} {node!r}"
                raise ConfigError(
                    f"{source}: cannot set {key}: {here} is {got}, not a mapping or a list"
                )


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _type_name(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        return "null"
    if hint is Any:
        return "any value"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is list:
        return f"a list of {_type_name(args[0])}"
    if origin is dict:
        return f"a mapping of {_type_name(args[0])} to {_type_name(args[1])}"
    if dataclasses.is_dataclass(hint):
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def _mismatch(value: Any, hint: Any, path: str, source: str) -> ConfigError:
    got = "null" if value is None else f"{type(value).__name__} {value!r}"
    expected = _type_name(hint)
    if isinstance(value, bool) and "str" in expected.split():
        got += " (YAML reads yes/no/on/off/true/false unquoted as booleans: quote it)"
    return ConfigError(f"{source}: {path}: expected {expected}, got {got}")


def _kind_matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` has the shape of ``hint``, so that its error inside ``hint`` says more
    than a union's list of types."""
    origin = typing.get_origin(hint) or hint
    if origin is list:
        return isinstance(value, (list, tuple))
    if origin is dict or dataclasses.is_dataclass(hint):
        return isinstance(value, dict)
    return origin is float and isinstance(value, float)


def convert(value: Any, hint: Any, path: str, source: str) -> Any:
    """``value`` checked against the type ``hint`` (an int accepted for a float, a whole float
    for an int); raises ConfigError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):  # a section left empty takes its defaults
        return build(hint, {} if value is None else value, path, source)
    if origin in (typing.Union, types.UnionType):
        inner = None
        for arg in args:
            try:
                return convert(value, arg, path, source)
            except ConfigError as err:
                inner = inner or (err if _kind_matches(value, arg) else None)
        raise inner or _mismatch(value, hint, path, source)
    if origin is Literal:
        if value in args:
            return value
        raise _mismatch(value, hint, path, source)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise _mismatch(value, hint, path, source)
        return [convert(v, args[0], f"{path}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _mismatch(value, hint, path, source)
        return {
            convert(k, args[0], path, source): convert(v, args[1], f"{path}.{k}", source)
            for k, v in value.items()
        }
    if hint is type(None):
        if value is None:
            return None
        raise _mismatch(value, hint, path, source)
    if hint is float:
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{source}: {path}: expected a finite float, got {value}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _mismatch(value, hint, path, source)
    if hint is int:
        if is_int(value):
            return value
        if isinstance(value, float) and value.is_integer():  # ``steps: 1e5``
            return int(value)
        raise _mismatch(value, hint, path, source)
    if hint in (str, bool):
        if isinstance(value, hint):
            return value
        raise _mismatch(value, hint, path, source)
    raise TypeError(f"config schema uses an unsupported type {hint!r} at {path}")


def build(cls: type, d: Any, path: str, source: str) -> Any:
    """Dataclass ``cls`` from mapping ``d``, every key checked against its fields and their types;
    a dataclass with a ``from_mapping(d, path, source)`` classmethod builds itself."""
    if not isinstance(d, dict):
        raise _mismatch(d, cls, path or "<top level>", source)
    if hasattr(cls, "from_mapping"):  # a section with its own schema
        return cls.from_mapping(d, path, source)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in d.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in names:
            raise ConfigError(
                f"{source}: unknown key {key_path!r} (known keys: {', '.join(sorted(names))})"
            )
        kwargs[key] = convert(value, hints[key], key_path, source)
    return cls(**kwargs)


__all__ = [
    "BASE_KEY", "ConfigError", "build", "convert", "is_int", "merge", "parse_setting",
    "read_yaml", "set_dotted",
]  # fmt: skip
