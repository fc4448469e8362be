"""3D Navier–Stokes (velocity): exact Beltrami and shear solutions, incompressibility, energy
decay, and the random divergence-free initial velocity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dpot_lab.solvers import divergence_free_velocity, navier_stokes_3d, passot_pouquet_spectrum
from dpot_lab.solvers.grid import cell_centres


def mesh(n: int) -> list[np.ndarray]:
    c = cell_centres(n)
    return np.meshgrid(c, c, c, indexing="ij")


def abc_flow(n: int, a: float = 1.0, b: float = 0.7, c: float = 0.4, m: int = 1) -> np.ndarray:
    """Arnold–Beltrami–Childress flow with wavenumber 2πm: ∇ × u = 2πm u, so u × ω = 0 and
    u(t) = u0 exp(−ν (2πm)² t) solves Navier–Stokes exactly. (3, X, Y, Z)"""
    x, y, z = mesh(n)
    k = 2 * np.pi * m
    return np.stack(
        [
            a * np.sin(k * z) + c * np.cos(k * y),
            b * np.sin(k * x) + a * np.cos(k * z),
            c * np.sin(k * y) + b * np.cos(k * x),
        ]
    )


def divergence(u: np.ndarray) -> np.ndarray:
    """Spectral divergence of (..., 3, X, Y, Z) velocities (Nyquist modes left out)."""
    n = u.shape[-3:]
    total = 0
    for d in range(3):
        m = np.fft.fftfreq(n[d], 1 / n[d])
        m = np.where(np.abs(m) < n[d] / 2, m, 0).reshape([-1 if i == d else 1 for i in range(3)])
        total = (
            total
            + np.fft.ifftn(
                2j * np.pi * m * np.fft.fftn(u[..., d, :, :, :], axes=(-3, -2, -1)),
                axes=(-3, -2, -1),
            ).real
        )
    return total


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_beltrami_and_shear_modes_decay_exactly():
    n, nu, times = 16, 1e-2, [0.0, 0.3, 1.0]
    x, y, z = mesh(n)
    shear = np.stack([np.sin(4 * np.pi * y), np.zeros_like(x), np.cos(4 * np.pi * y)])  # v = 0
    u0 = np.stack([abc_flow(n), shear])  # (2, 3, X, Y, Z)
    out = navier_stokes_3d(u0, nu, times)  # (2, T, 3, X, Y, Z)
    assert out.shape == (2, 3, 3, n, n, n)
    for b, k2 in enumerate([(2 * np.pi) ** 2, (4 * np.pi) ** 2]):
        for i, t in enumerate(times):
            assert rel(out[b, i], u0[b] * np.exp(-nu * k2 * t)) < 1e-6


def test_gradient_part_of_the_initial_velocity_is_projected_out():
    n = 16
    x, y, z = mesh(n)
    phi = np.sin(2 * np.pi * x) * np.cos(4 * np.pi * z)
    grad_phi = np.stack(
        [
            2 * np.pi * np.cos(2 * np.pi * x) * np.cos(4 * np.pi * z),
            np.zeros_like(phi),
            -4 * np.pi * np.sin(2 * np.pi * x) * np.sin(4 * np.pi * z),
        ]
    )
    u = abc_flow(n)
    out = navier_stokes_3d(u + grad_phi, 1e-2, [0.0, 0.5])
    np.testing.assert_allclose(out[0], u, atol=1e-12)
    assert rel(out[1], u * np.exp(-1e-2 * (2 * np.pi) ** 2 * 0.5)) < 1e-6


def test_random_flow_stays_incompressible_and_loses_energy():
    rng = np.random.default_rng(0)
    u0 = divergence_free_velocity(rng, 1, 16, u_rms=0.5)[0]  # (3, X, Y, Z)
    assert np.sqrt(np.mean(u0**2)) == pytest.approx(0.5)
    assert np.abs(divergence(u0)).max() < 1e-10 * np.abs(u0).max() * 16
    times = np.linspace(0.1, 1.0, 10)
    out = navier_stokes_3d(u0, 2e-2, times)  # (T, 3, X, Y, Z)
    assert np.abs(divergence(out)).max() < 1e-10 * np.abs(u0).max() * 16
    energy = np.concatenate([[np.mean(u0**2)], np.mean(out**2, axis=(1, 2, 3, 4))])
    assert np.all(np.diff(energy) < 0)
    # the flow is nonlinear: it is not the viscous decay of each mode
    m = np.fft.fftfreq(16, 1 / 16)
    k2 = 4 * np.pi**2 * (m[:, None, None] ** 2 + m[None, :, None] ** 2 + m[None, None, :] ** 2)
    linear = np.fft.ifftn(np.fft.fftn(u0, axes=(1, 2, 3)) * np.exp(-2e-2 * k2), axes=(1, 2, 3))
    assert rel(out[-1], linear.real) > 0.1


def test_a_flow_rotated_about_z_is_the_rotated_flow_and_keeps_its_mean():
    # grid 8 x 8 x 6 (square in x, y only); a 90° turn maps (u, v, w)(x) to (−v, u, w)(R⁻¹x)
    rng = np.random.default_rng(2)
    u0 = divergence_free_velocity(rng, 1, (8, 8, 6))[0]
    u0 += np.array([0.3, -0.2, 0.1])[:, None, None, None]  # a mean flow: momentum

    def turn(u: np.ndarray) -> np.ndarray:  # (..., 3, X, Y, Z)
        r = np.rot90(u, axes=(-3, -2))
        return np.stack([-r[..., 1, :, :, :], r[..., 0, :, :, :], r[..., 2, :, :, :]], axis=-4)

    ref = navier_stokes_3d(u0, 1e-2, [0.3])  # (T, 3, X, Y, Z)
    assert rel(ref[0], u0) > 0.05
    np.testing.assert_allclose(navier_stokes_3d(turn(u0), 1e-2, [0.3]), turn(ref), atol=1e-14)
    np.testing.assert_allclose(ref[0].mean(axis=(1, 2, 3)), [0.3, -0.2, 0.1], rtol=1e-13)


def test_inviscid_flow_with_unresolved_modes_conserves_energy():
    # on 9 x 8 x 6 a tenth of the energy lies beyond the 2/3 rule; it used to feed the resolved
    # modes (the energy rose by 38 % by t = 0.4)
    u0 = divergence_free_velocity(np.random.default_rng(3), 1, (9, 8, 6))[0]
    out = navier_stokes_3d(u0, 0.0, [0.2, 0.4], cfl=0.2)  # (T, 3, X, Y, Z)
    assert rel(out[-1], u0) > 0.1
    np.testing.assert_allclose(np.mean(out**2, axis=(1, 2, 3, 4)), np.mean(u0**2), rtol=1e-8)
    assert np.abs(divergence(out)).max() < 1e-12 * np.abs(u0).max() * 9


def test_batch_members_do_not_affect_each_other():
    u0 = divergence_free_velocity(np.random.default_rng(4), 2, 8)  # (2, 3, X, Y, Z)
    u0[1] *= 3  # a faster flow takes smaller steps
    batched = navier_stokes_3d(torch.from_numpy(u0), 1e-2, [0.1, 0.2])  # (2, T, 3, X, Y, Z)
    for b in range(2):
        np.testing.assert_allclose(
            batched[b], navier_stokes_3d(u0[b], 1e-2, [0.1, 0.2]), atol=1e-14
        )


def test_random_velocity_follows_the_spectrum():
    # shell energies averaged over samples have the shape of E(k) ∝ k⁴ exp(−2 (k/k_peak)²)
    n, k_peak = 24, 3.0
    rng = np.random.default_rng(1)
    u = divergence_free_velocity(
        rng, 8, n, lambda k: passot_pouquet_spectrum(k, k_peak), u_rms=1.0
    )  # (8, 3, X, Y, Z)
    m = np.fft.fftfreq(n, 1 / n)
    k = np.sqrt(m[:, None, None] ** 2 + m[None, :, None] ** 2 + m[None, None, :] ** 2)
    power = (np.abs(np.fft.fftn(u, axes=(2, 3, 4))) ** 2).sum(axis=1).mean(axis=0)  # (X, Y, Z)
    # per mode, the expected power is E(k) / (4πk²) times one constant
    per_mode = passot_pouquet_spectrum(np.where(k > 0, k, 1), k_peak) / (
        4 * np.pi * k**2 + (k == 0)
    )
    ratio = np.array(
        [
            np.mean(
                power[(k >= s - 0.5) & (k < s + 0.5)] / per_mode[(k >= s - 0.5) & (k < s + 0.5)]
            )
            for s in range(1, 9)
        ]
    )
    assert np.all(np.abs(ratio / ratio.mean() - 1) < 0.2), ratio / ratio.mean()
    assert power[k < 0.5].max() < 1e-20 * power.max()  # no mean flow


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="u0"):
        navier_stokes_3d(np.zeros((2, 8, 8, 8)), 1e-2, [1.0])
    with pytest.raises(ValueError, match="forcing"):
        navier_stokes_3d(np.zeros((3, 8, 8, 8)), 1e-2, [1.0], forcing=np.zeros((3, 8, 8, 4)))
