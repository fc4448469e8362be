"""Named model sizes: the paper's Ti/S/M/L/H and small ones that train in minutes on a CPU."""

from __future__ import annotations

from typing import Any

from dpot_lab.models.dpot import DPOT, DPOTConfig, build_model

# The paper's sizes at its pre-training setup: patch 8, modes 32, 128², C = 4, T_in = 10.
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
