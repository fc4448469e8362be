"""FitzHugh–Nagumo diffusion–reaction: exact Neumann cosine modes, second order in space,
conservation, and agreement with py-pde on the same system."""

from __future__ import annotations

import numpy as np
import pytest

from dpot_lab.solvers import diffusion_reaction_2d, diffusion_reaction_initial
from dpot_lab.solvers.grid import cell_centres


def grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell centres x (n, 1), y (1, n) of [−1, 1]²."""
    c = cell_centres(n, -1.0, 1.0)
    return c[:, None], c[None, :]


def cosine_mode(n: int, mx: int, my: int) -> np.ndarray:
    """cos(mx π (x+1)/2) cos(my π (y+1)/2): zero normal derivative on the walls."""
    x, y = grid(n)
    return np.cos(mx * np.pi * (x + 1) / 2) * np.cos(my * np.pi * (y + 1) / 2)


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def diffusion_errors(n: int, t: float = 1.0) -> tuple[float, float]:
    """Relative errors of u and v against exp(−D (π/2)²(mx² + my²) t) × cosine mode."""
    du, dv = 0.05, 0.1
    u0, v0 = cosine_mode(n, 2, 1), 0.5 * cosine_mode(n, 1, 3)
    out = diffusion_reaction_2d(u0, v0, [t], du=du, dv=dv, reaction=False)[0]  # (2, X, Y)
    exact_u = u0 * np.exp(-du * (np.pi / 2) ** 2 * (4 + 1) * t)
    exact_v = v0 * np.exp(-dv * (np.pi / 2) ** 2 * (1 + 9) * t)
    return rel(out[0], exact_u), rel(out[1], exact_v)


def test_pure_diffusion_matches_the_exact_cosine_mode():
    err_u, err_v = diffusion_errors(64)
    assert err_u < 1e-3 and err_v < 5e-3


def test_second_order_in_space():
    errors = np.array([diffusion_errors(n) for n in (16, 32, 64)])  # (3, 2)
    orders = np.log2(errors[:-1] / errors[1:])
    assert np.all(np.abs(orders - 2) < 0.3), (errors, orders)


def test_no_flux_walls_conserve_mass_without_reaction():
    rng = np.random.default_rng(0)
    u0, v0 = diffusion_reaction_initial(rng, 2, 24)  # rough noise: every mode present
    out = diffusion_reaction_2d(u0, v0, [0.5, 2.0], du=0.02, dv=0.05, reaction=False)
    mass0 = np.stack([u0, v0], axis=1).sum(axis=(-2, -1))  # (B, 2)
    np.testing.assert_allclose(out.sum(axis=(-2, -1)), mass0[:, None].repeat(2, 1), atol=1e-10)
    assert np.all(out[:, -1].std(axis=(-2, -1)) < 0.5 * np.stack([u0, v0], 1).std(axis=(-2, -1)))


def test_inhibitor_mass_obeys_its_balance_law():
    # d/dt Σv = Σ(u − v) exactly: diffusion moves mass between cells but never through walls
    rng = np.random.default_rng(1)
    u0, v0 = diffusion_reaction_initial(rng, 1, 16)
    times = np.linspace(0, 1, 101)
    out = diffusion_reaction_2d(u0[0], v0[0], times, dt=2e-3)  # (T, 2, X, Y)
    u_sum, v_sum = out[:, 0].sum(axis=(-2, -1)), out[:, 1].sum(axis=(-2, -1))
    source = u_sum - v_sum
    integral = np.concatenate([[0], np.cumsum((source[1:] + source[:-1]) / 2 * np.diff(times))])
    np.testing.assert_allclose(v_sum - v_sum[0], integral, atol=1e-3 * np.abs(v_sum).max())


def test_rotated_or_mirrored_state_gives_the_rotated_or_mirrored_solution():
    # no-flux walls on the square keep its symmetries; the non-square grid keeps its mirrors
    rng = np.random.default_rng(6)
    for shape, rotate in ((12, True), ((12, 7), False)):
        u0, v0 = (a[0] for a in diffusion_reaction_initial(rng, 1, shape))
        ref = diffusion_reaction_2d(u0, v0, [0.5])  # (T, 2, X, Y)
        mirrored = diffusion_reaction_2d(u0[::-1].copy(), v0[::-1].copy(), [0.5])
        np.testing.assert_allclose(mirrored, ref[:, :, ::-1], rtol=0, atol=1e-14)
        if rotate:
            rotated = diffusion_reaction_2d(np.rot90(u0).copy(), np.rot90(v0).copy(), [0.5])
            np.testing.assert_allclose(rotated, np.rot90(ref, axes=(2, 3)), rtol=0, atol=1e-14)


def test_uniform_states_stay_uniform_and_follow_the_reaction():
    from scipy.integrate import solve_ivp

    k = 5e-3
    rest = -np.cbrt(k)  # u = v = −k^(1/3) is a fixed point of the reaction
    out = diffusion_reaction_2d(np.full((6, 5), rest), np.full((6, 5), rest), [1.0, 5.0], k=k)
    np.testing.assert_array_equal(out, rest)
    times = np.linspace(0.0, 2.0, 41)
    out = diffusion_reaction_2d(np.full((6, 5), 0.8), np.full((6, 5), -0.3), times, k=k)
    np.testing.assert_array_equal(out, out[..., :1, :1] * np.ones((6, 5)))  # uniform in space
    ode = solve_ivp(
        lambda t, y: [y[0] - y[0] ** 3 - k - y[1], y[0] - y[1]],
        (0.0, 2.0), [0.8, -0.3], t_eval=times, rtol=1e-12, atol=1e-12,
    )  # fmt: skip
    np.testing.assert_allclose(out[:, :, 0, 0], ode.y.T, atol=1e-5)


def test_batch_members_do_not_affect_each_other():
    u0, v0 = diffusion_reaction_initial(np.random.default_rng(2), 3, 16)
    u0[1] *= 2  # larger values take smaller steps
    batched = diffusion_reaction_2d(u0, v0, [0.5, 1.0])
    assert batched.shape == (3, 2, 2, 16, 16)
    for b in range(3):
        single = diffusion_reaction_2d(u0[b], v0[b], [0.5, 1.0])
        np.testing.assert_allclose(batched[b], single, atol=1e-12)


def test_an_unbatched_v0_is_shared_by_every_sample():
    u0, v0 = diffusion_reaction_initial(np.random.default_rng(5), 2, 8)
    shared = diffusion_reaction_2d(u0, v0[0], [0.2])  # (2, T, 2, X, Y)
    np.testing.assert_array_equal(shared, diffusion_reaction_2d(u0, np.stack([v0[0]] * 2), [0.2]))


def test_pdebench_initial_state_is_standard_normal_noise():
    u0, v0 = diffusion_reaction_initial(np.random.default_rng(3), 4, 64)
    assert u0.shape == v0.shape == (4, 64, 64)
    for a in (u0, v0):
        assert abs(a.mean()) < 0.02 and abs(a.std() - 1) < 0.02
    assert abs(np.corrcoef(u0.ravel(), v0.ravel())[0, 1]) < 0.02
    again = diffusion_reaction_initial(np.random.default_rng(3), 4, 64)
    np.testing.assert_array_equal(again[0], u0)


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="v0"):
        diffusion_reaction_2d(np.zeros((8, 8)), np.zeros((8, 6)), [1.0])
    with pytest.raises(ValueError, match="du"):
        diffusion_reaction_2d(np.zeros((8, 8)), np.zeros((8, 8)), [1.0], du=-1.0)


# --- agreement with py-pde ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def pypde_run():
    """The same FitzHugh–Nagumo system by py-pde (second-order finite differences, Neumann
    walls) on a 64² cell-centred grid of [−1, 1]², t ∈ [0, 1], from a smooth state."""
    pde = pytest.importorskip("pde")
    n, du, dv, k = 64, 1e-3, 5e-3, 5e-3
    x, y = grid(n)
    u0 = np.cos(np.pi * x) * np.cos(np.pi * y / 2) + 0.5 * np.exp(
        -((x - 0.3) ** 2 + (y + 0.2) ** 2) / 0.1
    )
    v0 = 0.3 * np.sin(np.pi * x / 2) * np.cos(np.pi * y)
    grid_ = pde.CartesianGrid([[-1, 1], [-1, 1]], [n, n], periodic=False)
    np.testing.assert_allclose(grid_.cell_coords[..., 0], np.broadcast_to(x, (n, n)))
    walls = {"derivative": 0}

    class FitzHughNagumo(pde.PDEBase):
        def evolution_rate(self, state, t=0):
            u, v = state
            lap_u = u.laplace(walls, backend="scipy")
            lap_v = v.laplace(walls, backend="scipy")
            return pde.FieldCollection([du * lap_u + u - u**3 - k - v, dv * lap_v + u - v])

    state = pde.FieldCollection([pde.ScalarField(grid_, u0), pde.ScalarField(grid_, v0)])
    result = FitzHughNagumo().solve(
        state, t_range=1.0, solver="scipy", backend="numpy", tracker=None, rtol=1e-8, atol=1e-10
    )
    return u0, v0, np.stack([result[0].data, result[1].data])


def test_agrees_with_py_pde(pypde_run):
    u0, v0, reference = pypde_run
    ours = diffusion_reaction_2d(u0, v0, [1.0])[0]  # (2, X, Y)
    assert rel(ours, reference) < 2e-2
    assert rel(np.stack([u0, v0]), reference) > 0.3  # the state changed a lot meanwhile
