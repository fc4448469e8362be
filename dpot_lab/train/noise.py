"""Denoising input noise: ``x + s·σ(x)·N(0, 1)`` with σ per sample and channel over space and time.

``kind="norm"`` is the paper's σ = ‖x‖₂ (so the noise's relative size grows with the number of
points); ``kind="rms"`` is σ = RMS(x), a resolution-free relative size. The Gaussian draws can be
keyed (:func:`keyed_normal`): one generator per key draws the whole global batch in one call and a
sample takes the row of its place in it, so that it gets the same noise whichever rank or
micro-batch it lands in and whatever came before: distributed runs match one process, and resumed
runs match uninterrupted ones, without carrying generator state.
"""

from __future__ import annotations

import math

import numpy as np
import torch

NOISE_KINDS = ("rms", "norm")


def sample_key(*parts: int) -> int:
    """A 63-bit seed from integers (run seed, optimizer step, auto-regressive step)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


def keyed_normal(
    key: int, total: int, rows: torch.Tensor, shape: tuple[int, ...], device: torch.device | str
) -> torch.Tensor:
    """Rows ``rows`` (B,) of standard normal draws (total, *shape) float32 made on ``device`` by
    one generator seeded ``key``: a row's values depend only on (key, total, row, shape)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(key))
    every = torch.randn((total, *shape), generator=gen, device=device)  # one launch
    return every.index_select(0, rows.to(every.device))


def noise_sigma(x: torch.Tensor, kind: str) -> torch.Tensor:
    """σ of x (B, *S, T, C) per sample and channel, shaped (B, 1, ..., 1, C) to broadcast."""
    dims = tuple(range(1, x.dim() - 1))
    norm = torch.linalg.vector_norm(x.float(), dim=dims, keepdim=True)
    if kind == "norm":
        return norm
    if kind == "rms":
        return norm / math.sqrt(math.prod(x.shape[1:-1]))
    raise ValueError(f"noise kind must be one of {NOISE_KINDS}, got {kind!r}")


def add_noise(
    x: torch.Tensor,
    kind: str,
    scale: float,
    channel_mask: torch.Tensor | None = None,
    normal: torch.Tensor | None = None,
) -> torch.Tensor:
    """x (B, *S, T, C) plus ``scale·σ·N(0, 1)``; channels where ``channel_mask`` ((C,) or (B, C))
    is False (padding) stay exact. ``normal``: the N(0, 1) draws shaped like x (e.g.
    :func:`keyed_normal`; None: from the global torch RNG)."""
    if scale == 0:
        return x
    size = scale * noise_sigma(x, kind)  # (B, 1.., C)
    if channel_mask is not None:
        m = channel_mask.to(x.device)
        size = size * m.view(-1 if m.dim() == 2 else 1, *(1,) * (x.dim() - 2), m.shape[-1])
    if normal is None:
        eps = torch.randn(x.shape, device=x.device)
    elif normal.shape != x.shape:
        raise ValueError(f"normal draws {tuple(normal.shape)} do not fit x {tuple(x.shape)}")
    else:
        eps = normal
    return torch.addcmul(x.float(), eps, size).to(x.dtype)  # one pass: x + eps·size
