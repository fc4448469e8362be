"""Config files: YAML with ``base:`` inheritance, checked by pydantic schemas, one-line errors.

A schema (``dpot_lab.train.config``, ``DPOTConfig``) is a pydantic dataclass whose fields carry
their types and bounds (``Annotated[Int, Field(ge=1)]``); ``config_error`` turns pydantic's
report into one line: ``configs/x.yaml: optim.lr: expected float, got str 'fast'``.
``base: other.yaml`` (relative to the file) takes ``other.yaml``'s keys and puts the file's own
over them: mappings merge key by key, any other value replaces the base's.
"""

from __future__ import annotations

import functools
import os
import re
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, AllowInfNan, BeforeValidator, Field, Strict, ValidationError

BASE_KEY = "base"


class ConfigError(ValueError):
    """A config that does not fit its schema; the message names the source, key path and type."""


def _whole(value: Any) -> Any:
    """A whole float (``steps: 1e5``) or a numpy integer as an int; anything else unchanged."""
    if isinstance(value, float) and value.is_integer() or hasattr(value, "__index__"):
        return value if isinstance(value, bool) else int(value)
    return value


def integer(**bounds: int) -> Any:
    """An int with ``Field`` bounds (``ge=1``); a whole float is taken, a bool is not."""
    return Annotated[int, Strict(), Field(**bounds), BeforeValidator(_whole)]


# Scalars as YAML gives them: no bool for a number, no number for a str, no inf or nan.
Int, Count, Cardinal = integer(), integer(ge=1), integer(ge=0)  # any, >= 1, >= 0
Float = Annotated[float, Strict(), AllowInfNan(False)]
Positive = Annotated[Float, Field(gt=0)]
Str = Annotated[str, Strict()]
Bool = Annotated[bool, Strict()]


def rule(ok: Callable[[Any], bool], expected: str) -> AfterValidator:
    """A field check beyond type and bounds: ``ok(value)`` or "expected <expected>, got <value>"."""

    def check(value: Any) -> Any:
        if value is not None and not ok(value):
            raise ValueError(f"expected {expected}, got {value!r}")
        return value

    return AfterValidator(check)


def one_of(choices: Sequence) -> AfterValidator:
    """A field that takes one of ``choices`` ("expected one of [...], got ...")."""
    return rule(lambda v: v in choices, f"one of {list(choices)}")


# ---------------------------------------------------------------------- errors
def config_error(err: ValidationError, schema: type, source: str = "") -> ConfigError:
    """The first problem of ``err`` (from validating ``schema``) as one line, prefixed by
    ``source``; of a union's members, the one whose shape the value has speaks."""
    found = [(e, *_where(schema, e)) for e in err.errors()]
    refused = [f[1] == f[3] and _is_type_error(f[0]) for f in found]  # a union member's type
    first = found[0]
    if refused[0]:  # the member whose shape the value has says more, if any
        first = next(
            (f for f, r in zip(found, refused, strict=True) if f[3] == first[3] and not r), first
        )
    text = _describe_error(*first[:3])
    return ConfigError(f"{source}: {text}" if source else text)


def _where(schema: type, e: dict) -> tuple[str, Any, str | None]:
    loc = e["loc"][:-1] if _unknown(e) else e["loc"]
    try:
        return _locate(schema, loc)
    except (KeyError, TypeError):  # a location the schema's types do not spell out
        return ".".join(str(part) for part in loc), Any, None


def _unknown(e: dict) -> bool:
    return e["type"] in ("extra_forbidden", "unexpected_keyword_argument")


def _is_type_error(e: dict) -> bool:
    return e["type"].endswith(("_type", "_parsing", "literal_error", "from_float", "_required"))


def _describe_error(e: dict, path: str, hint: Any) -> str:
    value, kind, ctx = e["input"], e["type"], e.get("ctx") or {}
    if _unknown(e):
        section = _bare((_members(hint) or [hint])[0])[0]
        known = ", ".join(sorted(getattr(section, "__pydantic_fields__", {})))
        return f"unknown key {_join(path, e['loc'][-1])!r} (known keys: {known})"
    if kind == "missing":
        return f"{path}: expected {_expected(hint, bounded=True)}, got no {e['loc'][-1]!r} key"
    if kind in ("value_error", "assertion_error"):
        return f"{path}: {ctx['error']}" if path else str(ctx["error"])
    if kind == "finite_number":
        return f"{path}: expected a finite float, got {value}"
    if not _is_type_error(e):
        return f"{path}: expected {_expected(hint, bounded=True, value=value)}, got {value!r}"
    got = "null" if value is None else f"{type(value).__name__} {value!r}"
    expected = _expected(hint)
    if isinstance(value, bool) and "str" in expected.split():
        got += " (YAML reads yes/no/on/off/true/false unquoted as booleans: quote it)"
    return f"{path or '<top level>'}: expected {expected}, got {got}"


