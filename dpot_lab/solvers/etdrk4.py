"""ETDRK4 (Cox & Matthews 2002) for spectral equations dû/dt = L û + N(û) with a diagonal, stiff
linear part L: L exactly, N by a fourth-order Runge–Kutta, the φ-functions by contour integrals
(Kassam & Trefethen 2005), so there is no cancellation near hL = 0."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm

CONTOUR_POINTS = 32  # points on the circle of radius 1 around each h·L (Kassam & Trefethen)

Rate = Callable[[torch.Tensor], torch.Tensor]  # N(û): (B, ...) -> (B, ...)


def etdrk4_coefficients(
    linear: torch.Tensor, h: float, dtype: torch.dtype
) -> tuple[torch.Tensor, ...]:
    """e^{hL}, e^{hL/2} and the ETDRK4 weights Q, f1, f2, f3 of a step h, each like ``linear``
    (real), in the real dtype of ``dtype``."""
    z0 = (h * linear.to(torch.float64))[..., None]  # (..., 1)
    roots = torch.exp(
        2j * math.pi * (torch.arange(CONTOUR_POINTS, dtype=torch.float64) + 0.5) / CONTOUR_POINTS
    )  # (M,) complex128
    z = z0 + roots.to(z0.device)  # (..., M) complex128
    ez = torch.exp(z)
    q = h * ((torch.exp(z / 2) - 1) / z).mean(dim=-1).real
    f1 = h * ((-4 - z + ez * (4 - 3 * z + z**2)) / z**3).mean(dim=-1).real
    f2 = h * ((2 + z + ez * (z - 2)) / z**3).mean(dim=-1).real
    f3 = h * ((-4 - 3 * z - z**2 + ez * (4 - z)) / z**3).mean(dim=-1).real
    e, e2 = torch.exp(z0[..., 0]), torch.exp(z0[..., 0] / 2)
    real = torch.empty(0, dtype=dtype).real.dtype
    return tuple(a.to(real) for a in (e, e2, q, f1, f2, f3))


def etdrk4_step(u_hat: torch.Tensor, rate: Rate, e, e2, q, f1, f2, f3) -> torch.Tensor:
    """One ETDRK4 step of û (B, ...) with the coefficients of ``etdrk4_coefficients``."""
    n_u = rate(u_hat)
    a = e2 * u_hat + q * n_u
    n_a = rate(a)
    b = e2 * u_hat + q * n_a
    n_b = rate(b)
    c = e2 * a + q * (2 * n_b - n_u)
    n_c = rate(c)
    return e * u_hat + f1 * n_u + 2 * f2 * (n_a + n_b) + f3 * n_c


def etdrk4_frames(
    u_hat: torch.Tensor,
    linear: torch.Tensor,
    rate: Rate,
    times: Sequence[float],
    dt: float,
    name: str,
    progress: bool = False,
) -> torch.Tensor:
    """û (B, ...) at each of ``times`` (non-decreasing, from t = 0), (B, T, ...): fixed
    steps of at most ``dt``, shrunk per interval so that each save time is hit. FloatingPointError
    naming ``name`` when the state blows up."""
    coefficients: dict[float, tuple[torch.Tensor, ...]] = {}
    frames, t = [], 0.0
    for target in tqdm(times, desc="time", disable=not progress, leave=False):
        n_steps = math.ceil((target - t) / dt - 1e-9) if target > t else 0
        if n_steps:
            h = (target - t) / n_steps
            if h not in coefficients:
                coefficients[h] = etdrk4_coefficients(linear, h, u_hat.dtype)
            for _ in range(n_steps):
                u_hat = etdrk4_step(u_hat, rate, *coefficients[h])
            if not bool(torch.isfinite(u_hat).all()):
                raise FloatingPointError(
                    f"{name}: the state blew up before t = {target:.6g} "
                    f"(dt = {dt:g}; try a smaller dt or a finer grid)"
                )
            t = target
        frames.append(u_hat)
    return torch.stack(frames, dim=1)
