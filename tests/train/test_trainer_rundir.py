"""A run directory under mistakes and faults: nothing checked late costs an earlier run, a failing
evaluation keeps the weights, and resume survives torn logs, damaged checkpoints, SIGKILL at any
moment, and refuses a changed recipe unless asked."""

from __future__ import annotations

import fcntl
import gc
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from train_helpers import advected_fields, tiny_config

import dpot_lab as dl
from dpot_lab.train import Trainer


@pytest.fixture(scope="module")
def nan_test_file(tmp_path_factory):
    """adv1's twin with a NaN in sample 22 (the held-out split of n_test=4), frame 7."""
    ds = advected_fields()
    ds["u"][22, 7, 3, 3] = np.nan
    with pytest.warns(UserWarning, match="NaN"):
        return dl.data.save(ds, tmp_path_factory.mktemp("nan") / "heldout_nan.h5")


def _run(cfg, run_dir, **kwargs) -> Trainer:
    trainer = Trainer(cfg, run_dir=run_dir, **kwargs)
    trainer.fit()
    return trainer


def _files(run_dir) -> dict:
    """Every file under the run directory but its lock, with its bytes."""
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != "run.lock"
    }


def test_overwrite_checks_everything_before_the_earlier_run_is_touched(
    adv1, nan_test_file, tmp_path
):
    run = tmp_path / "run"
    _run(tiny_config([adv1], steps=2), run)
    before = _files(run)
    assert "checkpoints/best.pt" in before
    bad = [
        (tiny_config([tmp_path / "typo.h5"]), FileNotFoundError, "typo.h5 does not exist"),
        (tiny_config([nan_test_file]), ValueError, r"heldout_nan.h5.*sample 22, frame 7"),
        (tiny_config([adv1], init_from=str(tmp_path / "gone.pt")), FileNotFoundError, "gone.pt"),
    ]
    for cfg, error, message in bad:
        with pytest.raises(error, match=message):
            Trainer(cfg, run_dir=run, overwrite=True)
        assert _files(run) == before
        assert not list(tmp_path.glob("run.old-*"))


def test_overwrite_sets_the_earlier_run_aside_until_the_first_checkpoint(adv1, tmp_path):
    run = tmp_path / "run"
    _run(tiny_config([adv1], steps=2), run)
    before = _files(run)

    def fail(event):
        if event["event"] == "step":
            raise RuntimeError("the new run dies before its first checkpoint")

    trainer = Trainer(tiny_config([adv1], steps=3), run_dir=run, overwrite=True, callbacks=[fail])
    (aside,) = tmp_path.glob("run.old-*")
    assert (aside / "checkpoints" / "best.pt").is_file()
    assert not (run / "checkpoints").exists()
    with pytest.raises(RuntimeError, match="dies before"):
        trainer.fit()
    assert _files(run) == before and not aside.exists()  # the earlier run is back

    seen = []
    trainer = Trainer(
        tiny_config([adv1], steps=3, **{"checkpoint.every": 2}), run_dir=run, overwrite=True,
        callbacks=[lambda e: seen.append((e["event"], aside_exists(tmp_path)))],
    )  # fmt: skip
    trainer.fit()
    checkpoints = [(e, a) for e, a in seen if e == "checkpoint"]
    assert checkpoints[0] == ("checkpoint", False)  # deleted by the first checkpoint
    assert ("step", True) in seen  # kept until then
    assert dl.models.read_checkpoint(run / "checkpoints" / "last.pt")["step"] == 3

    # the new run dies unseen (SIGKILL) before a checkpoint: resume names where the earlier one is
    Trainer(tiny_config([adv1], steps=3), run_dir=run, overwrite=True)
    (aside,) = tmp_path.glob("run.old-*")
    with pytest.raises(FileNotFoundError, match=f"set aside by --overwrite is in {aside}"):
        Trainer(tiny_config([adv1], steps=3), run_dir=run, resume=True)


def aside_exists(tmp_path) -> bool:
    return bool(list(tmp_path.glob("run.old-*")))


def _locked(run_dir) -> bool:
    """Whether run.lock is flocked (a new open file conflicts even within this process)."""
    fd = os.open(run_dir / "run.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_trainers_of_one_process_share_the_lock_until_the_last_is_closed_or_collected(
    adv1, tmp_path
):
    """A notebook cell run again builds a second trainer while the first still exists."""
    first = Trainer(tiny_config([adv1]), run_dir=tmp_path)
    second = Trainer(tiny_config([adv1]), run_dir=tmp_path, overwrite=True)
    first.close()
    assert _locked(tmp_path)
    del second
    gc.collect()
    assert not _locked(tmp_path)


