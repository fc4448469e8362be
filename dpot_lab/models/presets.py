"""Named model sizes: the paper's Ti/S/M/L/H and small ones that train in minutes on a CPU."""

from __future__ import annotations

from typing import Any

from dpot_lab.models.dpot import DPOT, DPOTConfig, build_model

# The paper's sizes at its pre-training setup: patch 8, modes 32, 128², C = 4, T_in = 10; these are
# also the sizes the released weights were trained with (``dpot_lab.models.hub``). Sources, in the
# release (github.com/HaoZhongkai/DPOT): embed_dim, mlp_ratio (MLP dim / D), depth and n_blocks are
# the README's size table (Attention dim, MLP dim, Layers, Heads) and configs/pretrain_*.yaml
# (width, mlp_ratio, n_layers, n_blocks); res 128 and patch_size 8 the same yaml files; modes 32
# the README's loading example and DPOTNet's default (train_temporal_parallel.py passes none);
# in_channels 4 and in_timesteps 10 that script's channel count (the largest over the 12 sets)
# and its --T_in default.
# out_layer_dim is 32 (pretrain_*.yaml) and 128 for L (pretrain_large.yaml) and H (the paper's
# table; H has no yaml). Where release figures disagree, the published parameter counts
# (reference/DPOT.md) decide: L's n_blocks is 8 ("8????") in pretrain_large.yaml and 16 in the
# README, and only 16 gives L's 509.0M; H's README MLP dim 8092 is 4·2048 = 8192 (mlp_ratio 4),
# which gives its 1.03B.
_PAPER = dict(img_size=128, patch_size=8, in_channels=4, in_timesteps=10, modes=32)
PRESETS: dict[str, dict[str, Any]] = {
    "Ti": dict(_PAPER, embed_dim=512, mlp_ratio=1, depth=4, n_blocks=4, out_layer_dim=32),
    "S": dict(_PAPER, embed_dim=1024, mlp_ratio=1, depth=6, n_blocks=8, out_layer_dim=32),
    "M": dict(_PAPER, embed_dim=1024, mlp_ratio=4, depth=12, n_blocks=8, out_layer_dim=32),
    "L": dict(_PAPER, embed_dim=1536, mlp_ratio=4, depth=24, n_blocks=16, out_layer_dim=128),
    "H": dict(_PAPER, embed_dim=2048, mlp_ratio=4, depth=27, n_blocks=8, out_layer_dim=128),
    # CPU sizes: 64² grids, patch 8 -> 8×8 latent.
    "nano": dict(img_size=64, patch_size=8, in_channels=4, in_timesteps=10, modes=8,
                 embed_dim=64, mlp_ratio=2, depth=2, n_blocks=4, out_layer_dim=16),
    "micro": dict(img_size=64, patch_size=8, in_channels=4, in_timesteps=10, modes=8,
                  embed_dim=128, mlp_ratio=2, depth=4, n_blocks=4, out_layer_dim=32),
}  # fmt: skip


def create_model(name: str, **overrides: Any) -> DPOT:
    """A model from a preset name, any ``DPOTConfig`` field overridden (``n_spatial=3``: 3D)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
    return build_model(DPOTConfig(**{**PRESETS[name], **overrides}))
