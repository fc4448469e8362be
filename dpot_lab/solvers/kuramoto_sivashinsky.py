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

from dpot_lab.solvers.etdrk4 import etdrk4_frames
from dpot_lab.solvers.spectral import wavenumbers
from dpot_lab.solvers.stepping import as_batched, check_number, check_save_times

ArrayLike = np.ndarray | torch.Tensor


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

    u_hat = etdrk4_frames(
        torch.fft.rfft2(u), linear, rate, times, dt, "kuramoto_sivashinsky_2d", progress
    )  # (B, T, X, Y//2+1)
    out = torch.fft.irfft2(u_hat, s=(n_x, n_y)).cpu().numpy()  # (B, T, X, Y)
    return out if batched else out[0]
