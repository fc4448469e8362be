"""2D viscous Burgers: an exact Cole–Hopf solution, fourth order in time, mirror and transpose
symmetry, batches, and agreement with an independent finite-difference solver built on py-pde."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dpot_lab.solvers import burgers_2d
from dpot_lab.solvers.burgers import cole_hopf
from dpot_lab.solvers.grid import cell_centres

MODES = [(0.4, 1, 0), (0.25, 1, 2), (0.15, 0, 1)]  # (a, m_x, m_y) of φ, Σ|a| = 0.8


def grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    c = cell_centres(n)
    return c[:, None], c[None, :]


def smooth_velocity(n: int, rng: np.random.Generator, k_max: int = 3) -> np.ndarray:
    """(2, n, n) random velocity of Fourier modes 0 < |m| <= k_max, amplitude ~ 1/|m|², scaled
    to max |u| = 0.25."""
    x, y = grid(n)
    out = np.zeros((2, n, n))
    for c in range(2):
        for mx in range(-k_max, k_max + 1):
            for my in range(0, k_max + 1):
                if 0 < mx * mx + my * my <= k_max**2:
                    phase = 2 * np.pi * (mx * x + my * y) + rng.uniform(0, 2 * np.pi)
                    out[c] += rng.normal() / (mx * mx + my * my) * np.cos(phase)
    return out * (0.25 / np.abs(out).max())


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_cole_hopf_solution_is_matched():
    n, nu, times = 64, 1e-2, [0.25, 0.5]
    x, y = grid(n)
    v0 = cole_hopf(x, y, 0.0, nu, MODES)  # (2, X, Y)
    out = burgers_2d(v0, nu, times)  # (T, 2, X, Y)
    assert out.shape == (2, 2, n, n)
    for frame, t in zip(out, times, strict=True):
        assert rel(frame, cole_hopf(x, y, t, nu, MODES)) < 1e-6  # measured 2e-7
    # the nonlinear term matters here: the heat equation alone is 12 % off at t = 0.5
    k = 2 * np.pi * np.fft.fftfreq(n, 1 / n)
    heat = np.fft.ifft2(np.fft.fft2(v0) * np.exp(-nu * (k[:, None] ** 2 + k**2) * 0.5)).real
    assert rel(heat, cole_hopf(x, y, 0.5, nu, MODES)) > 0.05


def test_fourth_order_in_time_with_fixed_steps():
    v0 = 2 * smooth_velocity(32, np.random.default_rng(0))
    reference = burgers_2d(v0, 1e-2, [0.5], dt=0.5 / 1024)[0]
    steps = [0.5 / 32, 0.5 / 64, 0.5 / 128]
    errors = [rel(burgers_2d(v0, 1e-2, [0.5], dt=dt)[0], reference) for dt in steps]
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert errors[-1] > 1e-13
    assert np.all(np.abs(orders - 4) < 0.3), (errors, orders)


def test_mirrored_and_transposed_states_give_mirrored_and_transposed_flows():
    v0 = smooth_velocity(16, np.random.default_rng(1))
    ref = burgers_2d(v0, 5e-3, [0.4])  # (T, 2, X, Y)
    # x -> −x: u flips sign, v stays
    mirror = np.stack([-v0[0, ::-1], v0[1, ::-1]])
    out = burgers_2d(mirror, 5e-3, [0.4])
    np.testing.assert_allclose(out[:, 0], -ref[:, 0, ::-1], rtol=0, atol=1e-13)
    np.testing.assert_allclose(out[:, 1], ref[:, 1, ::-1], rtol=0, atol=1e-13)
    # x <-> y: u and v swap
    out = burgers_2d(np.stack([v0[1].T, v0[0].T]), 5e-3, [0.4])
    np.testing.assert_allclose(out[:, 0], ref[:, 1].transpose(0, 2, 1), rtol=0, atol=1e-13)
    np.testing.assert_allclose(out[:, 1], ref[:, 0].transpose(0, 2, 1), rtol=0, atol=1e-13)


def test_batch_members_do_not_affect_each_other():
    rng = np.random.default_rng(2)
    v0 = np.stack([smooth_velocity(16, rng) for _ in range(3)])  # (3, 2, X, Y)
    v0[1] *= 2  # a faster flow takes smaller steps
    nu = np.array([1e-2, 2e-2, 5e-3])
    batched = burgers_2d(v0, nu, [0.2, 0.4])  # (3, T, 2, X, Y)
    for b in range(3):
        np.testing.assert_allclose(batched[b], burgers_2d(v0[b], nu[b], [0.2, 0.4]), atol=1e-12)
    # torch in: its dtype, same values
    out32 = burgers_2d(torch.as_tensor(v0, dtype=torch.float32), nu, [0.4])
    assert out32.dtype == np.float32
    assert np.abs(out32[:, 0] - batched[:, 1]).max() < 1e-5 * np.abs(batched).max()


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="velocity0: expected 2 components"):
        burgers_2d(np.zeros((3, 8, 8)), 1e-2, [0.1])
    with pytest.raises(ValueError, match="nu"):
        burgers_2d(np.zeros((2, 8, 8)), -1.0, [0.1])
    with pytest.raises(ValueError, match="cole_hopf: modes"):
        cole_hopf(np.zeros(1), np.zeros(1), 0.0, 1e-2, [(0.6, 1, 0), (0.5, 0, 1)])


def test_agrees_with_py_pde():
    pde = pytest.importorskip("pde")
    n, nu, t_end = 32, 2e-2, 0.5
    v0 = 2 * smooth_velocity(n, np.random.default_rng(3), k_max=2)
    grid_ = pde.CartesianGrid([[0, 1], [0, 1]], [n, n], periodic=True)

    class Burgers(pde.PDEBase):  # second-order central differences
        def evolution_rate(self, state, t=0):
            u, v = state
            gu, gv = u.gradient("periodic"), v.gradient("periodic")
            adv_u = u.data * gu.data[0] + v.data * gu.data[1]
            adv_v = u.data * gv.data[0] + v.data * gv.data[1]
            lap_u, lap_v = u.laplace("periodic"), v.laplace("periodic")
            return pde.FieldCollection(
                [
                    nu * lap_u - pde.ScalarField(grid_, adv_u),
                    nu * lap_v - pde.ScalarField(grid_, adv_v),
                ]
            )

    state = pde.FieldCollection([pde.ScalarField(grid_, v0[0]), pde.ScalarField(grid_, v0[1])])
    result = Burgers().solve(
        state, t_range=t_end, solver="scipy", backend="numpy", tracker=None, rtol=1e-8, atol=1e-10
    )
    reference = np.stack([result[0].data, result[1].data])
    ours = burgers_2d(v0, nu, [t_end])[0]
    assert rel(ours, reference) < 2e-2  # finite-difference error at 32²: 9.6e-3
    assert rel(v0, reference) > 0.1  # the state did change
