"""The denoising trainer: pre-training and fine-tuning share one loop (``Trainer``), configured by
``TrainConfig`` (YAML or dict), launched from a notebook, the ``dpot-lab`` CLI or torchrun.
Names load on first use."""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "Trainer": "dpot_lab.train.trainer",
    "TrainConfig": "dpot_lab.train.config",
    "ConfigError": "dpot_lab.train.config",
    "RunCheckpoints": "dpot_lab.train.checkpointing",
    "LRSchedule": "dpot_lab.train.schedule",
    "lr_factor": "dpot_lab.train.schedule",
    "add_noise": "dpot_lab.train.noise",
    "masked_relative_l2": "dpot_lab.train.loss",
    "relative_l2": "dpot_lab.train.loss",
    "transfer_weights": "dpot_lab.train.finetune",
    "param_groups": "dpot_lab.train.finetune",
    "TransferReport": "dpot_lab.train.finetune",
}


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'dpot_lab.train' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_NAMES])


__all__ = sorted(_NAMES)
