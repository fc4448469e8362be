"""Trajectory sets from the built-in spectral and diffusion–reaction solvers, as Datasets.

Every generator has the signature ``make_x(n_samples, resolution, seed_seqs, **params)``: sample
i starts from an initial state drawn with ``numpy.random.default_rng(seed_seqs[i])``, so a
sample does not depend on which batch it was made in. The solvers run in ``dtype`` on
``device`` ("cpu", "cuda", ...); fields are stored as float32. The default "float64" makes
files bit-identical for any batch size; "float32" runs about twice as fast on a CPU, but the
batch size can then change the last bits (batched FFTs round differently).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import torch
import xarray as xr

from dpot_lab.data.schema import SPATIAL
from dpot_lab.solvers import (
    diffusion_reaction_2d,
    divergence_free_velocity,
    gaussian_random_field,
    navier_stokes_2d,
    navier_stokes_3d,
)
from dpot_lab.solvers.grid import Resolution, cell_centres, grid_shape
from dpot_lab.solvers.initial import diffusion_reaction_initial, passot_pouquet_spectrum
from dpot_lab.solvers.navier_stokes_2d import nodes
from dpot_lab.solvers.stepping import check_number

SOURCE_FORMAT = "dpot-lab"
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def make_ns2d(
    n_samples: int,
    resolution: Resolution,
    seed_seqs: Sequence[np.random.SeedSequence],
    *,
    nu: float = 1e-3,
    forcing: str | None = "fno",
    n_frames: int = 20,
    dt_save: float = 1.0,
    alpha: float = 2.5,
    tau: float = 7.0,
    cfl: float = 0.5,
    dtype: str = "float64",
    device: str = "cpu",
) -> xr.Dataset:
    """FNO Navier–Stokes set-up: GRF(α, τ) initial vorticity on the periodic unit square,
    forcing "fno" (or None), viscosity ν, on the nodes x, y = i/n as FNO. ``vorticity``
    (sample, time, x, y) at times dt_save·1, …, dt_save·n_frames (as in the FNO files, the
    initial state is not a frame)."""
    _check_counts(n_samples, seed_seqs, n_frames)
    dt_save = check_number(dt_save, "dt_save", 0.0, open_low=True)
    forcing = None if forcing in (None, "none") else forcing
    w0 = np.concatenate(
        [
            gaussian_random_field(np.random.default_rng(s), 1, resolution, alpha, tau)
            for s in seed_seqs
        ]
    )  # (B, X, Y)
    times = dt_save * np.arange(1, n_frames + 1)
    w = navier_stokes_2d(
        torch.as_tensor(w0, dtype=_dtype(dtype), device=device), nu, times, forcing, cfl=cfl
    )  # (B, T, X, Y)
    coords = _coords(times, resolution, 2, (0.0, 1.0), nodes)
    params = dict(nu=nu, forcing=forcing or "none", dt_save=dt_save, alpha=alpha, tau=tau)
    return xr.Dataset(
        {"vorticity": (("sample", "time", "x", "y"), w.astype(np.float32))},
        coords=coords,
        attrs=dict(pde="navier_stokes_2d", source_format=SOURCE_FORMAT, **params),
    )


def make_diffusion_reaction(
    n_samples: int,
    resolution: Resolution,
    seed_seqs: Sequence[np.random.SeedSequence],
    *,
    du: float = 1e-3,
    dv: float = 5e-3,
    k: float = 5e-3,
    n_frames: int = 101,
    t_end: float = 5.0,
    dtype: str = "float64",
    device: str = "cpu",
) -> xr.Dataset:
    """PDEBench FitzHugh–Nagumo diffusion–reaction on [−1, 1]² from N(0, 1) noise. ``u``, ``v``
    (sample, time, x, y) at n_frames equally spaced times from 0 to t_end (0 included)."""
    _check_counts(n_samples, seed_seqs, n_frames)
    t_end = check_number(t_end, "t_end", 0.0, open_low=True)
    pairs = [diffusion_reaction_initial(np.random.default_rng(s), 1, resolution) for s in seed_seqs]
    u0 = torch.as_tensor(np.concatenate([p[0] for p in pairs]), dtype=_dtype(dtype), device=device)
    v0 = torch.as_tensor(np.concatenate([p[1] for p in pairs]), dtype=_dtype(dtype), device=device)
    times = np.linspace(0.0, t_end, n_frames)
    uv = diffusion_reaction_2d(u0, v0, times, du=du, dv=dv, k=k).astype(np.float32)  # (B,T,2,X,Y)
    dims = ("sample", "time", "x", "y")
    return xr.Dataset(
        {"u": (dims, uv[:, :, 0]), "v": (dims, uv[:, :, 1])},
        coords=_coords(times, resolution, 2, (-1.0, 1.0)),
        attrs=dict(
            pde="diffusion_reaction_2d",
            source_format=SOURCE_FORMAT,
            du=du,
            dv=dv,
            k=k,
            dt_save=float(times[1] - times[0]) if n_frames > 1 else 0.0,
        ),
    )


def make_ns3d(
    n_samples: int,
    resolution: Resolution,
    seed_seqs: Sequence[np.random.SeedSequence],
    *,
    nu: float = 5e-3,
    u_rms: float = 1.0,
    k_peak: float = 2.0,
    n_frames: int = 5,
    dt_save: float = 0.25,
    cfl: float = 0.5,
    dtype: str = "float64",
    device: str = "cpu",
) -> xr.Dataset:
    """Decaying 3D turbulence on the periodic unit cube from a random divergence-free velocity
    with spectrum E(k) ∝ k⁴ exp(−2 (k/k_peak)²). ``u``, ``v``, ``w`` (sample, time, x, y, z) at
    dt_save·0, …, dt_save·(n_frames − 1) (the initial state is frame 0)."""
    _check_counts(n_samples, seed_seqs, n_frames)
    dt_save = check_number(dt_save, "dt_save", 0.0, open_low=True)
    spectrum = partial(passot_pouquet_spectrum, k_peak=k_peak)
    u0 = np.concatenate(
        [
            divergence_free_velocity(np.random.default_rng(s), 1, resolution, spectrum, u_rms)
            for s in seed_seqs
        ]
    )  # (B, 3, X, Y, Z)
    times = dt_save * np.arange(n_frames)
    vel = navier_stokes_3d(
        torch.as_tensor(u0, dtype=_dtype(dtype), device=device), nu, times, cfl=cfl
    ).astype(np.float32)  # (B, T, 3, X, Y, Z)
    dims = ("sample", "time", "x", "y", "z")
    return xr.Dataset(
        {name: (dims, vel[:, :, i]) for i, name in enumerate(("u", "v", "w"))},
        coords=_coords(times, resolution, 3, (0.0, 1.0)),
        attrs=dict(
            pde="navier_stokes_3d",
            source_format=SOURCE_FORMAT,
            nu=nu,
            u_rms=u_rms,
            k_peak=k_peak,
            dt_save=dt_save,
        ),
    )


def _check_counts(
    n_samples: int, seed_seqs: Sequence[np.random.SeedSequence], n_frames: int
) -> None:
    if len(seed_seqs) != n_samples:
        raise ValueError(f"seed_seqs: expected {n_samples} seed sequences, got {len(seed_seqs)}")
    if not (isinstance(n_frames, int | np.integer) and n_frames >= 1):
        raise ValueError(f"n_frames: expected an integer >= 1, got {n_frames!r}")


def _dtype(name: str) -> torch.dtype:
    if name not in _DTYPES:
        raise ValueError(f"dtype: expected one of {sorted(_DTYPES)}, got {name!r}")
    return _DTYPES[name]


def _coords(
    times: np.ndarray,
    resolution: Resolution,
    ndim: int,
    domain: tuple[float, float],
    points: Callable[[int, float, float], np.ndarray] = cell_centres,
) -> dict[str, tuple[str, np.ndarray]]:
    """time and coords x, y[, z] of a box of side ``domain`` along every axis: the cell centres,
    or the grid ``points(n, lower, upper)`` (e.g. the nodes of the spectral NS solvers)."""
    coords = {"time": ("time", np.asarray(times, dtype=np.float64))}
    for name, n in zip(SPATIAL, grid_shape(resolution, ndim), strict=False):
        coords[name] = (name, points(n, *domain))
    return coords
