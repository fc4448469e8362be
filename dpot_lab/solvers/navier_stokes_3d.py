"""Incompressible Navier–Stokes in 3D, velocity form, on the periodic unit cube [0, 1)³.

    ∂u/∂t = P[u × ω] + ν Δu + P f,    ω = ∇ × u,    ∇·u = 0

Rotational form: the pressure and ½|u|² gradients are removed by the projection P onto
divergence-free fields (in Fourier space P = I − k kᵀ/|k|²). Pseudo-spectral with the 2/3 rule:
u × ω is computed from, and kept on, the modes |m| < n/3 alone (without viscosity and forcing
the energy is conserved; finer modes of u0 only decay by viscosity). Integrating-factor RK4 in
time (viscosity exact), step size from the CFL condition of each sample. Grid values sit at cell
centres (i + 1/2)/X, … .
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from dpot_lab.solvers.spectral import wavenumbers
from dpot_lab.solvers.stepping import (
    as_batched,
    as_batched_like,
    check_number,
    check_save_times,
    integrate,
)

ArrayLike = np.ndarray | torch.Tensor
DIMS = (-3, -2, -1)  # the space dims of (B, 3, X, Y, Z)


class _Spectral(NamedTuple):
    """Fourier-space operators of a periodic (X, Y, Z) grid, on rfft coefficients (X, Y, Z//2+1)."""

    k2: torch.Tensor  # |k|² (X, Y, Z//2+1): the Laplacian's symbol, negated
    dk: list[torch.Tensor]  # derivative wavenumbers along x, y, z, each (X|1, Y|1, Z//2+1|1)
    inv_dk2: torch.Tensor  # 1 / |dk|², 0 at the mean mode
    keep: torch.Tensor  # the modes |m| < n/3 (2/3 rule), bool (X, Y, Z//2+1)

    @classmethod
    def of(cls, size: tuple[int, int, int], real: torch.dtype, dev: torch.device) -> _Spectral:
        axes = [wavenumbers(n, real, half=(d == 2)) for d, n in enumerate(size)]
        shape = [(-1, 1, 1), (1, -1, 1), (1, 1, -1)]
        k = [a[0].to(dev).reshape(s) for a, s in zip(axes, shape, strict=True)]
        dk = [a[1].to(dev).reshape(s) for a, s in zip(axes, shape, strict=True)]
        keep = (
            axes[0][2].reshape(-1, 1, 1)
            & axes[1][2].reshape(1, -1, 1)
            & axes[2][2].reshape(1, 1, -1)
        )
        dk2 = dk[0] ** 2 + dk[1] ** 2 + dk[2] ** 2
        inv_dk2 = torch.where(dk2 > 0, 1 / dk2.clamp(min=1e-30), torch.zeros_like(dk2))
        return cls(k[0] ** 2 + k[1] ** 2 + k[2] ** 2, dk, inv_dk2, keep.to(dev))

    def project(self, a_hat: torch.Tensor) -> torch.Tensor:
        """Divergence-free part of (B, 3, X, Y, Z//2+1) Fourier coefficients."""
        dk = self.dk
        along = (dk[0] * a_hat[:, 0] + dk[1] * a_hat[:, 1] + dk[2] * a_hat[:, 2]) * self.inv_dk2
        return a_hat - torch.stack([d * along for d in dk], dim=1)

    def lamb(self, u_hat: torch.Tensor, size: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """(P[u × ω] on the kept modes (B, 3, X, Y, Z//2+1), the velocity u (B, 3, X, Y, Z))
        from û, both from its kept modes alone."""
        dk = self.dk
        u_hat = u_hat * self.keep
        vel = torch.fft.irfftn(u_hat, s=size, dim=DIMS)  # (B, 3, X, Y, Z)
        w_hat = torch.stack(  # ω = i k × û
            [
                1j * (dk[1] * u_hat[:, 2] - dk[2] * u_hat[:, 1]),
                1j * (dk[2] * u_hat[:, 0] - dk[0] * u_hat[:, 2]),
                1j * (dk[0] * u_hat[:, 1] - dk[1] * u_hat[:, 0]),
            ],
            dim=1,
        )
        vort = torch.fft.irfftn(w_hat, s=size, dim=DIMS)
        lamb = torch.linalg.cross(vel, vort, dim=1)  # u × ω, (B, 3, X, Y, Z)
        return self.project(torch.fft.rfftn(lamb, dim=DIMS) * self.keep), vel


def navier_stokes_3d(
    u0: ArrayLike,
    nu: float,
    t_save: Sequence[float],
    forcing: ArrayLike | None = None,
    dt: float | None = None,
    cfl: float = 0.5,
    max_dt: float = 0.05,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Velocity frames at the save times.

    u0: initial velocity (3, X, Y, Z) or (B, 3, X, Y, Z), components (u, v, w) along (x, y, z),
    numpy (float64 on the CPU) or torch (its own dtype and device unless ``dtype``/``device``
    say otherwise); it is projected onto divergence-free fields first. nu: kinematic viscosity.
    t_save: non-decreasing times >= 0. forcing: None or a time-independent body force of the
    shape of u0 (batched or not). dt: fixed step (shrunk to hit save times); None takes
    ``cfl / Σ_d (max|u_d|/dx_d)`` each step, at most ``max_dt``.
    Returns numpy (T, 3, X, Y, Z) or (B, T, 3, X, Y, Z).
    """
    nu, cfl = check_number(nu, "nu", 0.0), check_number(cfl, "cfl", 0.0, open_low=True)
    if not max_dt > 0:
        raise ValueError(f"max_dt: expected a step > 0 (inf: no cap), got {max_dt!r}")
    times = check_save_times(t_save)
    u, batched = as_batched(u0, "u0", 4, dtype, device)  # (B, 3, X, Y, Z)
    if u.shape[1] != 3:
        shape = tuple(u.shape[0 if batched else 1 :])
        raise ValueError(f"u0: expected 3 velocity components first, got shape {shape}")
    size = tuple(u.shape[-3:])
    ops = _Spectral.of(size, u.dtype, u.device)
    inv_dx = torch.tensor(size, dtype=u.dtype, device=u.device)
    f_hat = None
    if forcing is not None:
        f = as_batched_like(forcing, "forcing", u)  # (B, 3, X, Y, Z)
        f_hat = ops.project(torch.fft.rfftn(f, dim=DIMS))

    def rate(u_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, vel = ops.lamb(u_hat, size)
        if f_hat is not None:
            out = out + f_hat
        speed = (vel.abs().amax(dim=DIMS) * inv_dx).sum(dim=1)  # (B,)
        return out, cfl / speed

    u_hat = ops.project(torch.fft.rfftn(u, dim=DIMS))
    frames = integrate(
        u_hat, rate, times, linear=-nu * ops.k2, dt=dt, max_dt=max_dt, progress=progress
    )  # (B, T, 3, X, Y, Z//2+1)
    out = torch.fft.irfftn(frames, s=size, dim=DIMS).cpu().numpy()  # (B, T, 3, X, Y, Z)
    return out if batched else out[0]
