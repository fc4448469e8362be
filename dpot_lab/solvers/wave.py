"""The wave equation with a variable speed c(x) on the periodic unit square [0, 1)²:

    ∂²u/∂t² = ∇·(c² ∇u)

The divergence form (acoustic waves in a medium of varying stiffness) rather than c² Δu: its
energy E = ½ ∫ (u_t² + c² |∇u|²) is conserved, and so is the discrete one. Spectral
derivatives D (the Nyquist mode has none, so D is real and skew) make the semi-discrete
operator −Σ Dᵀ c² D symmetric and ≤ 0, and E_h = ½ Σ (u_t² + c² |D u|²)·dx·dy exactly
conserved; classical RK4 in time (:func:`stepping.integrate`) loses O(dt⁴) of it per unit
time. Step: ``cfl / (max c · √(X² + Y²))``, inside RK4's stability limit 2.8/π for cfl < 0.9.
State (u, u_t) as two channels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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
RK4_IMAGINARY_AXIS = 2 * math.sqrt(2)  # RK4 is stable for λ·dt in i·[−2√2, 2√2]


def wave_2d(
    u0: ArrayLike,
    speed: float | ArrayLike,
    t_save: Sequence[float],
    u_t0: ArrayLike | None = None,
    dt: float | None = None,
    cfl: float = 0.5,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> np.ndarray:
    """u and u_t at the save times, stacked as channels.

    u0: (X, Y) or (B, X, Y), numpy (float64 on the CPU) or torch (its own dtype and device
    unless ``dtype``/``device`` say otherwise). speed: c > 0, one number, a field (X, Y) or
    one per sample (B, X, Y). u_t0: initial ∂u/∂t like u0 (None: at rest). t_save:
    non-decreasing times >= 0. dt: fixed step (shrunk to hit save times); None takes
    ``cfl / (max c · √(X² + Y²))``. Returns numpy (T, 2, X, Y) or (B, T, 2, X, Y), channel 0 = u,
    channel 1 = u_t.
    """
    cfl = check_number(cfl, "cfl", 0.0, RK4_IMAGINARY_AXIS / math.pi, open_low=True)
    times = check_save_times(t_save)
    u, batched = as_batched(u0, "u0", 2, dtype, device)  # (B, X, Y)
    u_t = torch.zeros_like(u) if u_t0 is None else as_batched_like(u_t0, "u_t0", u)
    c2 = _speed(speed, u) ** 2  # (B, X, Y)
    n_x, n_y = u.shape[-2:]
    dkx = wavenumbers(n_x, u.dtype)[1].to(u.device)[:, None]  # (X, 1)
    dky = wavenumbers(n_y, u.dtype, half=True)[1].to(u.device)[None, :]  # (1, Y//2+1)
    to_gradient = 1j * torch.stack([dkx.expand(n_x, dky.shape[1]), dky.expand(n_x, -1)])
    stable = cfl / (c2.amax(dim=(-2, -1)).sqrt() * math.hypot(n_x, n_y))  # (B,)

    def rate(state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        grad = torch.fft.irfft2(torch.fft.rfft2(state[:, 0])[:, None] * to_gradient, s=(n_x, n_y))
        flux_hat = torch.fft.rfft2(c2[:, None] * grad)  # (B, 2, X, Y//2+1): c² ∂x u, c² ∂y u
        div = torch.fft.irfft2((flux_hat * to_gradient).sum(dim=1), s=(n_x, n_y))  # (B, X, Y)
        return torch.stack([state[:, 1], div], dim=1), stable

    frames = integrate(torch.stack([u, u_t], dim=1), rate, times, dt=dt, progress=progress)
    out = frames.cpu().numpy()  # (B, T, 2, X, Y)
    return out if batched else out[0]


def wave_energy(u: np.ndarray, u_t: np.ndarray, speed: float | np.ndarray) -> np.ndarray:
    """The discrete energy ½ Σ (u_t² + c² |D u|²)·dx·dy that :func:`wave_2d` conserves, over
    the last two axes of u, u_t (..., X, Y) on the unit square; speed broadcasts to them."""
    n_x, n_y = u.shape[-2:]
    m_x, m_y = np.fft.fftfreq(n_x, 1 / n_x)[:, None], np.fft.fftfreq(n_y, 1 / n_y)[None, :]
    d_x = np.where(np.abs(m_x) < n_x / 2, 2j * np.pi * m_x, 0)  # Nyquist: no derivative
    d_y = np.where(np.abs(m_y) < n_y / 2, 2j * np.pi * m_y, 0)
    u_hat = np.fft.fft2(u)
    grad2 = np.fft.ifft2(d_x * u_hat).real ** 2 + np.fft.ifft2(d_y * u_hat).real ** 2
    density = 0.5 * (u_t**2 + np.asarray(speed) ** 2 * grad2)
    return density.sum(axis=(-2, -1)) / (n_x * n_y)


def _speed(speed: float | ArrayLike, u: torch.Tensor) -> torch.Tensor:
    """c (B, X, Y) from a number or a field (X, Y) / (B, X, Y); ValueError unless all > 0."""
    if np.ndim(speed) == 0 and not isinstance(speed, torch.Tensor):
        c = torch.full_like(u, check_number(speed, "speed", 0.0, open_low=True))
    else:
        c = as_batched_like(speed, "speed", u)
    low = float(c.min())
    if not low > 0:
        raise ValueError(f"speed: expected c > 0 everywhere, got a minimum of {low:g}")
    return c
