"""A notebook as a user sees it: JupyterLab serving ``01_pretrain.ipynb``, headless Chromium
running all its cells in quick mode, and the page checked for what the notebook promises: the
ipywidgets controls, the tqdm progress bar (a widget in JupyterLab) and drawn HoloViews/Bokeh
plots. A screenshot of the page is kept in ``artifacts/``.

The notebook runs on a copy in a temporary folder, so JupyterLab's saves never touch the
committed files. Chromium is Debian's (``/usr/bin/chromium``); Playwright only drives it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from browser import chromium_launch_args, free_port

from dpot_lab.train.config import TrainConfig

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "01_pretrain.ipynb"  # widgets, a progress bar and live plots in one notebook
CONFIGS = ["notebook_pretrain_quick.yaml"]  # what the notebook reads from ../configs
ARTIFACTS = ROOT / "artifacts"
RUN_TIMEOUT_S = 300  # a hang guard for the whole run, not a speed check

# In JupyterLab: the code cells' execution counts, and the error outputs' text.
JS_COUNTS = """() => {
    if (!window.jupyterapp || !window.jupyterapp.shell) return null;  // the page still loading
    const nb = window.jupyterapp.shell.currentWidget;
    if (!nb || !nb.content || !nb.sessionContext.session) return null;
    return nb.content.widgets.filter(c => c.model.type === 'code')
        .map(c => c.model.executionCount);
}"""
JS_ERRORS = """() => window.jupyterapp.shell.currentWidget.content.widgets
    .filter(c => c.model.type === 'code')
    .flatMap(c => c.model.outputs.toJSON())
    .filter(o => o.output_type === 'error')
    .map(o => `${o.ename}: ${o.evalue}`)"""
# In the browser's Bokeh documents: the most rows of a data source with a "loss" column.
JS_LOSS_ROWS = """() => {
    let rows = 0;
    for (const doc of (window.Bokeh ? window.Bokeh.documents : [])) {
        for (const m of doc.all_models) {
            const data = m.data instanceof Map ? Object.fromEntries(m.data) : m.data;
            if (data && data.loss) rows = Math.max(rows, data.loss.length);
        }
    }
    return rows;
}"""
JS_KERNEL = "() => window.jupyterapp.shell.currentWidget.sessionContext.kernelDisplayStatus"


def _wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"jupyter lab did not answer {url} in {timeout} s")


@pytest.fixture
def lab(tmp_path):
    """JupyterLab on a copy of the notebook (quick mode); yields (url of the notebook, its dir)."""
    chromium_launch_args()  # skips before JupyterLab starts when Chromium is missing
    work = tmp_path / "lab"
    (work / "notebooks").mkdir(parents=True)
    (work / "configs").mkdir()
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, work / "notebooks" / NOTEBOOK)
    for name in CONFIGS:
        shutil.copy(ROOT / "configs" / name, work / "configs" / name)
    home = tmp_path / "home"
    settings = {
        # draw every cell, not only those in view (JupyterLab 4 windows long notebooks)
        "notebook-extension/tracker": '{"windowingMode": "none"}',
        "apputils-extension/notification": '{"fetchNews": "false"}',  # no news pop-up
    }
    for name, text in settings.items():
        path = home / "settings" / "@jupyterlab" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    env = {
        **os.environ,
        "DPOT_LAB_QUICK": "1",
        "DPOT_LAB_CACHE": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",  # see test_notebooks.py: tiny models, shared cores
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "IPYTHONDIR": str(home / "ipython"),
    }
    token, port = secrets.token_hex(16), free_port()
    jupyter = Path(sys.executable).parent / "jupyter"
    cmd = [
        str(jupyter), "lab", "--no-browser", "--ip", "127.0.0.1", "--port", str(port),
        "--allow-root", f"--ServerApp.token={token}", "--notebook-dir", str(work / "notebooks"),
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run commands, read cells
        f"--LabApp.user_settings_dir={home / 'settings'}",
        f"--LabApp.workspaces_dir={home / 'workspaces'}",
    ]  # fmt: skip
    log = open(tmp_path / "jupyter.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/status?token={token}", proc, timeout=60)
        yield f"http://127.0.0.1:{port}/lab/tree/{NOTEBOOK}?token={token}", work / "notebooks"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _run_all(page, timeout: float) -> list[int]:
    """Run every cell once the kernel is idle; wait until all ran. Fails on an error output."""
    end = time.monotonic() + timeout
    page.wait_for_function(
        f"() => ({JS_COUNTS})() !== null && ({JS_KERNEL})() === 'idle'", timeout=90_000
    )
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    while time.monotonic() < end:
        errors = page.evaluate(JS_ERRORS)  # from the notebook model: cells off-screen count
        if errors:
            pytest.fail(f"a cell failed in JupyterLab: {errors[0][-3000:]}")
        counts = page.evaluate(JS_COUNTS)
        if counts and all(c is not None for c in counts) and page.evaluate(JS_KERNEL) == "idle":
            return counts
        time.sleep(1)
    pytest.fail(f"the notebook did not finish in {timeout} s; execution counts {counts}")


def test_notebook_in_jupyterlab(lab):
    url, folder = lab
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"notebook_{Path(NOTEBOOK).stem}.png"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(**chromium_launch_args())
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            counts = _run_all(page, RUN_TIMEOUT_S)
            assert counts == list(range(1, len(counts) + 1)), f"cells ran out of order: {counts}"

            out = page.locator(".jp-OutputArea-output")
            # ipywidgets: the preset dropdown and the sources multi-select
            assert out.locator(".widget-dropdown select").count() >= 1
            assert out.locator(".widget-select-multiple select").count() >= 1
            # tqdm.auto in JupyterLab: a widget progress bar, which the training run filled
            bars = out.locator(".widget-hbox:has(.widget-hprogress)")
            assert bars.count() >= 1, "no tqdm widget progress bar"
            texts = bars.all_inner_texts()
            assert any("100%" in t and "step" in t for t in texts), f"no finished run: {texts}"
            # HoloViews/Bokeh: plots drawn on canvases inside the outputs (BokehJS loaded inline)
            sync_api.expect(out.locator("canvas").nth(2)).to_be_attached(timeout=30_000)
            plots = out.filter(has=page.locator("canvas"))
            plots.nth(plots.count() - 1).scroll_into_view_if_needed()  # the live training plots
            page.screenshot(path=str(shot))
            # the live loss plot received every "train" record of the run while it trained
            cfg = TrainConfig.from_yaml(folder.parent / "configs" / CONFIGS[0])
            streamed = page.evaluate(JS_LOSS_ROWS)
            assert streamed == cfg.steps // cfg.log.every, f"live loss plot: {streamed} points"
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    assert (folder.parent / "runs" / "notebooks" / "pretrained.pt").is_file()
