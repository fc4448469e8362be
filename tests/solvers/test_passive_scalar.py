"""Passive scalar in 2D Navier–Stokes flow: conserved mean and (without diffusion) variance, exact
diffusion, the flow unchanged by the scalar, batch independence, and agreement with py-pde finite
differences for advection–diffusion by a steady cellular flow."""

from __future__ import annotations

import numpy as np
import pytest

from dpot_lab.solvers import gaussian_random_field, navier_stokes_2d, passive_scalar_2d
from dpot_lab.solvers.navier_stokes_2d import nodes


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def resolved(field: np.ndarray) -> np.ndarray:
    """``field`` (..., X, Y) with the Fourier modes outside the 2/3 rule |m| < n/3 removed."""
    n_x, n_y = field.shape[-2:]
    m_x = np.abs(np.fft.fftfreq(n_x, 1 / n_x))[:, None]
    m_y = np.abs(np.fft.fftfreq(n_y, 1 / n_y))[None, :]
    return np.fft.ifft2(np.fft.fft2(field) * ((m_x < n_x / 3) & (m_y < n_y / 3))).real


def test_scalar_mean_is_conserved_to_round_off():
    rng = np.random.default_rng(0)
    c0 = gaussian_random_field(rng, 2, 32) + 0.7  # (2, X, Y), mean 0.7
    w0 = 3 * gaussian_random_field(rng, 2, 32)
    out = passive_scalar_2d(c0, w0, 1e-3, 1e-3, [0.5, 1.0, 2.0])  # (2, T, 2, X, Y)
    assert out.shape == (2, 3, 2, 32, 32)
    assert rel(out[:, -1, 0], c0) > 0.1  # the scalar did move
    np.testing.assert_allclose(out[:, :, 0].mean(axis=(-2, -1)), 0.7, rtol=1e-13)


def test_without_diffusion_and_viscosity_the_scalar_variance_is_conserved():
    # the 2/3-rule Galerkin truncation keeps Σ c² of the resolved modes; only RK4's error is
    # left, which falls as the step^5: at t = 1 Σ c² loses 8e-4 with cfl 0.5, 9e-7 with 0.125
    rng = np.random.default_rng(1)
    c0 = resolved(rng.standard_normal((48, 48)))  # rough: energy up to the cut-off
    w0 = resolved(5 * gaussian_random_field(rng, 1, 48)[0])
    out = passive_scalar_2d(c0, w0, 0.0, 0.0, [0.5, 1.0], forcing=None, cfl=0.125)  # (T, 2, X, Y)
    assert rel(out[-1, 0], c0) > 0.1
    np.testing.assert_allclose((out[:, 0] ** 2).sum(axis=(-2, -1)), (c0**2).sum(), rtol=5e-6)
    np.testing.assert_allclose((out[:, 1] ** 2).sum(axis=(-2, -1)), (w0**2).sum(), rtol=1e-8)


def test_at_rest_a_fourier_mode_diffuses_exactly():
    n, kappa, times = 32, 1e-2, [0.0, 0.5, 2.0]
    x, y = nodes(n)[:, None], nodes(n)[None, :]
    for mx, my in [(1, 0), (2, -3)]:
        c0 = np.cos(2 * np.pi * (mx * x + my * y) + 0.4)
        out = passive_scalar_2d(c0, np.zeros((n, n)), kappa, 1e-3, times, forcing=None)
        for frame, t in zip(out, times, strict=True):
            decay = np.exp(-kappa * 4 * np.pi**2 * (mx**2 + my**2) * t)
            np.testing.assert_allclose(frame[0], c0 * decay, rtol=0, atol=1e-13)
            np.testing.assert_array_equal(frame[1], 0.0)


