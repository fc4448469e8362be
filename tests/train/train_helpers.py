"""Builders the training tests share: smooth advected fields, a tiny run config, the rollback
check and torchrun launches (a module of its own, so that test files and torchrun scripts import
it by a unique name)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import xarray as xr


def advected_fields(
    n_samples: int = 24, n_time: int = 16, size: int = 32, channels: int = 1, seed: int = 0
) -> xr.Dataset:
    """Smooth random periodic fields carried at a constant velocity, exactly (field c moves by
    (1 + c, 0.5) grid points per frame): learnable dynamics whose persistence error is large."""
    rng = np.random.default_rng(seed)
    grid = np.arange(size) / size
    xx, yy = np.meshgrid(grid, grid, indexing="ij")
    t = np.arange(n_time)[:, None, None]
    out = np.zeros((channels, n_samples, n_time, size, size), np.float32)
    for c in range(channels):
        vx, vy = (1.0 + c) / size, 0.5 / size
        for s in range(n_samples):
            for kx, ky in [(1, 0), (0, 1), (1, 1), (2, 1)]:
                a, phase = rng.normal(), rng.uniform(0, 2 * np.pi)
                out[c, s] += a * np.cos(
                    2 * np.pi * (kx * (xx - vx * t) + ky * (yy - vy * t)) + phase
                )
    names = ["u", "v", "w"][:channels]
    return xr.Dataset(
        {n: (("sample", "time", "x", "y"), out[c]) for c, n in enumerate(names)},
        coords={"time": np.arange(n_time, dtype=float), "x": grid, "y": grid},
        attrs={"pde": "advection", "source_format": "synthetic"},
    )


def tiny_config(sources: list, **changes) -> dict:
    """A config of a tiny model (D 32, depth 1, 32², t_in 4) that trains in seconds on a CPU."""
    cfg = {
        "name": "tiny",
        "steps": 6,
        "batch_size": 4,
        "seed": 0,
        "model": {"preset": "nano", "embed_dim": 32, "depth": 1, "modes": 4, "mlp_ratio": 1,
                  "out_layer_dim": 16},
        "data": {"sources": [str(s) for s in sources], "resolution": 32, "t_in": 4,
                 "channels": 2, "n_test": 4},
        "optim": {"lr": 3e-3},
        "noise": {"kind": "rms", "scale": 0.05},
        "eval": {"horizon": 4},
        "log": {"every": 1, "progress": False},
    }  # fmt: skip
    for key, value in changes.items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return cfg


def check_rollback_restores(trainer) -> None:
    """Snapshot after one step, train two more, restore: weights, EMA and optimizer state
    (this rank's shards under FSDP) equal the snapshot exactly, and the weights had moved."""
    trainer.fit(1)
    guard = trainer.guard
    guard.take_snapshot(trainer.step)
    snap = copy.deepcopy(guard.snapshot)  # the next snapshot reuses this one's memory
    trainer.fit(3)
    guard.take_snapshot(trainer.step)
    moved = copy.deepcopy(guard.snapshot)
    guard.snapshot = copy.deepcopy(snap)
    guard.restore()
    guard.take_snapshot(trainer.step)
    now = guard.snapshot
    assert any(not torch.equal(moved["model"][k], v) for k, v in snap["model"].items())
    for part in (lambda s: s["model"], lambda s: s["ema"], lambda s: s["optimizer"]["state"]):
        torch.testing.assert_close(part(now), part(snap), rtol=0, atol=0)
    lrs = [[g["lr"] for g in s["optimizer"]["param_groups"]] for s in (now, snap)]
    assert lrs[0] == lrs[1]


def torchrun(args: list[str], ranks: int = 2) -> None:
    """``python <args>`` under torchrun with ``ranks`` local processes of one thread each."""
    launch = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, *launch, *args], check=True, env=env)


def run_rank_script(template: str, data, tmp_path: Path, ranks: int = 2) -> None:
    """``template`` (with ``{tests}``, ``{data}``, ``{out}`` fields) as a script under torchrun."""
    script = tmp_path / "ranks.py"
    tests = str(Path(__file__).parent)
    script.write_text(template.format(tests=tests, data=str(data), out=str(tmp_path / "x")))
    torchrun([str(script)], ranks)
