"""Run-directory checkpoints: retention, last/best, atomicity under SIGKILL, non-finite refusal."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

import dpot_lab as dl
from dpot_lab.train.checkpointing import RunCheckpoints, rng_state, set_rng_state


def _model():
    return dl.create_model("nano", embed_dim=32, depth=1, img_size=16, in_timesteps=2, modes=2)


def test_keep_last_best_and_loadable(tmp_path):
    ckpts, model = RunCheckpoints(tmp_path, keep=2), _model()
    for step in (1, 2, 3, 4):
        with torch.no_grad():
            model.pos_embed.fill_(step)
        ckpts.save(step, model, {"step": step}, best=step == 2, optimizer={"x": torch.ones(1)})
    assert [p.name for p in ckpts.step_files()] == ["step_00000003.pt", "step_00000004.pt"]
    last, best = dl.load_checkpoint(ckpts.last), dl.load_checkpoint(ckpts.best)
    assert last.metadata["step"] == 4 and float(last.pos_embed.detach().flatten()[0]) == 4
    assert best.metadata["step"] == 2 and float(best.pos_embed.detach().flatten()[0]) == 2
    assert dl.models.read_checkpoint(ckpts.last)["optimizer"]["x"].item() == 1.0


def test_non_finite_weights_never_replace_last(tmp_path):
    ckpts, model = RunCheckpoints(tmp_path), _model()
    ckpts.save(1, model)
    with torch.no_grad():
        model.pos_embed[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        ckpts.save(2, model)
    assert dl.models.read_checkpoint(ckpts.last)["metadata"] == {}
    assert [p.name for p in ckpts.step_files()] == ["step_00000001.pt"]


def test_missing_or_corrupt_last_gives_clear_errors(tmp_path):
    ckpts = RunCheckpoints(tmp_path)
    with pytest.raises(FileNotFoundError, match="cannot resume.*last.pt does not exist"):
        ckpts.read_last()
    ckpts.dir.mkdir(parents=True)
    ckpts.last.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot resume from .*last.pt.*corrupt"):
        ckpts.read_last()


def test_sigkill_while_writing_leaves_previous_checkpoint_loadable(tmp_path):
    """A child writes one good checkpoint, then is killed in the middle of writing the next."""
    flag = tmp_path / "writing"
    script = textwrap.dedent(f"""
        import time, torch
        import dpot_lab as dl
        from dpot_lab.train.checkpointing import RunCheckpoints
        model = dl.create_model("nano", embed_dim=32, depth=1, img_size=16, in_timesteps=2, modes=2)
        ckpts = RunCheckpoints({str(tmp_path)!r})
        ckpts.save(1, model, {{"step": 1}})
        real_save = torch.save
        def slow_save(obj, f, *a, **k):  # write half of the bytes, then hang
            import io
            buf = io.BytesIO(); real_save(obj, buf, *a, **k)
            data = buf.getvalue(); f.write(data[: len(data) // 2]); f.flush()
            open({str(flag)!r}, "w").close()
            time.sleep(60)
        torch.save = slow_save
        with torch.no_grad():
            model.pos_embed.fill_(7.0)
        ckpts.save(2, model, {{"step": 2}})
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script], env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    try:
        deadline = time.time() + 60
        while not flag.exists():
            assert proc.poll() is None, "child ended before writing"
            assert time.time() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    ckpts = RunCheckpoints(tmp_path)
    model = dl.load_checkpoint(ckpts.last)
    assert model.metadata["step"] == 1 and float(model.pos_embed.detach().abs().max()) != 7.0
    assert any(p.name.endswith(".tmp") for p in ckpts.dir.iterdir())  # the half-written file
    ckpts.save(3, model)  # the next save clears it
    assert not any(p.name.endswith(".tmp") for p in ckpts.dir.iterdir())


def test_rng_state_round_trip(tmp_path):
    state = rng_state()
    path = tmp_path / "rng.pt"
    torch.save(state, path)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(torch.load(path, weights_only=True))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first