def _join(path: str, key: Any) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else str(key)


def _bare(hint: Any) -> tuple[Any, list]:
    """``hint`` without ``Annotated`` and its metadata (bounds, validators)."""
    meta = []
    while typing.get_origin(hint) is Annotated:
        for m in hint.__metadata__:  # a Field(...) inside a type holds its bounds
            meta += [m, *getattr(m, "metadata", [])]
        hint = hint.__origin__
    return hint, meta


def _members(hint: Any) -> list | None:
    hint = _bare(hint)[0]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(hint) if a is not type(None)]
    return None


def _locate(hint: Any, loc: Sequence) -> tuple[str, Any, str | None]:
    """The key path of pydantic's ``loc`` in ``hint``, the type there and the path of the union
    it passed through (pydantic names the member tried after a union: skipped)."""
    path, union, i = "", None, 0
    while i < len(loc):
        members = _members(hint)
        if members and len(members) == 1:  # an optional value: no member named
            hint = members[0]
            continue
        if members:
            union, rest = path if union is None else union, loc[i + 1 :]  # the outermost
            hint = next((m for m in members if rest and _fits(m, rest)), hint)
            i += 1
            continue
        base, part = _bare(hint)[0], loc[i]
        fields = getattr(base, "__pydantic_fields__", None)
        if fields is not None:
            hint = fields[part].rebuild_annotation()
        else:
            args = typing.get_args(base)
            if not args:
                raise KeyError(part)
            key = loc[i + 1 : i + 2] == ("[key]",)  # a mapping's key, not its value, was refused
            hint, i = args[0] if key else args[-1], i + key
        path, i = _join(path, part), i + 1
    return path, hint, union


def _fits(hint: Any, loc: Sequence) -> bool:
    try:
        return bool(_locate(hint, loc))
    except (KeyError, TypeError):
        return False


def _expected(hint: Any, bounded: bool = False, value: Any = None) -> str:
    """What ``hint`` takes in words; ``bounded``: with its bounds (of the member of ``value``'s
    type in a union)."""
    base, meta = _bare(hint)
    members = _members(hint)
    if bounded and members:
        kind = next((m for m in members if _bare(m)[0] is type(value)), members[0])
        return _expected(kind, bounded)
    bounds = {op: getattr(m, op) for m in meta for op in ("ge", "gt", "le", "lt") if hasattr(m, op)}
    if bounded and bounds:
        what = "an int" if base is int else "a float"
        if len(bounds) == 2:
            lo, hi = ("[" if "ge" in bounds else "(", "]" if "le" in bounds else ")")
            what = "a fraction" if base is float else what
            return f"{what} in {lo}{', '.join(str(v) for v in bounds.values())}{hi}"
        sign = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
        return " and ".join(f"{what} {sign[op]} {v}" for op, v in bounds.items())
    origin, args = typing.get_origin(base), typing.get_args(base)
    if base is type(None):
        return "null"
    if base is Any:
        return "any value"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_expected(a) for a in args)
    if origin in (list, Sequence):
        return f"a list of {_expected(args[0])}"
    if origin is dict:
        return f"a mapping of {_expected(args[0])} to {_expected(args[1])}"
    if hasattr(base, "__pydantic_fields__"):
        return "a mapping"
    return getattr(base, "__name__", str(base))


def one_line_errors(cls: type) -> type:
    """Decorator of a pydantic dataclass: constructing it raises ``config_error``'s one line."""
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except ValidationError as err:
            raise config_error(err, cls) from None

    cls.__init__ = __init__
    return cls


# ---------------------------------------------------------------------- YAML
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
            here, last = ".".join(parts[:depth]) or "<top level>", depth == len(parts) - 1
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


__all__ = [
    "BASE_KEY", "Bool", "Cardinal", "ConfigError", "Count", "Float", "Int", "Positive", "Str",
    "config_error", "integer", "merge", "one_line_errors", "one_of", "parse_setting", "read_yaml",
    "rule", "set_dotted",
]  # fmt: skip
