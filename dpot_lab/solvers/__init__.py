"""Numerical PDE solvers that generate data, each a pure function from an initial state to
frames, and the random initial states of the data sources."""

from dpot_lab.solvers.burgers import burgers_2d
from dpot_lab.solvers.compressible_ns import cns_random_initial, compressible_ns_2d
from dpot_lab.solvers.diffusion_reaction import diffusion_reaction_2d
from dpot_lab.solvers.initial import (
    diffusion_reaction_initial,
    divergence_free_velocity,
    gaussian_random_field,
    passot_pouquet_spectrum,
)
from dpot_lab.solvers.kuramoto_sivashinsky import kuramoto_sivashinsky_2d
from dpot_lab.solvers.navier_stokes_2d import fno_forcing, kolmogorov_forcing, navier_stokes_2d
from dpot_lab.solvers.navier_stokes_3d import navier_stokes_3d
from dpot_lab.solvers.passive_scalar import passive_scalar_2d
from dpot_lab.solvers.shallow_water import dam_break_initial, random_dam_radius, shallow_water_2d
from dpot_lab.solvers.wave import wave_2d

__all__ = [
    "burgers_2d",
    "cns_random_initial",
    "compressible_ns_2d",
    "dam_break_initial",
    "diffusion_reaction_2d",
    "diffusion_reaction_initial",
    "divergence_free_velocity",
    "fno_forcing",
    "gaussian_random_field",
    "kolmogorov_forcing",
    "kuramoto_sivashinsky_2d",
    "navier_stokes_2d",
    "navier_stokes_3d",
    "passive_scalar_2d",
    "passot_pouquet_spectrum",
    "random_dam_radius",
    "shallow_water_2d",
    "wave_2d",
]
