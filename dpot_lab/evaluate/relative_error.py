"""The relative L2 error ‖ŷ−y‖₂ / ‖y‖₂ on tensors: the one kernel under the training loss, the
paper's score (``evaluate.score``) and the xarray metric ``dl.metrics.l2re``.

    relative_l2(pred, truth)                 # (B, *S, T, C) -> (B, C): space and frames jointly
    relative_l2(pred, truth, per_step=True)  # -> (B, T, C): space at each frame
    relative_l2_last(pred, truth, n=3)       # numpy (..., *D) -> (...): over the last n axes
    sample_l2re(pred, truth, channel_mask)   # -> (B,): the paper's score of each sample

The mean over samples is the caller's to take (a sum and a count when the samples are spread over
processes).
"""

from __future__ import annotations

import numpy as np
import torch

EPS = 1e-8  # guards an all-zero truth


def _grid_weights(grid_mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(*S) or (B, *S) bool -> (B or 1, *S, 1, 1) weights for (B, *S, T, C)."""
    n_spatial = like.dim() - 3
    m = grid_mask if grid_mask.dim() == n_spatial + 1 else grid_mask.unsqueeze(0)
    return m.to(like.device, like.dtype)[..., None, None]


def relative_l2(
    pred: torch.Tensor,
    truth: torch.Tensor,
    grid_mask: torch.Tensor | None = None,
    per_step: bool = False,
    *,
    eps: float = EPS,
) -> torch.Tensor:
    """Relative L2 of pred against truth, both (B, *S, T, C), over space and all frames jointly
    -> (B, C); ``per_step``: over space at each frame -> (B, T, C). ``grid_mask`` (*S) or (B, *S)
    keeps the points of the native grid; ``eps`` is added to the truth's norm. Float32 at least
    (float64 stays); NaN in either input makes the errors it enters NaN."""
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and truth {tuple(truth.shape)} differ")
    dtype = torch.promote_types(torch.promote_types(pred.dtype, truth.dtype), torch.float32)
    ref = truth.to(dtype)
    diff = pred.to(dtype) - ref
    if grid_mask is not None:
        m = _grid_weights(grid_mask, diff)
        diff, ref = diff * m, ref * m
    space = tuple(range(1, pred.dim() - 2))
    dims = space if per_step else (*space, pred.dim() - 2)
    return diff.square().sum(dims).sqrt() / (ref.square().sum(dims).sqrt() + eps)


def field_mean(per_field: torch.Tensor, channel_mask: torch.Tensor | None = None) -> torch.Tensor:
    """(B, [T,] C) errors -> (B, [T]) means over the fields where ``channel_mask`` (C,) or (B, C)
    is True (None: all; padded channels are no fields)."""
    if channel_mask is None:
        return per_field.mean(-1)
    b, c = per_field.shape[0], per_field.shape[-1]
    m = channel_mask.to(per_field.device)
    if m.shape not in ((c,), (b, c)):
        raise ValueError(f"channel_mask of shape {tuple(m.shape)} does not fit ({b}, {c})")
    w = m.expand(b, c).to(per_field.dtype)
    if per_field.dim() == 3:
        w = w[:, None, :]
    return (per_field * w).sum(-1) / w.sum(-1).clamp_min(1)


def sample_l2re(
    pred: torch.Tensor,
    truth: torch.Tensor,
    channel_mask: torch.Tensor | None = None,
    grid_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The paper's score of each sample (B,): ``relative_l2`` over all frames, ``field_mean``."""
    return field_mean(relative_l2(pred, truth, grid_mask), channel_mask)


def relative_l2_last(pred: np.ndarray, truth: np.ndarray, n: int) -> np.ndarray:
    """``relative_l2`` without epsilon over the last ``n`` axes of arrays (..., *D) that broadcast
    together -> (...), in their precision (float32 at least); what ``dl.metrics.l2re`` applies to
    each field."""
    pred, truth = np.broadcast_arrays(pred, truth)
    lead = pred.shape[: pred.ndim - n]
    flat = (-1, int(np.prod(pred.shape[pred.ndim - n :])), 1, 1)  # (B, P, T=1, C=1)
    p, t = (torch.from_numpy(np.array(a)).reshape(flat) for a in (pred, truth))
    return relative_l2(p, t, eps=0.0).reshape(lead).numpy()
