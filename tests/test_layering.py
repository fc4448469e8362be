"""DESIGN.md's layers, read from the source with ``ast``: every import of the package (module
level, inside functions, and the module names handed to the lazy loaders) goes only where its
layer may look. Data flows solvers/readers -> data -> train -> evaluate -> viz; the trainer
scores with ``evaluate``, so ``evaluate`` sits below ``train`` in imports and never imports it.
``studies`` train and score models, so they sit above ``train`` and ``evaluate``.
``dpot_lab/__init__`` and the CLI are the top and may import anything in the package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dpot_lab"
BASE = {"atomic", "exports", "configfile", "sizes"}  # generic helpers every layer may use

# layer -> the layers (first part below dpot_lab) it may import, besides itself and BASE
MAY_IMPORT = {
    "atomic": set(),
    "exports": set(),
    "configfile": set(),
    "sizes": set(),
    "models": set(),
    "solvers": set(),
    "data": {"solvers"},
    "evaluate": {"data", "models", "solvers"},
    "train": {"data", "models", "evaluate"},
    "viz": {"data", "models", "evaluate"},
    "studies": {"data", "models", "evaluate", "train"},
}
TOP = {"__init__", "cli"}  # the top: may import any layer
OUTSIDE = {"apps", "notebooks", "tests", "benchmarks"}  # never imported by the package
GUI = {"panel", "holoviews", "bokeh"}  # heavy display libraries: only viz loads them

# Modules that must not import particular ones of their own layer: the config is read (and
# checked) before anything runs, so it needs no training or fine-tuning code.
NOT_FROM = {"dpot_lab.train.config": ("dpot_lab.train.trainer", "dpot_lab.train.finetune")}

# Known violations being moved by other work, each with its reason. Keys: (module, imported).
ALLOWED: dict[tuple[str, str], str] = {}

_MODULE_NAME = re.compile(r"dpot_lab(\.\w+)+")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import statement in ``path`` (anywhere in it), plus
    string constants that name a dpot_lab module (the lazy loaders' tables, import_module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package, up level - 1
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, node.lineno))
            # `from dpot_lab import train` imports the sub-package dpot_lab.train
            found += [
                (f"{target}.{a.name}", node.lineno) for a in node.names if target == "dpot_lab"
            ]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _MODULE_NAME.fullmatch(node.value):
                found.append((node.value, node.lineno))
    return sorted(found, key=lambda item: item[1])


def layer(module: str) -> str:
    """``dpot_lab.data.mixture`` -> ``data``; ``dpot_lab`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def violations(path: Path) -> list[str]:
    """One line per forbidden import in ``path``: module, line, import and why."""
    module, own = module_name(path), layer(module_name(path))
    problems = []
    for target, line in imports(path):
        head = target.split(".")[0]
        where = f"{module} (line {line}) imports {target}"
        if (module, target) in ALLOWED:
            continue
        if head in OUTSIDE:
            problems.append(f"{where}: nothing in dpot_lab imports {head}/")
        elif head in GUI and own != "viz":
            problems.append(f"{where}: only dpot_lab.viz loads {head} (import dpot_lab stays fast)")
        elif target.startswith(NOT_FROM.get(module, ())):
            problems.append(f"{where}: {module} must not import {list(NOT_FROM[module])}")
        elif head == "dpot_lab" and own not in TOP:
            other = layer(target)
            allowed = other in {own, *BASE, *MAY_IMPORT[own]}
            if not allowed:
                problems.append(f"{where}: {own}/ may import only {sorted(MAY_IMPORT[own] | BASE)}")
    return problems


FILES = sorted(PACKAGE.rglob("*.py"))


def test_every_package_module_has_a_layer():
    layers = {layer(module_name(p)) for p in FILES}
    assert layers - TOP <= set(MAY_IMPORT), f"no rule for {sorted(layers - TOP - set(MAY_IMPORT))}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layers(path):
    problems = violations(path)
    assert not problems, "\n".join(problems)


def test_allowed_violations_still_exist():
    """An allow-list entry goes once its import is gone, so the list cannot hide new ones."""
    present = {(module_name(p), target) for p in FILES for target, _ in imports(p)}
    modules = {module_name(p) for p in FILES}
    stale = [
        f"{m} -> {t}: {why}"
        for (m, t), why in ALLOWED.items()
        if m in modules and (m, t) not in present  # an absent module has nothing to check
    ]
    assert not stale, "remove from ALLOWED (fixed): " + "; ".join(stale)


def test_the_checker_catches_each_kind_of_import(tmp_path, monkeypatch):
    """A model module that imports data at function level, a relative import of train, a lazy
    table naming viz, and an import of apps are all reported with module and import."""
    fake = tmp_path / "dpot_lab" / "models"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text(
        "from __future__ import annotations\n"
        "from ..train import trainer\n"
        "def f():\n"
        "    import dpot_lab.data.mixture\n"
        "    from apps import rollout_viewer\n"
        "NAMES = {'x': 'dpot_lab.viz.app'}\n"
        "import panel\n"
    )
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    problems = violations(fake / "bad.py")
    assert [p.split(":")[0] for p in problems] == [
        "dpot_lab.models.bad (line 2) imports dpot_lab.train",
        "dpot_lab.models.bad (line 4) imports dpot_lab.data.mixture",
        "dpot_lab.models.bad (line 5) imports apps",
        "dpot_lab.models.bad (line 6) imports dpot_lab.viz.app",
        "dpot_lab.models.bad (line 7) imports panel",
    ]
    config = tmp_path / "dpot_lab" / "train" / "config.py"
    config.parent.mkdir()
    config.write_text("def f():\n    from dpot_lab.train.trainer import Trainer\n")
    (problem,) = violations(config)
    assert problem.startswith("dpot_lab.train.config (line 2) imports dpot_lab.train.trainer: ")


# Private APIs of the libraries (DESIGN.md: no ``torch._C``, no ``xarray.core`` internals).
PRIVATE = re.compile(r"\btorch\._C\b|\bxarray\.core\b")
# Modules still on one, each with its reason; an entry goes once its module is clean.
PRIVATE_ALLOWED = {
    "dpot_lab/data/lazy.py": "xarray exports no lazy-indexing wrapper for a BackendArray "
    "(LazilyIndexedArray, explicit_indexing_adapter live in xarray.core.indexing only)",
}


def private_uses(path: Path) -> list[str]:
    """``file:line: text`` for every line of ``path`` that names a private library API."""
    lines = path.read_text().splitlines()
    where = path.relative_to(ROOT)
    return [f"{where}:{i}: {ln.strip()}" for i, ln in enumerate(lines, 1) if PRIVATE.search(ln)]


def test_no_private_torch_or_xarray_api():
    found = [u for p in FILES if str(p.relative_to(ROOT)) not in PRIVATE_ALLOWED
             for u in private_uses(p)]  # fmt: skip
    assert not found, "\n".join(found)
    stale = [f for f in PRIVATE_ALLOWED if not private_uses(ROOT / f)]
    assert not stale, f"remove from PRIVATE_ALLOWED (clean now): {stale}"


def test_the_private_api_check_finds_both_kinds(tmp_path, monkeypatch):
    bad = tmp_path / "dpot_lab" / "bad.py"
    bad.parent.mkdir()
    bad.write_text("import torch\nn = torch._C._storage_Use_Count\nfrom xarray.core import x\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    found = [u.split(": ")[0] for u in private_uses(bad)]
    assert found == ["dpot_lab/bad.py:2", "dpot_lab/bad.py:3"]
