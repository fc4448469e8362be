"""Incompressible Navier–Stokes in 2D, vorticity form, on the periodic unit square [0, 1)².

    ∂w/∂t + u·∇w = ν Δw + f,    u = (∂ψ/∂y, −∂ψ/∂x),    −Δψ = w

Pseudo-spectral in space with the 2/3 rule: the advection term is computed from, and kept on,
the modes |m| < n/3 alone (a Galerkin truncation: without viscosity and forcing it conserves
energy and enstrophy; finer modes of w0 only decay by viscosity). Integrating-factor RK4 in
time (viscosity exact, advection and forcing RK4), step size from the CFL condition on the
velocity of each sample. Grid values sit at cell centres x_i = (i + 1/2)/X, y_j = (j + 1/2)/Y.
This is the set-up of the FNO Navier–Stokes data (Li et al. 2021) with forcing "fno".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from dpot_lab.solvers.grid import cell_centres
from dpot_lab.solvers.spectral import wavenumbers
from dpot_lab.solvers.stepping import (
    as_batched,
    as_batched_like,
    check_number,
    check_save_times,
    integrate,
)

ArrayLike = np.ndarray | torch.Tensor


def fno_forcing(x: ArrayLike, y: ArrayLike) -> ArrayLike:
    """FNO forcing 0.1 (sin 2π(x+y) + cos 2π(x+y)) at points x, y (broadcast together)."""
    lib = torch if isinstance(x, torch.Tensor) else np
    phase = 2 * math.pi * (x + y)
    return 0.1 * (lib.sin(phase) + lib.cos(phase))


def navier_stokes_2d(
    w0: ArrayLike,
    nu: float,
    t_save: Sequence[float],
    forcing: str | ArrayLike | None = "fno",
    dt: float | None = None,
    cfl: float = 0.5,
    max_dt: float = 0.05,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Vorticity frames at the save times.

    w0: initial vorticity (X, Y) or (B, X, Y), numpy or torch. numpy runs in float64 on the CPU;
    a torch tensor runs in its own dtype on its own device (``dtype``/``device`` override both).
    nu: kinematic viscosity. t_save: non-decreasing times >= 0 (0 gives w0 back).
    forcing: "fno", None, or a time-independent field (X, Y) or (B, X, Y).
    dt: fixed step (shrunk to hit save times); None takes ``cfl / (max|u|/dx + max|v|/dy)``
    each step, at most ``max_dt``. Returns numpy (T, X, Y) or (B, T, X, Y).
    """
    nu, cfl = check_number(nu, "nu", 0.0), check_number(cfl, "cfl", 0.0, open_low=True)
    if not max_dt > 0:
        raise ValueError(f"max_dt: expected a step > 0 (inf: no cap), got {max_dt!r}")
    times = check_save_times(t_save)
    w, batched = as_batched(w0, "w0", 2, dtype, device)  # (B, X, Y)
    n_x, n_y = w.shape[-2:]
    real, dev = w.dtype, w.device

    kx, dx_k, keep_x = (a.to(dev)[:, None] for a in wavenumbers(n_x, real))  # (X, 1)
    ky, dy_k, keep_y = (a.to(dev)[None, :] for a in wavenumbers(n_y, real, half=True))
    k2 = kx**2 + ky**2  # (X, Y//2+1)
    inv_k2 = torch.where(k2 > 0, 1 / k2.clamp(min=1e-30), torch.zeros_like(k2))
    keep = keep_x & keep_y

    f_hat = _forcing_hat(forcing, w)  # (B or 1, X, Y//2+1) or None
    inv_dx = torch.tensor([n_x, n_y], dtype=real, device=dev)
    # ŵ -> (û, v̂, ∂x ŵ, ∂y ŵ) of the kept modes, û = i ky ψ̂, v̂ = −i kx ψ̂, ψ̂ = ŵ/|k|²
    to_fields = 1j * torch.stack(
        [dy_k * inv_k2, -dx_k * inv_k2, dx_k.expand_as(k2), dy_k.expand_as(k2)]
    )  # (4, X, Y//2+1)
    to_fields = to_fields * keep

    def rate(w_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fields = torch.fft.irfft2(w_hat[:, None] * to_fields, s=(n_x, n_y))  # (B, 4, X, Y)
        u, v, w_x, w_y = fields.unbind(dim=1)
        advection = torch.fft.rfft2(u * w_x + v * w_y) * keep
        out = -advection if f_hat is None else f_hat - advection
        speed = u.abs().amax(dim=(-2, -1)) * inv_dx[0] + v.abs().amax(dim=(-2, -1)) * inv_dx[1]
        return out, cfl / speed

    w_hat = torch.fft.rfft2(w)  # (B, X, Y//2+1)
    frames = integrate(
        w_hat, rate, times, linear=-nu * k2, dt=dt, max_dt=max_dt, progress=progress
    )  # (B, T, X, Y//2+1)
    out = torch.fft.irfft2(frames, s=(n_x, n_y)).cpu().numpy()  # (B, T, X, Y)
    return out if batched else out[0]


def _forcing_hat(forcing: str | ArrayLike | None, w: torch.Tensor) -> torch.Tensor | None:
    """rfft2 of the forcing, (1 or B, X, Y//2+1), or None; w (B, X, Y) the vorticity."""
    if forcing is None:
        return None
    if not isinstance(forcing, str):
        return torch.fft.rfft2(as_batched_like(forcing, "forcing", w))
    if forcing != "fno":
        raise ValueError(f"forcing: expected 'fno', None or an array, got {forcing!r}")
    n_x, n_y = w.shape[-2:]
    x = torch.as_tensor(cell_centres(n_x), dtype=w.dtype, device=w.device)[:, None]
    y = torch.as_tensor(cell_centres(n_y), dtype=w.dtype, device=w.device)[None, :]
    return torch.fft.rfft2(fno_forcing(x, y)[None])
