"""Config files: YAML with ``base:`` inheritance, checked by pydantic schemas, one-line errors.

A schema (``dpot_lab.train.config``, ``DPOTConfig``) is a ``section``: a pydantic dataclass whose
fields carry their types and bounds; a mistake is one line naming the source, key path, expected
and got: ``configs/x.yaml: optim.lr: expected float, got str 'fast'``. ``base: other.yaml``
(relative to the file) takes that file's keys and puts the file's own over them (``merge``)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Union

import pydantic as pd
import yaml
from pydantic.dataclasses import dataclass
from pydantic_core import ArgsKwargs, PydanticCustomError

BASE_KEY = "base"


class ConfigError(ValueError):
    """A config that does not fit its schema: one line with the source, key path, expected, got."""


def _whole(value: Any) -> Any:
    """A whole float (``steps: 1e5``) or a numpy integer as an int; a bool unchanged (refused)."""
    whole = isinstance(value, float) and value.is_integer() or hasattr(value, "__index__")
    return int(value) if whole and not isinstance(value, bool) else value


def integer(**bounds: int) -> Any:
    """An int with ``Field`` bounds (``ge=1``); a whole float is taken, a bool is not."""
    return Annotated[int, pd.Strict(), pd.Field(**bounds), pd.BeforeValidator(_whole)]


def real(**bounds: float) -> Any:
    """A finite float with ``Field`` bounds (``gt=0``); an int is taken, a bool is not."""
    as_float = pd.BeforeValidator(lambda v: float(v) if type(v) is int else v)  # bounds: "a float"
    return Annotated[float, pd.Strict(), pd.AllowInfNan(False), pd.Field(**bounds), as_float]


# Scalars as YAML gives them: no bool for a number, no number for a str, no inf or nan.
Int, Count, Cardinal = integer(), integer(ge=1), integer(ge=0)  # any, >= 1, >= 0
Float, Positive = real(), real(gt=0)
Str, Bool = Annotated[str, pd.Strict()], Annotated[bool, pd.Strict()]


def rule(ok: Callable[[Any], bool], expected: str) -> pd.AfterValidator:
    """A field check beyond type and bounds: ``ok(value)`` or "expected <expected>, got <value>"."""

    def check(value: Any) -> Any:
        if value is not None and not ok(value):
            raise ValueError(f"expected {expected}, got {value!r}")
        return value

    return pd.AfterValidator(check)


def one_of(choices: Sequence) -> pd.AfterValidator:
    """A field that takes one of ``choices`` ("expected one of [...], got ...")."""
    return rule(lambda v: v in choices, f"one of {list(choices)}")


def either(expected: str, **shapes: Any) -> Any:
    """A value of one of ``shapes`` (``scalar``, ``list``, ``mapping``: its type), the one its
    shape picks, so that an error inside it is its own; else "expected <expected>"."""
    members = {shape: pd.TypeAdapter(kind) for shape, kind in shapes.items()}

    def check(value: Any) -> Any:
        shape = "list" if isinstance(value, list | tuple) else "scalar"
        shape = "mapping" if isinstance(value, dict) else shape
        if shape in members:
            try:
                return members[shape].validate_python(value)
            except pd.ValidationError as err:
                if err.errors()[0]["loc"] or not err.errors()[0]["type"].endswith(_TYPE_ERRORS):
                    raise  # a problem inside the member's value: its own error
        raise PydanticCustomError("either_type", expected)

    return Annotated[Any, pd.PlainValidator(check, json_schema_input_type=Union[*shapes.values()])]


def int_or_list(item: Any) -> Any:
    """``item`` (an int type) or a list of them: ``resolution: 64`` or ``[64, 32]``."""
    return either("int or a list of int", scalar=item, list=list[item])


def section(cls: type) -> type:
    """A pydantic dataclass that refuses unknown keys (naming the known ones); one-line errors."""
    cls._known_keys = pd.model_validator(mode="before")(known_keys)
    cls = dataclass(config=pd.ConfigDict(extra="forbid"))(cls)
    init = cls.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except pd.ValidationError as err:
            raise config_error(err) from None

    cls.__init__ = __init__
    return cls


def known_keys(cls: type, data: Any) -> Any:
    """A pydantic "before" model validator: ``data`` with no key that ``cls`` lacks."""
    given = data.kwargs or {} if isinstance(data, ArgsKwargs) else data
    fields = getattr(cls, "__pydantic_fields__", None) or cls.model_fields
    if isinstance(given, dict) and (unknown := sorted(set(given) - set(fields), key=str)):
        known = ", ".join(sorted(fields))
        raise PydanticCustomError("unknown_key", "unknown key", {"key": unknown[0], "known": known})
    return data


# ---------------------------------------------------------------------- errors
_TYPE_ERRORS = ("_type", "_parsing", "_from_float")
_TYPES = {"int": "int", "float": "float", "string": "str", "bool": "bool", "list": "a list",
          "dict": "a mapping", "model": "a mapping", "dataclass": "a mapping"}  # fmt: skip
_SIGNS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def config_error(err: pd.ValidationError, source: str = "") -> ConfigError:
    """The first problem of ``err`` as one line: ``source``, key path, expected and got."""
    e = err.errors()[0]
    kind, ctx, value, loc = e["type"], e.get("ctx") or {}, e["input"], e["loc"]
    path, got = _path(loc) or "<top level>", repr(value)
    expected = e["msg"].removeprefix("Input should be ")
    bound = next((f"{_SIGNS[k]} {v:g}" for k, v in ctx.items() if k in _SIGNS), None)
    if kind == "unknown_key":
        text = f"unknown key {_path([*loc, ctx['key']])!r} (known keys: {ctx['known']})"
    elif kind in ("value_error", "assertion_error"):  # a rule's own words
        text = f"{path}: {ctx['error']}" if loc else str(ctx["error"])
    elif kind == "missing":
        text = f"{path}: expected a value, got no {loc[-1]!r} key"
    else:
        if kind.endswith(_TYPE_ERRORS):
            expected = _TYPES.get(kind.split("_")[0], expected)
            got = "null" if value is None else f"{type(value).__name__} {value!r}"
            if isinstance(value, bool) and kind == "string_type":
                got += " (YAML reads yes/no/on/off/true/false unquoted as booleans: quote it)"
        elif bound:
            expected = f"{'an int' if type(value) is int else 'a float'} {bound}"
        elif kind == "literal_error":
            expected = f"one of {ctx['expected']}"
        text = f"{path}: expected {expected}, got {got}"
    return ConfigError(f"{source}: {text}" if source else text)


def _path(loc: Sequence) -> str:
    """``data.sources[0].n_samples`` from pydantic's ``loc`` (less "[key]", a mapping's key)."""
    parts = (f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc if p != "[key]")
    return "".join(parts).removeprefix(".")


# ---------------------------------------------------------------------- YAML
def read_yaml(path: str | os.PathLike, _chain: tuple[Path, ...] = ()) -> dict:
    """The mapping in a YAML file with its ``base:`` chain resolved (no ``base`` key left); an empty
    file, a repeated key, a missing base file and a cycle of bases are errors naming the file."""
    path, where = Path(path), f"{_chain[-1]}: {BASE_KEY}: " if _chain else ""
    chain = (*_chain, path)
    if not path.is_file():
        what = "is a folder, not a YAML file" if path.is_dir() else "does not exist"
        if _chain:
            raise ConfigError(f"{where}base file {path} {what}")
        raise FileNotFoundError(f"config file {path} {what}")
    if path.resolve() in [p.resolve() for p in _chain]:
        raise ConfigError(f"{where}the bases form a cycle: {' -> '.join(map(str, chain))}")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except yaml.YAMLError as err:
        mark, problem = getattr(err, "problem_mark", None), getattr(err, "problem", None) or err
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{path}: not valid YAML: {at}{' '.join(str(problem).split())}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a YAML file (not UTF-8 text)") from None
    if raw is None:
        raise ConfigError(f"{path}: the file is empty; expected a mapping of config keys")
    if not isinstance(raw, dict) or BASE_KEY not in raw:
        return raw
    base = raw.pop(BASE_KEY)
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{path}: {BASE_KEY}: expected the path of a YAML file, got {base!r}")
    return merge(read_yaml(path.parent / base, chain), raw)


def merge(base: dict, over: dict) -> dict:
    """``base`` with ``over``'s keys put over it: mappings merged key by key, other values
    replaced. Neither input is changed."""
    out = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merge(out[key], value) if both else value
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
    """SafeLoader that reads ``1e-3`` and ``1E4`` as floats (YAML 1.1 wants ``1.0e-3``) and
    refuses a key given twice in one mapping (YAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        keys = [k for k, _ in node.value if isinstance(k, yaml.ScalarNode) and k.value != "<<"]
        for i, k in enumerate(keys):
            if k.value in (seen.value for seen in keys[:i]):
                raise yaml.constructor.ConstructorError(
                    problem=f"duplicate key {k.value!r}", problem_mark=k.start_mark
                )
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(  # what YAML 1.1's float pattern lacks: no dot or no exponent sign
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def set_dotted(d: dict, changes: dict[str, Any], source: str = "config") -> None:
    """Set dotted (or ``__``-joined) keys of the nested dict ``d`` in place, a number indexing a
    list (``data.sources.0``), a missing section created; a key that cannot be set is an error."""
    for key, value in changes.items():
        parts, node = key.replace("__", ".").split("."), d
        for depth, part in enumerate(parts):
            fail = f"{source}: cannot set {key}: {'.'.join(parts[:depth]) or '<top level>'}"
            if isinstance(node, list):
                if not re.fullmatch(r"\d+", part) or int(part) >= len(node):
                    span = f"0..{len(node) - 1}" if node else "none: the list is empty"
                    raise ConfigError(f"{fail} is a list of {len(node)} entries, so {part!r} is "
                                      f"no index of it (indices: {span})")  # fmt: skip
                part = int(part)
            elif not isinstance(node, dict):
                got = "null" if node is None else f"{type(node).__name__} {node!r}"
                raise ConfigError(f"{fail} is {got}, not a mapping or a list")
            elif depth + 1 < len(parts) and part not in node and parts[depth + 1].isdigit():
                raise ConfigError(f"{source}: cannot set {key}: {'.'.join(parts[: depth + 1])} is "
                                  "not given there, so there is no list to index; set the whole "
                                  "list")  # fmt: skip
            if depth + 1 == len(parts):
                node[part] = value
            else:
                node = node.setdefault(part, {}) if isinstance(node, dict) else node[part]


__all__ = [
    "BASE_KEY", "Bool", "Cardinal", "ConfigError", "Count", "Float", "Int", "Positive", "Str",
    "config_error", "either", "int_or_list", "integer", "known_keys", "merge", "one_of",
    "parse_setting", "read_yaml", "real", "rule", "section", "set_dotted",
]  # fmt: skip
