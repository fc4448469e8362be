"""The input checks that every solver and initial-state helper shares (stepping.as_batched,
as_batched_like, check_save_times, check_number, grid.check_domain, grid.grid_shape): a bad
state, save time or parameter is one ValueError naming the argument."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dpot_lab.solvers import (
    cns_random_initial,
    compressible_ns_2d,
    dam_break_initial,
    diffusion_reaction_2d,
    diffusion_reaction_initial,
    divergence_free_velocity,
    gaussian_random_field,
    navier_stokes_2d,
    navier_stokes_3d,
    shallow_water_2d,
)

ONES, ZEROS = np.ones((8, 8)), np.zeros((8, 8))
ZEROS_3D = np.zeros((3, 4, 4, 4))

# each solver called with its array arguments from a dict, and valid values for them
SOLVERS = {
    "navier_stokes_2d": (
        lambda a, t: navier_stokes_2d(a["w0"], 1e-3, t, forcing=a["forcing"]),
        {"w0": ZEROS, "forcing": ZEROS},
    ),
    "navier_stokes_3d": (
        lambda a, t: navier_stokes_3d(a["u0"], 1e-3, t, forcing=a["forcing"]),
        {"u0": ZEROS_3D, "forcing": ZEROS_3D},
    ),
    "diffusion_reaction_2d": (
        lambda a, t: diffusion_reaction_2d(a["u0"], a["v0"], t),
        {"u0": ZEROS, "v0": ZEROS},
    ),
    "shallow_water_2d": (
        lambda a, t: shallow_water_2d(a["h0"], t, a["u0"], a["v0"], a["bathymetry"]),
        {"h0": ONES, "u0": ZEROS, "v0": ZEROS, "bathymetry": ZEROS},
    ),
    "compressible_ns_2d": (
        lambda a, t: compressible_ns_2d(a["rho0"], a["vx0"], a["vy0"], a["p0"], t, 0.0, 0.0),
        {"rho0": ONES, "vx0": ZEROS, "vy0": ZEROS, "p0": ONES},
    ),
}
ARGUMENTS = [(solver, arg) for solver, (_, args) in SOLVERS.items() for arg in args]


@pytest.mark.parametrize("bad", [np.nan, -np.inf])
@pytest.mark.parametrize("solver,arg", ARGUMENTS)
def test_a_non_finite_value_in_any_array_is_refused_by_name(solver, arg, bad):
    # before: a FloatingPointError about a blown-up flow, or NaN frames when t_save = [0]
    call, args = SOLVERS[solver]
    value = args[arg].copy()
    value.flat[5] = bad
    with pytest.raises(ValueError, match=rf"{arg}: expected finite values, got 1 NaN or infinite"):
        call({**args, arg: value}, [0.0, 0.1])


@pytest.mark.parametrize(
    "w0,message",
    [
        (torch.zeros(8, 8, dtype=torch.float16), "expected float32 or float64 values, got torch.f"),
        (
            torch.zeros(8, 8, dtype=torch.bfloat16),
            "expected float32 or float64 values, got torch.b",
        ),
        (torch.zeros(8, 8, dtype=torch.complex64), "expected real values, got torch.complex64"),
        (np.zeros((8, 8), complex), "expected real numbers, got an array of dtype complex128"),
        ([["a"] * 8] * 8, "expected real numbers, got an array of dtype <U1"),
        (np.zeros((0, 8, 8)), r"expected a non-empty state, got shape \(0, 8, 8\)"),
    ],
    ids=["float16", "bfloat16", "complex-torch", "complex-numpy", "strings", "empty-batch"],
)
def test_a_state_of_the_wrong_kind_is_refused_by_name(w0, message):
    with pytest.raises(ValueError, match=f"w0: {message}"):
        navier_stokes_2d(w0, 1e-3, [0.1])


@pytest.mark.parametrize("solver,arg", [("shallow_water_2d", "u0"), ("compressible_ns_2d", "vy0")])
def test_a_list_of_the_wrong_shape_is_named_with_its_own_shape(solver, arg):
    # before: AttributeError: 'list' object has no attribute 'shape'
    call, args = SOLVERS[solver]
    with pytest.raises(
        ValueError, match=rf"{arg}: expected shape \(8, 8\) or \(1, 8, 8\), got \(8, 9\)"
    ):
        call({**args, arg: np.zeros((8, 9)).tolist()}, [0.1])


@pytest.mark.parametrize(
    "t_save,message",
    [
        ([0.2, 0.1], r"expected non-decreasing times, got \[0.2, 0.1\]"),
        ([[0.1, 0.2], [0.3, 0.4]], r"expected a 1-D sequence of times, got shape \(2, 2\)"),
        (["soon"], r"expected a sequence of times, got \['soon'\]"),
        ([], "expected at least one save time, got none"),
        ([0.1, float("nan")], "expected finite times >= 0"),
        ([-0.1], "expected finite times >= 0"),
    ],
    ids=["unsorted", "2-D", "strings", "empty", "nan", "negative"],
)
@pytest.mark.parametrize("solver", SOLVERS)
def test_bad_save_times_are_refused_by_name(solver, t_save, message):
    call, args = SOLVERS[solver]
    with pytest.raises(ValueError, match=f"t_save: {message}"):
        call(args, t_save)


FIRST_FRAME = {  # the frame at t = 0, from the array arguments
    "navier_stokes_2d": lambda a: a["w0"],
    "navier_stokes_3d": lambda a: a["u0"],
    "diffusion_reaction_2d": lambda a: np.stack([a["u0"], a["v0"]]),
    "shallow_water_2d": lambda a: a["h0"],
    "compressible_ns_2d": lambda a: np.stack([a["vx0"], a["vy0"], a["rho0"], a["p0"]]),
}


@pytest.mark.parametrize("solver", SOLVERS)
def test_save_times_may_start_at_zero_repeat_or_be_one_number(solver):
    call, args = SOLVERS[solver]
    rng = np.random.default_rng(0)
    state = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in args.items()}  # not at rest
    if solver == "navier_stokes_3d":  # u0 is projected: start divergence-free
        state["u0"] = navier_stokes_3d(state["u0"], 0.0, [0.0])[0]
    out = call(state, torch.tensor([0.0, 0.05, 0.05], dtype=torch.float64))  # (T, ...)
    np.testing.assert_allclose(out[0], FIRST_FRAME[solver](state), rtol=0, atol=1e-14)
    assert not np.allclose(out[1], out[0])
    np.testing.assert_array_equal(out[2], out[1])  # a repeated time repeats the frame
    np.testing.assert_array_equal(call(state, 0.05)[0], out[1])  # the same steps as one number


def swe(**kw):
    return lambda: shallow_water_2d(ONES, [0.1], **kw)


def cns(**kw):
    state = {"rho0": ONES, "vx0": ZEROS, "vy0": ZEROS, "p0": ONES, "eta": 0.0, "zeta": 0.0, **kw}
    return lambda: compressible_ns_2d(t_save=[0.1], **state)


# before: NaN frames, a "flow blew up" error later on, or (g = 0, a reversed domain) a silent run
BAD_PARAMETERS = {
    "nu: expected a finite number >= 0, got inf": lambda: navier_stokes_2d(ZEROS, np.inf, [0.1]),
    "cfl: expected a finite number > 0, got 0": lambda: navier_stokes_2d(ZEROS, 0.0, [0.1], cfl=0),
    r"max_dt: expected a step > 0 \(inf: no cap\), got 0": lambda: navier_stokes_2d(
        ZEROS, 0.0, [0.1], max_dt=0
    ),
    "nu: expected a finite number >= 0, got nan": lambda: navier_stokes_3d(ZEROS_3D, np.nan, [0.1]),
    "cfl: expected a finite number > 0, got -1": lambda: navier_stokes_3d(
        ZEROS_3D, 0.0, [0.1], cfl=-1
    ),
    "k: expected a finite number, got nan": lambda: diffusion_reaction_2d(
        ZEROS, ZEROS, [0.1], k=np.nan
    ),
    "dv: expected a finite number >= 0, got inf": lambda: diffusion_reaction_2d(
        ZEROS, ZEROS, [0.1], dv=np.inf
    ),
    r"safety: expected a finite number in \(0, 1\], got 0": lambda: diffusion_reaction_2d(
        ZEROS, ZEROS, [0.1], safety=0
    ),
    "g: expected a finite number > 0, got 0": swe(g=0.0),
    "h_dry: expected a finite number > 0, got 0": swe(h_dry=0.0),
    r"cfl: expected a finite number in \(0, 0.5\], got 0.7": swe(cfl=0.7),
    "domain: expected finite bounds with x0 < x1 and y0 < y1": swe(domain=((2.5, -2.5), (0, 1))),
    r"domain: expected \(\(x0, x1\), \(y0, y1\)\), got \(\(0, 1\),\)": swe(domain=((0, 1),)),
    "h0: expected depths >= 0, got a minimum of -1": lambda: shallow_water_2d(-ONES, [0.1]),
    "eta: expected a finite number >= 0, got nan": cns(eta=np.nan),
    "zeta: expected a finite number >= 0, got -1": cns(zeta=-1.0),
    "gamma: expected a finite number > 1, got 1": cns(gamma=1.0),
    r"cfl_visc: expected a finite number in \(0, 1\], got 0": cns(cfl_visc=0.0),
    "domain: expected finite bounds": cns(domain=((0, 1), (0, np.inf))),
    "p0: expected values > 0, got a minimum of 0": cns(p0=ZEROS),
}
RNG = np.random.default_rng(0)
# before: NaN fields (k_max = 0, a size-2 grid, mach = nan), a ZeroDivisionError or a numpy
# error about stacking, unpacking or negative dimensions
BAD_INITIAL_STATES = {
    "n: expected a number of samples >= 0, got -1": lambda: gaussian_random_field(RNG, -1, 8),
    "tau = 0 needs a sigma": lambda: gaussian_random_field(RNG, 1, 8, tau=0),  # was all zeros
    "alpha: expected a finite number > 0, got 0": lambda: gaussian_random_field(RNG, 1, 8, 0),
    "n: expected a number of samples >= 0, got 2.5": lambda: diffusion_reaction_initial(
        RNG, 2.5, 8
    ),
    r"resolution: expected an int >= 2 or 2 of them, got \(8,\)": lambda: gaussian_random_field(
        RNG, 1, (8,)
    ),
    r"the spectrum leaves no energy on the grid \(2, 2, 2\)": lambda: divergence_free_velocity(
        RNG, 1, 2
    ),
    "u_rms: expected a finite number >= 0, got nan": lambda: divergence_free_velocity(
        RNG, 1, 8, u_rms=np.nan
    ),
    "k_max: expected an int >= 1, got 0": lambda: cns_random_initial(RNG, 1, 8, k_max=0),
    "mach: expected a finite number > 0, got nan": lambda: cns_random_initial(RNG, 1, 8, np.nan),
    "gamma: expected a finite number > 1, got 0": lambda: cns_random_initial(RNG, 1, 8, gamma=0),
    "cns_random_initial: resolution: expected an int >= 2 or 2 of them, got 0": (
        lambda: cns_random_initial(RNG, 1, 0)
    ),
    "dam_break_initial: resolution: expected an int >= 2 or 2 of them, got 0": (
        lambda: dam_break_initial(0, 0.5)
    ),
    "dam_break_initial: radius: expected a finite number > 0, got nan": (
        lambda: dam_break_initial(8, np.nan)
    ),
    "dam_break_initial: h_in: expected a finite number >= 0, got nan": (
        lambda: dam_break_initial(8, 0.5, h_in=np.nan)
    ),
    "dam_break_initial: domain: expected finite bounds": (
        lambda: dam_break_initial(8, 0.5, domain=((1, -1), (0, 1)))
    ),
}


@pytest.mark.parametrize("message", [*BAD_PARAMETERS, *BAD_INITIAL_STATES])
def test_a_bad_parameter_is_refused_by_name(message):
    with pytest.raises(ValueError, match=message):
        {**BAD_PARAMETERS, **BAD_INITIAL_STATES}[message]()
