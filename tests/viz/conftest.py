"""Browser fixtures: Debian's Chromium driven by Playwright, and the rollout viewer served by
`panel serve apps/rollout_viewer.py` in a subprocess on a free port."""

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from browser import chromium_launch_args, free_port

import dpot_lab as dl
from dpot_lab.viz import DEMO_CHECKPOINT

ROOT = Path(__file__).resolve().parents[2]
SERVER_START_S = 120


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright launches the system Chromium (never a downloaded one)."""
    return {**browser_type_launch_args, **chromium_launch_args()}


def _trajectories(fields: list[str], n=2, t=16, shape=(48, 40), seed=0) -> xr.Dataset:
    """Smooth travelling waves, a different pattern per field and sample."""
    x = np.linspace(0, 1, shape[0], endpoint=False)
    y = np.linspace(0, 1, shape[1], endpoint=False)
    time_ = 0.1 * np.arange(t)
    rng = np.random.default_rng(seed)
    data = {}
    for i, f in enumerate(fields):
        k = rng.integers(1, 4, size=(n, 2)) + i
        phase = (
            k[:, None, None, None, 0] * x[None, None, :, None]
            + k[:, None, None, None, 1] * y[None, None, None, :]
            - time_[None, :, None, None]
        )
        data[f] = (("sample", "time", "x", "y"), np.sin(2 * np.pi * phase).astype(np.float32))
    coords = {"time": time_, "x": x, "y": y}
    return xr.Dataset(data, coords=coords, attrs={"pde": "waves", "source_format": "native"})


@pytest.fixture(scope="module")
def viewer_files(tmp_path_factory) -> dict[str, Path]:
    """A data folder (a 2-field file, a 5-field file, a file that is not a dataset), a file outside
    it, and the checkpoint the app opens by default."""
    tmp = tmp_path_factory.mktemp("viewer")
    data_dir = tmp / "data"
    data_dir.mkdir()
    dl.data.save(_trajectories(["u", "v"]), data_dir / "waves_uv.h5")
    dl.data.save(_trajectories(list("abcde")), data_dir / "five_fields.h5")
    (data_dir / "notes.h5").write_text("this is not a dataset\n")
    dl.data.save(_trajectories(["u"]), tmp / "outside.h5")
    return {"data_dir": data_dir, "checkpoint": DEMO_CHECKPOINT, "cache": tmp / "cache"}


@pytest.fixture(scope="module")
def viewer_url(viewer_files):
    """URL of `panel serve apps/rollout_viewer.py --args --data-dir DATA` (demo data cached in a
    temp folder unless $DPOT_LAB_CACHE is set); the server is stopped afterwards."""
    port = free_port()
    env = {**os.environ, "DPOT_LAB_DEMO_CHECKPOINT": str(viewer_files["checkpoint"])}
    env.setdefault("DPOT_LAB_CACHE", str(viewer_files["cache"]))
    # one torch thread: beside pytest and Chromium on a small machine, more threads only contend
    # (the demo's solver ran ~10x slower with two threads on a busy 2-core machine)
    env.setdefault("OMP_NUM_THREADS", "1")
    panel = shutil.which("panel", path=str(Path(sys.executable).parent)) or "panel"
    cmd = [
        panel, "serve", str(ROOT / "apps" / "rollout_viewer.py"), "--address", "127.0.0.1",
        "--port", str(port), f"--allow-websocket-origin=127.0.0.1:{port}",
        "--args", "--data-dir", str(viewer_files["data_dir"]),
    ]  # fmt: skip
    log = viewer_files["cache"].parent / "panel.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/rollout_viewer"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"panel serve did not answer at {url}:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
