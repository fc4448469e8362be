"""The notebooks, run as a user runs them: every cell in order, in a real Jupyter kernel, in quick
mode (``DPOT_LAB_QUICK=1``), outputs going to a temporary folder; plus the rules of how they are
kept in git: paired ``.py`` twins in sync, no outputs committed, only public ``dpot_lab`` names.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
# What counts as a figure: an image, or a HoloViews/Bokeh plot (these carry an exec mime bundle).
FIGURE_MIMES = (
    "image/png",
    "image/svg+xml",
    "application/vnd.holoviews_exec.v0+json",
    "application/vnd.bokehjs_exec.v0+json",
)
CELL_TIMEOUT_S = 600  # a hang guard, not a speed check


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def parameters_index(nb: nbformat.NotebookNode, path: Path) -> int:
    """Position of the (only) cell tagged ``parameters``."""
    found = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(found) == 1, f"{path.name}: expected one cell tagged 'parameters', found {found}"
    return found[0]


def with_parameters(nb: nbformat.NotebookNode, path: Path, **values) -> nbformat.NotebookNode:
    """``nb`` with a cell setting ``values`` right after its parameters cell (papermill's rule)."""
    at = parameters_index(nb, path) + 1
    source = "\n".join(f"{k} = {v!r}" for k, v in values.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(at, cell)
    return nb


def figures(nb: nbformat.NotebookNode) -> list[str]:
    """The figure mime types among the outputs of the executed cells."""
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type in ("display_data", "execute_result"):
                found += [m for m in out.get("data", {}) if m in FIGURE_MIMES]
    return found


def test_there_are_notebooks():
    names = {p.stem for p in NOTEBOOKS}
    assert {"00_data_tour", "01_pretrain", "02_finetune", "03_rollout"} <= names, names


# 01 -> 02 -> 03 run as one walk, in order, in test_walk.py (with the same checks and more).
ALONE = [p for p in NOTEBOOKS if p.stem not in ("01_pretrain", "02_finetune", "03_rollout")]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", ALONE, ids=_ids(ALONE))
def test_notebook_runs_in_quick_mode(path, tmp_path, monkeypatch, data_cache):
    """Every cell runs without error in quick mode and the run draws at least one figure."""
    monkeypatch.setenv("DPOT_LAB_QUICK", "1")
    monkeypatch.setenv("DPOT_LAB_CACHE", str(data_cache))
    # The quick models are tiny: one thread is fastest, and on a shared 2-core machine several
    # OpenMP threads per process spin against each other (10x slower measured here).
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(path, as_version=4)
    nb = with_parameters(nb, path, OUT_DIR=str(tmp_path / "out"))
    nb.cells.append(nbformat.v4.new_code_cell('assert QUICK, "DPOT_LAB_QUICK=1 left QUICK off"'))
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error
    assert figures(nb), f"{path.name}: the quick run drew no figure ({FIGURE_MIMES})"
    assert (tmp_path / "out").is_dir(), f"{path.name}: wrote nothing to OUT_DIR"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_quick_switch_follows_the_environment(path, monkeypatch):
    """The parameters cell alone: QUICK is off by default and on with DPOT_LAB_QUICK=1."""
    nb = nbformat.read(path, as_version=4)
    source = nb.cells[parameters_index(nb, path)].source
    seen = {}
    for value, expected in ((None, False), ("0", False), ("1", True)):
        if value is None:
            monkeypatch.delenv("DPOT_LAB_QUICK", raising=False)
        else:
            monkeypatch.setenv("DPOT_LAB_QUICK", value)
        scope: dict = {}
        exec(compile(source, f"{path.name}:parameters", "exec"), scope)
        seen[value] = scope["QUICK"]
        assert scope["QUICK"] is expected, f"{path.name}: DPOT_LAB_QUICK={value!r} gave {seen}"
        assert "OUT_DIR" in scope, f"{path.name}: the parameters cell sets no OUT_DIR"


# ---------------------------------------------------------------------- how they are kept in git
def cell_inputs(nb: nbformat.NotebookNode) -> list[tuple[str, str, tuple[str, ...]]]:
    """What pairing must keep equal: each cell's type, source and tags."""
    return [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", []))) for c in nb.cells]


def twin_differences(ipynb: Path, script: Path) -> list[str]:
    """Cells that differ between a notebook and its py:percent twin, as jupytext reads them."""
    a, b = cell_inputs(jupytext.read(ipynb)), cell_inputs(jupytext.read(script))
    diffs = [
        f"cell {i}: {x!r} != {y!r}" for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y
    ]
    if len(a) != len(b):
        diffs.append(f"{len(a)} cells in {ipynb.name}, {len(b)} in {script.name}")
    return diffs


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_py_twin_in_sync(path):
    script = path.with_suffix(".py")
    assert script.is_file(), f"{path.name} has no py:percent twin {script.name}"
    assert "# %%" in script.read_text(), f"{script.name} is not in the py:percent format"
    diffs = twin_differences(path, script)
    assert not diffs, f"{path.name} and {script.name} drifted; run jupytext --sync:\n" + "\n".join(
        diffs[:5]
    )


def test_drift_is_detected(tmp_path):
    """The sync check itself: a twin whose code differs by one line is reported."""
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("# t"), nbformat.v4.new_code_cell("x = 1")]
    )
    ipynb, script = tmp_path / "t.ipynb", tmp_path / "t.py"
    nbformat.write(nb, ipynb)
    jupytext.write(nb, script, fmt="py:percent")
    assert twin_differences(ipynb, script) == []
    script.write_text(script.read_text().replace("x = 1", "x = 2"))
    assert len(twin_differences(ipynb, script)) == 1


def test_pairing_is_configured():
    config = (NOTEBOOK_DIR / "jupytext.toml").read_text()
    assert 'formats = "ipynb,py:percent"' in config


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_without_outputs(path):
    raw = json.loads(path.read_text())
    dirty = [
        i
        for i, c in enumerate(raw["cells"])
        if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count") is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} hold outputs; clear them before committing"


def private_uses(source: str) -> list[str]:
    """Imports of private ``dpot_lab`` names, of ``tests`` or ``apps``, and ``dl._x`` attributes."""
    bad = []
    aliases = {"dpot_lab"}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in ("tests", "apps") or (
                    a.name.startswith("dpot_lab")
                    and any(p.startswith("_") for p in a.name.split("."))
                ):
                    bad.append(f"import {a.name}")
                if a.name == "dpot_lab":
                    aliases.add(a.asname or a.name)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level or module.split(".")[0] in ("tests", "apps"):
                bad.append(f"from {'.' * node.level}{module} import ...")
            elif module.startswith("dpot_lab"):
                names = module.split(".") + [a.name for a in node.names]
                if any(p.startswith("_") for p in names):
                    bad.append(f"from {module} import {', '.join(a.name for a in node.names)}")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in aliases:
                bad.append(f"{root.id}...{node.attr}")
    return bad


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_only_public_names(path):
    code = "\n".join(
        c.source
        for c in nbformat.read(path, as_version=4).cells
        if c.cell_type == "code" and not c.source.lstrip().startswith(("%", "!"))
    )
    assert "dpot_lab" in code, f"{path.name} does not use dpot_lab"
    bad = private_uses(code)
    assert not bad, f"{path.name} reaches past the public API: {bad}"


def test_private_uses_are_found():
    """The import check itself, on names it must refuse and names it must accept."""
    refused = (
        "from dpot_lab.data._lazy import x\nimport tests.train.conftest\n"
        "from apps import rollout_viewer\nimport dpot_lab as dl\ndl.train._unwrap(m)\n"
        "from dpot_lab.train.trainer import _Meter\n"
    )
    assert len(private_uses(refused)) == 5
    accepted = (
        "import dpot_lab as dl\nfrom dpot_lab.data.generation import generate_cached\n"
        "dl.data.Mixture\nm.__class__\n"
    )
    assert private_uses(accepted) == []
