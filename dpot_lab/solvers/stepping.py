"""Time stepping shared by the solvers: classical RK4 with an optional diagonal integrating factor,
a step size per sample, and save times hit exactly.

With a diagonal linear operator ``L`` (e.g. viscosity in Fourier space) the integrating factor
treats ``L`` exactly and RK4 the rest (IFRK4, fourth order); with ``L = None`` it is plain RK4.
Each sample of a batch takes its own steps, so a trajectory does not depend on what else is in
its batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

# rate(state) -> (explicit rate, largest stable step per sample (B,))
RateFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def as_batched(
    a: np.ndarray | torch.Tensor,
    name: str,
    ndim: int,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> tuple[torch.Tensor, bool]:
    """Batched floating tensor (B, *S) from a state with ``ndim`` dims S, batched or not.

    numpy (or a nested list) becomes float64 on the CPU; a torch tensor keeps its dtype and
    device unless ``dtype``/``device`` say otherwise. Also returns whether the input had a batch
    dim. ValueError naming ``name`` unless the values are real, finite, non-empty, and float32
    or float64 in the end.
    """
    if isinstance(a, torch.Tensor):
        t = a.detach()
        if t.is_complex():
            raise ValueError(f"{name}: expected real values, got {t.dtype}")
        if not t.is_floating_point():
            t = t.to(torch.float64)
    else:
        arr = np.asarray(a)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{name}: expected real numbers, got an array of dtype {arr.dtype}")
        t = torch.as_tensor(arr.astype(np.float64))
    t = t.to(device=device, dtype=dtype)
    if t.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"{name}: expected float32 or float64 values, got {t.dtype}")
    if t.dim() not in (ndim, ndim + 1):
        raise ValueError(
            f"{name}: expected {ndim} dims (unbatched) or {ndim + 1} (batch first), "
            f"got shape {tuple(t.shape)}"
        )
    if t.numel() == 0:
        raise ValueError(f"{name}: expected a non-empty state, got shape {tuple(t.shape)}")
    bad = int((~torch.isfinite(t)).sum())
    if bad:
        raise ValueError(f"{name}: expected finite values, got {bad} NaN or infinite")
    return (t, True) if t.dim() == ndim + 1 else (t[None], False)


def as_batched_like(a: np.ndarray | torch.Tensor, name: str, like: torch.Tensor) -> torch.Tensor:
    """A field (*S) or (B or 1, *S) broadcast to ``like`` (B, *S), in its dtype on its device."""
    t, _ = as_batched(a, name, like.dim() - 1, like.dtype, like.device)
    if t.shape[1:] != like.shape[1:] or t.shape[0] not in (1, like.shape[0]):
        raise ValueError(
            f"{name}: expected shape {tuple(like.shape[1:])} or {tuple(like.shape)}, "
            f"got {tuple(np.shape(a))}"
        )
    return t.expand_as(like)


def check_number(
    value: float, name: str, low: float = -math.inf, high: float = math.inf, open_low: bool = False
) -> float:
    """``value`` as a float; ValueError naming ``name`` unless it is finite and in [low, high]
    ((low, high] with ``open_low``)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if not (math.isfinite(x) and (x > low if open_low else x >= low) and x <= high):
        bound = "" if low == -math.inf else f" {'>' if open_low else '>='} {low:g}"
        if high < math.inf:
            bound = f" in {'(' if open_low else '['}{low:g}, {high:g}]"
        raise ValueError(f"{name}: expected a finite number{bound}, got {value!r}")
    return x


def per_sample(
    value: float | np.ndarray | torch.Tensor, name: str, like: torch.Tensor, low: float = 0.0
) -> torch.Tensor:
    """A coefficient >= ``low`` (−inf: any finite number), one number or one per sample of
    ``like`` (B, ...), as (B, 1, ..., 1) in the real dtype of ``like`` on its device; ValueError
    naming ``name`` otherwise."""
    batch, ones = like.shape[0], (1,) * (like.dim() - 1)
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if np.ndim(value) == 0:
        values = [check_number(value, name, low)] * batch
    else:
        arr = np.asarray(value)
        if arr.shape != (batch,):
            raise ValueError(
                f"{name}: expected one number or one per sample, shape ({batch},), "
                f"got shape {arr.shape}"
            )
        values = [check_number(x, name, low) for x in arr.tolist()]
    return torch.tensor(values, dtype=like.real.dtype, device=like.device).reshape(batch, *ones)