def test_nan_in_the_held_out_split_fails_before_anything_is_written(nan_test_file, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(ValueError, match=r"heldout_nan.h5.*'u', sample 22, frame 7"):
        Trainer(tiny_config([nan_test_file], steps=2), run_dir=run)
    assert not run.exists()


def test_final_checkpoint_is_written_before_the_final_evaluation(adv1, tmp_path, monkeypatch):
    def broken(self, *args, **kwargs):
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr(Trainer, "evaluate", broken)
    trainer = Trainer(tiny_config([adv1], steps=2), run_dir=tmp_path)  # checkpoint.every: 0
    with pytest.raises(RuntimeError, match="evaluation failed"):
        trainer.fit()
    ckpt = dl.models.read_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert ckpt["step"] == 2
    assert all(torch.equal(ckpt["model"][k], v) for k, v in trainer.model.state_dict().items())


def test_torn_last_metrics_line_is_dropped_on_resume(adv1, tmp_path, caplog):
    cfg = tiny_config([adv1], steps=4)
    trainer = Trainer(cfg, run_dir=tmp_path)
    trainer.fit(2)
    metrics = tmp_path / "metrics.jsonl"
    with open(metrics, "a") as f:
        f.write('{"event": "train", "step": 3, "lo')  # the process died mid-write
    with caplog.at_level(logging.WARNING):
        trainer = Trainer(cfg, run_dir=tmp_path, resume=True)
    assert f"{metrics}: dropped its torn last line" in caplog.text
    trainer.fit()
    steps = [json.loads(ln)["step"] for ln in metrics.read_text().splitlines()]
    assert [s for s in steps if s > 2] == [3, 4, 4]  # train 3, train 4, eval 4


def test_corrupt_last_falls_back_to_the_newest_intact_checkpoint(adv1, tmp_path, caplog):
    cfg = tiny_config([adv1], steps=6, **{"checkpoint.every": 2})
    _run(cfg, tmp_path)
    last = tmp_path / "checkpoints" / "last.pt"
    straight = dl.models.read_checkpoint(last)
    with open(last, "r+b") as f:  # damaged in place: step_6.pt is the same file
        f.truncate(last.stat().st_size // 2)
    with caplog.at_level(logging.WARNING):
        trainer = Trainer(cfg, run_dir=tmp_path, resume=True)
    assert "last.pt is corrupt or unreadable" in caplog.text
    assert "resuming from step_00000004.pt (step 4)" in caplog.text
    assert trainer.step == 4
    trainer.fit()
    resumed = dl.models.read_checkpoint(last)
    assert resumed["step"] == 6
    assert all(torch.equal(straight["model"][k], resumed["model"][k]) for k in straight["model"])


def test_resume_with_a_changed_recipe_is_refused_unless_allowed(adv1, tmp_path):
    cfg = tiny_config([adv1], steps=4)
    trainer = Trainer(cfg, run_dir=tmp_path)
    trainer.fit(2)
    changed = tiny_config([adv1], steps=4, batch_size=2, seed=1, **{"optim.lr": 1e-3})
    with pytest.raises(ValueError, match="changed recipe") as err:
        Trainer(changed, run_dir=tmp_path, resume=True)
    for change in ("batch_size 4 -> 2", "optim.lr 0.003 -> 0.001", "seed 0 -> 1"):
        assert change in str(err.value)
    # a longer run, other logging, evaluation and checkpointing are no change of recipe
    longer = tiny_config([adv1], steps=8, **{"log.every": 2, "eval.horizon": 2})
    assert Trainer(longer, run_dir=tmp_path, resume=True).step == 2
    lower = tiny_config([adv1], steps=4, **{"optim.lr": 1e-3})
    trainer = Trainer(lower, run_dir=tmp_path, resume=True, allow_changes=True)
    assert trainer.step == 2 and trainer.optimizer.param_groups[0]["base_lr"] == 1e-3


def _read_steps(metrics) -> int:
    """The newest step in metrics.jsonl (0 when none), a torn last line ignored."""
    steps = [0]
    if metrics.exists():
        for line in metrics.read_text().splitlines():
            try:
                steps.append(json.loads(line)["step"])
            except ValueError:
                pass
    return max(steps)


def _changed_since(path, time_ns: int) -> bool:
    return path.exists() and path.stat().st_mtime_ns > time_ns


@pytest.mark.parametrize("kills", [3, pytest.param(10, marks=pytest.mark.slow)])
def test_sigkill_at_random_moments_never_loses_last_and_resume_is_exact(adv1, tmp_path, kills):
    """A run checkpointing every step, killed at random moments (after its start-up: once its
    metrics file changed) and resumed each time, ends with the uninterrupted run's state."""
    cfg = tiny_config([adv1], steps=24, **{"checkpoint.every": 1, "checkpoint.keep": 2})
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cli = [sys.executable, "-m", "dpot_lab.cli", "-q", "pretrain", str(path), "--out"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([*cli, str(tmp_path / "straight")], check=True, env=env)
    run, ckpts = tmp_path / "killed", tmp_path / "killed" / "checkpoints"
    metrics, rng, killed = run / "metrics.jsonl", random.Random(0), 0
    while True:
        resume = ["--resume"] if ckpts.is_dir() and any(ckpts.glob("step_*.pt")) else []
        started = time.time_ns()
        proc = subprocess.Popen([*cli, str(run), *resume], env=env)
        if killed == kills:
            assert proc.wait(120) == 0
            break
        while proc.poll() is None and not _changed_since(metrics, started):
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.5))
        proc.send_signal(signal.SIGKILL)
        code = proc.wait(60)
        if code == 0:  # it finished first
            break
        assert code == -signal.SIGKILL
        killed += 1
        if (ckpts / "last.pt").exists():
            dl.models.read_checkpoint(ckpts / "last.pt")  # loads, every time
        print(f"kill {killed}: newest logged step {_read_steps(metrics)}")
    a = dl.models.read_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = dl.models.read_checkpoint(ckpts / "last.pt")
    assert a["step"] == b["step"] == 24
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    losses = [
        [json.loads(ln)["loss"] for ln in (d / "metrics.jsonl").read_text().splitlines()
         if json.loads(ln)["event"] == "train"]
        for d in (tmp_path / "straight", run)
    ]  # fmt: skip
    assert losses[0] == losses[1] and len(losses[0]) == 24
