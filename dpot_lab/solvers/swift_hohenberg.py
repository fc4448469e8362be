"""The Swift–Hohenberg equation in 2D on the periodic square [0, L)²:

    ∂u/∂t = r u − (1 + Δ)² u + g u² − u³

the classic model of pattern formation: modes near |k| = 1 grow (rate r − (1 − |k|²)²), the
cubic saturates them into stripes (g = 0) or hexagonal spots (g large enough), wavelength 2π.
It is a gradient flow: the free energy F[u] = ∫ −r u²/2 + ((1 + Δ)u)²/2 − g u³/3 + u⁴/4 never
increases. Pseudo-spectral, ETDRK4 in time with L = r − (1 − |k|²)² exactly; the nonlinear
term is kept on the modes |m| < n/4, which a cubic of them does not alias into.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from dpot_lab.solvers.etdrk4 import etdrk4_frames
from dpot_lab.solvers.spectral import wavenumbers
from dpot_lab.solvers.stepping import as_batched, check_number, check_save_times, per_sample

ArrayLike = np.ndarray | torch.Tensor


def swift_hohenberg_2d(
    u0: ArrayLike,
    t_save: Sequence[float],
    r: float | Sequence[float] = 0.3,
    g: float | Sequence[float] = 0.0,
    length: float = 16 * math.pi,
    dt: float = 0.5,
    nonlinear: bool = True,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> np.ndarray:
    """u at the save times.

    u0: (X, Y) or (B, X, Y) on the periodic square of side ``length``, numpy (float64 on the
    CPU) or torch (its own dtype and device unless ``dtype``/``device`` say otherwise).
    r, g: the control parameter and the quadratic coefficient, one value or one per sample (B,).
    t_save: non-decreasing times >= 0. dt: the ETDRK4 step, shrunk per interval between save
    times so that they are hit. ``nonlinear=False`` leaves the linear part (for checks).
    Returns numpy (T, X, Y) or (B, T, X, Y).
    """
    length = check_number(length, "length", 0.0, open_low=True)
    dt = check_number(dt, "dt", 0.0, open_low=True)
    times = check_save_times(t_save)
    u, batched = as_batched(u0, "u0", 2, dtype, device)  # (B, X, Y)
    n_x, n_y = u.shape[-2:]
    r_b, g_b = (per_sample(v, name, u, -math.inf) for v, name in ((r, "r"), (g, "g")))  # (B,1,1)
    kx = wavenumbers(n_x, u.dtype)[0].to(u.device)[:, None] / length  # (X, 1)
    ky = wavenumbers(n_y, u.dtype, half=True)[0].to(u.device)[None, :] / length  # (1, Yh)
    linear = r_b - (1 - (kx**2 + ky**2)) ** 2  # (B, X, Yh), real
    mx = torch.fft.fftfreq(n_x, 1 / n_x).to(u.device)[:, None].abs()
    my = torch.fft.rfftfreq(n_y, 1 / n_y).to(u.device)[None, :].abs()
    keep = (mx < n_x / 4) & (my < n_y / 4)  # (X, Yh)

    def rate(u_hat: torch.Tensor) -> torch.Tensor:
        if not nonlinear:
            return torch.zeros_like(u_hat)
        v = torch.fft.irfft2(u_hat * keep, s=(n_x, n_y))  # (B, X, Y)
        return torch.fft.rfft2(g_b * v**2 - v**3) * keep  # (B, X, Yh)

    u_hat = etdrk4_frames(
        torch.fft.rfft2(u), linear, rate, times, dt, "swift_hohenberg_2d", progress
    )  # (B, T, X, Y//2+1)
    out = torch.fft.irfft2(u_hat, s=(n_x, n_y)).cpu().numpy()  # (B, T, X, Y)
    return out if batched else out[0]


def free_energy(u: ArrayLike, r: float, g: float, length: float = 16 * math.pi) -> np.ndarray:
    """F[u] = ∫ −r u²/2 + ((1 + Δ)u)²/2 − g u³/3 + u⁴/4 over the square, per frame: u (..., X, Y)
    -> (...)."""
    v = torch.as_tensor(np.asarray(u, dtype=np.float64))
    n_x, n_y = v.shape[-2:]
    kx = wavenumbers(n_x, torch.float64)[0][:, None] / length
    ky = wavenumbers(n_y, torch.float64)[0][None, :] / length
    lin = torch.fft.ifft2((1 - (kx**2 + ky**2)) * torch.fft.fft2(v)).real  # (1 + Δ)u
    density = -r * v**2 / 2 + lin**2 / 2 - g * v**3 / 3 + v**4 / 4
    return (density.mean(dim=(-2, -1)) * length**2).numpy()