def check_save_times(t_save: Sequence[float] | torch.Tensor, name: str = "t_save") -> list[float]:
    """Validated save times: a non-empty, non-decreasing 1-D sequence of finite times >= 0."""
    try:
        if isinstance(t_save, torch.Tensor):
            arr = t_save.detach().cpu().to(torch.float64).numpy()
        else:
            arr = np.asarray(t_save, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a sequence of times, got {t_save!r}") from None
    if arr.ndim > 1:
        raise ValueError(f"{name}: expected a 1-D sequence of times, got shape {arr.shape}")
    times = [float(v) for v in arr.reshape(-1)]
    if not times:
        raise ValueError(f"{name}: expected at least one save time, got none")
    if any(not math.isfinite(t) or t < 0 for t in times):
        raise ValueError(f"{name}: expected finite times >= 0, got {times}")
    if any(b < a for a, b in zip(times, times[1:], strict=False)):
        raise ValueError(f"{name}: expected non-decreasing times, got {times}")
    return times


def integrate(
    state: torch.Tensor,
    rate: RateFn,
    t_save: Sequence[float],
    *,
    linear: torch.Tensor | None = None,
    dt: float | None = None,
    max_dt: float = math.inf,
    progress: bool = False,
) -> torch.Tensor:
    """Integrate ``d state/dt = linear * state + rate(state)`` from t = 0 to each save time.

    state: (B, ...) batch first, real or complex. ``linear``: real, broadcastable to
    ``state.shape[1:]``. ``dt`` fixes the step (shrunk per interval so that save times are hit);
    otherwise each step takes the stable step that ``rate`` reports, capped at ``max_dt``.
    Returns (B, T, ...) with T = len(t_save).
    """
    if dt is not None and not dt > 0:
        raise ValueError(f"dt: expected a positive time step, got {dt}")
    batch = state.shape[0]
    real_dtype = state.real.dtype
    to_batch = (batch,) + (1,) * (state.dim() - 1)  # (B,) -> (B, 1, ..., 1)
    t = torch.zeros(batch, dtype=torch.float64, device=state.device)
    frames = []
    bar = tqdm(total=len(t_save), desc="time", disable=not progress, leave=False)
    for target in t_save:
        tol = 1e-12 * max(1.0, abs(target))
        while True:
            remaining = target - t  # (B,)
            active = remaining > tol
            if not bool(active.any()):
                break
            k1, stable = rate(state)
            h_max = torch.full_like(t, dt) if dt is not None else stable.to(torch.float64)
            h_max = h_max.clamp(max=max_dt)
            if not bool(torch.isfinite(state).all()) or not bool((h_max > 0).all()):
                raise FloatingPointError(
                    f"time stepping broke down at t = {float(t.min()):.6g}: non-finite state "
                    "or zero stable step (the flow blew up; try a smaller cfl or dt)"
                )
            n_steps = torch.ceil(remaining / h_max - 1e-6).clamp(min=1)
            h = torch.where(active, remaining / n_steps, torch.zeros_like(t))
            state = _rk4_step(state, k1, rate, h.to(real_dtype).reshape(to_batch), linear)
            t = torch.where(active & (n_steps == 1), torch.full_like(t, target), t + h)
        frames.append(state)
        bar.update()
    bar.close()
    return torch.stack(frames, dim=1)


def _rk4_step(
    u: torch.Tensor,
    k1: torch.Tensor,
    rate: RateFn,
    h: torch.Tensor,
    linear: torch.Tensor | None,
) -> torch.Tensor:
    """One (integrating-factor) RK4 step of size h (B, 1, ..., 1); k1 = rate(u)[0]."""
    if linear is None:
        k2 = rate(u + 0.5 * h * k1)[0]
        k3 = rate(u + 0.5 * h * k2)[0]
        k4 = rate(u + h * k3)[0]
        return u + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    half = torch.exp(0.5 * h * linear)  # e^{L h/2}
    full = half * half
    k2 = rate(half * (u + 0.5 * h * k1))[0]
    k3 = rate(half * u + 0.5 * h * k2)[0]
    k4 = rate(full * u + h * half * k3)[0]
    return full * u + h / 6 * (full * k1 + 2 * half * (k2 + k3) + k4)
