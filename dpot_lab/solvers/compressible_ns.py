"""2D compressible Navier–Stokes equations on a periodic box by a finite-volume Godunov scheme.

    ρ_t + ∇·(ρv)                      = 0
    (ρv)_t + ∇·(ρv⊗v + p I − σ)       = 0
    E_t + ∇·((E + p) v − σ·v)         = 0,      E = p/(γ−1) + ρ|v|²/2
    σ = η (∇v + ∇vᵀ) + (ζ − 2η/3) (∇·v) I     (shear viscosity η, bulk viscosity ζ)

as in PDEBench's CNS data (no heat conduction, γ = 5/3). Scheme: MUSCL reconstruction of the
primitive variables (ρ, v, p) with the MC or minmod limiter, made conservative and kept positive
(each cell the mean of its two face states, pulled towards it where ρ or p would drop below
1e-8 of the cell's: Zhang & Shu's limiter), HLLC flux, viscous fluxes by central differences at
the faces, SSP-RK2 (Heun) in time. Every term is a face flux, so mass, momentum and energy are
conserved to round-off. Time step: 1/dt = max((|u|+c)/dx + (|v|+c)/dy) / cfl
+ 2ν (1/dx² + 1/dy²) / cfl_visc with ν = (4η/3 + ζ) / min ρ (advective and viscous limits
combined), shortened to hit the save times exactly; each trajectory of a batch has its own step.

``cns_random_initial`` draws PDEBench's "Rand" and "Turb" initial conditions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dpot_lab.solvers.finite_volume import integrate_ssprk2, limited_slope
from dpot_lab.solvers.grid import Domain, check_domain, grid_shape
from dpot_lab.solvers.stepping import as_batched, as_batched_like, check_number, check_save_times

LIMITERS = ("mc", "minmod")
CHANNELS = ("vx", "vy", "density", "pressure")
POSITIVITY_FLOOR = 1e-8  # face ρ and p stay above this fraction of their cell's ρ and p


def compressible_ns_2d(
    rho0: np.ndarray | torch.Tensor,
    vx0: np.ndarray | torch.Tensor,
    vy0: np.ndarray | torch.Tensor,
    p0: np.ndarray | torch.Tensor,
    t_save: Sequence[float] | np.ndarray | torch.Tensor,
    eta: float,
    zeta: float,
    gamma: float = 5.0 / 3.0,
    domain: Domain = ((0.0, 1.0), (0.0, 1.0)),
    cfl: float = 0.5,
    cfl_visc: float = 0.8,
    limiter: str = "mc",
    progress: bool = False,
) -> np.ndarray:
    """Solve compressible NS from density, velocity (vx along the first grid axis x) and pressure.

    rho0, vx0, vy0, p0: (X, Y) or (B, X, Y), numpy or torch. t_save: (T,) nondecreasing times ≥ 0;
    the state at t = 0 is the input. Torch input runs on its device in its floating dtype; numpy
    input runs in float64 on the CPU. Returns numpy (B?, T, 4, X, Y) with channels
    (vx, vy, density, pressure), the DPOT corpus order; B is present when the input had it.
    """
    name = "compressible_ns_2d"
    if limiter not in LIMITERS:
        raise ValueError(f"{name}: limiter must be one of {LIMITERS}, got {limiter!r}")
    cfl = check_number(cfl, f"{name}: cfl", 0.0, 1.0, open_low=True)
    cfl_visc = check_number(cfl_visc, f"{name}: cfl_visc", 0.0, 1.0, open_low=True)
    eta, zeta = check_number(eta, f"{name}: eta", 0.0), check_number(zeta, f"{name}: zeta", 0.0)
    gamma = check_number(gamma, f"{name}: gamma", 1.0, open_low=True)
    domain = check_domain(domain, f"{name}: domain")
    rho, batched = as_batched(rho0, f"{name}: rho0", 2)  # (B, X, Y)
    vx, vy, p = (
        as_batched_like(a, f"{name}: {n}", rho) for a, n in ((vx0, "vx0"), (vy0, "vy0"), (p0, "p0"))
    )
    if min(rho.shape[-2:]) < 3:
        raise ValueError(f"{name}: rho0 must have at least 3 x 3 cells, got {tuple(rho.shape[1:])}")
    for field, a in (("rho0", rho), ("p0", p)):
        if not bool((a > 0).all()):
            raise ValueError(
                f"{name}: {field}: expected values > 0, got a minimum of {float(a.min()):g}"
            )
    times = check_save_times(t_save, f"{name}: t_save")
    nx, ny = rho.shape[-2:]
    dx = (domain[0][1] - domain[0][0]) / nx
    dy = (domain[1][1] - domain[1][0]) / ny
    state = _conservative(torch.stack([rho, vx, vy, p], dim=1), gamma)  # (B, 4, X, Y)
    nu_coeff = 4.0 / 3.0 * eta + zeta

    def rate(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """dq/dt (B, 4, X, Y) and the largest stable step (B,)."""
        w = _primitive(q, gamma)  # (B, 4, X, Y): ρ, vx, vy, p
        c = torch.sqrt(gamma * w[:, 3] / w[:, 0])
        speed = ((w[:, 1].abs() + c) / dx + (w[:, 2].abs() + c) / dy).amax(dim=(-2, -1))  # (B,)
        nu = nu_coeff / w[:, 0].amin(dim=(-2, -1))  # largest kinematic viscosity (B,)
        dt = 1.0 / (speed / cfl + 2.0 * nu * (1.0 / dx**2 + 1.0 / dy**2) / cfl_visc)
        out = torch.zeros_like(q)
        for dim, h, h_t, normal in ((-2, dx, dy, 1), (-1, dy, dx, 2)):
            flux = _inviscid_flux(q, w, dim, normal, gamma, limiter)
            if nu_coeff > 0:
                flux = flux - _viscous_flux(w, dim, normal, h, h_t, eta, zeta)
            out = out - (flux - flux.roll(1, dims=dim)) / h
        return out, dt

    frames = integrate_ssprk2(state, rate, times, progress, name)  # (B, T, 4, X, Y)
    w = _primitive(frames.flatten(0, 1), gamma).unflatten(0, frames.shape[:2])
    out = w[:, :, [1, 2, 0, 3]].cpu().numpy()  # (B, T, 4, X, Y): vx, vy, ρ, p
    return out if batched else out[0]


def cns_random_initial(
    rng: np.random.Generator,
    n: int,
    resolution: int | tuple[int, int],
    mach: float = 0.1,
    kind: str = "rand",
    gamma: float = 5.0 / 3.0,
    k_max: int = 4,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``n`` random initial states on the periodic unit square, each (n, X, Y): (ρ, vx, vy, p).

    kind "rand" (PDEBench 2D_Multi_Rand): every field is a sum of sine modes
    sin(2π(i x + j y) + φ) over 1 ≤ |i|, |j| ≤ k_max (both nonzero) with amplitude |k|^(−1/2) and
    independent uniform phases per field and mode; ρ = ρ0 (1 + δρ f/mean|f|), p = ρ0 T0 (1 + δp
    g/mean|g|) with ρ0, T0 ~ U[0.1, 10], δρ, δp ~ U[0.01, 0.2]; the velocity is scaled to
    mean |v| = mach · sqrt(γ T0). With probability 1/2 the perturbation is confined to a random
    box [xL, xR] × [yL, yR] (xL, yL ~ U[0.1, 0.45], xR, yR ~ U[0.55, 0.9]) by a tanh window of
    width 0.01, outside which the gas is (ρ0, 0, 0, ρ0 T0).
    kind "turb" (PDEBench 2D_Multi_Turb): ρ = 1, p = 1/(γ mach²) (sound speed 1/mach), and a
    divergence-free velocity from the same sine modes (projected in Fourier space) scaled to
    mean |v| = 1.
    """
    name = "cns_random_initial"
    if kind not in ("rand", "turb"):
        raise ValueError(f"{name}: kind must be 'rand' or 'turb', got {kind!r}")
    if not (isinstance(n, int | np.integer) and n >= 1):
        raise ValueError(f"{name}: n: expected a number of samples >= 1, got {n!r}")
    if not (isinstance(k_max, int | np.integer) and k_max >= 1):
        raise ValueError(f"{name}: k_max: expected an int >= 1, got {k_max!r}")
    mach = check_number(mach, f"{name}: mach", 0.0, open_low=True)
    gamma = check_number(gamma, f"{name}: gamma", 1.0, open_low=True)
    nx, ny = grid_shape(resolution, 2, f"{name}: resolution")
    modes = _SineModes((np.arange(nx) + 0.5) / nx, (np.arange(ny) + 0.5) / ny, k_max)
    out = np.empty((4, n, nx, ny))
    for s in range(n):
        if kind == "rand":
            out[:, s] = _rand_state(rng, modes, mach, gamma)
        else:
            out[:, s] = _turb_state(rng, modes, mach, gamma)
    return out[0], out[1], out[2], out[3]


