"""Tensor transforms that put fields on a model's grid and channel count, and back.

Fields are channels-last tensors ``(B, *S, T, C)`` with 2 or 3 spatial axes ``S``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """(B, *S, T, C) -> (B, *size, T, C): bilinear in 2D, trilinear in 3D (antialiased when a 2D
    grid shrinks). Identity when the grid already has ``size``."""
    spatial = tuple(x.shape[1:-2])
    size = tuple(int(s) for s in size)
    if len(size) != len(spatial):
        raise ValueError(f"cannot resize a grid {spatial} to {size}: different number of axes")
    if spatial == size:
        return x
    b, t, c = x.shape[0], x.shape[-2], x.shape[-1]
    n = len(spatial)
    shrink = n == 2 and any(s < o for s, o in zip(size, spatial, strict=True))
    # Time and channels fold into one axis; upsampling runs on the channels-last view (no copy),
    # the antialiased shrink on a contiguous copy (its channels-last kernel is slower).
    flat = x.float().reshape(b, *spatial, t * c).movedim(-1, 1)  # (B, T·C, *S)
    if shrink:
        flat = flat.contiguous()
    mode = {2: "bilinear", 3: "trilinear"}[n]
    out = F.interpolate(flat, size=size, mode=mode, align_corners=False, antialias=shrink)
    return out.movedim(1, -1).reshape(b, *size, t, c).to(x.dtype)  # (B, *size, T, C)


def pad_channels(
    x: torch.Tensor, channels: int, value: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., C) -> (..., channels) padded with ``value`` (the release pads with 1), and the
    channel mask (channels,) that is True on the real channels."""
    c = x.shape[-1]
    if c > channels:
        raise ValueError(f"data has {c} channels but the model takes at most {channels}")
    mask = torch.zeros(channels, dtype=torch.bool, device=x.device)
    mask[:c] = True
    if c == channels:
        return x, mask
    out = x.new_full((*x.shape[:-1], channels), value)
    out[..., :c] = x
    return out, mask
