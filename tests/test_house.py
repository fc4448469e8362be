"""House rules read from the source with ``ast``: no function or method in ``dpot_lab/`` is
longer than ``MAX_LINES`` (from its ``def`` line to its last line, docstring included), so that
each reads on one screen and does one job."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dpot_lab"
MAX_LINES = 70


def long_functions(path: Path, limit: int = MAX_LINES) -> list[str]:
    """``file:line name (N lines)`` for every function in ``path`` (nested ones and methods
    included, named by their enclosing classes and functions) longer than ``limit`` lines."""
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = prefix
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}."
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                n = child.end_lineno - child.lineno + 1
                if n > limit:
                    where = path.relative_to(ROOT)
                    found.append(f"{where}:{child.lineno} {name[:-1]} ({n} lines)")
            visit(child, name)

    visit(ast.parse(path.read_text(), str(path)), "")
    return found


def test_no_function_over_the_limit():
    found = [f for p in sorted(PACKAGE.rglob("*.py")) for f in long_functions(p)]
    assert not found, f"functions over {MAX_LINES} lines (split by meaning):\n" + "\n".join(found)


def test_the_length_check_finds_methods_and_nested_functions(tmp_path, monkeypatch):
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    path = tmp_path / "m.py"
    path.write_text(
        "def short():\n"
        "    return 1\n"
        "class C:\n"
        "    def method(self):\n"
        "        x = 1\n"
        "        x = 2\n"
        "        return x\n"
        "def outer():\n"
        "    def inner():\n"
        "        x = 1\n"
        "        x = 2\n"
        "        return x\n"
        "    return inner\n"
    )
    assert long_functions(path, limit=3) == [
        "m.py:4 C.method (4 lines)",
        "m.py:8 outer (6 lines)",
        "m.py:9 outer.inner (4 lines)",
    ]
    assert long_functions(path, limit=6) == []
