"""Shallow-water finite-volume solver: conservation, well-balancing, symmetry, positivity, and
the exact planar dam-break (Stoker) solution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dpot_lab.solvers.grid import cell_centres
from dpot_lab.solvers.shallow_water import (
    dam_break_initial,
    random_dam_radius,
    shallow_water_2d,
)


def grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    x = cell_centres(n, -2.5, 2.5)
    return x[:, None], x[None, :]


def test_mass_is_conserved_with_bathymetry():
    x, y = grid(32)
    bed = 0.4 * np.exp(-4 * ((x - 1.0) ** 2 + y**2)) + 0.1 * x  # a bump on a slope
    h0 = np.clip(dam_break_initial(32, 0.6) + 0.5 - bed, 0.0, None)
    out = shallow_water_2d(h0, [0.0, 0.3, 0.6], bathymetry=bed, return_momentum=True)
    mass = out[:, 0].sum(axis=(-2, -1))
    np.testing.assert_allclose(mass, h0.sum(), rtol=1e-10, atol=0)
    assert np.abs(out[-1, 1:]).max() > 0.05  # the water did move


@pytest.mark.parametrize("island", [False, True], ids=["submerged", "emerged"])
def test_lake_at_rest_stays_at_rest(island):
    x, y = grid(32)
    bed = 0.8 * np.exp(-3 * (x**2 + y**2)) + 0.3 * np.sin(x) * np.cos(2 * y)
    if island:  # a bump that rises above the surface: dry cells inside the domain
        bed = bed + 2.0 * np.exp(-8 * ((x - 1.2) ** 2 + (y + 1.0) ** 2))
    surface = 1.5
    h0 = np.clip(surface - bed, 0.0, None)
    assert (h0 == 0).any() == island
    out = shallow_water_2d(h0, [0.25, 0.5], bathymetry=bed, return_momentum=True)
    np.testing.assert_allclose(out[:, 0], np.broadcast_to(h0, out[:, 0].shape), rtol=0, atol=1e-13)
    assert np.abs(out[:, 1:]).max() < 1e-13


def test_dam_break_is_radially_symmetric():
    n = 48
    h = shallow_water_2d(dam_break_initial(n, 0.5), [0.25, 0.5])  # (T, X, Y)
    # exact discrete symmetries of the square grid: x <-> y, x -> -x, y -> -y
    np.testing.assert_allclose(h, h.transpose(0, 2, 1), rtol=0, atol=1e-13)
    np.testing.assert_allclose(h, h[:, ::-1], rtol=0, atol=1e-13)
    np.testing.assert_allclose(h, h[:, :, ::-1], rtol=0, atol=1e-13)
    # spread about the azimuthal mean profile h(r), relative to the dam height difference 1
    # (the initial circle is itself a staircase of cells, so O(dx) anisotropy is expected)
    x, y = grid(n)
    r = np.hypot(x, y)
    bins = np.digitize(r, np.arange(0, r.max(), 2.5 / n))
    for frame in h:
        mean_h = np.array([frame[bins == i].mean() for i in np.unique(bins)])
        mean_r = np.array([r[bins == i].mean() for i in np.unique(bins)])
        spread = np.abs(frame - np.interp(r, mean_r, mean_h))
        assert spread.max() < 0.06
        assert spread.sum() / np.abs(frame - 1.0).sum() < 0.06
        assert frame.max() - frame.min() > 0.3  # not trivially flat


def random_state(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """Depth, velocities and bathymetry with no symmetry, (X, Y) each."""
    h0 = 1 + 0.3 * rng.random(shape)
    return (
        h0,
        0.2 * rng.standard_normal(shape),
        0.2 * rng.standard_normal(shape),
        0.2 * rng.random(shape),
    )


def test_mirrored_or_rotated_state_gives_the_mirrored_or_rotated_solution():
    h0, u0, v0, bed = random_state(np.random.default_rng(1), (16, 16))
    ref = shallow_water_2d(h0, [0.3], u0, v0, bed, return_momentum=True)[0]  # (3, X, Y)
    assert np.abs(ref[0] - h0).max() > 0.05

    def flip(a):
        return a[::-1].copy()

    def turn(a):
        return np.rot90(a).copy()

    mirrored = shallow_water_2d(
        flip(h0), [0.3], -flip(u0), flip(v0), flip(bed), return_momentum=True
    )
    expected = np.stack([flip(ref[0]), -flip(ref[1]), flip(ref[2])])  # hu changes sign
    np.testing.assert_allclose(mirrored[0], expected, rtol=0, atol=1e-14)
    rotated = shallow_water_2d(
        turn(h0), [0.3], -turn(v0), turn(u0), turn(bed), return_momentum=True
    )
    expected = np.stack([turn(ref[0]), -turn(ref[2]), turn(ref[1])])  # (hu, hv) turned by 90°
    np.testing.assert_allclose(rotated[0], expected, rtol=0, atol=1e-14)


def test_twice_the_domain_is_the_same_flow_at_twice_the_time():
    # x -> 2x, t -> 2t leaves the equations (velocities, depth, g) unchanged
    h0, u0, v0, bed = random_state(np.random.default_rng(2), (12, 8))  # non-square too
    small = shallow_water_2d(h0, [0.15, 0.3], u0, v0, bed, return_momentum=True)
    big = shallow_water_2d(
        h0, [0.3, 0.6], u0, v0, bed, domain=((-5.0, 5.0), (-5.0, 5.0)), return_momentum=True
    )
    np.testing.assert_allclose(big, small, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(big[:, 0].sum(axis=(-2, -1)), h0.sum(), rtol=1e-13)  # mass


@pytest.mark.parametrize("h_out", [1e-6, 0.0])
def test_wet_dry_front_keeps_depth_nonnegative(h_out):
    h0 = dam_break_initial(32, 0.6, h_in=1.0, h_out=h_out)
    out = shallow_water_2d(h0, np.linspace(0.0, 0.6, 4), return_momentum=True)
    assert np.isfinite(out).all()
    assert out[:, 0].min() >= 0.0
    np.testing.assert_allclose(out[:, 0].sum(axis=(-2, -1)), h0.sum(), rtol=1e-12)
    # the front advanced into the (nearly) dry bed: radius 0.6 + about 2 sqrt(g h_in) t
    x, y = grid(32)
    wet = out[-1, 0] > 1e-3
    assert np.hypot(x, y)[wet].max() > 1.2


def test_water_torn_apart_dries_the_middle_without_negative_depth():
    # outflow at three times the wave speed in all four quadrants: a double rarefaction that
    # all but empties the middle (the hardest case for positivity)
    x, y = grid(24)
    h0 = np.ones((24, 24))
    out = shallow_water_2d(
        h0, [0.25, 0.5], 3.0 * np.sign(x) * h0, 3.0 * np.sign(y) * h0, return_momentum=True
    )
    assert np.isfinite(out).all() and out[:, 0].min() >= 0.0
    assert out[-1, 0, 11:13, 11:13].max() < 1e-3  # dry in the middle
    np.testing.assert_allclose(out[:, 0].sum(axis=(-2, -1)), h0.sum(), rtol=1e-13)


def stoker(x: np.ndarray, t: float, h_l: float, h_r: float, g: float) -> np.ndarray:
    """Exact depth of a planar dam break over a wet bed (rarefaction left, shock right)."""
    c_l = np.sqrt(g * h_l)

    def mismatch(h_m):  # rarefaction speed minus shock speed condition on the middle state
        return 2 * (c_l - np.sqrt(g * h_m)) - (h_m - h_r) * np.sqrt(
            g * (h_m + h_r) / (2 * h_m * h_r)
        )

    lo, hi = h_r, h_l
    for _ in range(100):  # bisection: mismatch decreases in h_m
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if mismatch(mid) > 0 else (lo, mid)
    h_m = 0.5 * (lo + hi)
    u_m = 2 * (c_l - np.sqrt(g * h_m))
    shock = h_m * u_m / (h_m - h_r)
    xi = x / t
    fan = (2 * c_l - xi) ** 2 / (9 * g)
    return np.where(
        xi < -c_l, h_l, np.where(xi < u_m - np.sqrt(g * h_m), fan, np.where(xi < shock, h_m, h_r))
    )


@pytest.mark.parametrize("g", [1.0, 9.81])
def test_planar_dam_break_matches_stoker_solution(g):
    t = 0.8 / np.sqrt(g)  # the waves stay clear of the walls
    errors = []
    for n in (100, 200):
        x = cell_centres(n, -2.5, 2.5)
        h0 = np.where(x < 0, 2.0, 1.0)[:, None].repeat(2, axis=1)  # (X, 2): a channel along x
        h = shallow_water_2d(h0, [t], g=g)[0]
        np.testing.assert_array_equal(h[:, 0], h[:, 1])
        errors.append(np.abs(h[:, 0] - stoker(x, t, 2.0, 1.0, g)).mean())
    assert errors[1] < 0.007
    assert errors[0] / errors[1] > 1.6  # first order at the shock: error halves
    # the same problem along y gives the transposed answer
    h_y = shallow_water_2d(h0.T, [t], g=g)[0]
    np.testing.assert_array_equal(h_y, h.T)


def test_batch_torch_and_numpy_agree():
    radii = [0.35, 0.65]
    h0 = np.stack([dam_break_initial(24, r) for r in radii])
    times = [0.0, 0.2, 0.4]
    batch = shallow_water_2d(torch.from_numpy(h0), times, return_momentum=True)
    assert batch.shape == (2, 3, 3, 24, 24)
    for i in range(2):
        single = shallow_water_2d(h0[i], times, return_momentum=True)
        np.testing.assert_allclose(batch[i], single, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(batch[:, 0, 0], h0)  # frame at t = 0 is the input


def test_velocity_input_moves_water():
    h0 = np.ones((16, 16))
    u0 = np.full((16, 16), 0.1)
    out = shallow_water_2d(h0, [0.5], u0=u0, return_momentum=True)[0]
    # the walls stop the flow along x: water piles up at the far wall, y is untouched
    assert out[0, -1].mean() > 1.0 > out[0, 0].mean()
    np.testing.assert_allclose(out[2], 0.0, atol=1e-15)


def test_dam_on_a_non_square_grid_of_another_domain():
    domain = ((0.0, 4.0), (-1.0, 1.0))
    h0 = dam_break_initial((8, 4), 0.6, h_in=3.0, center=(1.25, -0.25), domain=domain)
    # cell centres x = 0.25, 0.75, ..., y = -0.75, -0.25, ...: the centre is cell (2, 1), and
    # its four neighbours are 0.5 from it (the diagonal ones 0.71)
    inside = np.zeros((8, 4), bool)
    inside[[2, 1, 3, 2, 2], [1, 1, 1, 0, 2]] = True
    np.testing.assert_array_equal(h0, np.where(inside, 3.0, 1.0))


def test_dam_radius_distribution_and_errors():
    rng = np.random.default_rng(0)
    radii = np.array([random_dam_radius(rng) for _ in range(200)])
    assert 0.3 <= radii.min() and radii.max() <= 0.7 and radii.std() > 0.1
    with pytest.raises(ValueError, match="h0"):
        shallow_water_2d(-np.ones((8, 8)), [0.1])
    with pytest.raises(ValueError, match="u0"):
        shallow_water_2d(np.ones((8, 8)), [0.1], u0=np.ones((8, 7)))
    with pytest.raises(ValueError, match="t_save"):
        shallow_water_2d(np.ones((8, 8)), [0.2, 0.1])
    with pytest.raises(ValueError, match="limiter"):
        shallow_water_2d(np.ones((8, 8)), [0.1], limiter="superbee")
