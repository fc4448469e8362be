"""The run directory's lock, the earlier run set aside by overwrite, and metrics.jsonl trimming."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from dpot_lab.train.rundir import (
    LOCK_NAME,
    RunLock,
    RunLockedError,
    restore_aside,
    set_aside,
    trim_metrics,
)


def _hold_lock(run_dir):
    """A child process that takes the lock and waits; returns it once the lock is held."""
    script = textwrap.dedent(f"""
        import sys, time
        from dpot_lab.train.rundir import RunLock
        lock = RunLock({str(run_dir)!r})
        print("held", flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_process_is_refused_with_the_holders_pid_and_a_dead_holders_lock_is_taken(tmp_path):
    run = tmp_path / "run"
    proc = _hold_lock(run)
    try:
        held_by = rf"{run} is in use by another run \(PID {proc.pid} "
        with pytest.raises(RunLockedError, match=held_by):
            RunLock(run)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert (run / LOCK_NAME).read_text().startswith(f"{proc.pid} ")  # left behind by the dead
    lock = RunLock(run)
    assert (run / LOCK_NAME).read_text().startswith(f"{os.getpid()} ")
    assert RunLock(run) is lock  # shared within one process
    lock.release()
    lock.release()
    again = RunLock(run)  # a new open of the file: it would block if the lock were still held
    assert again is not lock
    again.release()


def test_a_lock_that_made_the_folder_removes_it_on_failure(tmp_path):
    lock = RunLock(tmp_path / "new")
    lock.release(remove_dir=True)
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    RunLock(tmp_path / "old").release(remove_dir=True)
    assert (tmp_path / "old").is_dir()  # it was there before


def test_set_aside_and_restore_move_everything_but_the_lock(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.pt").write_bytes(b"weights")
    (run / "metrics.jsonl").write_text("{}\n")
    lock = RunLock(run)
    aside = set_aside(run)
    assert aside.parent == tmp_path and aside.name.startswith("run.old-")
    assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]
    assert (aside / "checkpoints" / "best.pt").read_bytes() == b"weights"
    (run / "metrics.jsonl").write_text("new run\n")
    (run / "checkpoints").mkdir()
    restore_aside(run, aside)
    assert not aside.exists() and (run / "metrics.jsonl").read_text() == "{}\n"
    assert (run / "checkpoints" / "best.pt").read_bytes() == b"weights"
    lock.release()
    fresh = tmp_path / "fresh"
    RunLock(fresh).release()
    assert set_aside(fresh) is None  # only a lock file: nothing to set aside


def test_trim_metrics_drops_a_torn_last_line_with_a_warning(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    recs = [json.dumps({"event": "train", "step": s}) for s in (1, 2, 3)]
    path.write_text("\n".join(recs) + '\n{"event": "train", "st')
    with caplog.at_level(logging.WARNING):
        trim_metrics(path, 2)
    assert path.read_text() == recs[0] + "\n" + recs[1] + "\n"
    assert f"{path}: dropped its torn last line" in caplog.text
    path.write_text(recs[0] + "\nnot json\n" + recs[1] + "\n")
    with caplog.at_level(logging.WARNING):
        trim_metrics(path, 0)  # a fresh start in the folder: garbage does not block it
    assert path.read_text() == "" and f"{path}: dropped unreadable line 2" in caplog.text
