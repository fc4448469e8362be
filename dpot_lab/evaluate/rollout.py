"""Auto-regressive rollout of a DPOT model."""

from __future__ import annotations

import torch
from torch import nn


def autoregress(
    model: nn.Module,
    x: torch.Tensor,
    steps: int,
    channel_mask: torch.Tensor | None = None,
    pad_value: float = 1.0,
) -> torch.Tensor:
    """Roll ``model`` out from the window x (B, *S, T_in, C) for ``steps`` frames -> (B, *S, steps, C).

    Each call predicts ``T_out`` frames that are fed back as input. Channels where ``channel_mask``
    (C,) is False are padding: they are reset to ``pad_value`` in every prediction, as in training.
    Gradients flow unless the caller wraps this in ``torch.no_grad()``.
    """
    t_in = model.config.in_timesteps if hasattr(model, "config") else x.shape[-2]
    window = x[..., -t_in:, :]
    frames, made = [], 0
    while made < steps:
        y = model(window)  # (B, *S, T_out, C)
        if channel_mask is not None:
            y = torch.where(channel_mask.to(y.device), y, torch.full_like(y, pad_value))
        frames.append(y)
        made += y.shape[-2]
        window = torch.cat([window, y], dim=-2)[..., -t_in:, :]
    return torch.cat(frames, dim=-2)[..., :steps, :]
