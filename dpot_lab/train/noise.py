"""Denoising input noise: ``x + s·σ(x)·N(0, 1)`` with σ per sample and channel over space and time.

``kind="norm"`` is the paper's σ = ‖x‖₂ (so the noise's relative size grows with the number of
points); ``kind="rms"`` is σ = RMS(x), a resolution-free relative size. The Gaussian draws can be
keyed per sample (``keys``), so that a sample gets the same noise whichever rank or micro-batch it
lands in and whatever came before: distributed runs match one process, and resumed runs match
uninterrupted ones, without carrying generator state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

NOISE_KINDS = ("rms", "norm")


def sample_key(*parts: int) -> int:
    """A 63-bit seed from integers (run seed, step, auto-regressive step, sample position)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


def gaussian(
    shape: tuple[int, ...], keys: Sequence[int], device: torch.device | str
) -> torch.Tensor:
    """Standard normal draws (len(keys), *shape) float32; row i from a generator seeded keys[i]."""
    out = torch.empty((len(keys), *shape), device=device)
    gen = torch.Generator(device=device)
    for i, key in enumerate(keys):
        gen.manual_seed(int(key))
        out[i].normal_(generator=gen)
    return out


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
    keys: Sequence[int] | None = None,
) -> torch.Tensor:
    """x (B, *S, T, C) plus ``scale·σ·N(0, 1)``; channels where ``channel_mask`` ((C,) or (B, C))
    is False (padding) stay exact. ``keys``: one seed per sample (else the global torch RNG)."""
    if scale == 0:
        return x
    size = scale * noise_sigma(x, kind)  # (B, 1.., C)
    if channel_mask is not None:
        m = channel_mask.to(x.device)
        size = size * m.view(-1 if m.dim() == 2 else 1, *(1,) * (x.dim() - 2), m.shape[-1])
    if keys is None:
        eps = torch.randn(x.shape, device=x.device)
    else:
        if len(keys) != x.shape[0]:
            raise ValueError(
                f"need one noise key per sample: {x.shape[0]} samples, {len(keys)} keys"
            )
        eps = gaussian(tuple(x.shape[1:]), keys, x.device)
    return torch.addcmul(x.float(), eps, size).to(x.dtype)  # one pass: x + eps·size
