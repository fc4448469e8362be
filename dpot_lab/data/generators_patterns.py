"""Trajectory sets of pattern-forming equations, as Datasets: features of a few grid cells,
near the size of a model's patch. Swift–Hohenberg (stripes and hexagonal spots of wavelength
2π, 8 cells at 64² on the default square of side 16π) and Gray–Scott (spots, stripes and mazes
of Pearson's classes, 3–5 cells across, wavelength 6–10 cells, at 64² on the square of side 1.25).

Same contract as ``dpot_lab.data.generators``: ``make_x(n_samples, resolution, seed_seqs,
**params)``, sample i drawn from ``numpy.random.default_rng(seed_seqs[i])`` alone (its initial
state and its own PDE parameters), so a sample does not depend on the batch it was made in. A
parameter drawn per trajectory is a data variable with a sample axis; its range is in the attrs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import xarray as xr

from dpot_lab.data.generators import SOURCE_FORMAT, _check_counts, _coords, _dtype
from dpot_lab.solvers.gray_scott import gray_scott_2d
from dpot_lab.solvers.grid import Resolution, cell_centres, grid_shape
from dpot_lab.solvers.stepping import check_number
from dpot_lab.solvers.swift_hohenberg import swift_hohenberg_2d

FIELD_DIMS = ("sample", "time", "x", "y")
GS_DRAWS = 10  # draws per Gray–Scott sample before a pattern that keeps dying is an error


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


def make_gray_scott(
    n_samples: int,
    resolution: Resolution,
    seed_seqs: Sequence[np.random.SeedSequence],
    *,
    f_min: float = 0.035,
    f_max: float = 0.055,
    k_min: float = 0.0605,
    k_max: float = 0.0625,
    du: float = 2e-5,
    dv: float = 1e-5,
    length: float = 1.25,
    n_seeds_min: int = 4,
    n_seeds_max: int = 10,
    seed_size: float = 0.06,
    noise_std: float = 0.02,
    burn_in: float = 300.0,
    n_frames: int = 20,
    dt_save: float = 100.0,
    dt: float = 2.0,
    dtype: str = "float64",
    device: str = "cpu",
) -> xr.Dataset:
    """2D Gray–Scott on [0, length)², periodic: ``u``, ``v`` (sample, time, x, y) at burn_in +
    dt_save·i from Pearson's seeded state (``_pearson_state``); ``f``, ``k`` (sample,) uniform in
    [f_min, f_max], [k_min, k_max]: spots that split, stripes or mazes that keep moving. A sample
    whose pattern dies (v flat at a saved frame) is drawn again from its own generator."""
    _check_counts(n_samples, seed_seqs, n_frames)
    f_max = check_number(f_max, "f_max", check_number(f_min, "f_min", 0.0))
    k_max = check_number(k_max, "k_max", check_number(k_min, "k_min", 0.0))
    length = check_number(length, "length", 0.0, open_low=True)
    burn_in = check_number(burn_in, "burn_in", 0.0)
    dt_save = check_number(dt_save, "dt_save", 0.0, open_low=True)
    shape = grid_shape(resolution, 2)
    seeds = dict(n_min=n_seeds_min, n_max=n_seeds_max, size=seed_size, noise_std=noise_std)
    times = burn_in + dt_save * np.arange(n_frames)

    def draw(rng: np.random.Generator) -> tuple:  # f, k, (u0, v0)
        f, k = rng.uniform(f_min, f_max), rng.uniform(k_min, k_max)
        return f, k, _pearson_state(rng, shape, length, **seeds)

    drawn, uv = _draw_living(
        [np.random.default_rng(s) for s in seed_seqs],
        draw,
        lambda d: _solve_gray_scott(d, times, _dtype(dtype), device, du, dv, length, dt),
        f"f in [{f_min}, {f_max}], k in [{k_min}, {k_max}]",
    )
    fs, ks = (np.array([d[j] for d in drawn]) for j in (0, 1))
    return xr.Dataset(
        {
            "u": (FIELD_DIMS, uv[:, :, 0]),
            "v": (FIELD_DIMS, uv[:, :, 1]),
            "f": (("sample",), fs),
            "k": (("sample",), ks),
        },
        coords=_coords(times, resolution, 2, (0.0, length)),
        attrs=dict(
            pde="gray_scott_2d",
            equation="u_t = du lap u - u v^2 + f (1 - u), v_t = dv lap v + u v^2 - (f + k) v",
            source_format=SOURCE_FORMAT,
            f_distribution="uniform in [f_min, f_max]",
            k_distribution="uniform in [k_min, k_max]",
            redraw="a sample whose v is flat at a saved frame is drawn again (f, k, state)",
            **dict(f_min=f_min, f_max=f_max, k_min=k_min, k_max=k_max, du=du, dv=dv, dt=dt),
            **dict(length=length, n_seeds_min=n_seeds_min, n_seeds_max=n_seeds_max),
            **dict(seed_size=seed_size, noise_std=noise_std, burn_in=burn_in, dt_save=dt_save),
            scheme="pseudo-spectral, ETDRK4, 2/3 rule",
            boundary="periodic",
        ),
    )


def _solve_gray_scott(drawn: list[tuple], times: np.ndarray, dtype: torch.dtype, device: str,
                      du: float, dv: float, length: float, dt: float) -> np.ndarray:  # fmt: skip
    """Gray–Scott from each sample's (f, k, (u0, v0)) -> (B, T, 2, X, Y) float32."""
    fs, ks, states = zip(*drawn, strict=True)
    u0, v0 = (torch.as_tensor(np.stack(a), dtype=dtype, device=device)
              for a in zip(*states, strict=True))  # fmt: skip
    out = gray_scott_2d(u0, v0, times, f=list(fs), k=list(ks), du=du, dv=dv, length=length, dt=dt)
    return out.astype(np.float32)


