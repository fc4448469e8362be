"""PDEBench-style trajectory sets from the finite-volume solvers, in the dpot-lab data model.

``make_shallow_water``: radial dam breaks (PDEBench ``2D_rdb``), field ``h``.
``make_cns2d``: 2D compressible Navier–Stokes from "Rand" (or "Turb") initial states (PDEBench
``2D_CFD``), fields ``vx``, ``vy``, ``density``, ``pressure``.
Sample i draws its initial state from ``np.random.default_rng(seed_seqs[i])`` and nothing else,
so a sample does not depend on the other samples, on ``batch_size`` or on ``n_samples`` (each
trajectory of a batch takes its own time steps). ``batch_size`` defaults to 1 on the CPU, where
batching gains nothing, and to all samples of the call on another device. Fields are computed in
float64 and stored as float32.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from dpot_lab.sizes import size_tuple
from dpot_lab.solvers.compressible_ns import cns_random_initial, compressible_ns_2d
from dpot_lab.solvers.grid import cell_centres
from dpot_lab.solvers.shallow_water import (
    DEFAULT_DOMAIN,
    dam_break_initial,
    random_dam_radius,
    shallow_water_2d,
)

SWE_DEFAULTS: dict[str, Any] = {
    "n_frames": 101,  # frames on [0, t_end], the first one the initial state
    "t_end": 1.0,
    "g": 1.0,  # PDEBench radial_dam_break.yaml: gravity 1.0
    "h_in": 2.0,
    "h_out": 1.0,
    "cfl": 0.4,
    "device": "cpu",  # torch device the solver runs on
    "batch_size": None,  # trajectories per solver call, None: 1 on the CPU, all on a GPU
    "progress": False,  # a progress bar over simulated time for each solver call
}
CNS_DEFAULTS: dict[str, Any] = {
    "n_frames": 21,
    "t_end": 1.0,
    "eta": 0.01,  # shear viscosity
    "zeta": 0.01,  # bulk viscosity
    "mach": 0.1,
    "gamma": 5.0 / 3.0,
    "kind": "rand",  # "rand" or "turb" initial states
    "cfl": 0.5,
    "device": "cpu",
    "batch_size": None,
    "progress": False,
}


def make_shallow_water(
    n_samples: int, resolution: int | tuple[int, int], seed_seqs: Sequence[np.random.SeedSequence],
    **params: Any,
) -> xr.Dataset:  # fmt: skip
    """Radial dam breaks on [−2.5, 2.5]²: field ``h`` (sample, time, x, y) and ``dam_radius``
    (sample,), radius uniform in [0.3, 0.7]. Parameters (defaults in ``SWE_DEFAULTS``): n_frames,
    t_end, g, h_in, h_out, cfl, device, batch_size, progress."""
    nx, ny = _grid("make_shallow_water", n_samples, resolution, seed_seqs)
    p = _params("make_shallow_water", params, SWE_DEFAULTS, n_samples)
    times = np.linspace(0.0, p["t_end"], p["n_frames"])
    radii = np.array([random_dam_radius(np.random.default_rng(s)) for s in seed_seqs])

    def solve(rows: slice) -> np.ndarray:
        h0 = np.stack([dam_break_initial((nx, ny), r, p["h_in"], p["h_out"]) for r in radii[rows]])
        h0 = torch.from_numpy(h0).to(p["device"])  # (b, X, Y)
        return shallow_water_2d(h0, times, g=p["g"], cfl=p["cfl"], progress=p["progress"])

    h = _batched(solve, n_samples, p["batch_size"])  # (N, T, X, Y)
    coords = {
        "time": times,
        "x": cell_centres(nx, *DEFAULT_DOMAIN[0]),
        "y": cell_centres(ny, *DEFAULT_DOMAIN[1]),
    }
    dims = ("sample", "time", "x", "y")
    attrs = {
        "pde": "shallow_water_2d",
        "source_format": "dpot-lab",
        "g": float(p["g"]),
        "h_in": float(p["h_in"]),
        "h_out": float(p["h_out"]),
        "scheme": "finite volume: MUSCL-minmod, hydrostatic reconstruction, HLL, SSP-RK2",
        "boundary": "reflecting walls",
    }
    data = {"h": (dims, h.astype(np.float32)), "dam_radius": (("sample",), radii)}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def make_cns2d(
    n_samples: int, resolution: int | tuple[int, int], seed_seqs: Sequence[np.random.SeedSequence],
    **params: Any,
) -> xr.Dataset:  # fmt: skip
    """Compressible NS on the periodic unit square: fields ``vx``, ``vy``, ``density``,
    ``pressure`` (sample, time, x, y). Parameters (defaults in ``CNS_DEFAULTS``): n_frames, t_end,
    eta, zeta, mach, gamma, kind, cfl, device, batch_size, progress."""
    nx, ny = _grid("make_cns2d", n_samples, resolution, seed_seqs)
    p = _params("make_cns2d", params, CNS_DEFAULTS, n_samples)
    times = np.linspace(0.0, p["t_end"], p["n_frames"])
    initial = [
        cns_random_initial(np.random.default_rng(s), 1, (nx, ny), p["mach"], p["kind"], p["gamma"])
        for s in seed_seqs
    ]  # per sample: (ρ, vx, vy, p), each (1, X, Y)

    def solve(rows: slice) -> np.ndarray:
        fields = [np.concatenate(f) for f in zip(*initial[rows], strict=True)]  # 4 x (b, X, Y)
        fields = [torch.from_numpy(f).to(p["device"]) for f in fields]
        return compressible_ns_2d(
            *fields, times, p["eta"], p["zeta"], p["gamma"], cfl=p["cfl"], progress=p["progress"]
        )

    out = _batched(solve, n_samples, p["batch_size"])  # (N, T, 4, X, Y): vx, vy, ρ, p
    dims = ("sample", "time", "x", "y")
    names = ("vx", "vy", "density", "pressure")
    data = {name: (dims, out[:, :, c].astype(np.float32)) for c, name in enumerate(names)}
    coords = {"time": times, "x": cell_centres(nx), "y": cell_centres(ny)}
    attrs = {
        "pde": "compressible_ns_2d",
        "source_format": "dpot-lab",
        "eta": float(p["eta"]),
        "zeta": float(p["zeta"]),
        "mach": float(p["mach"]),
        "gamma": float(p["gamma"]),
        "initial_condition": str(p["kind"]),
        "scheme": "finite volume: MUSCL-MC, HLLC, central viscous fluxes, SSP-RK2",
        "boundary": "periodic",
    }
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _params(
    name: str, given: dict[str, Any], defaults: dict[str, Any], n_samples: int
) -> dict[str, Any]:
    """``defaults`` updated by ``given``; ValueError naming unknown and accepted parameters."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(
            f"{name}: unknown parameter(s) {unknown}; accepted: {', '.join(sorted(defaults))}"
        )
    p = {**defaults, **given}
    if p["batch_size"] is None:
        p["batch_size"] = 1 if torch.device(p["device"]).type == "cpu" else n_samples
    if int(p["n_frames"]) < 1 or not p["t_end"] > 0 or int(p["batch_size"]) < 1:
        raise ValueError(
            f"{name}: expected n_frames >= 1, t_end > 0 and batch_size >= 1, got "
            f"n_frames={p['n_frames']}, t_end={p['t_end']}, batch_size={p['batch_size']}"
        )
    p["n_frames"], p["batch_size"] = int(p["n_frames"]), int(p["batch_size"])
    return p


def _grid(
    name: str,
    n_samples: int,
    resolution: int | tuple[int, int],
    seed_seqs: Sequence[np.random.SeedSequence],
) -> tuple[int, int]:
    """(X, Y) from ``resolution``, after checking the seeds against ``n_samples``."""
    if n_samples < 1 or len(seed_seqs) != n_samples:
        raise ValueError(
            f"{name}: seed_seqs has {len(seed_seqs)} entries, expected one per sample "
            f"(n_samples={n_samples})"
        )
    nx, ny = size_tuple(resolution, 2, f"{name}: resolution")
    if nx < 4 or ny < 4:
        raise ValueError(f"{name}: resolution must be at least 4 per axis, got {resolution}")
    return int(nx), int(ny)


def _batched(solve: Callable[[slice], np.ndarray], n: int, batch_size: int) -> np.ndarray:
    """Concatenate ``solve(rows)`` over consecutive row slices of at most ``batch_size``."""
    return np.concatenate([solve(slice(i, i + batch_size)) for i in range(0, n, batch_size)])


__all__ = ["CNS_DEFAULTS", "SWE_DEFAULTS", "make_cns2d", "make_shallow_water"]