class _SineModes:
    """Sums of the sine modes sin(2π(i x + j y) + φ) over 1 ≤ |i|, |j| ≤ ``k_max`` (both
    nonzero) with amplitude |k|^(−1/2) on the cell centres ``x`` (X,), ``y`` (Y,)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, k_max: int):
        self.x, self.y = x, y
        k = np.arange(-k_max, k_max + 1)
        ki, kj = np.meshgrid(k[k != 0], k[k != 0], indexing="ij")
        ki, kj = ki.ravel(), kj.ravel()  # (M,) mode numbers along x and y
        self.amp = (2 * np.pi * np.hypot(ki, kj)) ** -0.5  # (M,)
        self.phase_x = 2 * np.pi * (ki[:, None] * x[None, :])  # (M, X)
        self.phase_y = 2 * np.pi * (kj[:, None] * y[None, :])  # (M, Y)

    def draw(self, rng: np.random.Generator, n_fields: int) -> np.ndarray:
        """(n_fields, X, Y) sums with independent uniform phases per field and mode, as
        sin(a + φ + b) = sin(a + φ) cos b + cos(a + φ) sin b summed over the modes."""
        phi = rng.uniform(0.0, 2 * np.pi, size=(n_fields, self.amp.size))  # (F, M)
        arg = self.phase_x[None] + phi[:, :, None]  # (F, M, X)
        sin_x = (self.amp[:, None] * np.sin(arg)).transpose(0, 2, 1)  # (F, X, M)
        cos_x = (self.amp[:, None] * np.cos(arg)).transpose(0, 2, 1)
        return sin_x @ np.cos(self.phase_y) + cos_x @ np.sin(self.phase_y)  # (F, X, Y)


def _rand_state(
    rng: np.random.Generator, modes: _SineModes, mach: float, gamma: float
) -> np.ndarray:
    """One kind "rand" state (4, X, Y): (ρ, vx, vy, p), as ``cns_random_initial`` says."""
    rho0, dd, t0, dp = rng.uniform((0.1, 0.01, 0.1, 0.01), (10.0, 0.2, 10.0, 0.2))
    vx, vy, fp, fd = modes.draw(rng, 4)
    scale = mach * np.sqrt(gamma * t0) / np.hypot(vx, vy).mean()
    state = np.stack(
        [
            rho0 * (1 + dd * fd / np.abs(fd).mean()),
            vx * scale,
            vy * scale,
            rho0 * t0 * (1 + dp * fp / np.abs(fp).mean()),
        ]
    )
    if rng.uniform() < 0.5:
        xl, yl = rng.uniform(0.1, 0.45, size=2)
        xr, yr = rng.uniform(0.55, 0.9, size=2)
        window = _box(modes.x, xl, xr)[:, None] * _box(modes.y, yl, yr)[None, :]
        state *= window
        state[0] += rho0 * (1 - window)
        state[3] += rho0 * t0 * (1 - window)
    return state


def _turb_state(
    rng: np.random.Generator, modes: _SineModes, mach: float, gamma: float
) -> np.ndarray:
    """One kind "turb" state (4, X, Y): (ρ, vx, vy, p), as ``cns_random_initial`` says."""
    vx, vy = _project_divergence_free(*modes.draw(rng, 2))
    scale = 1.0 / np.hypot(vx, vy).mean()
    p_uniform = 1.0 / (gamma * mach**2)
    return np.stack([np.ones_like(vx), vx * scale, vy * scale, np.full_like(vx, p_uniform)])


def _box(x: np.ndarray, lo: float, hi: float, width: float = 0.01) -> np.ndarray:
    """Smooth indicator of [lo, hi] with tanh edges of ``width``."""
    return 0.5 * (np.tanh((x - lo) / width) - np.tanh((x - hi) / width))


def _project_divergence_free(vx: np.ndarray, vy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove the gradient part of a periodic (X, Y) velocity field in Fourier space."""
    fx = np.fft.fftfreq(vx.shape[0])[:, None] * vx.shape[0]
    fy = np.fft.fftfreq(vx.shape[1])[None, :] * vx.shape[1]
    ux, uy = np.fft.fft2(vx), np.fft.fft2(vy)
    k2 = fx**2 + fy**2
    div = (fx * ux + fy * uy) / np.where(k2 > 0, k2, 1.0)
    return np.fft.ifft2(ux - fx * div).real, np.fft.ifft2(uy - fy * div).real


