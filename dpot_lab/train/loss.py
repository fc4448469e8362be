"""The training loss: the paper's relative L2 (``evaluate.relative_error``) on the predicted
frames.

For a prediction ŷ and target y (B, *S, T, C), per sample b and channel c:
``‖m·(ŷ−y)‖₂ / (‖m·y‖₂ + 1e-8)`` with the norms over space and time and m the native-grid mask,
averaged over the valid channels (``channel_mask``; all channels with ``score_padded``), then
over the batch as a MEAN (the release sums over the batch; a mean keeps the loss scale, and thus
the learning rate, independent of the batch size).
"""

from __future__ import annotations

import torch

from dpot_lab.evaluate.relative_error import sample_l2re


def masked_relative_l2(
    pred: torch.Tensor,
    target: torch.Tensor,
    channel_mask: torch.Tensor | None = None,
    grid_mask: torch.Tensor | None = None,
    score_padded: bool = False,
) -> torch.Tensor:
    """The training loss (scalar) of ``pred`` against ``target`` (B, *S, T, C): the relative L2
    of each sample over its valid channels (all with ``score_padded``), averaged over the batch."""
    return sample_l2re(pred, target, None if score_padded else channel_mask, grid_mask).mean()
