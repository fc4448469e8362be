"""A run directory's life: an OS lock held by the process that trains in it, the earlier run set
aside (not deleted) while an overwriting run has no checkpoint yet, and ``metrics.jsonl`` trimmed
back to a checkpoint's step when a run resumes (a torn last line dropped).

    lock = RunLock("runs/tiny")           # RunLockedError naming the holder's PID when taken
    aside = set_aside("runs/tiny")        # runs/tiny.old-<stamp>, or None if nothing was there
    restore_aside("runs/tiny", aside)     # the new run failed: the earlier one comes back
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import socket
import tempfile
import time
import weakref
from pathlib import Path

from dpot_lab.atomic import atomic_path

log = logging.getLogger(__name__)
LOCK_NAME = "run.lock"
_HELD: weakref.WeakValueDictionary[Path, RunLock] = weakref.WeakValueDictionary()


class RunLockedError(RuntimeError):
    """Another process trains in the run directory."""


class RunLock:
    """An exclusive ``flock`` on ``run_dir/run.lock`` (the folder is made if missing), held until
    this object is released or collected; the file names the holder (PID and host).

    The kernel drops the lock when the holder dies, so a lock file left by a killed run is taken
    over. Within one process the lock is shared: a second ``RunLock`` of the same folder (a notebook
    cell run again) returns the held one."""

    def __new__(cls, run_dir: str | os.PathLike) -> RunLock:
        run_dir = Path(run_dir)
        created = not run_dir.exists()
        run_dir.mkdir(parents=True, exist_ok=True)
        key = run_dir.resolve()
        held = _HELD.get(key)
        if held is not None:
            held._users += 1
            return held
        self = super().__new__(cls)
        self.run_dir, self.path, self.created = run_dir, run_dir / LOCK_NAME, created
        self._key = key
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunLockedError(
                f"{run_dir} is in use by another run (PID {holder}): wait for it to end, stop "
                "it, or choose another run directory"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._users = 1
        self._finalizer = weakref.finalize(self, os.close, fd)  # closing the fd unlocks
        _HELD[key] = self
        return self

    def release(self, remove_dir: bool = False) -> None:
        """Unlock once every user in this process has released it (``remove_dir``: and remove
        the folder if this lock made it and it holds nothing else)."""
        self._users -= 1
        if self._users > 0:
            return
        if _HELD.get(self._key) is self:
            del _HELD[self._key]
        if remove_dir and self.created and self._finalizer.alive:
            self.path.unlink(missing_ok=True)
            try:
                self.run_dir.rmdir()
            except OSError:  # something else was written there meanwhile
                pass
        self._finalizer()


def set_aside(run_dir: str | os.PathLike) -> Path | None:
    """Move everything in ``run_dir`` but its lock file into a new sibling folder
    ``<name>.old-<stamp>-<random>``; returns it (None when there was nothing to move). Each entry
    moves by an atomic rename, so a crash leaves every file in one of the two folders."""
    run_dir = Path(run_dir)
    entries = [p for p in run_dir.iterdir() if p.name != LOCK_NAME]
    if not entries:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = Path(tempfile.mkdtemp(prefix=f"{run_dir.name}.old-{stamp}-", dir=run_dir.parent))
    for entry in entries:
        entry.rename(aside / entry.name)
    return aside


def restore_aside(run_dir: str | os.PathLike, aside: Path) -> None:
    """Put back what ``set_aside`` moved to ``aside``, replacing what a later run wrote in
    ``run_dir`` (its lock file excepted)."""
    run_dir = Path(run_dir)
    for entry in run_dir.iterdir():
        if entry.name == LOCK_NAME:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    for entry in aside.iterdir():
        entry.rename(run_dir / entry.name)
    aside.rmdir()


def set_aside_runs(run_dir: str | os.PathLike) -> list[Path]:
    """Folders that ``set_aside`` made for ``run_dir`` and that still exist, oldest first."""
    run_dir = Path(run_dir)
    return sorted(run_dir.parent.glob(f"{run_dir.name}.old-*"))


def trim_metrics(path: str | os.PathLike, step: int) -> None:
    """Keep the records of ``metrics.jsonl`` up to ``step`` (a resume redoes the rest), rewritten
    atomically. A line that is not a JSON record with a ``step`` (the torn last line of a crash
    mid-write) is dropped with a warning naming the file and line."""
    path = Path(path)
    if not path.exists():
        return
    lines = path.read_text(errors="replace").splitlines()
    kept = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record_step = int(json.loads(line)["step"])
        except (ValueError, TypeError, KeyError):
            what = "its torn last line" if number == len(lines) else "unreadable line"
            log.warning("%s: dropped %s %d (expected a JSON record with a 'step'): %r",
                        path, what, number, line[:80])  # fmt: skip
            continue
        if record_step <= step:
            kept.append(line)
    with atomic_path(path) as tmp:
        tmp.write_text("".join(ln + "\n" for ln in kept))
