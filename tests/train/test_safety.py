"""Safety snapshots: each one is a full CPU copy, written into the previous one's memory."""

from __future__ import annotations

import torch
from train_helpers import tiny_config

from dpot_lab.train import Trainer


def test_a_snapshot_reuses_the_previous_ones_memory_and_holds_the_new_values(adv1, tmp_path):
    trainer = Trainer(tiny_config([adv1], ema=0.9), run_dir=tmp_path)
    guard = trainer.guard
    trainer.train_step()
    guard.take_snapshot(trainer.step)
    first = guard.snapshot
    ptrs = {k: v.data_ptr() for k, v in first["model"].items()}
    trainer.train_step()
    guard.take_snapshot(trainer.step)
    second = guard.snapshot
    assert {k: v.data_ptr() for k, v in second["model"].items()} == ptrs
    live = trainer.model.state_dict()
    for k, v in second["model"].items():
        assert torch.equal(v, live[k]) and v.data_ptr() != live[k].data_ptr()
    state = trainer.optimizer.state_dict()["state"]
    torch.testing.assert_close(second["optimizer"]["state"], state, rtol=0, atol=0)
    assert second["step"] == trainer.step == 2
