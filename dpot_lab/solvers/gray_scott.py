"""The Gray–Scott reaction–diffusion system in 2D on the periodic square [0, L)²:

    ∂u/∂t = Du Δu − u v² + F (1 − u)
    ∂v/∂t = Dv Δv + u v² − (F + k) v

u is fed at rate F, v autocatalytic and removed at rate F + k. From a local perturbation of the
homogeneous steady state (u, v) = (1, 0) it forms spots, stripes, mazes or self-replicating spots
depending on (F, k) (Pearson 1993), of a size set by the diffusivities and the rates. Pseudo-
spectral with the 2/3 rule (u v² from the modes |m| < n/3, kept on them), ETDRK4 in time with the
linear part L = (−Du|k|² − F, −Dv|k|² − F − k) exactly, one fixed step per trajectory (shrunk to
hit the save times).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dpot_lab.solvers.etdrk4 import etdrk4_frames
from dpot_lab.solvers.spectral import wavenumbers
from dpot_lab.solvers.stepping import (
    as_batched,
    as_batched_like,
    check_number,
    check_save_times,
    per_sample,
)

ArrayLike = np.ndarray | torch.Tensor


def gray_scott_2d(
    u0: ArrayLike,
    v0: ArrayLike,
    t_save: Sequence[float],
    f: float | Sequence[float] = 0.04,
    k: float | Sequence[float] = 0.06,
    du: float = 2e-5,
    dv: float = 1e-5,
    length: float = 1.0,
    dt: float = 1.0,
    reaction: bool = True,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> np.ndarray:
    """u and v at the save times, stacked as channels.

    u0, v0: (X, Y) or (B, X, Y) on the periodic square of side ``length`` (v0 (X, Y) or
    (1, X, Y) is shared by all of u0's samples), numpy (float64 on the CPU) or torch (its own
    dtype and device unless ``dtype``/``device`` say otherwise). f, k: the feed and kill rates,
    one value >= 0 or one per sample (B,). du, dv: the diffusivities. t_save: non-decreasing
    times >= 0. dt: the ETDRK4 step, shrunk per interval between save times so that they are hit.
    ``reaction=False`` leaves pure diffusion (for checks).
    Returns numpy (T, 2, X, Y) or (B, T, 2, X, Y), channel 0 = u, channel 1 = v.
    """
    du, dv = check_number(du, "du", 0.0), check_number(dv, "dv", 0.0)
    length = check_number(length, "length", 0.0, open_low=True)
    dt = check_number(dt, "dt", 0.0, open_low=True)
    times = check_save_times(t_save)
    u, batched = as_batched(u0, "u0", 2, dtype, device)  # (B, X, Y)
    v = as_batched_like(v0, "v0", u)  # (B, X, Y)
    n_x, n_y = u.shape[-2:]
    feed, kill = per_sample(f, "f", u), per_sample(k, "k", u)  # (B, 1, 1) each
    kx, _, keep_x = (a.to(u.device)[:, None] for a in wavenumbers(n_x, u.dtype))  # (X, 1)
    ky, _, keep_y = (a.to(u.device)[None, :] for a in wavenumbers(n_y, u.dtype, half=True))
    k2 = (kx**2 + ky**2) / length**2  # (X, Yh)
    keep = keep_x & keep_y  # (X, Yh), the 2/3 rule
    linear = -torch.stack([du * k2, dv * k2])[None]  # (1, 2, X, Yh)
    if reaction:
        linear = linear - torch.stack([feed, feed + kill], dim=1)  # (B, 2, X, Yh)

    def rate(s_hat: torch.Tensor) -> torch.Tensor:
        if not reaction:
            return torch.zeros_like(s_hat)
        a, b = torch.fft.irfft2(s_hat * keep, s=(n_x, n_y)).unbind(dim=1)  # (B, X, Y) each
        uvv = a * b**2
        return torch.fft.rfft2(torch.stack([feed - uvv, uvv], dim=1)) * keep  # (B, 2, X, Yh)

    s_hat = etdrk4_frames(
        torch.fft.rfft2(torch.stack([u, v], dim=1)),
        linear,
        rate,
        times,
        dt,
        "gray_scott_2d",
        progress,
    )  # (B, T, 2, X, Yh)
    out = torch.fft.irfft2(s_hat, s=(n_x, n_y)).cpu().numpy()  # (B, T, 2, X, Y)
    return out if batched else out[0]
