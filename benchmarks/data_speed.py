"""Data speed: NS 2D trajectories generated per second, and windows per second the training
mixture delivers through a DataLoader.

    python benchmarks/data_speed.py            # full sizes (about 10 minutes on 2 busy CPU cores)
    python benchmarks/data_speed.py --quick    # a fast smoke run

(1) ``dl.generate("ns2d", ...)``: FNO Navier–Stokes vorticity at 64², ν = 1e-3, 50 time units
    (one frame per time unit), written to a native HDF5 file; trajectories per second.
(2) ``Mixture`` at 128² × t_in 10 (+1) × 4 channels from a 64² source (the generated file) and a
    128² source (random, 4 channels, written natively), read through ``make_loader`` with 2
    workers; windows per second in steady state (workers started, first batch excluded) and
    the cost of one window in one process, split into read / resize / pad / collate.
(3) Per CPU core: the same batches from the DataLoader and from ``ResidentLoader``
    (trajectories on the model grid kept on ``--device``), each over one epoch, first batch
    excluded: windows/s, the cores used (CPU seconds of this process and its DataLoader
    workers, read from /proc, per wall second), windows/s per core used, and their ratio; with
    ``--resident-gb`` below a source's size, that source streams in chunks.
Wall-clock numbers depend on what else runs on the machine: the load average is printed. On
the CPU a resident window costs about 0.6 ms of copying; ResidentLoader writes each batch into
tensors it recycles, since fresh pages from the kernel cost as much again or more (glibc maps a
batch of 32 MiB or more, ``x`` at batch 14 and up, afresh every time): the page faults per
window are printed, about 0 in steady state.
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from torch.utils.data import default_collate

import dpot_lab as dl
from dpot_lab.data import native
from dpot_lab.data.loader import make_loader
from dpot_lab.data.mixture import Mixture
from dpot_lab.data.resident import ResidentLoader
from dpot_lab.data.transforms import pad_channels


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run in seconds")
    p.add_argument("--ns-samples", type=int, default=4, help="NS 2D trajectories to generate")
    p.add_argument("--ns-grid", type=int, default=64)
    p.add_argument("--ns-nu", type=float, default=1e-3)
    p.add_argument("--ns-time", type=int, default=50, help="time units (= frames) per trajectory")
    p.add_argument("--big-samples", type=int, default=64, help="trajectories in the 128² source")
    p.add_argument("--big-grid", type=int, default=128)
    p.add_argument("--big-frames", type=int, default=21)
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--t-in", type=int, default=10)
    p.add_argument("--channels", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=8, help="as in the CPU configs")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--windows", type=int, default=2000, help="windows timed per loader row")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="where ResidentLoader keeps the trajectories")  # fmt: skip
    p.add_argument("--resident-gb", type=float, default=None,
                   help="ResidentLoader's budget (default a quarter of the memory); sources "
                   "beyond it stream in chunks")  # fmt: skip
    p.add_argument("--dir", type=Path, default=None, help="where to write the files (a temp dir)")
    args = p.parse_args()
    if args.quick:
        args.ns_samples, args.ns_time, args.big_samples, args.windows = 2, 12, 8, 200
    return args


def generate_ns(args: argparse.Namespace, folder: Path) -> tuple[Path, float, float]:
    """Write the NS 2D file (one frame per time unit); -> (path, trajectories per wall second,
    trajectories per CPU second of this process)."""
    t0, c0 = time.perf_counter(), time.process_time()
    path = dl.generate(
        "ns2d",
        folder / "ns2d.h5",
        n_samples=args.ns_samples,
        resolution=args.ns_grid,
        nu=args.ns_nu,
        n_frames=args.ns_time,
        dt_save=1.0,
        progress=False,
        overwrite=True,  # --dir may hold the file of an earlier run
    )
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return path, args.ns_samples / wall, args.ns_samples / cpu


def write_random(args: argparse.Namespace, folder: Path) -> Path:
    """A 128² source with 4 channels of random numbers, in the native format."""
    rng = np.random.default_rng(0)
    shape = (args.big_samples, args.big_frames, args.big_grid, args.big_grid)
    names = ("vx", "vy", "density", "pressure")
    dims = ("sample", "time", "x", "y")
    ds = xr.Dataset(
        {n: (dims, rng.standard_normal(shape, dtype=np.float32)) for n in names},
        attrs={"pde": "random", "source_format": "benchmark"},
    )
    return native.save(ds, folder / "random128.h5")


def mixture(paths: list[Path], args: argparse.Namespace) -> Mixture:
    """A mixture whose one epoch holds at least ``args.windows`` windows (weights repeat)."""
    n = [dl.open_dataset(p).sizes["sample"] for p in paths]
    weights = [-(-args.windows // (len(paths) * k)) for k in n]  # ceil
    return Mixture(
        paths,
        weights=weights,
        split="all",
        resolution=args.resolution,
        t_in=args.t_in,
        t_out=1,
        channels=args.channels,
    )


def cpu_seconds() -> float:
    """CPU seconds of this process (all threads) and its live child processes (the
    DataLoader's workers), from /proc."""
    me, tick, total = os.getpid(), os.sysconf("SC_CLK_TCK"), time.process_time()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(stat[1]) == me:  # ppid; utime and stime in clock ticks
            total += (int(stat[11]) + int(stat[12])) / tick
    return total


def loader_rate(mix: Mixture, args: argparse.Namespace) -> tuple[float, float, float]:
    """(steady windows/s, windows/s including worker start-up, cores used in steady state) over
    one epoch; steady: workers started, first and last batch excluded (the last ends them)."""
    loader = make_loader(mix, args.batch_size, num_workers=args.workers)
    t0 = time.perf_counter()
    batches = iter(loader)
    first = next(batches)["x"].shape[0]
    t_first, c_first = time.perf_counter(), cpu_seconds()
    steady = sum(batch["x"].shape[0] for batch in itertools.islice(batches, len(loader) - 2))
    t_steady, c_steady = time.perf_counter(), cpu_seconds()
    done = first + steady + sum(batch["x"].shape[0] for batch in batches)
    end = time.perf_counter()
    wall = t_steady - t_first
    return steady / wall, done / (end - t0), (c_steady - c_first) / wall


def breakdown(mix: Mixture, n: int, batch_size: int) -> dict[str, float]:
    """CPU milliseconds per window in this process (one thread, as in a DataLoader worker):
    read, resize, pad, the whole item, and collate."""
    torch.set_num_threads(1)
    cost = dict.fromkeys(("read", "resize", "pad", "item", "collate"), 0.0)
    clock = time.thread_time  # CPU time: robust to other processes sharing the cores
    items = []
    for i in np.random.default_rng(0).permutation(len(mix))[:n].tolist():
        k, sample = mix.locate(i)
        start = mix.window_start(i)
        t0 = clock()
        data = mix._read(k, sample, start, start + mix.t_in + mix.t_out)
        t1 = clock()
        field = mix._to_grid(torch.from_numpy(data), k)
        t2 = clock()
        pad_channels(field, mix.channels, mix.pad_value)
        t3 = clock()
        items.append(mix[i])
        t4 = clock()
        if len(items) == batch_size:
            default_collate(items)
            cost["collate"] += clock() - t4
            items = []
        for key, dt in zip(cost, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=False):
            cost[key] += dt  # read, resize, pad, item
    batches = n // batch_size
    out = {k: 1e3 * v / n for k, v in cost.items()}
    out["collate"] = 1e3 * cost["collate"] / max(1, batches * batch_size)
    return out


def resident_rate(mix: Mixture, args: argparse.Namespace) -> tuple[float, float, float, float]:
    """(windows/s, cores used, page faults per window, upload seconds) of ResidentLoader over one
    epoch, the first batch excluded."""
    sync = torch.cuda.synchronize if torch.device(args.device).type == "cuda" else lambda: None
    t0 = time.perf_counter()
    gb = args.resident_gb
    budget = None if gb is None else int(gb * 2**30)
    run = ResidentLoader(mix, args.batch_size, device=args.device, max_bytes=budget)
    sync()
    upload = time.perf_counter() - t0
    batches = iter(run)
    next(batches)
    sync()
    t0, c0, f0 = time.perf_counter(), cpu_seconds(), resource.getrusage(resource.RUSAGE_SELF)
    done = sum(batch["x"].shape[0] for batch in itertools.islice(batches, run.per_epoch - 1))
    sync()
    wall, faults = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    return (
        done / wall,
        (cpu_seconds() - c0) / wall,
        (faults.ru_minflt - f0.ru_minflt) / done,
        upload,
    )


def main() -> None:
    args = parse()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="dpot_data_speed_"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"# data speed ({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start)")
    ns_path, per_wall, per_cpu = generate_ns(args, folder)
    print(
        f"\n| NS 2D generation | grid | ν | time units | trajectories | trajectories/s | "
        f"trajectories per CPU-s ({torch.get_num_threads()} threads) |\n"
        f"|---|---|---|---|---|---|---|\n"
        f"| dl.generate('ns2d') | {args.ns_grid}² | {args.ns_nu:g} | {args.ns_time} | "
        f"{args.ns_samples} | {per_wall:.3f} | {per_cpu:.3f} |"
    )
    big_path = write_random(args, folder)
    rows = {
        f"{args.ns_grid}² NS (1 ch)": mixture([ns_path], args),
        f"{args.big_grid}² random (4 ch)": mixture([big_path], args),
        "both": mixture([ns_path, big_path], args),
    }
    print(
        f"\n| mixture source | windows/s, {args.workers} workers (steady) | windows/s (with "
        "start-up) | CPU ms/window: read | resize | pad | whole item | collate | windows/s "
        f"projected on {args.workers} idle cores |\n|---|---|---|---|---|---|---|---|---|"
    )
    rates, per_core = {}, {}
    for name, mix in rows.items():
        steady, overall, cores = loader_rate(mix, args)
        ms = breakdown(mix, min(200, len(mix)), args.batch_size)
        rates[name] = args.workers * 1e3 / (ms["item"] + ms["collate"])
        per_core[name] = (steady, cores, *resident_rate(mix, args))
        print(
            f"| {name} | {steady:.0f} | {overall:.0f} | {ms['read']:.2f} | {ms['resize']:.2f} | "
            f"{ms['pad']:.2f} | {ms['item']:.2f} | {ms['collate']:.2f} | {rates[name]:.0f} |"
        )
    verdict = "met" if rates["both"] >= 400 else "NOT met"
    print(
        f"\ntarget >= 400 windows/s at {args.resolution}² x {args.t_in} x {args.channels} (both "
        f"sources), projected from CPU time: {verdict} ({rates['both']:.0f})"
    )
    print(
        f"\n| mixture source (batch {args.batch_size}) | DataLoader windows/s | cores used | "
        f"windows/s per core | resident ({args.device}) windows/s | cores used | windows/s per "
        "core | per-core ratio | resident page faults/window | resident upload s |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    for name, (steady, cores, resident, resident_cores, faults, upload) in per_core.items():
        ratio = (resident / resident_cores) / (steady / cores)
        print(
            f"| {name} | {steady:.0f} | {cores:.2f} | {steady / cores:.0f} | {resident:.0f} | "
            f"{resident_cores:.2f} | {resident / resident_cores:.0f} | {ratio:.1f} | "
            f"{faults:.0f} | {upload:.1f} |"
        )
    steady, cores, resident, resident_cores, _, _ = per_core["both"]
    ratio = (resident / resident_cores) / (steady / cores)
    print(
        f"\ntarget resident >= 5x the DataLoader's windows/s per core used (both sources): "
        f"{'met' if ratio >= 5 else 'NOT met'} ({ratio:.1f}x); load average now "
        f"{os.getloadavg()[0]:.1f} (the wall-clock columns shrink with every other process)"
    )


if __name__ == "__main__":
    main()
