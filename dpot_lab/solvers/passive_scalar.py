"""A passive scalar carried by 2D incompressible Navier–Stokes flow on the periodic unit square.

    ∂c/∂t + u·∇c = κ Δc
    ∂w/∂t + u·∇w = ν Δw − μ w + f,    u = (∂ψ/∂y, −∂ψ/∂x),    −Δψ = w

The scalar c and the vorticity w are solved together, as :func:`navier_stokes_2d` solves w: the
same grid (nodes x_i = i/X), the same 2/3-rule Galerkin truncation of both advection terms, the
same integrating-factor RK4 (diffusion, viscosity and drag exact) with a CFL step per sample.
The mean of c is conserved to round-off; with κ = 0 so is Σ c² over the resolved modes, up to
RK4's time error.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dpot_lab.solvers.navier_stokes_2d import ArrayLike, forcing_hat
from dpot_lab.solvers.spectral import SpectralOps
from dpot_lab.solvers.stepping import (
    as_batched,
    as_batched_like,
    check_number,
    check_save_times,
    integrate,
    per_sample,
)


def passive_scalar_2d(
    c0: ArrayLike,
    w0: ArrayLike,
    kappa: float | ArrayLike,
    nu: float | ArrayLike,
    t_save: Sequence[float],
    forcing: str | ArrayLike | None = "fno",
    drag: float = 0.0,
    dt: float | None = None,
    cfl: float = 0.5,
    max_dt: float = 0.05,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Scalar and vorticity frames at the save times, (T, 2, X, Y) or (B, T, 2, X, Y) with
    channel 0 the scalar c and channel 1 the vorticity w.

    c0: initial scalar (X, Y) or (B, X, Y), numpy or torch (numpy runs in float64 on the CPU, a
    tensor in its own dtype on its own device; ``dtype``/``device`` override both). w0: initial
    vorticity, (X, Y) or (B, X, Y), broadcast to c0. kappa: diffusivity, nu: viscosity, each one
    number or one per sample (B,). forcing ("fno", None or a field (X, Y) or (B, X, Y)) and
    drag act on w only. dt, cfl, max_dt: as in :func:`navier_stokes_2d`.
    """
    cfl = check_number(cfl, "cfl", 0.0, open_low=True)
    drag = check_number(drag, "drag", 0.0)
    if not max_dt > 0:
        raise ValueError(f"max_dt: expected a step > 0 (inf: no cap), got {max_dt!r}")
    times = check_save_times(t_save)
    c, batched = as_batched(c0, "c0", 2, dtype, device)  # (B, X, Y)
    w = as_batched_like(w0, "w0", c)  # (B, X, Y)
    kappa, nu = per_sample(kappa, "kappa", c), per_sample(nu, "nu", c)  # (B, 1, 1) each
    ops = SpectralOps(*c.shape[-2:], c.dtype, c.device)
    f_hat = forcing_hat(forcing, c)  # (B or 1, X, Y//2+1) or None

    def rate(state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c_hat, w_hat = state.unbind(dim=1)  # (B, X, Y//2+1) each
        u, v, c_x, c_y, w_x, w_y = ops.fields(w_hat, c_hat, w_hat)  # (B, X, Y) each
        advection = ops.dealiased(torch.stack([u * c_x + v * c_y, u * w_x + v * w_y], dim=1))
        out = -advection  # (B, 2, X, Y//2+1)
        if f_hat is not None:
            out = torch.stack([out[:, 0], out[:, 1] + f_hat.expand_as(out[:, 1])], dim=1)
        return out, cfl / ops.speed(u, v)

    linear = -torch.stack([kappa * ops.k2, nu * ops.k2 + drag], dim=1)  # (B, 2, X, Y//2+1)
    state = torch.fft.rfft2(torch.stack([c, w], dim=1))  # (B, 2, X, Y//2+1)
    frames = integrate(
        state, rate, times, linear=linear, dt=dt, max_dt=max_dt, progress=progress
    )  # (B, T, 2, X, Y//2+1)
    out = torch.fft.irfft2(frames, s=ops.shape).cpu().numpy()  # (B, T, 2, X, Y)
    return out if batched else out[0]
