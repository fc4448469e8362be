"""2D Gray–Scott: exact diffusion, fourth order in time, the homogeneous steady states stay,
shifts and mirrors, per-sample F and k, and agreement with an independent finite-difference solver
built on py-pde."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dpot_lab.solvers.gray_scott import gray_scott_2d
from dpot_lab.solvers.grid import cell_centres


def grid(n: int, length: float) -> tuple[np.ndarray, np.ndarray]:
    c = cell_centres(n, 0.0, length)
    return c[:, None], c[None, :]


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def smooth_state(n: int, length: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) (n, n) each: (1, 0) minus a smooth bump of v's food, plus modes 0 < |m| <= 3."""
    x, y = grid(n, length)
    fields = []
    for _ in range(2):
        a = np.zeros((n, n))
        for mx in range(-3, 4):
            for my in range(0, 4):
                if 0 < mx * mx + my * my <= 9:
                    phase = 2 * np.pi * (mx * x + my * y) / length + rng.uniform(0, 6)
                    a += rng.normal() * np.cos(phase)
        fields.append(a / a.std())
    u = 0.6 + 0.15 * fields[0]
    v = 0.25 + 0.08 * fields[1]
    return u, v


def test_diffusion_is_exact_per_field():
    n, length, times, du, dv = 32, 1.0, [0.0, 100.0, 300.0], 2e-5, 1e-5
    x, y = grid(n, length)
    modes = [(1, 0), (2, 3), (0, 5)]
    u0 = np.stack([np.cos(2 * np.pi * (mx * x + my * y) / length + 0.3) for mx, my in modes])
    v0 = np.stack([np.sin(2 * np.pi * (mx * x - my * y) / length) for mx, my in modes])
    out = gray_scott_2d(u0, v0, times, du=du, dv=dv, length=length, reaction=False)
    for b, (mx, my) in enumerate(modes):
        k2 = (2 * np.pi / length) ** 2 * (mx**2 + my**2)
        for i, t in enumerate(times):
            assert rel(out[b, i, 0], u0[b] * np.exp(-du * k2 * t)) < 1e-12
            assert rel(out[b, i, 1], v0[b] * np.exp(-dv * k2 * t)) < 1e-12
    decay_u, decay_v = out[1, -1, 0].std() / u0[1].std(), out[1, -1, 1].std() / v0[1].std()
    assert decay_u < 0.1 and decay_u < 0.5 * decay_v  # du = 2 dv: u decays faster


def test_fourth_order_in_time_with_fixed_steps():
    u0, v0 = smooth_state(16, 1.0, np.random.default_rng(0))
    args = dict(f=0.04, k=0.06, du=2e-4, dv=1e-4, length=1.0)
    ref = gray_scott_2d(u0, v0, [100.0], dt=100 / 1024, **args)[0]
    steps = [100 / 16, 100 / 32, 100 / 64]
    errors = [rel(gray_scott_2d(u0, v0, [100.0], dt=dt, **args)[0], ref) for dt in steps]
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert errors[-1] > 1e-13
    assert np.all((orders > 3.5) & (orders < 5)), (errors, orders)
    assert rel(ref, np.stack([u0, v0])) > 0.1  # the state did change