def test_the_flow_is_the_navier_stokes_flow_and_batches_do_not_mix():
    rng = np.random.default_rng(2)
    c0 = gaussian_random_field(rng, 3, 24)
    w0 = gaussian_random_field(rng, 3, 24)
    w0[1] *= 3  # a faster flow takes smaller steps
    kappa, nu, times = np.array([1e-3, 1e-2, 0.0]), np.array([2e-3, 1e-3, 5e-4]), [0.5, 1.0]
    out = passive_scalar_2d(c0, w0, kappa, nu, times)  # (B, T, 2, X, Y)
    # a passive scalar leaves the vorticity as navier_stokes_2d computes it
    np.testing.assert_allclose(out[:, :, 1], navier_stokes_2d(w0, nu, times), atol=1e-12)
    for b in range(3):
        alone = passive_scalar_2d(c0[b], w0[b], kappa[b], nu[b], times)  # (T, 2, X, Y)
        np.testing.assert_allclose(out[b], alone, rtol=0, atol=1e-12)
    # one flow for many scalars: w0 (X, Y) is broadcast to c0 (B, X, Y)
    shared = passive_scalar_2d(c0, w0[0], 1e-3, 2e-3, times)
    np.testing.assert_allclose(shared[0], out[0], atol=1e-12)


def test_bad_inputs_name_the_argument():
    zeros = np.zeros((2, 8, 8))
    with pytest.raises(ValueError, match="w0: expected shape"):
        passive_scalar_2d(zeros, np.zeros((8, 6)), 1e-3, 1e-3, [0.1])
    with pytest.raises(ValueError, match="kappa: expected a finite number >= 0, got -1"):
        passive_scalar_2d(zeros, zeros, [1e-3, -1.0], 1e-3, [0.1])
    with pytest.raises(
        ValueError, match=r"nu: expected one number or one per sample, shape \(2,\)"
    ):
        passive_scalar_2d(zeros, zeros, 1e-3, [1e-3], [0.1])
    with pytest.raises(ValueError, match="c0"):
        passive_scalar_2d(np.zeros(8), np.zeros(8), 1e-3, 1e-3, [0.1])


def pypde_cellular_flow(n: int, kappa: float, amplitude: float, t_end: float):
    """c0, w0 and py-pde's c(t_end) on its n² grid (cell centres) for the flow of w0."""
    pde = pytest.importorskip("pde")
    grid = pde.CartesianGrid([[0, 1], [0, 1]], [n, n], periodic=True)
    x, y = grid.axes_coords[0][:, None], grid.axes_coords[1][None, :]
    w0 = amplitude * np.sin(2 * np.pi * x) * np.sin(2 * np.pi * y)
    c0 = np.cos(2 * np.pi * x) + 0.5 * np.sin(2 * np.pi * (x + 2 * y))
    speed = 2 * np.pi * amplitude / (8 * np.pi**2)  # ψ = w/8π², u = ψ_y, v = −ψ_x
    u = speed * np.sin(2 * np.pi * x) * np.cos(2 * np.pi * y)
    v = -speed * np.cos(2 * np.pi * x) * np.sin(2 * np.pi * y)

    class AdvectionDiffusion(pde.PDEBase):
        def evolution_rate(self, state, t=0):
            grad = state.gradient("periodic", backend="scipy").data  # (2, X, Y)
            advection = pde.ScalarField(grid, u * grad[0] + v * grad[1])
            return kappa * state.laplace("periodic", backend="scipy") - advection

    reference = AdvectionDiffusion().solve(
        pde.ScalarField(grid, c0), t_range=t_end, solver="scipy", backend="numpy", tracker=None,
        rtol=1e-8, atol=1e-10,
    )  # fmt: skip
    return c0, w0, reference.data


def test_agrees_with_py_pde_for_a_steady_cellular_flow():
    # w = A sin 2πx sin 2πy has ψ ∝ w, so u·∇w = 0: a steady Euler flow (ν = 0) that carries c;
    # py-pde solves ∂c/∂t = κΔc − u·∇c with that fixed u by second-order finite differences, so
    # its distance to ours falls ~4x per doubling of the grid (measured 0.128, 0.025)
    kappa, amplitude, t_end = 5e-3, 8 * np.pi, 0.3
    errors = []
    for n in (32, 64):
        c0, w0, reference = pypde_cellular_flow(n, kappa, amplitude, t_end)
        ours = passive_scalar_2d(c0, w0, kappa, 0.0, [t_end], forcing=None)[0]  # (2, X, Y)
        np.testing.assert_allclose(ours[1], w0, atol=1e-12 * amplitude)  # the flow stayed steady
        assert rel(c0, reference) > 1.0  # the scalar was carried a long way
        errors.append(rel(ours[0], reference))
    assert errors[1] < 0.04 and errors[0] / errors[1] > 3, errors
