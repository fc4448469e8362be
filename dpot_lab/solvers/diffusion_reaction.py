"""2D diffusion–reaction, the FitzHugh–Nagumo system of PDEBench, on [−1, 1]²:

    ∂u/∂t = Du Δu + u − u³ − k − v
    ∂v/∂t = Dv Δv + u − v

with no-flux (Neumann) boundaries. Cell-centred finite volumes (the 5-point Laplacian with
mirrored ghost cells, second order) and classical RK4 in time, each sample with its own stable
step. Cell centres: x_i = −1 + (i + 1/2)·2/X.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dpot_lab.solvers.stepping import (
    as_batched,
    as_batched_like,
    check_number,
    check_save_times,
    integrate,
)

ArrayLike = np.ndarray | torch.Tensor

DOMAIN = (-1.0, 1.0)
RK4_REAL_AXIS = 2.78  # RK4 is stable for real eigenvalues λ·dt in [−2.78, 0]


def neumann_laplacian(a: torch.Tensor, dx: float, dy: float) -> torch.Tensor:
    """5-point Laplacian with zero normal flux (ghost cell = edge cell), (B, C, X, Y) -> same."""
    p = F.pad(a, (1, 1, 1, 1), mode="replicate")  # (B, C, X+2, Y+2)
    lap_x = (p[..., 2:, 1:-1] - 2 * a + p[..., :-2, 1:-1]) / dx**2
    lap_y = (p[..., 1:-1, 2:] - 2 * a + p[..., 1:-1, :-2]) / dy**2
    return lap_x + lap_y


def diffusion_reaction_2d(
    u0: ArrayLike,
    v0: ArrayLike,
    t_save: Sequence[float],
    du: float = 1e-3,
    dv: float = 5e-3,
    k: float = 5e-3,
    reaction: bool = True,
    dt: float | None = None,
    safety: float = 0.5,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Activator u and inhibitor v at the save times, stacked as channels.

    u0, v0: (X, Y) or (B, X, Y) cell averages on [−1, 1]² (v0 (X, Y) or (1, X, Y) is shared by
    all of u0's samples), numpy (float64 on the CPU) or torch (own dtype and device unless
    ``dtype``/``device`` say otherwise). t_save: non-decreasing times >= 0. ``reaction=False``
    leaves pure diffusion (for checks). dt: fixed step (shrunk to hit save times); None takes
    ``safety`` times the RK4 stability limit each step.
    Returns numpy (T, 2, X, Y) or (B, T, 2, X, Y), channel 0 = u, channel 1 = v.
    """
    du, dv, k = check_number(du, "du", 0.0), check_number(dv, "dv", 0.0), check_number(k, "k")
    safety = check_number(safety, "safety", 0.0, 1.0, open_low=True)
    times = check_save_times(t_save)
    u, batched = as_batched(u0, "u0", 2, dtype, device)  # (B, X, Y)
    v = as_batched_like(v0, "v0", u)  # (B, X, Y)
    n_x, n_y = u.shape[-2:]
    dx, dy = (DOMAIN[1] - DOMAIN[0]) / n_x, (DOMAIN[1] - DOMAIN[0]) / n_y
    diff = torch.tensor([du, dv], dtype=u.dtype, device=u.device).reshape(1, 2, 1, 1)
    # largest |eigenvalue| of the discrete diffusion operator
    diffusion_radius = max(du, dv) * (4 / dx**2 + 4 / dy**2)

    def rate(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = diff * neumann_laplacian(s, dx, dy)  # (B, 2, X, Y)
        a, b = s[:, 0], s[:, 1]
        radius = torch.full(s.shape[:1], diffusion_radius, dtype=s.dtype, device=s.device)
        if reaction:
            out = out + torch.stack([a - a**3 - k - b, a - b], dim=1)
            # bound on the reaction Jacobian [[1 − 3u², −1], [1, −1]]
            radius = radius + 3 * a.pow(2).amax(dim=(-2, -1)) + 2
        return out, safety * RK4_REAL_AXIS / radius

    frames = integrate(torch.stack([u, v], dim=1), rate, times, dt=dt, progress=progress)
    out = frames.cpu().numpy()  # (B, T, 2, X, Y)
    return out if batched else out[0]
