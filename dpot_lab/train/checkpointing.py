"""Run-directory checkpoints: ``checkpoints/step_XXXXXXXX.pt`` (the newest ``keep`` retained) plus
``last.pt`` and ``best.pt``, each loadable with ``dl.load_checkpoint``.

A step file is written atomically by ``dpot_lab.models.save_checkpoint`` (which refuses
non-finite weights); ``last.pt``/``best.pt`` are then swapped in as hard links to it (a copy where
links are not supported) with an atomic rename, so a kill at any moment leaves the previous ones
loadable.
"""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dpot_lab.models.checkpoint import read_checkpoint, save_checkpoint

log = logging.getLogger(__name__)
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


def _replace_with_link(src: Path, dst: Path) -> None:
    """Make ``dst`` the same file as ``src`` in one atomic rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunCheckpoints:
    """The ``checkpoints/`` folder of a run directory."""

    def __init__(self, run_dir: str | os.PathLike, keep: int = 3):
        self.dir = Path(run_dir) / "checkpoints"
        self.keep = keep

    @property
    def last(self) -> Path:
        return self.dir / "last.pt"

    @property
    def best(self) -> Path:
        return self.dir / "best.pt"

    def step_files(self) -> list[Path]:
        """Step checkpoints, oldest first."""
        if not self.dir.is_dir():
            return []
        found = [
            (int(m.group(1)), p) for p in self.dir.iterdir() if (m := _STEP_FILE.match(p.name))
        ]
        return [p for _, p in sorted(found)]

    def save(
        self,
        step: int,
        model: torch.nn.Module,
        /,
        metadata: dict | None = None,
        best: bool = False,
        state: dict[str, torch.Tensor] | None = None,
        **extra: Any,
    ) -> Path:
        """Write ``step_<step>.pt``, point ``last.pt`` (and ``best.pt`` when ``best``) at it and
        drop step files beyond the newest ``keep``. Raises ValueError on non-finite weights.
        ``state``: the weights to write instead of ``model.state_dict()`` (gathered ones)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = save_checkpoint(self.dir / f"step_{step:08d}.pt", model, metadata, state, **extra)
        _replace_with_link(path, self.last)
        if best:
            _replace_with_link(path, self.best)
        for old in self.step_files()[: -self.keep]:
            old.unlink(missing_ok=True)
        for stale in self.dir.glob(".*.tmp"):  # left by a process killed mid-write
            stale.unlink(missing_ok=True)
        return path

    def read_last(self) -> dict:
        """The whole ``last.pt`` dict; when it is missing or corrupt, the newest intact step file
        (then ``best.pt``) with a warning saying so; a clear error when none can be read."""
        if not self.last.is_file() and not self.step_files():
            raise FileNotFoundError(
                f"cannot resume: {self.last} does not exist (no checkpoint was written in "
                f"{self.dir.parent}; start without --resume)"
            )
        try:
            return read_checkpoint(self.last)
        except Exception as err:  # the unpickler raises several kinds on a damaged file
            problem = "missing" if not self.last.is_file() else f"corrupt or unreadable ({err})"
        # step files newest first, then best.pt: pruning keeps the newest, so best.pt is older
        for path in [*reversed(self.step_files()), self.best]:
            try:
                state = read_checkpoint(path)
            except Exception:  # as above; try the next older one
                continue
            log.warning("%s is %s: resuming from %s (step %s) instead",
                        self.last, problem, path.name, state.get("step"))  # fmt: skip
            return state
        raise ValueError(
            f"cannot resume from {self.last}: {problem}, and no step file or best.pt in "
            f"{self.dir} can be read either"
        )


def recipe_changes(saved: dict, current: dict) -> list[str]:
    """The run-config keys (dotted) whose values differ between a checkpoint's ``train_config``
    and the resuming one, as ``key old -> new``; keys that do not change what is trained (length,
    logging, evaluation, checkpoints, device and parallel strategy, how data is read) are left
    out."""
    changes = []
    flat_saved, flat_current = _flatten(saved), _flatten(current)
    for key in sorted(flat_saved.keys() | flat_current.keys()):
        if key.split(".")[0] in _NOT_RECIPE or key in _NOT_RECIPE:
            continue
        old, new = (_show(flat, key) for flat in (flat_saved, flat_current))
        if old != new:
            changes.append(f"{key} {old} -> {new}")
    return changes


def _show(flat: dict, key: str) -> str:
    return repr(flat[key]) if key in flat else "unset"


# The run-config keys (a section or a dotted key) that a resumed run may change freely: the
# run's length and bookkeeping, and where and how it runs (a checkpoint resumes across devices
# and parallel strategies).
_NOT_RECIPE = (
    "name", "steps", "out_dir", "log", "eval", "checkpoint", "device", "compile", "distributed",
    "data.num_workers", "data.placement", "data.resident_gb", "data.cache_dir",
)  # fmt: skip


def _flatten(tree: dict, prefix: str = "") -> dict:
    """Nested dicts -> {dotted key: leaf value}."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# ---------------------------------------------------------------------- RNG state
def rng_state() -> dict:
    """Python, NumPy, torch CPU and CUDA generator states, as plain containers and tensors."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` captured (CUDA only where it was saved and is available)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
