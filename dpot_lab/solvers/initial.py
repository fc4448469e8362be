"""Random initial states that match the data sources DPOT trains on.

Every sampler takes a ``numpy.random.Generator`` and a number of samples n, and draws the
samples one after another from it, so n draws from one generator equal n single draws.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dpot_lab.solvers.grid import Resolution, grid_shape
from dpot_lab.solvers.stepping import check_number


def gaussian_random_field(
    rng: np.random.Generator,
    n: int,
    resolution: Resolution,
    alpha: float = 2.5,
    tau: float = 7.0,
    sigma: float | None = None,
) -> np.ndarray:
    """Zero-mean periodic Gaussian random fields on the unit square, (n, X, Y): FNO's
    ``GaussianRF`` (``data_generation/navier_stokes/random_fields.py``, Li et al. 2021).

    As there, every Fourier mode gets a complex coefficient with independent N(0, 1) real and
    imaginary parts times X·Y·√2·sigma·(4π²|k|² + τ²)^(−α/2) (mean mode 0), and the field is
    the real part of the inverse FFT; sigma = τ^(α − 1) = τ^(½(2α − d)) by default. Covariance
    2 sigma² (−Δ + τ²)^(−α): each mode k ≠ 0 of ``fft2(field) / (X·Y)`` has variance
    2 sigma² (4π²|k|² + τ²)^(−α) (twice that of filtered real white noise). The defaults
    α = 2.5, τ = 7 are the FNO Navier–Stokes initial vorticity (std ≈ 0.27 on 64²).
    """
    n_x, n_y = grid_shape(resolution, 2)
    alpha = check_number(alpha, "gaussian_random_field: alpha", 0, open_low=True)
    tau = check_number(tau, "gaussian_random_field: tau", 0)
    if sigma is None:
        if tau == 0:
            raise ValueError("gaussian_random_field: tau = 0 needs a sigma (τ^(α−1) would be 0)")
        sigma = tau ** (alpha - 1.0)  # τ^(½(2α − d)) with d = 2
    m_x = np.fft.fftfreq(n_x, 1 / n_x)[:, None]
    m_y = np.fft.fftfreq(n_y, 1 / n_y)[None, :]
    lam = 4 * np.pi**2 * (m_x**2 + m_y**2) + tau**2  # (X, Y)
    sqrt_eig = n_x * n_y * np.sqrt(2.0) * sigma * lam ** (-alpha / 2)
    sqrt_eig[0, 0] = 0.0
    coeff = _draw(rng, _count(n), (n_x, n_y, 2))  # (n, X, Y, 2): real, imaginary parts
    return np.fft.ifft2((coeff[..., 0] + 1j * coeff[..., 1]) * sqrt_eig).real  # (n, X, Y)


def diffusion_reaction_initial(
    rng: np.random.Generator, n: int, resolution: Resolution
) -> tuple[np.ndarray, np.ndarray]:
    """PDEBench diffusion–reaction initial state: u, v (n, X, Y), independent N(0, 1) per cell."""
    shape = grid_shape(resolution, 2)
    u = np.empty((_count(n), *shape))
    v = np.empty((n, *shape))
    for i in range(n):
        u[i] = rng.standard_normal(shape)
        v[i] = rng.standard_normal(shape)
    return u, v


def passot_pouquet_spectrum(k: np.ndarray, k_peak: float = 2.0) -> np.ndarray:
    """Energy spectrum E(k) ∝ (k/k_peak)⁴ exp(−2 (k/k_peak)²), peaked at k_peak (cycles/length)."""
    q = k / k_peak
    return q**4 * np.exp(-2 * q**2)


def divergence_free_velocity(
    rng: np.random.Generator,
    n: int,
    resolution: Resolution,
    spectrum: Callable[[np.ndarray], np.ndarray] = passot_pouquet_spectrum,
    u_rms: float = 1.0,
) -> np.ndarray:
    """Random periodic divergence-free velocity on the unit cube, (n, 3, X, Y, Z).

    Filtered white noise projected onto divergence-free fields, with shell energy E(k) =
    ``spectrum(k)`` (k = |m| in cycles per unit length; the mean flow is zero), scaled so that
    the root-mean-square of each component is ``u_rms``.
    """
    shape = grid_shape(resolution, 3)
    u_rms = check_number(u_rms, "u_rms", 0.0)
    m = np.meshgrid(*(np.fft.fftfreq(s, 1 / s) for s in shape[:2]), indexing="ij")
    m = [a[..., None] for a in m] + [np.fft.rfftfreq(shape[2], 1 / shape[2])[None, None, :]]
    k = np.sqrt(sum(a**2 for a in m))  # (X, Y, Z//2+1)
    k_safe = np.where(k > 0, k, 1.0)
    # a shell of radius k holds ~4πk² modes: per-mode amplitude sqrt(E(k) / (4πk²))
    amplitude = np.where(k > 0, np.sqrt(spectrum(k_safe) / (4 * np.pi * k_safe**2)), 0.0)
    # no Nyquist modes: they have no real-valued derivative, so no exact divergence
    for mi, s in zip(m, shape, strict=True):
        amplitude = np.where(np.abs(mi) < s / 2, amplitude, 0.0)
    out = np.empty((_count(n), 3, *shape))
    for i in range(n):
        noise_hat = np.fft.rfftn(rng.standard_normal((3, *shape)), axes=(1, 2, 3)) * amplitude
        along = sum(mi * ni for mi, ni in zip(m, noise_hat, strict=True)) / k_safe**2  # (m·û)/|m|²
        u_hat = noise_hat - np.stack([mi * along for mi in m])  # û − m (m·û)/|m|²
        u = np.fft.irfftn(u_hat, s=shape, axes=(1, 2, 3))  # (3, X, Y, Z)
        rms = np.sqrt(np.mean(u**2))
        if not rms > 0:
            raise ValueError(
                f"divergence_free_velocity: the spectrum leaves no energy on the grid {shape} "
                "(Nyquist modes are left out: a size-2 axis has none other than 0)"
            )
        out[i] = u * (u_rms / rms)
    return out


def _count(n: int) -> int:
    """The number of samples n; ValueError unless it is an int >= 0."""
    if not (isinstance(n, int | np.integer) and n >= 0):
        raise ValueError(f"n: expected a number of samples >= 0, got {n!r}")
    return int(n)


def _draw(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    """(n, *shape) standard normal, drawn sample after sample."""
    return np.stack([rng.standard_normal(shape) for _ in range(n)]) if n else np.empty((0, *shape))
