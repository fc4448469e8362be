"""Trainer speed: what ``dl.train.Trainer`` delivers against the bare model step, same model.

Prints one table. For each (preset, batch) row: samples/s of the bare train step (random input
already in memory: forward, relative-L2 loss, backward, fused Adam; best of ``--repeats`` rounds)
and samples/s the Trainer reports in ``metrics.jsonl`` (windows read from an HDF5 file through
the data loader, input noise, masks, gradient-norm measurement, logging; evaluation and
checkpoints excluded; the first logged interval, which holds start-up, is dropped), and their
ratio. The Trainer reads a native file of smooth random fields (64², 24 frames, 1 channel padded
to ``--channels``), made once in a temporary folder.

    OMP_NUM_THREADS=1 python benchmarks/trainer_speed.py              # nano b8, micro b20
    python benchmarks/trainer_speed.py --rows micro:20 --workers 2 --steps 200
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

import dpot_lab as dl
from dpot_lab.train.loss import masked_relative_l2


def write_source(path: Path, n: int = 48, t: int = 24, size: int = 64) -> Path:
    """Smooth periodic random fields drifting one grid point per frame: a cheap, learnable set."""
    rng = np.random.default_rng(0)
    grid = np.arange(size) / size
    xx, yy = np.meshgrid(grid, grid, indexing="ij")
    frames = np.arange(t)[:, None, None] / size
    u = np.zeros((n, t, size, size), np.float32)
    for s in range(n):
        for kx, ky in [(1, 0), (0, 1), (1, 1), (2, 1)]:
            phase = rng.uniform(0, 2 * np.pi)
            u[s] += rng.normal() * np.cos(2 * np.pi * (kx * (xx - frames) + ky * yy) + phase)
    ds = xr.Dataset(
        {"u": (("sample", "time", "x", "y"), u)},
        coords={"time": np.arange(t, dtype=float), "x": grid, "y": grid},
        attrs={"pde": "drift", "source_format": "synthetic"},
    )
    return dl.data.save(ds, path)


def bare(preset: str, batch: int, channels: int, repeats: int, steps: int) -> float:
    """Samples/s of forward + loss + backward + fused Adam on an input held in memory."""
    torch.manual_seed(0)
    model = dl.create_model(preset, in_channels=channels)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
    cfg = model.config
    x = torch.randn(batch, *cfg.img_size, cfg.in_timesteps, channels)
    y = torch.randn(batch, *cfg.img_size, 1, channels)
    best = 0.0
    for _ in range(repeats):
        for k in range(steps + 2):  # 2 untimed warm-up steps
            if k == 2:
                start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            masked_relative_l2(model(x), y).backward()
            opt.step()
        best = max(best, steps * batch / (time.perf_counter() - start))
    return best


def trainer(preset: str, batch: int, channels: int, source: Path, args, run: Path) -> float:
    """Median samples/s of the Trainer's logged intervals after the first."""
    cfg = {
        "name": f"speed_{preset}_{batch}", "steps": args.steps, "batch_size": batch,
        "model": {"preset": preset},
        "data": {"sources": [str(source)], "resolution": 64, "t_in": 10, "channels": channels,
                 "n_test": 4, "num_workers": args.workers},
        "noise": {"kind": "rms", "scale": 0.05},
        "eval": {"every": 0, "max_samples": 1, "horizon": 1},
        "checkpoint": {"every": 0},
        "log": {"every": args.log_every, "progress": False},
    }  # fmt: skip
    dl.train.Trainer(cfg, run_dir=run, overwrite=True).fit()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["samples_per_s"] for r in records if r["event"] == "train"][1:]
    return float(np.median(speeds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=["nano:8", "micro:20"], help="preset:batch")
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--steps", type=int, default=150, help="Trainer steps per row")
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--workers", type=int, default=1, help="data-loader worker processes")
    parser.add_argument("--repeats", type=int, default=3, help="bare-step rounds (best taken)")
    parser.add_argument("--bare-steps", type=int, default=20, help="timed bare steps per round")
    args = parser.parse_args()
    print(f"# trainer speed (torch threads {torch.get_num_threads()}, {args.workers} loader "
          f"worker(s), 64², C={args.channels}, t_in 10)")  # fmt: skip
    print("| preset | batch | bare step samples/s | Trainer samples/s | Trainer / bare |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        source = write_source(Path(tmp) / "drift.h5")
        for row in args.rows:
            preset, batch = row.split(":")
            b = bare(preset, int(batch), args.channels, args.repeats, args.bare_steps)
            t = trainer(preset, int(batch), args.channels, source, args, Path(tmp) / row)
            print(f"| {preset} | {batch} | {b:.1f} | {t:.1f} | {t / b:.2f} |", flush=True)


if __name__ == "__main__":
    main()
