"""2D shallow-water equations by a well-balanced, positivity-preserving finite-volume scheme.

    h_t  + (hu)_x + (hv)_y                       = 0
    (hu)_t + (hu² + g h²/2)_x + (huv)_y          = -g h b_x
    (hv)_t + (huv)_x + (hv² + g h²/2)_y          = -g h b_y

on a rectangle with reflecting walls on all four sides (h depth, b bathymetry, g gravity).

Scheme: MUSCL reconstruction (minmod or MC limiter) of h, the surface h + b and the velocities;
hydrostatic reconstruction at every face (Audusse, Bouchut, Bristeau, Klein, Perthame 2004,
second-order version with its centred source term), so a lake at rest stays at rest to round-off
and h stays ≥ 0; HLL flux; SSP-RK2 (Heun) in time; time step from the CFL condition on the face
wave speeds, shortened so that every save time is hit exactly. Each trajectory of a batch has
its own time step, so a trajectory's result does not depend on what it is batched with.

The default scenario is PDEBench's radial dam break (``2D_rdb_NA_NA.h5``): [−2.5, 2.5]², g = 1.0
(PDEBench's ``radial_dam_break.yaml`` has ``gravity: 1.0``), h = 2 inside a circle of random
radius in [0.3, 0.7] centred at the origin and h = 1 outside, at rest, 101 frames on t ∈ [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dpot_lab.solvers.finite_volume import integrate_ssprk2, limited_slope
from dpot_lab.solvers.grid import Domain, cell_centres, check_domain, grid_shape
from dpot_lab.solvers.stepping import as_batched, as_batched_like, check_number, check_save_times

DEFAULT_DOMAIN: Domain = ((-2.5, 2.5), (-2.5, 2.5))
LIMITERS = ("minmod", "mc")


def dam_break_initial(
    resolution: int | tuple[int, int],
    radius: float,
    h_in: float = 2.0,
    h_out: float = 1.0,
    center: tuple[float, float] = (0.0, 0.0),
    domain: Domain = DEFAULT_DOMAIN,
) -> np.ndarray:
    """(X, Y) depth of a radial dam break: ``h_in`` where the cell centre lies within ``radius``
    of ``center``, ``h_out`` elsewhere (PDEBench's set-up)."""
    name = "dam_break_initial"
    nx, ny = grid_shape(resolution, 2, f"{name}: resolution")
    radius = check_number(radius, f"{name}: radius", 0.0, open_low=True)
    h_in, h_out = (
        check_number(h, f"{name}: {n}", 0.0) for h, n in ((h_in, "h_in"), (h_out, "h_out"))
    )
    cx, cy = (check_number(c, f"{name}: center") for c in center)
    (x0, x1), (y0, y1) = check_domain(domain, f"{name}: domain")
    x = cell_centres(nx, x0, x1)[:, None] - cx
    y = cell_centres(ny, y0, y1)[None, :] - cy
    return np.where(x**2 + y**2 <= radius**2, h_in, h_out)


def random_dam_radius(rng: np.random.Generator) -> float:
    """A dam radius drawn uniformly from [0.3, 0.7], as PDEBench draws it."""
    return float(rng.uniform(0.3, 0.7))


def shallow_water_2d(
    h0: np.ndarray | torch.Tensor,
    t_save: Sequence[float] | np.ndarray | torch.Tensor,
    u0: np.ndarray | torch.Tensor | None = None,
    v0: np.ndarray | torch.Tensor | None = None,
    bathymetry: np.ndarray | torch.Tensor | None = None,
    g: float = 1.0,
    domain: Domain = DEFAULT_DOMAIN,
    cfl: float = 0.4,
    limiter: str = "minmod",
    return_momentum: bool = False,
    h_dry: float = 1e-8,
    progress: bool = False,
) -> np.ndarray:
    """Solve the shallow-water equations from depth ``h0`` and velocities ``u0``, ``v0``.

    h0, u0, v0, bathymetry b: (X, Y) or (B, X, Y), numpy or torch (velocities default to 0, b to
    a flat bottom). ``x`` is the first grid axis, ``y`` the second, u the velocity along x.
    t_save: (T,) nondecreasing times ≥ 0; the state at t = 0 is the input. Torch input runs on
    its device in its floating dtype; numpy input runs in float64 on the CPU. ``cfl`` bounds
    dt·(max a_x/dx + max a_y/dy) by the HLL face speeds a (≤ 1/2 keeps h ≥ 0); ``h_dry`` is the
    depth below which velocities are damped to 0.
    Returns numpy (B?, T, X, Y) depth h, or with ``return_momentum`` (B?, T, 3, X, Y) with
    channels (h, hu, hv); B is present when ``h0`` had it.
    """
    name = "shallow_water_2d"
    if limiter not in LIMITERS:
        raise ValueError(f"{name}: limiter must be one of {LIMITERS}, got {limiter!r}")
    cfl = check_number(cfl, f"{name}: cfl", 0.0, 0.5, open_low=True)  # <= 1/2 keeps h >= 0
    g = check_number(g, f"{name}: g", 0.0, open_low=True)
    h_dry = check_number(h_dry, f"{name}: h_dry", 0.0, open_low=True)
    domain = check_domain(domain, f"{name}: domain")
    h, batched = as_batched(h0, f"{name}: h0", 2)  # (B, X, Y)
    if min(h.shape[-2:]) < 2:
        raise ValueError(f"{name}: h0: expected at least 2 x 2 cells, got {tuple(h.shape[1:])}")
    if not bool((h >= 0).all()):
        raise ValueError(f"{name}: h0: expected depths >= 0, got a minimum of {float(h.min()):g}")
    u, v, b = (
        torch.zeros_like(h) if a is None else as_batched_like(a, f"{name}: {field}", h)
        for a, field in ((u0, "u0"), (v0, "v0"), (bathymetry, "bathymetry"))
    )
    times = check_save_times(t_save, f"{name}: t_save")
    nx, ny = h.shape[-2:]
    dx = (domain[0][1] - domain[0][0]) / nx
    dy = (domain[1][1] - domain[1][0]) / ny
    state = torch.stack([h, h * u, h * v], dim=1)  # (B, 3, X, Y)
    b = b[:, None]  # (B, 1, X, Y)

    def rate(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """dq/dt (B, 3, X, Y) and the step (B,) with dt·(max a_x/dx + max a_y/dy) = cfl."""
        d_x, a_x = _sweep(q, b, -2, 1, g, h_dry, limiter)
        d_y, a_y = _sweep(q, b, -1, 2, g, h_dry, limiter)
        speed = a_x.amax(dim=(-2, -1)) / dx + a_y.amax(dim=(-2, -1)) / dy  # (B,)
        return d_x / dx + d_y / dy, cfl / speed

    frames = integrate_ssprk2(state, rate, times, progress, name)  # (B, T, 3, X, Y)
    out = (frames if return_momentum else frames[:, :, 0]).cpu().numpy()
    return out if batched else out[0]


def _sweep(
    q: torch.Tensor, b: torch.Tensor, dim: int, normal: int, g: float, h_dry: float, limiter: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """-(F_{i+1/2} - F_{i-1/2}) + source along ``dim``, i.e. the tendency times the cell size
    (B, 3, X, Y), and the HLL wave speed at every face (B, X+1, Y) or (B, X, Y+1)."""
    order = [0, normal, 3 - normal]  # (h, normal momentum, tangential momentum)
    h = q[:, 0]
    inv_h = 2.0 * h / (h * h + torch.clamp(h * h, min=h_dry * h_dry))  # 1/h, finite as h -> 0
    # primitive fields (h, h + b, u_n, u_t), reconstructed to the left / right face states
    prim = torch.cat([q[:, :1], q[:, :1] + b, q[:, order[1:]] * inv_h[:, None]], dim=1)
    parity = prim.new_tensor([1.0, 1.0, -1.0, 1.0])[:, None, None]  # the wall flips u_n
    left, right = _faces(_pad_wall(prim, dim, parity), dim, limiter)  # (B, 4, ...faces)
    h_l, h_r = left[:, 0], right[:, 0]
    b_l, b_r = left[:, 1] - h_l, right[:, 1] - h_r
    # hydrostatic reconstruction of the depth at each face
    b_star = torch.maximum(b_l, b_r)
    hs_l = torch.clamp(h_l + b_l - b_star, min=0.0)
    hs_r = torch.clamp(h_r + b_r - b_star, min=0.0)
    flux, speed = _hll(hs_l, left[:, 2], left[:, 3], hs_r, right[:, 2], right[:, 3], g)
    n = h.shape[dim]
    hi, lo = _index(dim, slice(1, n + 1)), _index(dim, slice(0, n))
    out = flux[hi] - flux[lo]  # (B, 3, X, Y)
    # pressure corrections of the hydrostatic reconstruction, and the centred source
    corr_l = 0.5 * g * (h_l * h_l - hs_l * hs_l)  # seen by the cell left of the face
    corr_r = 0.5 * g * (h_r * h_r - hs_r * hs_r)  # seen by the cell right of the face
    h_plus, h_minus = h_l[hi], h_r[lo]  # each cell's own face depths
    source = 0.5 * g * (h_plus + h_minus) * (b_l[hi] - b_r[lo])
    out[:, 1] += corr_l[hi] - corr_r[lo] + source
    return -out[:, order], speed  # back to (h, hu, hv)


def _hll(
    h_l: torch.Tensor,
    un_l: torch.Tensor,
    ut_l: torch.Tensor,
    h_r: torch.Tensor,
    un_r: torch.Tensor,
    ut_r: torch.Tensor,
    g: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """HLL flux (B, 3, ...) of (h, h u_n, h u_t) at the faces, and the face wave speed (B, ...)."""
    c_l, c_r = torch.sqrt(g * h_l), torch.sqrt(g * h_r)
    s_l = torch.clamp(torch.minimum(un_l - c_l, un_r - c_r), max=0.0)
    s_r = torch.clamp(torch.maximum(un_l + c_l, un_r + c_r), min=0.0)
    width = s_r - s_l
    inv = torch.where(width > 0, 1.0 / torch.where(width > 0, width, 1.0), 0.0)
    m_l, m_r = h_l * un_l, h_r * un_r
    q_l = torch.stack([h_l, m_l, h_l * ut_l], dim=1)
    q_r = torch.stack([h_r, m_r, h_r * ut_r], dim=1)
    f_l = torch.stack([m_l, m_l * un_l + 0.5 * g * h_l * h_l, m_l * ut_l], dim=1)
    f_r = torch.stack([m_r, m_r * un_r + 0.5 * g * h_r * h_r, m_r * ut_r], dim=1)
    s_l, s_r, inv = s_l[:, None], s_r[:, None], inv[:, None]
    flux = (s_r * f_l - s_l * f_r + s_l * s_r * (q_r - q_l)) * inv
    return flux, torch.maximum(-s_l, s_r)[:, 0]


def _pad_wall(a: torch.Tensor, dim: int, parity: torch.Tensor) -> torch.Tensor:
    """Two mirrored ghost cells on both ends of ``dim`` of (B, C, X, Y), times ``parity``
    (C, 1, 1): -1 for the normal velocity, which a wall reflects."""
    n = a.shape[dim]
    first = a.narrow(dim, 0, 2).flip(dim) * parity
    last = a.narrow(dim, n - 2, 2).flip(dim) * parity
    return torch.cat([first, a, last], dim=dim)


def _faces(p: torch.Tensor, dim: int, limiter: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Limited linear reconstruction of a field padded by two ghost cells along ``dim`` (n + 4):
    the left and right states at the n + 1 faces of the n cells (walls included)."""
    m = p.shape[dim]
    d = torch.diff(p, dim=dim)  # (.., n+3, ..)
    slope = limited_slope(d.narrow(dim, 0, m - 2), d.narrow(dim, 1, m - 2), limiter)  # cells 1..n+2
    centre = p.narrow(dim, 1, m - 2)
    left = (centre + 0.5 * slope).narrow(dim, 0, m - 3)
    right = (centre - 0.5 * slope).narrow(dim, 1, m - 3)
    return left, right


def _index(dim: int, s: slice) -> tuple:
    """Index tuple selecting ``s`` along the negative axis ``dim`` (-2 = x, -1 = y)."""
    return (..., s) if dim == -1 else (..., s, slice(None))


__all__ = ["dam_break_initial", "random_dam_radius", "shallow_water_2d"]
