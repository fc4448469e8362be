"""Trajectory sets of the classic model equations, as Datasets: viscous Burgers (shocks),
waves in a random medium (hyperbolic transport), Kuramoto–Sivashinsky (spatio-temporal chaos),
each on a periodic square and solved by a pseudo-spectral solver of ``dpot_lab.solvers``.

Same contract as ``dpot_lab.data.generators``: ``make_x(n_samples, resolution, seed_seqs,
**params)``, sample i drawn from ``numpy.random.default_rng(seed_seqs[i])`` alone (its
initial state and its own PDE parameters: Burgers' ν, the wave speed c(x)), so a sample does
not depend on the batch it was made in. A parameter drawn per trajectory is a data variable
with a sample axis (``nu`` (sample,), ``speed`` (sample, x, y)); its range is in the attrs.
Fields are stored as float32; "float64" (the default) makes files bit-identical for any batch
size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr

from dpot_lab.data.generators import SOURCE_FORMAT, _check_counts, _coords, _dtype
from dpot_lab.solvers import burgers_2d, gaussian_random_field, kuramoto_sivashinsky_2d, wave_2d
from dpot_lab.solvers.grid import Resolution, cell_centres, grid_shape
from dpot_lab.solvers.stepping import check_number

FIELD_DIMS = ("sample", "time", "x", "y")


def make_burgers2d(
    n_samples: int,
    resolution: Resolution,
    seed_seqs: Sequence[np.random.SeedSequence],
    *,
    nu_min: float = 3e-3,
    nu_max: float = 3e-2,
    u_rms: float = 0.5,
    alpha: float = 3.0,
    tau: float = 5.0,
    n_frames: int = 25,
    dt_save: float = 0.05,
    cfl: float = 0.5,
    dtype: str = "float64",
    device: str = "cpu",
) -> xr.Dataset:
    """2D viscous Burgers on the periodic unit square: ``u``, ``v`` (sample, time, x, y) at
    dt_save·0, …, dt_save·(n_frames − 1) from a random smooth velocity (each component a
    GRF(α, τ), scaled to root-mean-square ``u_rms``), and ``nu`` (sample,), log-uniform in
    [nu_min, nu_max] (at 64², ν below ~3e-3 with u_rms 0.5 leaves shocks under-resolved)."""
    _check_counts(n_samples, seed_seqs, n_frames)
    dt_save = check_number(dt_save, "dt_save", 0.0, open_low=True)
    nu_min = check_number(nu_min, "nu_min", 0.0, open_low=True)
    nu_max = check_number(nu_max, "nu_max", nu_min)
    u_rms = check_number(u_rms, "u_rms", 0.0)
    nus, velocities = [], []
    for s in seed_seqs:
        rng = np.random.default_rng(s)
        nus.append(math.exp(rng.uniform(math.log(nu_min), math.log(nu_max))))
        velocities.append(_scaled(gaussian_random_field(rng, 2, resolution, alpha, tau), u_rms))
    times = dt_save * np.arange(n_frames)
    vel = burgers_2d(
        torch.as_tensor(np.stack(velocities), dtype=_dtype(dtype), device=device),
        np.array(nus),
        times,
        cfl=cfl,
    ).astype(np.float32)  # (B, T, 2, X, Y)
    params = dict(nu_min=nu_min, nu_max=nu_max, u_rms=u_rms, alpha=alpha, tau=tau)
    return xr.Dataset(
        {
            "u": (FIELD_DIMS, vel[:, :, 0]),
            "v": (FIELD_DIMS, vel[:, :, 1]),
            "nu": (("sample",), np.array(nus)),
        },
        coords=_coords(times, resolution, 2, (0.0, 1.0)),
        attrs=dict(
            pde="burgers_2d",
            source_format=SOURCE_FORMAT,
            dt_save=dt_save,
            nu_distribution="log-uniform in [nu_min, nu_max]",
            scheme="pseudo-spectral, 2/3 rule, IFRK4",
            boundary="periodic",
            **params,
        ),
    )


def make_wave(
    n_samples: int,
    resolution: Resolution,
    seed_seqs: Sequence[np.random.SeedSequence],
    *,
    speed_mean: float = 1.0,
    speed_log_std: float = 0.3,
    speed_alpha: float = 4.0,
    speed_tau: float = 5.0,
    width_min: float = 0.04,
    width_max: float = 0.08,
    n_frames: int = 25,
    dt_save: float = 0.04,
    cfl: float = 0.5,
    dtype: str = "float64",
    device: str = "cpu",
) -> xr.Dataset:
    """u_tt = ∇·(c² ∇u) on the periodic unit square: ``u``, ``u_t`` (sample, time, x, y) at
    dt_save·0, …, dt_save·(n_frames − 1), from a Gaussian bump at rest (centre uniform, width
    uniform in [width_min, width_max]) in a medium ``speed`` (sample, x, y):
    c = speed_mean·exp(speed_log_std·g), g a GRF(speed_alpha, speed_tau) scaled to unit std."""
    _check_counts(n_samples, seed_seqs, n_frames)
    dt_save = check_number(dt_save, "dt_save", 0.0, open_low=True)
    speed_mean = check_number(speed_mean, "speed_mean", 0.0, open_low=True)
    speed_log_std = check_number(speed_log_std, "speed_log_std", 0.0)
    width_min = check_number(width_min, "width_min", 0.0, open_low=True)
    width_max = check_number(width_max, "width_max", width_min, 0.25)
    n_x, n_y = grid_shape(resolution, 2)
    x, y = cell_centres(n_x)[:, None], cell_centres(n_y)[None, :]
    speeds, bumps = [], []
    for s in seed_seqs:
        rng = np.random.default_rng(s)
        g = gaussian_random_field(rng, 1, (n_x, n_y), speed_alpha, speed_tau)[0]
        speeds.append(speed_mean * np.exp(speed_log_std * _scaled(g, 1.0)))
        x0, y0, width = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(width_min, width_max)
        bumps.append(_periodic_bump(x, y, x0, y0, width))
    times = dt_save * np.arange(n_frames)
    as_tensor = dict(dtype=_dtype(dtype), device=device)
    out = wave_2d(
        torch.as_tensor(np.stack(bumps), **as_tensor),
        torch.as_tensor(np.stack(speeds), **as_tensor),
        times,
        cfl=cfl,
    ).astype(np.float32)  # (B, T, 2, X, Y)
    params = dict(
        speed_mean=speed_mean,
        speed_log_std=speed_log_std,
        speed_alpha=speed_alpha,
        speed_tau=speed_tau,
        width_min=width_min,
        width_max=width_max,
    )
    return xr.Dataset(
        {
            "u": (FIELD_DIMS, out[:, :, 0]),
            "u_t": (FIELD_DIMS, out[:, :, 1]),
            "speed": (("sample", "x", "y"), np.stack(speeds).astype(np.float32)),
        },
        coords=_coords(times, (n_x, n_y), 2, (0.0, 1.0)),
        attrs=dict(
            pde="wave_2d",
            equation="u_tt = div(c^2 grad u)",
            source_format=SOURCE_FORMAT,
            dt_save=dt_save,
            scheme="Fourier spectral derivatives, RK4",
            boundary="periodic",
            **params,
        ),
    )


def make_ks2d(
    n_samples: int,
    resolution: Resolution,
    seed_seqs: Sequence[np.random.SeedSequence],
    *,
    length: float = 16 * math.pi,
    burn_in: float = 30.0,
    n_frames: int = 25,
    dt_save: float = 1.0,
    dt: float = 0.05,
    u0_std: float = 1.0,
    alpha: float = 2.0,
    tau: float = 10.0,
    dtype: str = "float64",
    device: str = "cpu",
) -> xr.Dataset:
    """2D Kuramoto–Sivashinsky on the periodic square [0, length)²: ``u`` (sample, time, x, y)
    at burn_in + dt_save·0, …, burn_in + dt_save·(n_frames − 1), from a GRF(α, τ) scaled to std
    ``u0_std``. With the defaults the chaotic state is reached by t ≈ 20 (std of u ≈ 3.5–4),
    64² resolves it (the modes beyond the 2/3 rule hold < 1e-6 of the energy) and a frame
    differs from the previous one by ~30 %. The mean of u stays that of u0, 0 (the solver
    drops the drift of the mean that ½|∇u|² drives)."""
    _check_counts(n_samples, seed_seqs, n_frames)
    dt_save = check_number(dt_save, "dt_save", 0.0, open_low=True)
    burn_in = check_number(burn_in, "burn_in", 0.0)
    length = check_number(length, "length", 0.0, open_low=True)
    u0_std = check_number(u0_std, "u0_std", 0.0)
    u0 = np.concatenate(
        [
            _scaled(
                gaussian_random_field(np.random.default_rng(s), 1, resolution, alpha, tau), u0_std
            )
            for s in seed_seqs
        ]
    )  # (B, X, Y)
    times = burn_in + dt_save * np.arange(n_frames)
    u = kuramoto_sivashinsky_2d(
        torch.as_tensor(u0, dtype=_dtype(dtype), device=device), times, length=length, dt=dt
    ).astype(np.float32)  # (B, T, X, Y)
    return xr.Dataset(
        {"u": (FIELD_DIMS, u)},
        coords=_coords(times, resolution, 2, (0.0, length)),
        attrs=dict(
            pde="kuramoto_sivashinsky_2d",
            equation="u_t + lap u + lap^2 u + |grad u|^2 / 2 = 0",
            source_format=SOURCE_FORMAT,
            length=length,
            burn_in=burn_in,
            dt_save=dt_save,
            dt=dt,
            u0_std=u0_std,
            alpha=alpha,
            tau=tau,
            mean="kept at that of u0 (the drift driven by |grad u|^2 / 2 is dropped)",
            scheme="pseudo-spectral, 2/3 rule, ETDRK4",
            boundary="periodic",
        ),
    )


def _scaled(fields: np.ndarray, rms: float) -> np.ndarray:
    """``fields`` (…) scaled to root-mean-square ``rms`` over all of it (zero stays zero)."""
    current = float(np.sqrt(np.mean(fields**2)))
    return fields * (rms / current) if current > 0 else fields


def _periodic_bump(x: np.ndarray, y: np.ndarray, x0: float, y0: float, width: float) -> np.ndarray:
    """exp(−|r − r0|²/(2 width²)) summed over the nearest periodic images, (X, Y)."""
    out = 0.0
    for sx in (-1, 0, 1):
        for sy in (-1, 0, 1):
            out = out + np.exp(-((x - x0 - sx) ** 2 + (y - y0 - sy) ** 2) / (2 * width**2))
    return out
