"""Viscous Burgers equation in 2D, velocity (u, v), on the periodic unit square [0, 1)².

    ∂u/∂t + (u·∇)u = ν Δu        u = (u, v)

Pseudo-spectral in space with the 2/3 rule: the advection term is computed from, and kept on,
the modes |m| < n/3 alone (a Galerkin truncation; finer modes of u0 only decay by viscosity).
Integrating-factor RK4 in time (viscosity exact, advection RK4, :func:`stepping.integrate`),
step size from the CFL condition on the velocity of each sample. Grid values may sit on any
equally spaced periodic grid (nodes or cell centres); the solver only sees the spacing 1/n.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from dpot_lab.solvers.spectral import wavenumbers
from dpot_lab.solvers.stepping import (
    as_batched,
    check_number,
    check_save_times,
    integrate,
    per_sample,
)

ArrayLike = np.ndarray | torch.Tensor


def burgers_2d(
    velocity0: ArrayLike,
    nu: float | ArrayLike,
    t_save: Sequence[float],
    dt: float | None = None,
    cfl: float = 0.5,
    max_dt: float = 0.05,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Velocity frames at the save times.

    velocity0: (2, X, Y) or (B, 2, X, Y), channel 0 = u (along x), 1 = v (along y); numpy runs
    in float64 on the CPU, a torch tensor in its own dtype on its own device (``dtype``/
    ``device`` override both). nu: viscosity >= 0, one number or one per sample (B,).
    t_save: non-decreasing times >= 0 (0 gives velocity0 back). dt: fixed step (shrunk to hit
    save times); None takes ``cfl / (max|u|/dx + max|v|/dy)`` each step, at most ``max_dt``.
    Returns numpy (T, 2, X, Y) or (B, T, 2, X, Y).
    """
    cfl = check_number(cfl, "cfl", 0.0, open_low=True)
    if not max_dt > 0:
        raise ValueError(f"max_dt: expected a step > 0 (inf: no cap), got {max_dt!r}")
    times = check_save_times(t_save)
    vel, batched = as_batched(velocity0, "velocity0", 3, dtype, device)  # (B, 2, X, Y)
    if vel.shape[1] != 2:
        raise ValueError(
            f"velocity0: expected 2 components (u, v) in dim {int(batched)}, "
            f"got shape {tuple(np.shape(velocity0))}"
        )
    n_x, n_y = vel.shape[-2:]
    nu = per_sample(nu, "nu", vel)  # (B, 1, 1, 1)
    kx, dkx, keep_x = (a.to(vel.device)[:, None] for a in wavenumbers(n_x, vel.dtype))  # (X, 1)
    ky, dky, keep_y = (a.to(vel.device)[None, :] for a in wavenumbers(n_y, vel.dtype, True))
    k2 = kx**2 + ky**2  # (X, Y//2+1)
    keep = keep_x & keep_y  # (X, Y//2+1)
    # û (B, 2, X, Yh) -> ∂x, ∂y of both components on the kept modes: (1, 1, 2, X, Yh)
    to_gradient = (1j * torch.stack([dkx.expand_as(k2), dky.expand_as(k2)]) * keep)[None, None]

    def rate(vel_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kept = vel_hat * keep  # (B, 2, X, Yh)
        spectra = torch.cat([kept[:, :, None], kept[:, :, None] * to_gradient], dim=2)
        fields = torch.fft.irfft2(spectra, s=(n_x, n_y))  # (B, 2, 3, X, Y): value, ∂x, ∂y
        u, v = fields[:, 0:1, 0], fields[:, 1:2, 0]  # (B, 1, X, Y)
        advection = u * fields[:, :, 1] + v * fields[:, :, 2]  # (B, 2, X, Y)
        speed = u.abs().amax(dim=(-3, -2, -1)) * n_x + v.abs().amax(dim=(-3, -2, -1)) * n_y
        return -torch.fft.rfft2(advection) * keep, cfl / speed  # (B, 2, X, Yh), (B,)

    vel_hat = torch.fft.rfft2(vel)  # (B, 2, X, Y//2+1)
    frames = integrate(
        vel_hat, rate, times, linear=-nu * k2, dt=dt, max_dt=max_dt, progress=progress
    )  # (B, T, 2, X, Y//2+1)
    out = torch.fft.irfft2(frames, s=(n_x, n_y)).cpu().numpy()  # (B, T, 2, X, Y)
    return out if batched else out[0]


def cole_hopf(
    x: np.ndarray, y: np.ndarray, t: float, nu: float, modes: Sequence[tuple[float, int, int]]
) -> np.ndarray:
    """An exact solution of 2D Burgers by the Cole–Hopf transform: u = −2ν ∇φ/φ with
    φ = 1 + Σ a·exp(−4π²ν(m_x² + m_y²)t)·cos 2π(m_x x + m_y y), a solution of φ_t = ν Δφ
    (periodic; smooth while Σ|a| < 1). modes: (a, m_x, m_y) triples; x, y broadcast together.
    Returns (2, *shape) velocity."""
    total = sum(abs(a) for a, _, _ in modes)
    if not total < 1:
        raise ValueError(f"cole_hopf: modes: expected Σ|a| < 1 (φ > 0), got {total:g}")
    phi, phi_x, phi_y = 1.0, 0.0, 0.0
    for a, m_x, m_y in modes:
        decay = a * math.exp(-4 * math.pi**2 * nu * (m_x**2 + m_y**2) * t)
        phase = 2 * math.pi * (m_x * x + m_y * y)
        phi = phi + decay * np.cos(phase)
        phi_x = phi_x - 2 * math.pi * m_x * decay * np.sin(phase)
        phi_y = phi_y - 2 * math.pi * m_y * decay * np.sin(phase)
    u, v = np.broadcast_arrays(-2 * nu * phi_x / phi, -2 * nu * phi_y / phi)
    return np.stack([u, v])