def _draw_living(
    rngs: list[np.random.Generator], draw: Callable, solve: Callable, ranges: str
) -> tuple[list[tuple], np.ndarray]:
    """Each sample's parameters ``draw(rng)`` from its own rng and the batch ``solve``d ->
    (B, T, 2, X, Y); a sample whose v is flat at a saved frame (its pattern died) is drawn again
    from its rng, up to ``GS_DRAWS`` times. Returns the parameters per sample and the fields."""
    drawn, todo = [draw(rng) for rng in rngs], np.arange(len(rngs))
    uv = solve(drawn)
    for attempt in range(1, GS_DRAWS + 1):
        v = uv[todo, :, 1]  # (b, T, X, Y)
        todo = todo[(v.max(axis=(2, 3)) - v.min(axis=(2, 3)) < 1e-6).any(axis=1)]
        if not todo.size:
            return drawn, uv
        if attempt < GS_DRAWS:
            for i in todo:
                drawn[i] = draw(rngs[i])
            uv[todo] = solve([drawn[i] for i in todo])
    raise ValueError(
        f"Gray–Scott: the pattern of sample(s) {todo.tolist()} died (v flat) in each of "
        f"{GS_DRAWS} draws of {ranges}; move the ranges into Pearson's pattern-forming region "
        "or raise n_seeds_min"
    )


def _pearson_state(
    rng: np.random.Generator,
    shape: tuple[int, int],
    length: float,
    n_min: int,
    n_max: int,
    size: float,
    noise_std: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Pearson's initial state on the periodic square of side ``length``: (u, v) = (1, 0) but
    for n (uniform in [n_min, n_max]) squares of side ``size`` at uniform positions where
    (u, v) = (1/2, 1/4), plus white noise of std ``noise_std`` on both; (X, Y) each."""
    size = check_number(size, "seed_size", 0.0, length, open_low=True)
    noise_std = check_number(noise_std, "noise_std", 0.0)
    if not (isinstance(n_min, int | np.integer) and 1 <= n_min <= n_max):
        raise ValueError(
            f"n_seeds_min, n_seeds_max: expected integers with 1 <= n_seeds_min <= n_seeds_max, "
            f"got {n_min!r}, {n_max!r}"
        )
    centres = [cell_centres(n, 0.0, length) for n in shape]  # (X,), (Y,)
    seeded = np.zeros(shape, dtype=bool)  # (X, Y)
    for corner in rng.uniform(0.0, length, (rng.integers(n_min, n_max + 1), 2)):
        inside = [(c - c0) % length < size for c, c0 in zip(centres, corner, strict=True)]
        seeded |= inside[0][:, None] & inside[1][None, :]
    u = np.where(seeded, 0.5, 1.0) + noise_std * rng.standard_normal(shape)
    v = np.where(seeded, 0.25, 0.0) + noise_std * rng.standard_normal(shape)
    return u, v
