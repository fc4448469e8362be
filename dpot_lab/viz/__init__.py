"""Views of rollouts (HoloViews) and the Panel rollout viewer. HoloViews and Panel load on first use
of a name that needs them; the asset paths below need neither."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from dpot_lab.exports import lazy_names

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEMO_CHECKPOINT = ASSETS / "pretrained.pt"  # the shipped model (DPOT_LAB_DEMO_CHECKPOINT overrides)
DEMO_DATA = ASSETS / "pretrained.yaml"  # its description: demo data, held-out families


def demo_checkpoint() -> Path:
    """The demo checkpoint the viewer opens: ``$DPOT_LAB_DEMO_CHECKPOINT`` or the shipped one."""
    return Path(os.environ.get("DPOT_LAB_DEMO_CHECKPOINT") or DEMO_CHECKPOINT)


def demo_sources() -> dict[str, dict]:
    """{name: {"name", "spec": generator spec}} of the demo data listed in ``DEMO_DATA``."""
    entries = yaml.safe_load(DEMO_DATA.read_text())["sources"]
    return {e["name"]: e for e in entries}


_NAMES = {
    "downsample": "dpot_lab.viz.views",
    "color_limits": "dpot_lab.viz.views",
    "sample_pair": "dpot_lab.viz.views",
    "rollout_images": "dpot_lab.viz.views",
    "error_curves": "dpot_lab.viz.views",
    "spectra_plot": "dpot_lab.viz.views",
    "baseline_grids": "dpot_lab.viz.baseline",
    "coarse_rollout": "dpot_lab.viz.baseline",
    "RolloutViewer": "dpot_lab.viz.app",
    "build_app": "dpot_lab.viz.app",
    "serve_demo": "dpot_lab.viz.app",
}

__getattr__, __dir__ = lazy_names(__name__, _NAMES)


__all__ = ["ASSETS", "DEMO_CHECKPOINT", "DEMO_DATA", "demo_checkpoint", "demo_sources", *_NAMES]
