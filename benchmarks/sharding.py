"""What each rank holds under DDP and FSDP: weights, gradients and Adam state per process.

Run under torchrun (gloo on CPU, NCCL on CUDA); one table is printed by rank 0. For each strategy
the model of ``--preset`` is wrapped as the trainer wraps it (``distributed.parallelize``), takes
``--steps`` Adam steps on random windows, and every rank's own bytes of parameters, gradients and
optimizer state are counted (FSDP: the local shards, which is what lives in that process's
memory), together with the time per step and, on CUDA, the peak memory allocated.

    torchrun --standalone --nproc_per_node=2 benchmarks/sharding.py --preset S
    torchrun --standalone --nproc_per_node=8 benchmarks/sharding.py --preset H --device cuda
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.distributed as dist

from dpot_lab.models import create_model
from dpot_lab.train import distributed


def _bytes(tensors) -> int:
    return sum(distributed.local(t).numel() * t.element_size() for t in tensors)


def measure(preset: str, strategy: str, info, resolution: int, batch: int, steps: int) -> dict:
    torch.manual_seed(0)
    model = create_model(preset, img_size=resolution).to(info.device)
    parallel = distributed.parallelize(model, info, strategy)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    cfg = model.config
    x = torch.randn(batch, resolution, resolution, cfg.in_timesteps, cfg.in_channels,
                    device=info.device)  # fmt: skip
    if info.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(info.device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        parallel(x).square().mean().backward()
        optimizer.step()
        if info.device.type == "cuda":
            torch.cuda.synchronize(info.device)
        times.append(time.perf_counter() - start)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    state = [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    row = {
        "params": _bytes(model.parameters()),
        "grads": _bytes(grads),
        "adam": _bytes(state),
        "step_s": min(times[1:] or times),
        "peak": torch.cuda.max_memory_allocated(info.device) if info.device.type == "cuda" else 0,
    }
    gathered = [None] * info.world_size
    dist.all_gather_object(gathered, row)
    return {k: max(r[k] for r in gathered) for k in row}  # the fullest rank


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="S")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch", type=int, default=None, help="per rank (default: 1)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    info = distributed.setup(args.device)
    if not info.distributed:
        raise SystemExit("run under torchrun with --nproc_per_node >= 2")
    batch = args.batch or 1
    rows = {s: measure(args.preset, s, info, args.resolution, batch, args.steps)
            for s in ("ddp", "fsdp")}  # fmt: skip
    if info.is_main:
        mib = 2**20
        print(f"{args.preset}, {args.resolution}², batch {batch} per rank, {info.world_size} "
              f"ranks on {info.device.type}; per rank (the fullest one):")  # fmt: skip
        print(f"{'strategy':<9}{'params MiB':>11}{'grads MiB':>10}{'Adam MiB':>9}"
              f"{'total MiB':>10}{'peak MiB':>9}{'step s':>8}")  # fmt: skip
        for s, r in rows.items():
            total = r["params"] + r["grads"] + r["adam"]
            peak = f"{r['peak'] / mib:.0f}" if info.device.type == "cuda" else "-"
            sizes = "".join(
                f"{v / mib:>{w}.1f}"
                for v, w in ((r["params"], 11), (r["grads"], 10), (r["adam"], 9), (total, 10))
            )
            print(f"{s:<9}{sizes}{peak:>9}{r['step_s']:>8.2f}")  # fmt: skip
        ratio = sum(rows["fsdp"][k] for k in ("params", "grads", "adam")) / sum(
            rows["ddp"][k] for k in ("params", "grads", "adam")
        )
        print(f"FSDP / DDP state per rank: {ratio:.3f} (1/{info.world_size} = "
              f"{1 / info.world_size:.3f})")  # fmt: skip
    distributed.teardown()


if __name__ == "__main__":
    main()
