"""The pieces of a DPOT model that a run config names: its trainable parts (``PARTS``) and the
kinds of weight a low-rank adapter can take (``LORA_KINDS``, ``weight_kinds``)."""

from __future__ import annotations

from torch import nn

from dpot_lab.models.afno import FourierMixing
from dpot_lab.models.dpot import TimeAggregator

# Parameter-name prefixes of each trainable part (a prefix matches itself and "prefix.*").
PARTS: dict[str, list[str]] = {
    "embed": ["patch_embed", "pos_embed", "time_agg", "scale_feats_mu", "scale_feats_sigma"],
    "blocks": ["blocks"],
    "head": ["head", "cls_head"],
}
LORA_KINDS = ("linear", "conv", "fourier", "time_agg")
_CONVS = (  # plain and transposed, 1D to 3D
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
)  # fmt: skip


def weight_kinds(module: nn.Module) -> dict[str, tuple[str, int]]:
    """The adaptable weights of one module: attribute name -> (kind of ``LORA_KINDS``, leading
    batch dims)."""
    linear, conv, fourier, time_agg = LORA_KINDS
    if isinstance(module, nn.Linear):
        return {"weight": (linear, 0)}
    if isinstance(module, _CONVS):
        return {"weight": (conv, 0)}
    if isinstance(module, FourierMixing):  # (2, nb, bs, bs): per part and block
        return {"w1": (fourier, 2), "w2": (fourier, 2)}
    if isinstance(module, TimeAggregator):  # (T, D, D): per frame
        return {"w": (time_agg, 1)}
    return {}
