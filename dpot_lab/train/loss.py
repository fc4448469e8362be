"""Masked relative L2 — the training loss and the paper's rollout L2RE.

For a prediction ŷ and target y (B, *S, T, C), per sample b and channel c:
``‖m·(ŷ−y)‖₂ / (‖m·y‖₂ + 1e-8)`` with the norms over space and time and m the native-grid mask,
averaged over the valid channels (``channel_mask``; all channels with ``score_padded``), then
over the batch as a MEAN (the release sums over the batch; a mean keeps the loss scale, and thus
the learning rate, independent of the batch size).
"""

from __future__ import annotations

import torch

EPS = 1e-8


def _expand_grid_mask(grid_mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(*S) or (B, *S) bool -> (B or 1, *S, 1, 1) float."""
    n_spatial = like.dim() - 3
    m = grid_mask if grid_mask.dim() == n_spatial + 1 else grid_mask.unsqueeze(0)
    return m.to(like.device, torch.float32)[..., None, None]


def _channel_weights(channel_mask: torch.Tensor | None, b: int, c: int, device) -> torch.Tensor:
    """(C,) or (B, C) bool or None -> (B, C) float weights."""
    if channel_mask is None:
        return torch.ones(b, c, device=device)
    m = channel_mask.to(device)
    m = m.expand(b, c) if m.dim() == 1 else m
    if m.shape != (b, c):
        raise ValueError(
            f"channel_mask of shape {tuple(channel_mask.shape)} does not fit ({b}, {c})"
        )
    return m.float()


def relative_l2_per_channel(
    pred: torch.Tensor, target: torch.Tensor, grid_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """(B, *S, T, C) pair -> relative L2 per sample and channel (B, C), float32."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    diff, ref = pred.float() - target.float(), target.float()
    if grid_mask is not None:
        m = _expand_grid_mask(grid_mask, pred)
        diff, ref = diff * m, ref * m
    dims = tuple(range(1, pred.dim() - 1))
    return diff.square().sum(dims).sqrt() / (ref.square().sum(dims).sqrt() + EPS)


def relative_l2(
    pred: torch.Tensor,
    target: torch.Tensor,
    channel_mask: torch.Tensor | None = None,
    grid_mask: torch.Tensor | None = None,
    score_padded: bool = False,
) -> torch.Tensor:
    """Relative L2 per sample (B,), averaged over valid channels (all with ``score_padded``)."""
    per = relative_l2_per_channel(pred, target, grid_mask)  # (B, C)
    w = _channel_weights(None if score_padded else channel_mask, *per.shape, per.device)
    return (per * w).sum(-1) / w.sum(-1).clamp_min(1)


def masked_relative_l2(
    pred: torch.Tensor,
    target: torch.Tensor,
    channel_mask: torch.Tensor | None = None,
    grid_mask: torch.Tensor | None = None,
    score_padded: bool = False,
) -> torch.Tensor:
    """The training loss: ``relative_l2`` averaged over the batch (scalar)."""
    return relative_l2(pred, target, channel_mask, grid_mask, score_padded).mean()
