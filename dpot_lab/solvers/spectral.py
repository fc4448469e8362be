"""Periodic grids of the pseudo-spectral solvers: wavenumbers and dealiasing."""

from __future__ import annotations

import math

import torch


def wavenumbers(
    n: int, dtype: torch.dtype, half: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Wavenumbers of the periodic unit interval on n points, for fft (n,) or rfft (n//2+1,).

    Returns the angular wavenumbers 2π·m, the same for derivatives (0 at the Nyquist mode,
    which has no real-valued derivative), and the 2/3-rule dealiasing mask |m| < n/3: a product
    of two fields within it has no alias within it (at |m| = n/3, for n a multiple of 3, it has).
    """
    m = torch.fft.rfftfreq(n, 1 / n) if half else torch.fft.fftfreq(n, 1 / n)  # integers
    m = m.round().to(torch.float64)
    k = 2 * math.pi * m
    k_derivative = torch.where(m.abs() < n / 2, k, torch.zeros_like(k))
    return k.to(dtype), k_derivative.to(dtype), m.abs() < n / 3
