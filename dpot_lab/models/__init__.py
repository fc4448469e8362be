"""DPOT models (2D and 3D), named presets, our checkpoints and the release's."""

from dpot_lab.models.checkpoint import (
    Opened,
    load_checkpoint,
    open_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from dpot_lab.models.dpot import DPOT, DPOT3D, DPOTConfig, adapt_model_config, build_model
from dpot_lab.models.official import load_official
from dpot_lab.models.presets import PRESETS, create_model
from dpot_lab.models.util import unwrap
from dpot_lab.sizes import size_tuple

__all__ = [
    "DPOT", "DPOT3D", "DPOTConfig", "Opened", "PRESETS", "adapt_model_config", "build_model",
    "create_model", "load_checkpoint", "load_official", "open_checkpoint", "read_checkpoint",
    "save_checkpoint", "size_tuple", "unwrap",
]  # fmt: skip
