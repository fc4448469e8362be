"""``assemble``: the whole run built and checked while the run directory holds only its lock;
what it built is what the Trainer runs on."""

from __future__ import annotations

import pytest
import torch
from train_helpers import tiny_config

from dpot_lab.train import Trainer
from dpot_lab.train.assembly import assemble


def test_assemble_builds_the_run_and_writes_nothing_but_the_lock(adv1, tmp_path):
    run = tmp_path / "run"
    parts = assemble(tiny_config([adv1], **{"optim.accumulate": 2}), run_dir=run)
    try:
        assert [p.name for p in run.iterdir()] == ["run.lock"]
        assert parts.micro_batch == 2  # the global batch 4 in 2 accumulation steps
        assert parts.config.data.channels == 2 and parts.resume_state is None
        assert parts.optimizer.param_groups[0]["params"][0] is next(parts.model.parameters())
        assert list(parts.test_data) == [s.name for s in parts.train_data.sources]
    finally:
        parts.lock.release(remove_dir=True)
    assert not run.exists()  # the folder it made goes with the lock


def test_a_failing_assembly_releases_the_lock_and_its_folder(adv1, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(FileNotFoundError):
        assemble(tiny_config([adv1]), run_dir=run, resume=True)  # nothing to resume
    assert not run.exists()
    trainer = Trainer(tiny_config([adv1]), run_dir=run)  # the lock is free again
    assert (run / "config.yaml").is_file()
    assert torch.isfinite(torch.cat([p.flatten() for p in trainer.model.parameters()])).all()
    trainer.close()
