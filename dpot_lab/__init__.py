"""dpot-lab: a notebook-first workbench for DPOT-style PDE foundation models.

``import dpot_lab as dl`` is cheap: the model names load with torch, everything else (data,
solvers, training, evaluation, and the Panel/HoloViews views) loads on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import Any

from dpot_lab.models import (
    DPOT,
    DPOT3D,
    DPOTConfig,
    create_model,
    load_checkpoint,
    load_official,
    save_checkpoint,
)

__version__ = "0.1.0"

_SUBPACKAGES = {
    "data": "dpot_lab.data",
    "solvers": "dpot_lab.solvers",
    "train": "dpot_lab.train",
    "evaluate": "dpot_lab.evaluate",
    "metrics": "dpot_lab.evaluate.metrics",
    "viz": "dpot_lab.viz",
    "models": "dpot_lab.models",
}
_FUNCTIONS = {
    "open_dataset": "dpot_lab.data",
    "generate": "dpot_lab.data",
    "rollout": "dpot_lab.evaluate",
}


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(_SUBPACKAGES[name])
    if name in _FUNCTIONS:
        return getattr(importlib.import_module(_FUNCTIONS[name]), name)
    raise AttributeError(f"module 'dpot_lab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_SUBPACKAGES, *_FUNCTIONS])


__all__ = [
    "DPOT", "DPOT3D", "DPOTConfig", "create_model", "load_checkpoint", "load_official",
    "save_checkpoint", *_SUBPACKAGES, *_FUNCTIONS,
]  # fmt: skip
