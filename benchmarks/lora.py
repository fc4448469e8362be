"""Full vs LoRA fine-tuning of the shipped model's architecture (micro preset, patch 4, C = 4,
64², T_in = 10): trainable parameters, their share, the training state they cost (weights +
gradients + Adam's two moments, float32) and the time of one optimizer step.

    python benchmarks/lora.py                # CPU, batch 4
    python benchmarks/lora.py --device cuda --batch 32
    python benchmarks/lora.py --accuracy burgers2d --train 8 --fit-steps 500

``--accuracy FAMILY``: the shipped model fine-tuned in full and with LoRA (rank 4 and 8, the
default targets) on ``--train`` trajectories of a held-out family (``dl.studies.data_efficiency``,
same recipe and steps; LoRA at ``--lora-lr``), 10-step rollout L2RE on 8 held-out trajectories.
"""

from __future__ import annotations

import argparse
import time

import torch
import yaml

import dpot_lab as dl
from dpot_lab.data.generation import generate_cached
from dpot_lab.studies.efficiency import data_efficiency
from dpot_lab.train.lora import apply_lora
from dpot_lab.viz import DEMO_CHECKPOINT, DEMO_DATA

SETUPS = {  # name -> LoRA (rank, targets); None: every parameter trains
    "full": None,
    "lora r4 linear+conv": (4, ["linear", "conv"]),
    "lora r4 +fourier": (4, ["linear", "conv", "fourier"]),
    "lora r8 +fourier": (8, ["linear", "conv", "fourier"]),
}


def measure(setup, device: torch.device, batch: int, steps: int) -> dict:
    torch.manual_seed(0)
    model = dl.create_model("micro", patch_size=4).to(device)
    n_model = sum(p.numel() for p in model.parameters())
    if setup is not None:
        rank, targets = setup
        apply_lora(model, rank, 2.0 * rank, targets)
    params = [p for p in model.parameters() if p.requires_grad]
    n_train = sum(p.numel() for p in params)
    n_all = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(params, lr=1e-4)
    x = torch.randn(batch, 64, 64, 10, 4, device=device)
    y = torch.randn(batch, 64, 64, 1, 4, device=device)
    times = []
    for i in range(steps + 1):  # the first step warms up (allocations, kernels)
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        (model(x) - y).square().mean().backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t)
    # weights (all, base + adapters) + gradients and Adam's exp_avg, exp_avg_sq (trainable only)
    state_bytes = 4 * (n_all + 3 * n_train)
    return {
        "trainable": n_train,
        "share": n_train / n_model,
        "state_mb": state_bytes / 2**20,
        "step_ms": 1e3 * sorted(times)[len(times) // 2],
    }


def accuracy(family: str, n_train: int, steps: int, lora_lr: float) -> None:
    """Full vs LoRA fine-tuning of the shipped model on a held-out family: test L2RE."""
    spec = yaml.safe_load(DEMO_DATA.read_text())["held_out"][family]
    data = generate_cached(dict(spec, n_samples=n_train + 8, seed=5000))  # first n_train train
    runs = {
        "full": None,
        "lora r4": {"rank": 4, "alpha": 8.0},
        "lora r8": {"rank": 8, "alpha": 16.0},
    }
    print(f"\n{family}: {n_train} training trajectories, {steps} steps, 10-step L2RE on 8")
    print(f"{'setup':<10}{'lr':>9}{'L2RE':>9}{'vs full':>9}{'s':>7}")
    full = None
    for name, lora in runs.items():
        lr = None if lora is None else lora_lr
        recipe = {"optim": {"lora": lora}} if lora is not None else None
        t = time.perf_counter()
        table = data_efficiency(DEMO_CHECKPOINT, data, [n_train], steps, runs=("finetuned",),
                                lr=lr, recipe=recipe, progress=False)  # fmt: skip
        err = float(table["finetuned"].sel(n_train=n_train))
        full = err if full is None else full
        shown = f"{lr:.0e}" if lr is not None else "recipe"
        print(f"{name:<10}{shown:>9}{err:>9.4f}{err / full:>9.2f}{time.perf_counter() - t:>7.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--accuracy", metavar="FAMILY", help="also: full vs LoRA test L2RE")
    parser.add_argument("--train", type=int, default=8, help="training trajectories")
    parser.add_argument("--fit-steps", type=int, default=500)
    parser.add_argument("--lora-lr", type=float, default=5e-3)
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"micro, patch 4, 64², C=4, T_in=10; batch {args.batch} on {device}; Adam, float32")
    print(f"{'setup':<22}{'trainable':>11}{'share':>8}{'state MiB':>11}{'step ms':>10}")
    for name, setup in SETUPS.items():
        r = measure(setup, device, args.batch, args.steps)
        print(
            f"{name:<22}{r['trainable']:>11,}{r['share']:>8.1%}{r['state_mb']:>11.2f}"
            f"{r['step_ms']:>10.1f}"
        )
    if args.accuracy:
        accuracy(args.accuracy, args.train, args.fit_steps, args.lora_lr)


if __name__ == "__main__":
    main()
