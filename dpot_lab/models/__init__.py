"""DPOT models (2D and 3D), named presets, our checkpoints and the release's."""

from dpot_lab.models.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from dpot_lab.models.dpot import DPOT, DPOT3D, DPOTConfig, build_model
from dpot_lab.models.official import load_official
from dpot_lab.models.presets import PRESETS, create_model

__all__ = [
    "DPOT", "DPOT3D", "DPOTConfig", "PRESETS", "build_model", "create_model", "load_checkpoint",
    "load_official", "read_checkpoint", "save_checkpoint",
]  # fmt: skip
