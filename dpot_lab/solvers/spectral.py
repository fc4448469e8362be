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


class SpectralOps:
    """Wavenumbers of the periodic unit square on X × Y points, for rfft2 spectra (X, Y//2+1),
    and what the vorticity solvers compute from them: velocity and gradients from the modes
    inside the 2/3 rule, the dealiased spectrum of a product, the CFL rate."""

    def __init__(self, n_x: int, n_y: int, dtype: torch.dtype, device: torch.device) -> None:
        self.shape = (n_x, n_y)
        kx, dx_k, keep_x = (a.to(device)[:, None] for a in wavenumbers(n_x, dtype))  # (X, 1)
        ky, dy_k, keep_y = (a.to(device)[None, :] for a in wavenumbers(n_y, dtype, half=True))
        self.k2 = kx**2 + ky**2  # (X, Y//2+1)
        inv_k2 = torch.where(self.k2 > 0, 1 / self.k2.clamp(min=1e-30), torch.zeros_like(self.k2))
        self.keep = keep_x & keep_y
        # ŵ -> (û, v̂) of the kept modes, û = i ky ψ̂, v̂ = −i kx ψ̂, ψ̂ = ŵ/|k|²; ĉ -> ∂x ĉ, ∂y ĉ
        self.to_velocity = 1j * torch.stack([dy_k * inv_k2, -dx_k * inv_k2]) * self.keep
        self.to_gradient = 1j * torch.stack([dx_k.expand_as(self.k2), dy_k.expand_as(self.k2)])
        self.to_gradient = self.to_gradient * self.keep  # (2, X, Y//2+1)

    def fields(self, w_hat: torch.Tensor, *c_hats: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """u, v from ŵ (B, X, Y//2+1) and ∂x c, ∂y c of each ĉ: real (B, X, Y) each."""
        spectra = [w_hat[:, None] * self.to_velocity]
        spectra += [c_hat[:, None] * self.to_gradient for c_hat in c_hats]
        return torch.fft.irfft2(torch.cat(spectra, dim=1), s=self.shape).unbind(dim=1)

    def dealiased(self, product: torch.Tensor) -> torch.Tensor:
        """rfft2 of a product (B, X, Y), kept on the modes inside the 2/3 rule."""
        return torch.fft.rfft2(product) * self.keep

    def speed(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """max|u|/dx + max|v|/dy per sample, (B,)."""
        n_x, n_y = self.shape
        return u.abs().amax(dim=(-2, -1)) * n_x + v.abs().amax(dim=(-2, -1)) * n_y
