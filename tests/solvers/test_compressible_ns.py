"""Compressible NS finite-volume solver: conservation, exact solutions (uniform state, advected
density wave, viscous decay of shear and sound waves), order of convergence, initial states."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dpot_lab.solvers.compressible_ns import cns_random_initial, compressible_ns_2d

GAMMA = 5.0 / 3.0
K = 2 * np.pi  # wavenumber of one wave across the unit box


def totals(out: np.ndarray) -> np.ndarray:
    """(T, 4) totals of mass, x and y momentum and energy from (T, 4, X, Y) (vx, vy, ρ, p)."""
    vx, vy, rho, p = (out[:, c] for c in range(4))
    energy = p / (GAMMA - 1) + 0.5 * rho * (vx**2 + vy**2)
    return np.stack([rho, rho * vx, rho * vy, energy], axis=1).sum(axis=(-2, -1))


def cell_average_sine(n: int, shift: float) -> np.ndarray:
    """(n,) exact cell averages of sin(2π(x − shift)) on n cells of [0, 1]."""
    edges = np.arange(n + 1) / n - shift
    return (np.cos(K * edges[:-1]) - np.cos(K * edges[1:])) * n / K


def test_conservation_with_viscosity():
    rho, vx, vy, p = cns_random_initial(np.random.default_rng(3), 1, 32, mach=1.0)
    vy = vy + 0.3  # a net momentum in y too
    args = (rho[0], vx[0], vy[0], p[0], [0.0, 0.02, 0.04])
    out = compressible_ns_2d(*args, eta=0.05, zeta=0.05)
    tot = totals(out)
    scale = totals(np.abs(out))[0]  # magnitudes, so that ~zero totals are judged fairly
    assert np.all(np.abs(tot - tot[0]) <= 1e-10 * scale)
    # viscosity acted: the kinetic energy fell below the inviscid run's
    inviscid = compressible_ns_2d(*args, eta=0.0, zeta=0.0)
    kinetic = [0.5 * (o[-1, 2] * (o[-1, 0] ** 2 + o[-1, 1] ** 2)).sum() for o in (out, inviscid)]
    assert kinetic[0] < 0.95 * kinetic[1]


def test_uniform_state_stays_uniform():
    ones = np.ones((2, 12, 10))
    state = (1.3 * ones, 0.2 * ones, -0.1 * ones, 0.7 * ones)
    out = compressible_ns_2d(*state, [0.1, 0.2], eta=0.01, zeta=0.02)  # (B, T, 4, X, Y)
    expected = np.stack([0.2 * ones, -0.1 * ones, 1.3 * ones, 0.7 * ones], axis=1)  # (B, 4, X, Y)
    np.testing.assert_allclose(out, np.repeat(expected[:, None], 2, axis=1), rtol=1e-13)


def test_density_and_pressure_stay_positive_far_above_the_speed_of_sound():
    # a near-pressureless stretching flow (kinetic energy 1e5 times the internal energy) and
    # Mach-3 "turb" states: a face reconstruction that is not a convex split of the cell drives
    # p < 0 in the expansions within a step, whatever the cfl
    n = 32
    x = (np.arange(n) + 0.5) / n
    ones = np.ones((n, 4))
    stretch = tuple(a[None] for a in (ones, np.sin(K * x)[:, None] * ones, 0 * ones, 1e-6 * ones))
    turb = cns_random_initial(np.random.default_rng(0), 2, 16, mach=3.0, kind="turb")
    for state, times in ((stretch, [0.0, 0.1, 0.2]), (turb, [0.0, 0.05])):
        out = compressible_ns_2d(*state, times, 0.0, 0.0)  # (B, T, 4, X, Y)
        assert np.isfinite(out).all()
        assert out[:, :, 2].min() > 0 and out[:, :, 3].min() > 0
        for sample in out:
            tot, scale = totals(sample), totals(np.abs(sample))[0]
            assert np.all(np.abs(tot - tot[0]) <= 1e-10 * scale)


def test_mirrored_or_rotated_state_gives_the_mirrored_or_rotated_solution():
    rho, vx, vy, p = (a[0] for a in cns_random_initial(np.random.default_rng(7), 1, 16, mach=0.5))
    ref = compressible_ns_2d(rho, vx, vy, p, [0.05], 0.01, 0.02)[0]  # (4, X, Y): vx, vy, ρ, p

    def flip(a):
        return a[::-1].copy()

    def turn(a):
        return np.rot90(a).copy()

    mirrored = compressible_ns_2d(flip(rho), -flip(vx), flip(vy), flip(p), [0.05], 0.01, 0.02)
    expected = np.stack([-flip(ref[0]), flip(ref[1]), flip(ref[2]), flip(ref[3])])
    np.testing.assert_allclose(mirrored[0], expected, rtol=0, atol=1e-13)
    rotated = compressible_ns_2d(turn(rho), -turn(vy), turn(vx), turn(p), [0.05], 0.01, 0.02)
    expected = np.stack([-turn(ref[1]), turn(ref[0]), turn(ref[2]), turn(ref[3])])
    np.testing.assert_allclose(rotated[0], expected, rtol=0, atol=1e-13)


def test_twice_the_domain_is_the_same_flow_at_twice_the_time_and_viscosity():
    # x -> 2x, t -> 2t keeps the velocities if η and ζ double (σ ~ η ∇v, ∇·σ ~ η/L²)
    state = [a[0] for a in cns_random_initial(np.random.default_rng(8), 1, (12, 10), mach=0.5)]
    small = compressible_ns_2d(*state, [0.05], 0.01, 0.02)
    big = compressible_ns_2d(*state, [0.1], 0.02, 0.04, domain=((0.0, 2.0), (1.0, 3.0)))
    np.testing.assert_allclose(big, small, rtol=1e-12)


def test_a_contact_at_rest_stays_at_rest():
    # any density at uniform pressure and zero velocity is a steady solution (no heat conduction)
    rho = 0.5 + np.random.default_rng(9).random((12, 10))
    zeros = np.zeros_like(rho)
    out = compressible_ns_2d(rho, zeros, zeros, np.ones_like(rho), [0.2], 0.01, 0.01)[0]
    np.testing.assert_allclose(out, np.stack([zeros, zeros, rho, np.ones_like(rho)]), atol=1e-14)


def advected_wave_error(n: int, limiter: str) -> tuple[float, float]:
    """L1 error and phase error of ρ = 1 + 0.1 sin 2πx carried by u = 1 to t = 0.25 on n x 4."""
    rho = (1 + 0.1 * cell_average_sine(n, 0.0))[:, None].repeat(4, axis=1)
    ones = np.ones_like(rho)
    out = compressible_ns_2d(rho, ones, 0 * ones, ones, [0.25], 0.0, 0.0, limiter=limiter)[0]
    np.testing.assert_allclose(out[[0, 1, 3]], np.stack([ones, 0 * ones, ones]), atol=1e-13)
    density = out[2, :, 0]
    exact = 1 + 0.1 * cell_average_sine(n, 0.25)
    mode = np.fft.fft(density)[1] / np.fft.fft(exact)[1]  # first Fourier mode, relative
    return np.abs(density - exact).mean(), abs(np.angle(mode))


@pytest.mark.parametrize("limiter,order", [("mc", 1.9), ("minmod", 1.7)])
def test_advected_density_wave_converges_at_second_order(limiter, order):
    errors, phases = zip(*(advected_wave_error(n, limiter) for n in (32, 64, 128)), strict=True)
    observed = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert observed.min() >= order, observed
    assert errors[0] < 2e-3  # 2% of the wave amplitude on 32 cells
    # the wave moves at speed 1: its phase lag, as a fraction of the distance travelled, is small
    # and shrinks under refinement
    speed_error = np.array(phases) / (K * 0.25)
    assert speed_error[0] < 5e-3 and np.all(speed_error[:-1] > 2.5 * speed_error[1:])


def test_shear_wave_decays_at_viscous_rate():
    """v_y = A sin(2πx): ρ v_t = η v_xx exactly, so A(t) = A exp(−η k² t / ρ)."""
    n, amplitude, eta, t = 32, 1e-2, 0.05, 0.5
    x = (np.arange(n) + 0.5) / n
    ones = np.ones((n, 4))
    vy = amplitude * np.sin(K * x)[:, None] * ones
    out = compressible_ns_2d(ones, 0 * ones, vy, ones, [t], eta, zeta=0.03)[0]
    measured = 2 * np.mean(out[1, :, 0] * np.sin(K * x)) / amplitude
    assert measured == pytest.approx(np.exp(-eta * K**2 * t), rel=5e-3)


def test_sound_wave_damped_by_shear_and_bulk_viscosity():
    """A standing sound wave loses amplitude at Γ = (4η/3 + ζ) k² / (2ρ) (no heat conduction)."""
    n, eps, eta, zeta = 32, 1e-3, 0.01, 0.02
    x = (np.arange(n) + 0.5) / n
    ones = np.ones((n, 4))
    u = eps * np.sin(K * x)[:, None] * ones
    rates = []
    for visc in (0.0, 1.0):  # the inviscid run measures the scheme's own damping
        out = compressible_ns_2d(
            ones, u, 0 * ones, ones / GAMMA, [0.0, 1.0], eta * visc, zeta * visc
        )
        vx, p = out[:, 0, :, 0], out[:, 3, :, 0]
        dp = p - p.mean(axis=1, keepdims=True)
        acoustic = 0.5 * (vx**2).mean(axis=1) + 0.5 * (dp**2).mean(axis=1)  # ρ = c = 1
        rates.append(-0.5 * np.log(acoustic[1] / acoustic[0]))
    assert rates[0] < 0.01
    assert rates[1] - rates[0] == pytest.approx((4 * eta / 3 + zeta) * K**2 / 2, rel=0.01)


def test_batch_torch_and_numpy_agree():
    ic = cns_random_initial(np.random.default_rng(5), 2, 16, mach=0.5)
    times = [0.0, 0.01, 0.02]
    batch = compressible_ns_2d(*(torch.from_numpy(a) for a in ic), times, 0.01, 0.01)
    assert batch.shape == (2, 3, 4, 16, 16)
    for i in range(2):
        single = compressible_ns_2d(*(a[i] for a in ic), times, 0.01, 0.01)
        np.testing.assert_allclose(batch[i], single, rtol=1e-14, atol=0)
    np.testing.assert_allclose(batch[:, 0], np.stack([ic[1], ic[2], ic[0], ic[3]], axis=1))


def test_random_initial_states():
    rng = np.random.default_rng(11)
    rho, vx, vy, p = cns_random_initial(rng, 8, (24, 20), mach=0.1)
    assert rho.shape == vx.shape == (8, 24, 20)
    assert rho.min() > 0 and p.min() > 0
    # about half the samples are windowed: at rest at the edge of the box
    windowed = np.abs(vx[:, 0, :]).max(axis=1) < 1e-8
    assert 0 < windowed.sum() < 8
    # mean |v| = M sqrt(γ T0); the sine modes average to 0, so T0 = mean p / mean ρ unwindowed
    mach = np.hypot(vx, vy).mean(axis=(1, 2)) / np.sqrt(GAMMA * p.mean((1, 2)) / rho.mean((1, 2)))
    np.testing.assert_allclose(mach[~windowed], 0.1, rtol=1e-10)
    assert np.all(mach[windowed] < 0.1)
    # PDEBench's spectrum: only modes with 1 <= |i|, |j| <= 4 (both nonzero)
    i = np.fft.fftfreq(24, 1 / 24)[:, None]
    j = np.fft.fftfreq(20, 1 / 20)[None, :]
    allowed = (np.abs(i) >= 1) & (np.abs(i) <= 4) & (np.abs(j) >= 1) & (np.abs(j) <= 4)
    for field in (vx, rho):
        coeff = np.abs(np.fft.fft2(field[np.flatnonzero(~windowed)[0]]))
        coeff[0, 0] = 0.0  # the mean
        assert coeff[~allowed].max() < 1e-10 * coeff.max()
        assert coeff[allowed].min() > 1e-6 * coeff.max()  # every allowed mode is present
    # "turb": uniform ρ and p, divergence-free velocity with mean |v| = 1
    rho, vx, vy, p = cns_random_initial(rng, 2, 32, mach=0.5, kind="turb")
    np.testing.assert_allclose(rho, 1.0)
    np.testing.assert_allclose(p, 1 / (GAMMA * 0.25))
    np.testing.assert_allclose(np.hypot(vx, vy).mean(axis=(1, 2)), 1.0)
    k = np.fft.fftfreq(32)
    div = k[:, None] * np.fft.fft2(vx) + k[None, :] * np.fft.fft2(vy)
    assert np.abs(div).max() < 1e-10 * np.abs(np.fft.fft2(vx)).max()


def test_invalid_input_is_refused():
    ones = np.ones((8, 8))
    with pytest.raises(ValueError, match="rho0"):
        compressible_ns_2d(-ones, ones, ones, ones, [0.1], 0.0, 0.0)
    with pytest.raises(ValueError, match="vy0"):
        compressible_ns_2d(ones, ones, np.ones((8, 9)), ones, [0.1], 0.0, 0.0)
    with pytest.raises(ValueError, match="eta"):
        compressible_ns_2d(ones, ones, ones, ones, [0.1], -1.0, 0.0)
    with pytest.raises(ValueError, match="kind"):
        cns_random_initial(np.random.default_rng(0), 1, 8, kind="shock")