def _conservative(w: torch.Tensor, gamma: float) -> torch.Tensor:
    """(ρ, vx, vy, p) -> (ρ, ρvx, ρvy, E) along axis 1."""
    rho, vx, vy, p = w.unbind(1)
    energy = p / (gamma - 1.0) + 0.5 * rho * (vx * vx + vy * vy)
    return torch.stack([rho, rho * vx, rho * vy, energy], dim=1)


def _pressure(q: torch.Tensor, gamma: float) -> torch.Tensor:
    """(B, 4, ...) conservative states -> pressure (B, ...)."""
    rho, mx, my, energy = q.unbind(1)
    return (gamma - 1.0) * (energy - 0.5 * (mx * mx + my * my) / rho)


def _primitive(q: torch.Tensor, gamma: float) -> torch.Tensor:
    """(ρ, ρvx, ρvy, E) -> (ρ, vx, vy, p) along axis 1."""
    rho, mx, my, energy = q.unbind(1)
    vx, vy = mx / rho, my / rho
    p = (gamma - 1.0) * (energy - 0.5 * (mx * vx + my * vy))
    return torch.stack([rho, vx, vy, p], dim=1)


def _inviscid_flux(
    q: torch.Tensor, w: torch.Tensor, dim: int, normal: int, gamma: float, limiter: str
) -> torch.Tensor:
    """HLLC flux (B, 4, X, Y) of (ρ, ρvx, ρvy, E) through the face after each cell along ``dim``,
    from the conservative q and primitive w cell states (B, 4, X, Y)."""
    lower, upper = _face_states(q, w, dim, gamma, limiter)  # (B, 4, X, Y) each, primitive
    order = [0, normal, 3 - normal, 3]  # (ρ, u_n, u_t, p)
    w_l, w_r = upper[:, order], lower.roll(-1, dims=dim)[:, order]  # the two sides of face i+1/2
    return _hllc(w_l, w_r, gamma)[:, order]


