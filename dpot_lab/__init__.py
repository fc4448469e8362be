"""dpot-lab: a notebook-first workbench for DPOT-style PDE foundation models.

``import dpot_lab as dl`` is cheap: the model names load with torch, everything else (data,
solvers, training, evaluation, studies, and the Panel/HoloViews views) loads on first attribute
access.
"""

from __future__ import annotations

from dpot_lab.exports import lazy_names
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
    "studies": "dpot_lab.studies",
    "models": "dpot_lab.models",
}
_FUNCTIONS = {
    "open_dataset": "dpot_lab.data",
    "generate": "dpot_lab.data",
    "rollout": "dpot_lab.evaluate",
}

__getattr__, __dir__ = lazy_names(__name__, _FUNCTIONS, modules=_SUBPACKAGES)


__all__ = [
    "DPOT", "DPOT3D", "DPOTConfig", "create_model", "load_checkpoint", "load_official",
    "save_checkpoint", *_SUBPACKAGES, *_FUNCTIONS,
]  # fmt: skip
