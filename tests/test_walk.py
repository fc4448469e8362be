"""The walk, as a user takes it: 01_pretrain → 02_finetune → 03_rollout in quick mode, in order, in
one OUT_DIR, each notebook picking up what the one before wrote (a check of the chain, not only
that each runs); then each executed notebook rendered as HTML in headless Chromium with every
network request blocked, where its plots must draw (figures offline: BokehJS comes inline)."""

from __future__ import annotations

import nbformat
import pytest
from browser import chromium_launch_args
from nbclient import NotebookClient
from nbconvert import HTMLExporter
from test_notebooks import CELL_TIMEOUT_S, NOTEBOOK_DIR, figures, with_parameters

WALK = ["01_pretrain", "02_finetune", "03_rollout"]

# Cells appended to each notebook: what it must have picked up from the one before.
CHAIN_CHECKS = {
    "01_pretrain": """
assert (Path(OUT_DIR) / "pretrained.pt").is_file()
""",
    "02_finetune": """
assert Path(START).resolve() == (Path(OUT_DIR) / "pretrained.pt").resolve(), START
assert trainer.transfer_report.loaded, "nothing of 01's checkpoint was loaded"
_tuned = dl.load_checkpoint(finetuned).state_dict()
_start = dl.load_checkpoint(START).state_dict()
assert any(not torch.equal(_tuned[k], _start[k]) for k in _start), "fine-tuning changed nothing"
""",
    "03_rollout": """
assert Path(CHECKPOINT).resolve() == (Path(OUT_DIR) / "finetuned.pt").resolve(), CHECKPOINT
_tuned = dl.load_checkpoint(Path(OUT_DIR) / "finetuned.pt").state_dict()
assert all(torch.equal(v, _tuned[k]) for k, v in model.state_dict().items())
_file = dl.open_dataset(made_by["data"])
_n = _file.sizes["sample"]
_held_out = list(range(_n - made_by["n_test"], _n))
assert [int(s) for s in preds[first].sample.values] == _held_out, preds[first].sample.values
assert list(data) == [made_by["family"]]
""",
}


@pytest.fixture(scope="module")
def walk(tmp_path_factory, data_cache) -> dict[str, nbformat.NotebookNode]:
    """The three notebooks executed in order in one OUT_DIR (quick mode) -> {name: notebook}."""
    out = tmp_path_factory.mktemp("walk") / "out"
    env = pytest.MonkeyPatch()
    env.setenv("DPOT_LAB_QUICK", "1")
    env.setenv("DPOT_LAB_CACHE", str(data_cache))
    env.setenv("OMP_NUM_THREADS", "1")  # tiny models on shared cores (see test_notebooks.py)
    executed = {}
    try:
        for name in WALK:
            path = NOTEBOOK_DIR / f"{name}.ipynb"
            nb = with_parameters(nbformat.read(path, as_version=4), path, OUT_DIR=str(out))
            nb.cells.append(nbformat.v4.new_code_cell("from pathlib import Path\nimport torch\n" +
                                                      CHAIN_CHECKS[name]))  # fmt: skip
            NotebookClient(
                nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
            ).execute()  # fmt: skip
            executed[name] = nb
    finally:
        env.undo()
    return executed


@pytest.mark.timeout(1200)
def test_each_step_picks_up_the_last(walk):
    """01 wrote pretrained.pt, 02 fine-tuned exactly it and wrote finetuned.pt, 03 rolled exactly
    that out on the held-out trajectories of 02's file (the appended cells assert it); each drew
    figures."""
    assert list(walk) == WALK
    for name, nb in walk.items():
        assert figures(nb), f"{name}: drew no figure"


@pytest.mark.browser
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("name", WALK)
def test_rendered_offline_the_plots_draw(walk, name, tmp_path):
    """The executed notebook as HTML in Chromium, every request but the page itself refused:
    Bokeh loads from the page and renders every HoloViews figure the notebook shows."""
    sync_api = pytest.importorskip("playwright.sync_api")
    launch = chromium_launch_args()
    nb = walk[name]
    expected = sum(
        1 for c in nb.cells for o in c.get("outputs", [])
        if "application/vnd.holoviews_exec.v0+json" in o.get("data", {})
    )  # fmt: skip
    assert expected, f"{name}: no HoloViews figure in the executed notebook"
    html, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    page_file = tmp_path / f"{name}.html"
    page_file.write_text(html)
    url = page_file.as_uri()
    blocked = []

    def refuse(route):
        if route.request.url == url:
            return route.continue_()
        blocked.append(route.request.url)
        return route.abort()

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(**launch)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.route("**/*", refuse)
            page.goto(url)
            page.wait_for_function("() => window.Bokeh && window.Bokeh.documents.length > 0",
                                   timeout=60_000)  # fmt: skip
            page.wait_for_function(
                f"() => window.Bokeh.documents.length >= {expected}", timeout=60_000
            )
            canvases = page.locator("canvas").count()
            page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
        finally:
            browser.close()
    assert canvases >= expected, f"{name}: {canvases} canvases for {expected} figures"
    assert all(not u.startswith(("file:", "data:")) for u in blocked), blocked
