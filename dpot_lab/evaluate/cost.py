"""The built-in solvers as a baseline of the model: the same solver from the same state
restricted to coarser grids, its frames brought back to the reference grid, and the wall time of
both (``clock``: ``time.perf_counter`` wall seconds by default, ``time.process_time`` for the
process's CPU-seconds). ``studies.breakeven`` turns them into an error-against-cost curve.

    pred, seconds = coarse_solve(reference, "ns2d", 16, t_in=10, steps=20)
    pred, seconds_per_trajectory = timed_rollout(model, reference, t_in=10)

The time step follows each grid's CFL/stability limit, so coarser grids also take longer steps.
Start of the coarse solve, per family: "ns2d" and "diffusion_reaction" store their whole state
(vorticity; u and v), so the solver starts from frame t_in−1, the last frame the model sees;
"shallow_water" stores the depth h but not the momentum, which is known (zero: the dam is at
rest) only at frame 0, so its solver starts from frame 0 and its time includes the input frames.
Restriction and prolongation follow each grid: Fourier truncation and zero-padding on the
periodic nodes of the spectral NS solver; block means (cell averages) down and bilinear
interpolation of cell centres (``data.transforms.resize``) up for the finite-volume solvers.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from dpot_lab.data.generation import GENERATORS
from dpot_lab.data.generators import make_diffusion_reaction, make_ns2d
from dpot_lab.data.generators_fv import SWE_DEFAULTS
from dpot_lab.data.transforms import resize
from dpot_lab.evaluate.rollout import field_layout, prediction_like, rollout
from dpot_lab.solvers import diffusion_reaction_2d, navier_stokes_2d, shallow_water_2d

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
Clock = Callable[[], float]  # seconds: time.perf_counter (wall) or time.process_time (CPU)


def fourier_resample(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(..., X, Y) periodic samples on the nodes i/X, j/Y -> (..., *size) on the nodes of the
    new grid: the trigonometric interpolant of the modes |m| < min(n, n')/2 on each axis (Nyquist
    modes dropped). Identity when the grid already has ``size``."""
    old = a.shape[-2:]
    if tuple(old) == tuple(size):
        return a
    spec = np.fft.fft2(a)  # (..., X, Y)
    out = np.zeros((*a.shape[:-2], *size), dtype=spec.dtype)
    index = []
    for n_old, n_new in zip(old, size, strict=True):
        m = np.arange(-((min(n_old, n_new) - 1) // 2), (min(n_old, n_new) + 1) // 2)
        index.append((m % n_old, m % n_new))
    (ox, nx), (oy, ny) = index
    out[..., nx[:, None], ny[None, :]] = spec[..., ox[:, None], oy[None, :]]
    return np.fft.ifft2(out).real * (size[0] * size[1] / (old[0] * old[1]))


def block_mean(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(..., X, Y) cell averages -> (..., *size) averages over blocks of (X/size[0], Y/size[1])
    cells; ValueError unless the sizes divide the grid."""
    (n_x, n_y), (m_x, m_y) = a.shape[-2:], size
    if n_x % m_x or n_y % m_y:
        raise ValueError(f"block_mean: grid {m_x}x{m_y} does not divide the grid {n_x}x{n_y}")
    blocks = a.reshape(*a.shape[:-2], m_x, n_x // m_x, m_y, n_y // m_y)
    return blocks.mean(axis=(-3, -1))


def _bilinear(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(B, T, C, n, n) cell-centred frames -> (B, T, C, *size), bilinear (``resize``)."""
    b, t, c = frames.shape[:3]
    x = torch.from_numpy(frames).permute(0, 3, 4, 1, 2).reshape(b, *frames.shape[-2:], t * c, 1)
    y = resize(x, size).reshape(b, *size, t, c)  # (B, *size, T, C)
    return y.permute(0, 3, 4, 1, 2).numpy()


@dataclass(frozen=True)
class Family:
    """How to re-run one generator's solver from a stored state on another grid.

    solve(state (B, C, n, n) tensor, times (T,) from 0, params) -> frames (B, T, C, n, n);
    restrict / prolong map (..., X, Y) to (..., *size); ``from_last_input``: the stored fields
    are the whole state, so the solve starts at frame t_in−1 (else at frame 0)."""

    name: str
    fields: tuple[str, ...]  # the state's channels, in the solver's order
    solve: Callable[[torch.Tensor, np.ndarray, dict[str, Any]], np.ndarray]
    restrict: Callable[[np.ndarray, tuple[int, int]], np.ndarray]
    prolong: Callable[[np.ndarray, tuple[int, int]], np.ndarray]
    defaults: dict[str, Any]
    from_last_input: bool
    grid: str


def _defaults(fn: Callable[..., Any]) -> dict[str, Any]:
    """Keyword defaults of a generator function."""
    params = inspect.signature(fn).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def _solve_ns2d(state: torch.Tensor, times: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    forcing = None if p["forcing"] in (None, "none") else p["forcing"]
    w = navier_stokes_2d(state[:, 0], p["nu"], times, forcing, cfl=p["cfl"])  # (B, T, n, n)
    return w[:, :, None]


def _solve_dr(state: torch.Tensor, times: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    return diffusion_reaction_2d(state[:, 0], state[:, 1], times, du=p["du"], dv=p["dv"], k=p["k"])


def _solve_swe(state: torch.Tensor, times: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    return shallow_water_2d(state[:, 0], times, g=p["g"], cfl=p["cfl"])[:, :, None]


FAMILIES: dict[str, Family] = {
    "ns2d": Family(
        "ns2d", ("vorticity",), _solve_ns2d, fourier_resample, fourier_resample,
        _defaults(make_ns2d), True,
        "periodic nodes: Fourier truncation down, zero-padding up",
    ),
    "diffusion_reaction": Family(
        "diffusion_reaction", ("u", "v"), _solve_dr, block_mean, _bilinear,
        _defaults(make_diffusion_reaction), True,
        "cell centres: block means down, bilinear up",
    ),
    "shallow_water": Family(
        "shallow_water", ("h",), _solve_swe, block_mean, _bilinear,
        {**SWE_DEFAULTS, "dtype": "float64"}, False, "cell centres: block means down, bilinear up",
    ),
}  # fmt: skip


def family_of(name: str) -> Family:
    """The ``Family`` of a generator name (aliases such as "dr", "swe" included)."""
    canonical = GENERATORS[name].name if name in GENERATORS else name
    if canonical not in FAMILIES:
        raise ValueError(
            f"cost: family {name!r} has no coarse-solver baseline; supported: {sorted(FAMILIES)}"
        )
    return FAMILIES[canonical]


def coarse_solve(
    reference: xr.Dataset,
    family: str,
    resolution: int,
    t_in: int,
    steps: int,
    params: dict[str, Any] | None = None,
    batch_size: int | None = None,
    device: str = "cpu",
    clock: Clock = time.perf_counter,
) -> tuple[xr.Dataset, float]:
    """The family's solver on a ``resolution``² grid from the reference's start frame (see the
    module docstring), its frames t_in … t_in+steps−1 brought back to the reference grid.

    reference: trajectories (sample, time, x, y) as the generator wrote them; params: the
    generator's parameters (its defaults where missing). Returns the frames in the layout of
    ``dl.rollout`` and the solver's wall time in seconds for all samples (``batch_size`` per
    call, None: all at once), restriction and prolongation excluded."""
    fam = family_of(family)
    p = {**fam.defaults, **(params or {})}
    fields, spatial = list(fam.fields), field_layout(reference)[1]
    missing = [f for f in fields if f not in reference.data_vars]
    if missing:
        raise ValueError(f"coarse_solve: {fam.name} reference lacks the field(s) {missing}")
    shape = tuple(reference.sizes[d] for d in spatial)  # (X, Y)
    start = t_in - 1 if fam.from_last_input else 0
    t = reference["time"].values
    if t_in < 1 or steps < 1 or t_in + steps > len(t):
        raise ValueError(
            f"coarse_solve: t_in={t_in}, steps={steps} do not fit the reference's {len(t)} frames"
        )
    times = t[start : t_in + steps] - t[start]  # (T,) from 0
    state = np.stack(
        [reference[f].isel(time=start).transpose("sample", *spatial).values for f in fields], 1
    ).astype(np.float64)  # (N, C, X, Y)
    coarse = torch.as_tensor(
        fam.restrict(state, (resolution, resolution)), dtype=_DTYPES[p["dtype"]], device=device
    )  # (N, C, n, n)
    n = coarse.shape[0]
    batch_size = batch_size or n
    tic = clock()
    frames = np.concatenate(
        [fam.solve(coarse[i : i + batch_size], times, p) for i in range(0, n, batch_size)]
    )  # (N, T, C, n, n)
    seconds = clock() - tic
    fine = fam.prolong(frames[:, t_in - start :], shape)  # (N, steps, C, X, Y)
    pred = prediction_like(
        reference, fields, np.arange(n), t[t_in : t_in + steps], np.moveaxis(fine, 2, -1)
    )
    return pred, seconds


def timed_rollout(
    model: nn.Module,
    dataset: xr.Dataset,
    repeats: int = 1,
    clock: Clock = time.perf_counter,
    **kw: Any,
) -> tuple[xr.Dataset, float]:
    """(``rollout(model, dataset, **kw)``, its time by ``clock`` in seconds per trajectory): the
    fastest of ``repeats`` runs, after an untimed one-step rollout of the first trajectory
    (warm-up)."""
    first = dataset.isel(sample=[0]) if kw.get("samples") is None else dataset
    rollout(model, first, **{**kw, "steps": 1})
    seconds = math.inf
    for _ in range(repeats):
        tic = clock()
        pred = rollout(model, dataset, **kw)
        seconds = min(seconds, clock() - tic)
    return pred, seconds / pred.sizes["sample"]


__all__ = [
    "FAMILIES",
    "Family",
    "block_mean",
    "coarse_solve",
    "family_of",
    "fourier_resample",
    "timed_rollout",
]
