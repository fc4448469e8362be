"""Incompressible Navier–Stokes in 2D, vorticity form, on the periodic unit square [0, 1)².

    ∂w/∂t + u·∇w = ν Δw − μ w + f,    u = (∂ψ/∂y, −∂ψ/∂x),    −Δψ = w

Pseudo-spectral in space with the 2/3 rule: the advection term is computed from, and kept on,
the modes |m| < n/3 alone (a Galerkin truncation: without viscosity and forcing it conserves
energy and enstrophy; finer modes of w0 only decay by viscosity). Integrating-factor RK4 in
time (viscosity and drag μ exact, advection and forcing RK4), step size from the CFL condition
on the velocity of each sample. Grid values sit on the nodes x_i = i/X, y_j = j/Y, as in FNO's
``ns_spectral.py`` (``torch.linspace(0, 1, n + 1)[:-1]``). This is the set-up of the FNO
Navier–Stokes data (Li et al. 2021) with forcing "fno"; Kolmogorov flow takes
:func:`kolmogorov_forcing` and a drag.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from dpot_lab.solvers.spectral import SpectralOps
from dpot_lab.solvers.stepping import (
    as_batched,
    as_batched_like,
    check_number,
    check_save_times,
    integrate,
    per_sample,
)

ArrayLike = np.ndarray | torch.Tensor


def nodes(n: int, lower: float = 0.0, upper: float = 1.0) -> np.ndarray:
    """(n,) nodes lower + i (upper − lower)/n, i = 0 … n − 1, of a periodic grid."""
    return lower + (upper - lower) * np.arange(n) / n


def fno_forcing(x: ArrayLike, y: ArrayLike) -> ArrayLike:
    """FNO forcing 0.1 (sin 2π(x+y) + cos 2π(x+y)) at points x, y (broadcast together)."""
    lib = torch if isinstance(x, torch.Tensor) else np
    phase = 2 * math.pi * (x + y)
    return 0.1 * (lib.sin(phase) + lib.cos(phase))


def kolmogorov_forcing(y: ArrayLike, k_f: int = 4, amplitude: float = 1.0) -> ArrayLike:
    """Vorticity forcing −A k_f cos(k_f y) at y (any shape), in units where the domain is
    [0, 2π)²: the curl of the body force A sin(k_f y) x̂ (Kolmogorov flow)."""
    lib = torch if isinstance(y, torch.Tensor) else np
    return -amplitude * k_f * lib.cos(k_f * y)


def navier_stokes_2d(
    w0: ArrayLike,
    nu: float | ArrayLike,
    t_save: Sequence[float],
    forcing: str | ArrayLike | None = "fno",
    dt: float | None = None,
    cfl: float = 0.5,
    max_dt: float = 0.05,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
    drag: float = 0.0,
) -> np.ndarray:
    """Vorticity frames at the save times.

    w0: initial vorticity (X, Y) or (B, X, Y), numpy or torch. numpy runs in float64 on the CPU;
    a torch tensor runs in its own dtype on its own device (``dtype``/``device`` override both).
    nu: kinematic viscosity, one number or one per sample (B,). drag: linear drag μ >= 0.
    t_save: non-decreasing times >= 0 (0 gives w0 back).
    forcing: "fno" (on the nodes), None, or a time-independent field (X, Y) or (B, X, Y).
    dt: fixed step (shrunk to hit save times); None takes ``cfl / (max|u|/dx + max|v|/dy)``
    each step, at most ``max_dt``. Returns numpy (T, X, Y) or (B, T, X, Y).
    """
    cfl = check_number(cfl, "cfl", 0.0, open_low=True)
    drag = check_number(drag, "drag", 0.0)
    if not max_dt > 0:
        raise ValueError(f"max_dt: expected a step > 0 (inf: no cap), got {max_dt!r}")
    times = check_save_times(t_save)
    w, batched = as_batched(w0, "w0", 2, dtype, device)  # (B, X, Y)
    nu = per_sample(nu, "nu", w)  # (B, 1, 1)
    ops = SpectralOps(*w.shape[-2:], w.dtype, w.device)
    f_hat = forcing_hat(forcing, w)  # (B or 1, X, Y//2+1) or None

    def rate(w_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u, v, w_x, w_y = ops.fields(w_hat, w_hat)  # (B, X, Y) each
        advection = ops.dealiased(u * w_x + v * w_y)
        out = -advection if f_hat is None else f_hat - advection
        return out, cfl / ops.speed(u, v)

    w_hat = torch.fft.rfft2(w)  # (B, X, Y//2+1)
    frames = integrate(
        w_hat, rate, times, linear=-nu * ops.k2 - drag, dt=dt, max_dt=max_dt, progress=progress
    )  # (B, T, X, Y//2+1)
    out = torch.fft.irfft2(frames, s=ops.shape).cpu().numpy()  # (B, T, X, Y)
    return out if batched else out[0]


def forcing_hat(forcing: str | ArrayLike | None, w: torch.Tensor) -> torch.Tensor | None:
    """rfft2 of the forcing, (1 or B, X, Y//2+1), or None; w (B, X, Y) the vorticity."""
    if forcing is None:
        return None
    if not isinstance(forcing, str):
        return torch.fft.rfft2(as_batched_like(forcing, "forcing", w))
    if forcing != "fno":
        raise ValueError(f"forcing: expected 'fno', None or an array, got {forcing!r}")
    n_x, n_y = w.shape[-2:]
    x = torch.as_tensor(nodes(n_x), dtype=w.dtype, device=w.device)[:, None]
    y = torch.as_tensor(nodes(n_y), dtype=w.dtype, device=w.device)[None, :]
    return torch.fft.rfft2(fno_forcing(x, y)[None])
