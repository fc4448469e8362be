"""The denoising trainer: pre-training and fine-tuning share one loop (``Trainer``), configured by
``TrainConfig`` (YAML or dict), launched from a notebook, the ``dpot-lab`` CLI or torchrun.
Names load on first use."""

from __future__ import annotations

from dpot_lab.exports import lazy_names

_NAMES = {
    "Trainer": "dpot_lab.train.trainer",
    "assemble": "dpot_lab.train.assembly",
    "RunParts": "dpot_lab.train.assembly",
    "TrainConfig": "dpot_lab.train.config",
    "ConfigError": "dpot_lab.train.config",
    "RunCheckpoints": "dpot_lab.train.checkpointing",
    "LRSchedule": "dpot_lab.train.schedule",
    "lr_factor": "dpot_lab.train.schedule",
    "add_noise": "dpot_lab.train.noise",
    "masked_relative_l2": "dpot_lab.train.loss",
    "transfer_weights": "dpot_lab.train.finetune",
    "param_groups": "dpot_lab.train.finetune",
    "TransferReport": "dpot_lab.train.finetune",
}

__getattr__, __dir__ = lazy_names(__name__, _NAMES)


__all__ = sorted(_NAMES)