def _face_states(
    q: torch.Tensor, w: torch.Tensor, dim: int, gamma: float, limiter: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Primitive states (B, 4, X, Y) at the lower and the upper face of each cell along ``dim``.

    The limited linear profile w ± slope/2 of the primitive variables gives the conservative
    half-jump Δ across the cell; the face states are q ∓ θΔ, which average to the cell's q. θ ≤ 1
    (Zhang & Shu 2010) keeps their ρ and p at least POSITIVITY_FLOOR times the cell's, so the
    cell is a mean of two admissible states and ρ, p stay > 0 however strong the expansion.
    """
    n = w.shape[dim]
    padded = torch.cat([w.narrow(dim, n - 1, 1), w, w.narrow(dim, 0, 1)], dim=dim)  # n + 2
    diff = torch.diff(padded, dim=dim)  # (.., n + 1, ..): diff[i] = w[i] - w[i-1] (periodic)
    half = 0.5 * limited_slope(diff.narrow(dim, 0, n), diff.narrow(dim, 1, n), limiter)
    rho, vx, vy, p = w.unbind(1)
    d_rho, d_vx, d_vy, d_p = half.unbind(1)
    delta = torch.stack(  # ½ (U(w + slope/2) − U(w − slope/2)), exactly
        [
            d_rho,
            rho * d_vx + d_rho * vx,
            rho * d_vy + d_rho * vy,
            d_p / (gamma - 1.0)
            + rho * (vx * d_vx + vy * d_vy)
            + 0.5 * d_rho * (vx * vx + vy * vy + d_vx * d_vx + d_vy * d_vy),
        ],
        dim=1,
    )  # (B, 4, X, Y)
    lower, upper = _primitive(q - delta, gamma), _primitive(q + delta, gamma)
    floor = POSITIVITY_FLOOR * w[:, [0, 3]]
    if bool((torch.minimum(lower[:, [0, 3]], upper[:, [0, 3]]) >= floor).all()):
        return lower, upper  # θ = 1
    theta = _floor_factor(rho, rho - d_rho.abs())[:, None]  # ρ is linear along q ± θΔ
    p_face = torch.minimum(_pressure(q - theta * delta, gamma), _pressure(q + theta * delta, gamma))
    delta = theta * _floor_factor(p, p_face)[:, None] * delta  # p is concave along it
    return _primitive(q - delta, gamma), _primitive(q + delta, gamma)


def _floor_factor(cell: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
    """θ (B, X, Y) in (0, 1]: 1 where ``face`` >= POSITIVITY_FLOOR · ``cell``, else the θ with
    cell + θ (face − cell) = that floor, a lower bound on a quantity concave from the cell state
    (value ``cell``) to a face state (value ``face``) at the fraction θ of the way."""
    floor = POSITIVITY_FLOOR * cell
    low = face < floor
    return torch.where(low, (cell - floor) / torch.where(low, cell - face, 1.0), 1.0)


def _hllc(w_l: torch.Tensor, w_r: torch.Tensor, gamma: float) -> torch.Tensor:
    """HLLC flux (B, 4, ...) of (ρ, ρu_n, ρu_t, E) between states (ρ, u_n, u_t, p) (Toro, ch. 10):
    F_K + S_K⁻ (U*_K − U_K) from the side K of the contact that the face lies on."""
    rho_l, u_l, _, p_l = w_l.unbind(1)
    rho_r, u_r, _, p_r = w_r.unbind(1)
    c_l = torch.sqrt(gamma * p_l / rho_l)
    c_r = torch.sqrt(gamma * p_r / rho_r)
    s_l = torch.minimum(u_l - c_l, u_r - c_r)
    s_r = torch.maximum(u_l + c_l, u_r + c_r)
    m_l = rho_l * (s_l - u_l)  # mass flux through the left wave, in its frame
    m_r = rho_r * (s_r - u_r)
    s_star = (p_r - p_l + m_l * u_l - m_r * u_r) / (m_l - m_r)
    left = s_star >= 0
    rho, u, v, p = torch.where(left[:, None], w_l, w_r).unbind(1)
    s_k = torch.where(left, s_l, s_r)
    m_k = torch.where(left, m_l, m_r)
    s_used = torch.where(left, s_l.clamp(max=0.0), s_r.clamp(min=0.0))  # 0 when supersonic
    energy = p / (gamma - 1.0) + 0.5 * rho * (u * u + v * v)
    rho_star = m_k / (s_k - s_star)
    e_star = rho_star * (energy / rho + (s_star - u) * (s_star + p / m_k))
    mass = rho * u
    return torch.stack(
        [
            mass + s_used * (rho_star - rho),
            mass * u + p + s_used * (rho_star * s_star - mass),
            mass * v + s_used * (rho_star - rho) * v,
            (energy + p) * u + s_used * (e_star - energy),
        ],
        dim=1,
    )


def _viscous_flux(
    w: torch.Tensor, dim: int, normal: int, h: float, h_t: float, eta: float, zeta: float
) -> torch.Tensor:
    """Viscous flux (0, σ_nn, σ_nt, σ_nn u_n + σ_nt u_t) (B, 4, X, Y) at the face after each cell
    along ``dim``: normal derivatives by a compact difference across the face, tangential ones by
    the average of the two cells' central differences."""
    tdim = -1 if dim == -2 else -2
    un, ut = w[:, normal], w[:, 3 - normal]
    vel = torch.stack([un, ut], dim=1)  # (B, 2, X, Y)
    nxt = vel.roll(-1, dims=dim)
    d_n = (nxt - vel) / h  # normal derivatives of (u_n, u_t) at the face
    central = (vel.roll(-1, dims=tdim) - vel.roll(1, dims=tdim)) / (2.0 * h_t)
    d_t = 0.5 * (central + central.roll(-1, dims=dim))  # tangential derivatives at the face
    face = 0.5 * (vel + nxt)
    div = d_n[:, 0] + d_t[:, 1]
    s_nn = 2.0 * eta * d_n[:, 0] + (zeta - 2.0 * eta / 3.0) * div
    s_nt = eta * (d_t[:, 0] + d_n[:, 1])
    zero = torch.zeros_like(s_nn)
    parts = [zero, s_nn, s_nt] if normal == 1 else [zero, s_nt, s_nn]
    return torch.stack([*parts, s_nn * face[:, 0] + s_nt * face[:, 1]], dim=1)


__all__ = ["CHANNELS", "cns_random_initial", "compressible_ns_2d"]
