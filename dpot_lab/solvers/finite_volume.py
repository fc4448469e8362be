"""Finite-volume building blocks shared by the shallow-water and compressible-NS solvers:
limited slopes for MUSCL reconstruction and SSP-RK2 time stepping to exact save times."""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm


def limited_slope(a: torch.Tensor, b: torch.Tensor, limiter: str) -> torch.Tensor:
    """Limited slope from the backward and forward differences a, b, symmetric in a and b:
    "minmod" = minmod(a, b), "mc" (monotonized central) = minmod(2a, 2b, (a + b)/2)."""
    signs = torch.sign(a) + torch.sign(b)  # ±2 where the signs agree, else 0 or ±1
    smallest = torch.minimum(a.abs(), b.abs())  # 0 when a sign is 0
    if limiter == "minmod":
        return 0.5 * signs * smallest
    return signs * torch.minimum(smallest, 0.25 * (a + b).abs())


def integrate_ssprk2(
    state: torch.Tensor,
    rate: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    t_save: list[float],
    progress: bool = False,
    name: str = "time",
) -> torch.Tensor:
    """SSP-RK2 (Heun, a convex combination of two Euler steps) from t = 0 through ``t_save``.

    state (B, C, X, Y); ``rate(state)`` gives d state/dt and the largest stable step (B,). Each
    sample takes its own steps (shortened so that every save time is hit exactly); a sample that
    has arrived waits with step 0. Returns frames (B, T, C, X, Y).
    """
    t = torch.zeros(state.shape[0], dtype=state.dtype, device=state.device)  # (B,)
    frames = []
    with tqdm(total=t_save[-1], disable=not progress, desc=name, unit="t") as bar:
        for target in t_save:
            while True:
                remaining = target - t
                active = remaining > 0
                if not bool(active.any()):
                    break
                d1, dt_max = rate(state)
                steps = torch.ceil(remaining / dt_max).clamp(min=1.0)
                dt = torch.where(active, remaining / steps, 0.0)
                stage = state + dt[:, None, None, None] * d1
                d2, _ = rate(stage)
                state = 0.5 * (state + stage + dt[:, None, None, None] * d2)
                t = torch.where(active & (steps == 1), target, t + dt)
            if not bool(torch.isfinite(state).all()):
                raise FloatingPointError(f"{name}: the solution is no longer finite at t={target}")
            frames.append(state)
            bar.update(target - bar.n)
    return torch.stack(frames, dim=1)
