"""Wave equation with a variable speed: an exact standing wave, the discrete energy, fourth order
in time, translation and mirror symmetry, batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dpot_lab.solvers import gaussian_random_field, wave_2d
from dpot_lab.solvers.grid import cell_centres
from dpot_lab.solvers.wave import wave_energy


def grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    c = cell_centres(n)
    return c[:, None], c[None, :]


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def random_speed(n: int, seed: int) -> np.ndarray:
    """(n, n) smooth speed exp(0.3 g), g a unit-std random field: c in about [0.5, 1.8]."""
    g = gaussian_random_field(np.random.default_rng(seed), 1, n, alpha=4.0, tau=5.0)[0]
    return np.exp(0.3 * g / g.std())


def bump(n: int, x0: float = 0.5, y0: float = 0.4, width: float = 0.06) -> np.ndarray:
    x, y = grid(n)
    return np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * width**2))


def test_constant_speed_fourier_mode_is_the_exact_standing_wave():
    n, c0, times = 32, 1.3, [0.25, 1.0]
    x, y = grid(n)
    u0 = np.stack([np.cos(2 * np.pi * (2 * x + y) + 0.3), np.sin(2 * np.pi * (x - 3 * y))])
    omega = c0 * 2 * np.pi * np.sqrt([5.0, 10.0])[:, None, None]  # c |k| per sample
    out = wave_2d(u0, c0, times, cfl=0.1)  # (2, T, 2, X, Y)
    assert out.shape == (2, 2, 2, n, n)
    for i, t in enumerate(times):
        assert rel(out[:, i, 0], u0 * np.cos(omega * t)) < 1e-6  # measured 8e-8 at t = 1
        exact_u_t = -omega * np.sin(omega * t) * u0
        assert rel(out[:, i, 1], exact_u_t) < 1e-6  # measured 2e-7


def test_variable_speed_energy_is_conserved_to_the_order_of_rk4():
    # the semi-discrete energy is exact; RK4 damps it by O((ω dt)⁶) a step: O(dt⁵) a unit time
    n, speed = 32, random_speed(32, 0)
    u0 = bump(n)
    e0 = wave_energy(u0, np.zeros_like(u0), speed)
    drift = []
    for cfl in (0.8, 0.4):
        out = wave_2d(u0, speed, [0.5, 1.0], cfl=cfl)  # (T, 2, X, Y)
        energy = wave_energy(out[:, 0], out[:, 1], speed)
        assert np.all(np.diff(np.concatenate([[e0], energy])) < 0)  # RK4 only ever damps
        drift.append(abs(energy[-1] / e0 - 1))
    order = np.log2(drift[0] / drift[1])
    assert drift[1] < 1e-5  # measured 3.3e-6 at cfl 0.4, 1e-4 at 0.8
    assert abs(order - 5) < 0.5, (drift, order)
    assert rel(out[-1, 0], u0) > 0.5  # the wave did move


def test_fourth_order_in_time_with_fixed_steps():
    n, speed = 16, random_speed(16, 1)
    u0 = bump(n, width=0.1)
    reference = wave_2d(u0, speed, [0.25], dt=0.25 / 1024)[0]
    errors = [rel(wave_2d(u0, speed, [0.25], dt=0.25 / k)[0], reference) for k in (32, 64, 128)]
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert errors[-1] > 1e-13
    assert np.all(np.abs(orders - 4) < 0.3), (errors, orders)


def test_shifted_and_mirrored_media_give_shifted_and_mirrored_waves():
    speed, u0 = random_speed(16, 2), bump(16, 0.3, 0.6, 0.1)
    ref = wave_2d(u0, speed, [0.3])  # (T, 2, X, Y)
    shifted = wave_2d(np.roll(u0, (3, -5), (0, 1)), np.roll(speed, (3, -5), (0, 1)), [0.3])
    np.testing.assert_allclose(shifted, np.roll(ref, (3, -5), (-2, -1)), rtol=0, atol=1e-12)
    mirrored = wave_2d(u0[::-1].copy(), speed[::-1].copy(), [0.3])
    np.testing.assert_allclose(mirrored, ref[..., ::-1, :], rtol=0, atol=1e-12)


def test_batch_members_do_not_affect_each_other():
    n = 16
    u0 = np.stack([bump(n, 0.3, 0.3, 0.1), bump(n, 0.6, 0.5, 0.08), bump(n)])  # (3, X, Y)
    speed = np.stack([random_speed(n, s) for s in range(3)])
    speed[1] *= 2  # a faster medium takes smaller steps
    u_t0 = np.stack([np.zeros((n, n)), u0[0], -u0[2]])
    batched = wave_2d(u0, speed, [0.1, 0.2], u_t0=u_t0)  # (3, T, 2, X, Y)
    for b in range(3):
        alone = wave_2d(u0[b], speed[b], [0.1, 0.2], u_t0=u_t0[b])
        np.testing.assert_allclose(batched[b], alone, atol=1e-12)
    out32 = wave_2d(torch.as_tensor(u0, dtype=torch.float32), speed, [0.2], u_t0=u_t0)
    assert out32.dtype == np.float32
    assert rel(out32[:, 0], batched[:, 1]) < 1e-3  # float32 eps times (k_max/k)²: 3.5e-4


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="speed: expected c > 0 everywhere"):
        wave_2d(np.zeros((8, 8)), np.zeros((8, 8)), [0.1])
    with pytest.raises(ValueError, match="speed"):
        wave_2d(np.zeros((8, 8)), -1.0, [0.1])
    with pytest.raises(ValueError, match="cfl"):
        wave_2d(np.zeros((8, 8)), 1.0, [0.1], cfl=1.5)  # beyond RK4's stability limit
    with pytest.raises(ValueError, match="u_t0"):
        wave_2d(np.zeros((8, 8)), 1.0, [0.1], u_t0=np.zeros((4, 4)))
