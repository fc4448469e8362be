"""Trajectory sets from the built-in spectral and diffusion–reaction solvers, as Datasets.

Every generator has the signature ``make_x(n_samples, resolution, seed_seqs, **params)``: sample
i starts from an initial state drawn with ``numpy.random.default_rng(seed_seqs[i])``, so a
sample does not depend on which batch it was made in; parameters drawn per trajectory (a
Reynolds number, a diffusivity) come from the same generator after the initial state and are
stored as (sample,) variables beside the fields. The solvers run in ``dtype`` on
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
    kolmogorov_forcing,
    navier_stokes_2d,
    navier_stokes_3d,
    passive_scalar_2d,
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


def make_kolmogorov(
    n_samples: int,
    resolution: Resolution,
    seed_seqs: Sequence[np.random.SeedSequence],
    *,
    re_range: tuple[float, float] = (100.0, 1000.0),
    k_f: int = 4,
    drag: float = 0.1,
    burn_in: float = 5.0,
    n_frames: int = 24,
    dt_save: float = 0.25,
    alpha: float = 2.5,
    tau: float = 7.0,
    cfl: float = 0.5,
    dtype: str = "float64",
    device: str = "cpu",
) -> xr.Dataset:
    """Kolmogorov flow: 2D incompressible NS vorticity on the periodic square [0, 2π)², forced by
    the body force sin(k_f y) x̂ (vorticity forcing −k_f cos(k_f y)) with linear drag μ, viscosity
    ν = 1/Re (the units of Kochkov et al. 2021: Re 1000, k_f 4, μ 0.1).

    Sample i draws a GRF(α, τ) initial vorticity (:func:`gaussian_random_field` on the grid),
    then Re log-uniform in ``re_range``, and spins up for ``burn_in``. ``vorticity`` (sample,
    time, x, y) at burn_in + dt_save·(0, …, n_frames − 1) on the nodes 2π i/n; ``re`` (sample,).
    At 64² a Re above ~500 is under-resolved (2 % of the enstrophy within the 5 modes below the
    2/3-rule cut-off at Re 500, 5 % at Re 1000; 0.1 % at Re 100): take 128² there.
    """
    _check_counts(n_samples, seed_seqs, n_frames)
    re_lo, re_hi = _check_range(re_range, "re_range")
    if not (isinstance(k_f, int | np.integer) and k_f >= 1):
        raise ValueError(f"k_f: expected an integer wavenumber >= 1, got {k_f!r}")
    burn_in = check_number(burn_in, "burn_in", 0.0)
    dt_save = check_number(dt_save, "dt_save", 0.0, open_low=True)
    w0, re = [], []
    for s in seed_seqs:
        rng = np.random.default_rng(s)
        w0.append(gaussian_random_field(rng, 1, resolution, alpha, tau))
        re.append(_log_uniform(rng, re_lo, re_hi))
    n_x, n_y = grid_shape(resolution, 2)
    y = 2 * np.pi * nodes(n_y)[None, :]  # (1, Y)
    forcing = np.broadcast_to(kolmogorov_forcing(y, int(k_f)), (n_x, n_y))  # (X, Y)
    re = np.array(re)  # (B,)
    # on the solver's unit square (x' = x/2π, same time): ν' = ν/4π², same vorticity and drag
    times = burn_in + dt_save * np.arange(n_frames)
    w = navier_stokes_2d(
        torch.as_tensor(np.concatenate(w0), dtype=_dtype(dtype), device=device),
        1 / (re * 4 * np.pi**2),
        times,
        forcing,
        cfl=cfl,
        drag=drag,
    )  # (B, T, X, Y)
    params = dict(
        k_f=int(k_f), drag=drag, re_min=re_lo, re_max=re_hi, burn_in=burn_in, dt_save=dt_save
    )
    return xr.Dataset(
        {
            "vorticity": (("sample", "time", "x", "y"), w.astype(np.float32)),
            "re": (("sample",), re),
        },
        coords=_coords(times, resolution, 2, (0.0, 2 * np.pi), nodes),
        attrs=dict(
            pde="kolmogorov_2d",
            source_format=SOURCE_FORMAT,
            forcing="sin(k_f y) x̂",
            alpha=alpha,
            tau=tau,
            **params,
        ),
    )


def make_passive_scalar(
    n_samples: int,
    resolution: Resolution,
    seed_seqs: Sequence[np.random.SeedSequence],
    *,
    nu_range: tuple[float, float] = (1e-4, 1e-3),
    kappa_range: tuple[float, float] = (1e-4, 1e-3),
    forcing: str | None = "fno",
    n_frames: int = 20,
    dt_save: float = 0.5,
    alpha: float = 2.5,
    tau: float = 7.0,
    cfl: float = 0.5,
    dtype: str = "float64",
    device: str = "cpu",
) -> xr.Dataset:
    """A passive scalar c in 2D NS flow on the periodic unit square: ∂c/∂t + u·∇c = κΔc with
    the vorticity of the FNO set-up (forcing "fno" or None), solved together.

    Sample i draws the initial vorticity and then the initial scalar, each a GRF(α, τ)
    (:func:`gaussian_random_field`), then ν and κ log-uniform in ``nu_range``, ``kappa_range``.
    ``scalar`` and ``vorticity`` (sample, time, x, y) at dt_save·(0, …, n_frames − 1) (the
    initial state is frame 0) on the nodes i/n; ``nu``, ``kappa`` (sample,).
    """
    _check_counts(n_samples, seed_seqs, n_frames)
    nu_lo, nu_hi = _check_range(nu_range, "nu_range")
    kappa_lo, kappa_hi = _check_range(kappa_range, "kappa_range")
    dt_save = check_number(dt_save, "dt_save", 0.0, open_low=True)
    forcing = None if forcing in (None, "none") else forcing
    w0, c0, nu, kappa = [], [], [], []
    for s in seed_seqs:
        rng = np.random.default_rng(s)
        w0.append(gaussian_random_field(rng, 1, resolution, alpha, tau))
        c0.append(gaussian_random_field(rng, 1, resolution, alpha, tau))
        nu.append(_log_uniform(rng, nu_lo, nu_hi))
        kappa.append(_log_uniform(rng, kappa_lo, kappa_hi))
    nu, kappa = np.array(nu), np.array(kappa)  # (B,) each
    times = dt_save * np.arange(n_frames)
    as_tensor = partial(torch.as_tensor, dtype=_dtype(dtype), device=device)
    cw = passive_scalar_2d(
        as_tensor(np.concatenate(c0)),
        as_tensor(np.concatenate(w0)),
        kappa,
        nu,
        times,
        forcing,
        cfl=cfl,
    ).astype(np.float32)  # (B, T, 2, X, Y)
    dims = ("sample", "time", "x", "y")
    params = dict(
        forcing=forcing or "none",
        nu_min=nu_lo,
        nu_max=nu_hi,
        kappa_min=kappa_lo,
        kappa_max=kappa_hi,
        dt_save=dt_save,
        alpha=alpha,
        tau=tau,
    )
    return xr.Dataset(
        {
            "scalar": (dims, cw[:, :, 0]),
            "vorticity": (dims, cw[:, :, 1]),
            "nu": (("sample",), nu),
            "kappa": (("sample",), kappa),
        },
        coords=_coords(times, resolution, 2, (0.0, 1.0), nodes),
        attrs=dict(pde="passive_scalar_2d", source_format=SOURCE_FORMAT, **params),
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


def _check_range(value: tuple[float, float], name: str) -> tuple[float, float]:
    """(low, high) with 0 < low <= high, both finite; ValueError naming ``name`` otherwise."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected (low, high), got {value!r}") from None
    low = check_number(low, f"{name}: low", 0.0, open_low=True)
    high = check_number(high, f"{name}: high", low)
    return low, high


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """One draw, log-uniform in [low, high] (low itself when they are equal)."""
    return low if low == high else float(np.exp(rng.uniform(np.log(low), np.log(high))))


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
