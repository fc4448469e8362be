"""Trajectory sets of pattern-forming equations, as Datasets: features of a few grid cells,
near the size of a model's patch. Swift–Hohenberg (stripes and hexagonal spots of wavelength
2π, 8 cells at 64² on the default square of side 16π).

Same contract as ``dpot_lab.data.generators``: ``make_x(n_samples, resolution, seed_seqs,
**params)``, sample i drawn from ``numpy.random.default_rng(seed_seqs[i])`` alone (its initial
state and its own PDE parameters), so a sample does not depend on the batch it was made in. A
parameter drawn per trajectory is a data variable with a sample axis; its range is in the attrs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr

from dpot_lab.data.generators import SOURCE_FORMAT, _check_counts, _coords, _dtype
from dpot_lab.solvers.grid import Resolution, grid_shape
from dpot_lab.solvers.stepping import check_number
from dpot_lab.solvers.swift_hohenberg import swift_hohenberg_2d

FIELD_DIMS = ("sample", "time", "x", "y")


def make_swift_hohenberg(
    n_samples: int,
    resolution: Resolution,
    seed_seqs: Sequence[np.random.SeedSequence],
    *,
    r_min: float = 0.1,
    r_max: float = 0.5,
    g_min: float = 0.0,
    g_max: float = 1.2,
    length: float = 16 * math.pi,
    u0_std: float = 0.1,
    burn_in: float = 6.0,
    n_frames: int = 20,
    dt_save: float = 2.0,
    dt: float = 0.5,
    dtype: str = "float64",
    device: str = "cpu",
) -> xr.Dataset:
    """2D Swift–Hohenberg on the periodic square [0, length)²: ``u`` (sample, time, x, y) at
    burn_in + dt_save·0, …, burn_in + dt_save·(n_frames − 1), from white noise of std ``u0_std``
    per cell; ``r`` and ``g`` (sample,) uniform in [r_min, r_max] and [g_min, g_max] (stripes at
    small g, hexagonal spots at large g). With the defaults the frames follow the pattern from
    its growth out of the noise (a frame differs from the previous one by ~40 %) to slow defect
    motion (a few %)."""
    _check_counts(n_samples, seed_seqs, n_frames)
    dt_save = check_number(dt_save, "dt_save", 0.0, open_low=True)
    r_max = check_number(r_max, "r_max", r_min)
    g_max = check_number(g_max, "g_max", g_min)
    u0_std = check_number(u0_std, "u0_std", 0.0)
    burn_in = check_number(burn_in, "burn_in", 0.0)
    length = check_number(length, "length", 0.0, open_low=True)
    shape = grid_shape(resolution, 2)
    rs, gs, u0 = [], [], []
    for s in seed_seqs:
        rng = np.random.default_rng(s)
        rs.append(rng.uniform(r_min, r_max))
        gs.append(rng.uniform(g_min, g_max))
        u0.append(u0_std * rng.standard_normal(shape))
    times = burn_in + dt_save * np.arange(n_frames)
    u = swift_hohenberg_2d(
        torch.as_tensor(np.stack(u0), dtype=_dtype(dtype), device=device),
        times,
        r=rs,
        g=gs,
        length=length,
        dt=dt,
    ).astype(np.float32)  # (B, T, X, Y)
    return xr.Dataset(
        {"u": (FIELD_DIMS, u), "r": (("sample",), np.array(rs)), "g": (("sample",), np.array(gs))},
        coords=_coords(times, resolution, 2, (0.0, length)),
        attrs=dict(
            pde="swift_hohenberg_2d",
            equation="u_t = r u - (1 + lap)^2 u + g u^2 - u^3",
            source_format=SOURCE_FORMAT,
            r_distribution="uniform in [r_min, r_max]",
            g_distribution="uniform in [g_min, g_max]",
            r_min=r_min,
            r_max=r_max,
            g_min=g_min,
            g_max=g_max,
            length=length,
            u0_std=u0_std,
            burn_in=burn_in,
            dt_save=dt_save,
            dt=dt,
            scheme="pseudo-spectral, ETDRK4, nonlinear term on |m| < n/4",
            boundary="periodic",
        ),
    )