@pytest.mark.parametrize("f,k", [(0.04, 0.06), (0.04, 0.02), (0.09, 0.05)])
def test_homogeneous_steady_states_stay(f, k):
    states = [(1.0, 0.0)]  # always; where 4 (f + k)² < f also the node of u (1 − u) = (f + k)²/f
    disc = 1 - 4 * (f + k) ** 2 / f  # (the other root, a saddle, leaves by roundoff)
    if disc > 0:
        root = (1 - math.sqrt(disc)) / 2
        states.append((root, f * (1 - root) / (f + k)))
    assert len(states) == (1 if (f, k) == (0.04, 0.06) else 2)
    ones = np.ones((len(states), 16, 16))
    u0 = ones * np.array([s[0] for s in states])[:, None, None]
    v0 = ones * np.array([s[1] for s in states])[:, None, None]
    out = gray_scott_2d(u0, v0, [500.0], f=f, k=k)  # (S, 1, 2, X, Y)
    np.testing.assert_allclose(out[:, 0, 0], u0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(out[:, 0, 1], v0, rtol=0, atol=1e-12)
    # off a steady state it moves: the trivial state from u = 0.9 recovers at rate f
    moved = gray_scott_2d(0.9 * ones[0], 0 * ones[0], [10.0], f=f, k=k)[0, 0]
    np.testing.assert_allclose(moved, 1 - 0.1 * math.exp(-10 * f), rtol=0, atol=1e-12)


def test_shifted_and_mirrored_states_give_the_same_transformed_solutions():
    u0, v0 = smooth_state(16, 1.0, np.random.default_rng(2))
    args = dict(f=0.03, k=0.055, du=2e-4, dv=1e-4, length=1.0)
    ref = gray_scott_2d(u0, v0, [100.0], **args)  # (T, 2, X, Y)
    shift = (5, -3)
    rolled = gray_scott_2d(np.roll(u0, shift, (0, 1)), np.roll(v0, shift, (0, 1)), [100.0], **args)
    np.testing.assert_allclose(rolled, np.roll(ref, shift, (-2, -1)), rtol=0, atol=1e-10)
    mirrored = gray_scott_2d(u0[::-1].copy(), v0[::-1].copy(), [100.0], **args)
    np.testing.assert_allclose(mirrored, ref[..., ::-1, :], rtol=0, atol=1e-10)
    assert rel(ref[0], np.stack([u0, v0])) > 0.1  # the state did change


def test_per_sample_f_and_k_match_single_runs():
    rng = np.random.default_rng(3)
    states = [smooth_state(16, 1.0, rng) for _ in range(3)]
    u0, v0 = np.stack([s[0] for s in states]), np.stack([s[1] for s in states])
    f, k = [0.02, 0.04, 0.06], [0.05, 0.06, 0.062]
    batched = gray_scott_2d(u0, v0, [50.0, 100.0], f=f, k=k, length=1.0)  # (3, T, 2, X, Y)
    for b in range(3):
        alone = gray_scott_2d(u0[b], v0[b], [50.0, 100.0], f=f[b], k=k[b], length=1.0)
        np.testing.assert_allclose(batched[b], alone, rtol=0, atol=1e-12)
    assert rel(batched[2], batched[0]) > 0.05


def test_bad_inputs_name_the_argument():
    z = np.zeros((2, 8, 8))
    with pytest.raises(ValueError, match=r"f: expected one number or one per sample, shape \(2,\)"):
        gray_scott_2d(z, z, [1.0], f=[0.01, 0.02, 0.03])
    with pytest.raises(ValueError, match="k: expected"):
        gray_scott_2d(z, z, [1.0], k=float("nan"))
    with pytest.raises(ValueError, match="dv: expected"):
        gray_scott_2d(z, z, [1.0], dv=-1.0)
    with pytest.raises(ValueError, match="length"):
        gray_scott_2d(z, z, [1.0], length=0.0)
    with pytest.raises(ValueError, match="v0: expected shape"):
        gray_scott_2d(z, np.zeros((8, 9)), [1.0])
    with pytest.raises(ValueError, match="t_save"):
        gray_scott_2d(z, z, [2.0, 1.0])


def test_agrees_with_py_pde():
    pde = pytest.importorskip("pde")
    n, length, t_end, f, k, du, dv = 24, 1.0, 100.0, 0.035, 0.06, 2e-4, 1e-4
    u0, v0 = smooth_state(n, length, np.random.default_rng(4))
    grid_ = pde.CartesianGrid([[0, length], [0, length]], [n, n], periodic=True)

    class GrayScott(pde.PDEBase):  # second-order central differences
        def evolution_rate(self, state, t=0):
            u, v = state
            uvv = u * v**2
            rate = state.copy()
            rate[0] = du * u.laplace("periodic") - uvv + f * (1 - u)
            rate[1] = dv * v.laplace("periodic") + uvv - (f + k) * v
            return rate

    start = pde.FieldCollection([pde.ScalarField(grid_, u0), pde.ScalarField(grid_, v0)])
    result = GrayScott().solve(start, t_range=t_end, solver="scipy", backend="numpy", tracker=None)
    theirs = np.stack([result[0].data, result[1].data])
    ours = gray_scott_2d(u0, v0, [t_end], f=f, k=k, du=du, dv=dv, length=length)[0]
    assert rel(ours, theirs) < 1e-2
    assert rel(np.stack([u0, v0]), theirs) > 0.1  # the state did change
