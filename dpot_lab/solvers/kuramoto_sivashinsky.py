"""The Kuramoto–Sivashinsky equation in 2D on the periodic square [0, L)²:

    ∂u/∂t + Δu + Δ²u + ½ |∇u|² = 0

Pseudo-spectral with the 2/3 rule (|∇u|² from the modes |m| < n/3, kept on them), ETDRK4 in
time (Cox & Matthews 2002) with φ-functions by contour integrals (Kassam & Trefethen 2005): the
stiff linear part L = |k|² − |k|⁴ exactly, one fixed step per trajectory (shrunk to hit the save
times). Modes with |k| < 1 grow, so L = 16π holds 8 unstable wavelengths 2π√2 per side.

The mean of u decouples (only ∇u enters the dynamics) and ½|∇u|² drives it down for ever; the
solver drops the mean of the nonlinear term, so u keeps the mean of u0 and the frames are the
solution minus its drift −½ ∫ ⟨|∇u|²⟩ dt.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from dpot_lab.solvers.spectral import wavenumbers
from dpot_lab.solvers.stepping import as_batched, check_number, check_save_times

ArrayLike = np.ndarray | torch.Tensor
CONTOUR_POINTS = 32  # points on the circle of radius 1 around each h·L (Kassam & Trefethen)


def kuramoto_sivashinsky_2d(
    u0: ArrayLike,
    t_save: Sequence[float],
    length: float = 16 * math.pi,
    dt: float = 0.05,
    nonlinear: bool = True,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> np.ndarray:
    """u at the save times.

    u0: (X, Y) or (B, X, Y) on the periodic square of side ``length``, numpy (float64 on the
    CPU) or torch (its own dtype and device unless ``dtype``/``device`` say otherwise).
    t_save: non-decreasing times >= 0. dt: the ETDRK4 step, shrunk per interval between save
    times so that they are hit. ``nonlinear=False`` leaves the linear part (for checks).
    Returns numpy (T, X, Y) or (B, T, X, Y).
    """
    length = check_number(length, "length", 0.0, open_low=True)
    dt = check_number(dt, "dt", 0.0, open_low=True)
    times = check_save_times(t_save)
    u, batched = as_batched(u0, "u0", 2, dtype, device)  # (B, X, Y)
    n_x, n_y = u.shape[-2:]
    kx, dkx, keep_x = (a.to(u.device)[:, None] for a in wavenumbers(n_x, u.dtype))  # (X, 1)
    ky, dky, keep_y = (a.to(u.device)[None, :] for a in wavenumbers(n_y, u.dtype, half=True))
    kx, dkx, ky, dky = kx / length, dkx / length, ky / length, dky / length  # of [0, L)
    k2 = kx**2 + ky**2  # (X, Y//2+1)
    linear = k2 - k2**2  # (X, Y//2+1), real
    keep = keep_x & keep_y
    keep_nonzero = keep.clone()
    keep_nonzero[0, 0] = False  # the mean of ½|∇u|² is dropped: u keeps the mean of u0
    to_gradient = 1j * torch.stack([dkx.expand_as(k2), dky.expand_as(k2)]) * keep  # (2, X, Yh)

    def rate(u_hat: torch.Tensor) -> torch.Tensor:
        if not nonlinear:
            return torch.zeros_like(u_hat)
        grad = torch.fft.irfft2(u_hat[:, None] * to_gradient, s=(n_x, n_y))  # (B, 2, X, Y)
        return -0.5 * torch.fft.rfft2((grad**2).sum(dim=1)) * keep_nonzero  # (B, X, Yh)

    u_hat = torch.fft.rfft2(u)  # (B, X, Y//2+1)
    coefficients: dict[float, tuple[torch.Tensor, ...]] = {}
    frames, t = [], 0.0
    for target in tqdm(times, desc="time", disable=not progress, leave=False):
        n_steps = math.ceil((target - t) / dt - 1e-9) if target > t else 0
        if n_steps:
            h = (target - t) / n_steps
            if h not in coefficients:
                coefficients[h] = _etdrk4_coefficients(linear, h, u_hat.dtype)
            for _ in range(n_steps):
                u_hat = _etdrk4_step(u_hat, rate, *coefficients[h])
            if not bool(torch.isfinite(u_hat).all()):
                raise FloatingPointError(
                    f"kuramoto_sivashinsky_2d: the state blew up before t = {target:.6g} "
                    f"(dt = {dt:g}; try a smaller dt or a finer grid)"
                )
            t = target
        frames.append(u_hat)
    out = torch.fft.irfft2(torch.stack(frames, dim=1), s=(n_x, n_y)).cpu().numpy()  # (B, T, X, Y)
    return out if batched else out[0]


def _etdrk4_coefficients(
    linear: torch.Tensor, h: float, dtype: torch.dtype
) -> tuple[torch.Tensor, ...]:
    """e^{hL}, e^{hL/2} and the ETDRK4 weights Q, f1, f2, f3 of a step h, each like ``linear``,
    the φ-functions averaged over a circle around each hL (no cancellation near hL = 0)."""
    z0 = (h * linear.to(torch.float64))[..., None]  # (..., 1)
    roots = torch.exp(2j * math.pi * (torch.arange(CONTOUR_POINTS) + 0.5) / CONTOUR_POINTS)
    z = z0 + roots.to(z0.device)  # (..., M) complex128
    ez = torch.exp(z)
    q = h * ((torch.exp(z / 2) - 1) / z).mean(dim=-1).real
    f1 = h * ((-4 - z + ez * (4 - 3 * z + z**2)) / z**3).mean(dim=-1).real
    f2 = h * ((2 + z + ez * (z - 2)) / z**3).mean(dim=-1).real
    f3 = h * ((-4 - 3 * z - z**2 + ez * (4 - z)) / z**3).mean(dim=-1).real
    e, e2 = torch.exp(z0[..., 0]), torch.exp(z0[..., 0] / 2)
    real = torch.empty(0, dtype=dtype).real.dtype
    return tuple(a.to(real) for a in (e, e2, q, f1, f2, f3))


def _etdrk4_step(u_hat, rate, e, e2, q, f1, f2, f3) -> torch.Tensor:
    """One ETDRK4 step of û (B, X, Yh) for dû/dt = L û + rate(û) (Cox & Matthews 2002)."""
    n_u = rate(u_hat)
    a = e2 * u_hat + q * n_u
    n_a = rate(a)
    b = e2 * u_hat + q * n_a
    n_b = rate(b)
    c = e2 * a + q * (2 * n_b - n_u)
    n_c = rate(c)
    return e * u_hat + f1 * n_u + 2 * f2 * (n_a + n_b) + f3 * n_c
