"""Training precision: the step runs under bf16 autocast when asked, evaluation in float32."""

from __future__ import annotations

import torch
from train_helpers import tiny_config

from dpot_lab.train import Trainer


def test_evaluation_is_float32_whatever_the_training_precision(adv1, tmp_path):
    trainer = Trainer(tiny_config([adv1], precision="bf16"), run_dir=tmp_path)
    seen = []

    def hook(module, args, out):
        seen.append((torch.is_autocast_enabled("cpu"), out.dtype))

    trainer.model.register_forward_hook(hook)
    trainer.train_step()
    assert seen and all(amp for amp, _ in seen)  # the step: bf16 autocast
    seen.clear()
    scores = trainer.evaluate()
    assert seen and all(not amp and dtype == torch.float32 for amp, dtype in seen)
    assert set(scores) == {"adv1"}
