"""Numerical PDE solvers that generate data, each a pure function from an initial state to
frames, and the random initial states of the data sources.

The finite-volume solvers (``shallow_water_2d``, ``compressible_ns_2d``) load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported eagerly: a function named like its module must be bound here, or importing the
# module would rebind the package attribute to the module.
from dpot_lab.solvers.diffusion_reaction import diffusion_reaction_2d
from dpot_lab.solvers.initial import (
    diffusion_reaction_initial,
    divergence_free_velocity,
    gaussian_random_field,
    passot_pouquet_spectrum,
)
from dpot_lab.solvers.navier_stokes_2d import fno_forcing, navier_stokes_2d
from dpot_lab.solvers.navier_stokes_3d import navier_stokes_3d

_LAZY = {
    "shallow_water_2d": "dpot_lab.solvers.shallow_water",
    "random_dam_radius": "dpot_lab.solvers.shallow_water",
    "compressible_ns_2d": "dpot_lab.solvers.compressible_ns",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dpot_lab.solvers' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "compressible_ns_2d",
    "diffusion_reaction_2d",
    "diffusion_reaction_initial",
    "divergence_free_velocity",
    "fno_forcing",
    "gaussian_random_field",
    "navier_stokes_2d",
    "navier_stokes_3d",
    "passot_pouquet_spectrum",
    "random_dam_radius",
    "shallow_water_2d",
]
