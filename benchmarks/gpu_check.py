"""GPU check: release parity on CUDA, then training speed, memory and MFU of DPOT-Ti/S/M at 128².

1. Parity: each golden file of the release (``official_dpot/*.pt``) is loaded with
   ``load_official``; the CUDA output (fp32, TF32 off) is compared with the CPU output and with
   the release's own output (relative L2, pass below 1e-5).
2. Speed: a training step (forward + backward + Adam) of Ti, S and M at 128², batch 20, C=4,
   T_in=10, in fp32 (TF32 off), bf16 autocast, and bf16 autocast + torch.compile; the release
   transcription (``release_transcription.py``) in eager fp32 and bf16 alongside. Reported:
   samples/s, peak memory (``torch.cuda.max_memory_allocated``: weights, gradients, Adam state and
   activations) and MFU = model FLOPs per training sample (the paper's: Ti 11.2, S 44.9,
   M 185.6 GFLOP) × samples/s / peak, the peak being a large bf16 matmul measured in the same run.
3. One table on stdout; the same as JSON in ``$OUT/gpu_check.json`` when ``$OUT`` is set
   (rewritten after every measurement, so a run cut short still leaves its numbers).

    python benchmarks/gpu_check.py                      # CUDA machine, about 5 minutes on an H100
    python benchmarks/gpu_check.py --smoke              # tiny sizes; runs on a CPU too
    python benchmarks/gpu_check.py --fixtures DIR       # golden files elsewhere
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from release_transcription import ReleaseDPOTNet  # noqa: E402

from dpot_lab.models import PRESETS, create_model, load_official  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PAPER_GFLOP = {"Ti": 11.2, "S": 44.9, "M": 185.6}  # matmul/conv FLOPs, fwd + bwd, one 128² sample
MODES = ("fp32", "bf16", "bf16+compile")
SMOKE_SIZE = dict(img_size=32, embed_dim=32, depth=1, n_blocks=4, mlp_ratio=1, out_layer_dim=8)


def find_fixtures(given: str | None) -> Path | None:
    """--fixtures, else ../shared/fixtures/official_dpot, else shared/fixtures/official_dpot
    (relative to the working directory, then to the repository)."""
    if given:
        return Path(given)
    for base in (Path.cwd(), ROOT):
        for rel in ("../shared/fixtures/official_dpot", "shared/fixtures/official_dpot"):
            if (base / rel).is_dir():
                return (base / rel).resolve()
    return None


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double().cpu() - b.double().cpu()).norm() / b.double().cpu().norm())


def parity(fixtures: Path, device: torch.device) -> list[dict]:
    """CPU vs device and both vs the release's output, for every golden file."""
    rows = []
    for path in sorted(fixtures.glob("*.pt")):
        fx = torch.load(path, weights_only=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # 3D: temporal_modes is not among the saved keywords
            model = load_official(fx["checkpoint"], **fx["config"]).eval()
        with torch.no_grad():
            cpu = model(fx["input"])
            dev = model.to(device)(fx["input"].to(device)).cpu()
        errors = {
            "device_vs_cpu": rel_l2(dev, cpu),
            "device_vs_release": rel_l2(dev, fx["output"]),
            "cpu_vs_release": rel_l2(cpu, fx["output"]),
        }
        rows.append({"fixture": path.stem, **errors, "ok": max(errors.values()) < 1e-5})
    return rows


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_matmul_tflops(device: torch.device, n: int) -> float:
    """Measured bf16 matmul throughput (n×n×n), the MFU denominator."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync(device)
    reps, start = 10, time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e12


def build(which: str, preset: str, smoke: bool) -> torch.nn.Module:
    size = SMOKE_SIZE if smoke else {}
    if which == "dpot-lab":
        return create_model(preset, n_cls=12, **size)
    return ReleaseDPOTNet(**{**PRESETS[preset], **size}, out_channels=4, n_cls=12)


def counted_gflop(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Matmul/conv FLOPs of one training sample (forward + backward), counted by torch."""
    with FlopCounterMode(display=False) as counter:
        out = model(x[:1])
        (out[0] if isinstance(out, tuple) else out).float().sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 1e9


def train_speed(model, x, target, mode: str, steps: int, warmup: int) -> dict:
    """Samples/s and peak memory of ``steps`` training steps after ``warmup`` ones."""
    device = x.device
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    step_model = torch.compile(model) if mode.endswith("compile") else model
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if mode.startswith("bf16") else None
    )

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast or nullcontext():
            out = step_model(x)
            out = out[0] if isinstance(out, tuple) else out
        F.mse_loss(out.float(), target).backward()
        opt.step()

    start = time.perf_counter()
    for _ in range(warmup):
        step()
    sync(device)
    warm_s = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {
        "samples_per_s": steps * x.shape[0] / elapsed,
        "step_ms": 1e3 * elapsed / steps,
        "peak_mib": peak,
        "warmup_s": warm_s,
    }


def table(report: dict) -> str:
    head = ["model", "preset", "mode", "samples/s", "step ms", "peak MiB", "MFU", "warm-up s"]
    rows = []
    for r in report["train"]:
        mib = "n/a" if r["peak_mib"] is None else f"{r['peak_mib']:,.0f}"
        rows.append([
            r["model"], r["preset"], r["mode"], f"{r['samples_per_s']:,.1f}", f"{r['step_ms']:.1f}",
            mib, f"{100 * r['mfu']:.1f}%", f"{r['warmup_s']:.1f}",
        ])  # fmt: skip
    for s in report["skipped"]:
        rows.append([s["model"], s["preset"], s["mode"], "skipped", "", "", "", s["why"]])
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    fmt = "| " + " | ".join(f"{{:<{w}}}" for w in widths) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt.format(*head), sep, *(fmt.format(*row) for row in rows)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fixtures", default=None, help="folder of the release's golden files")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, few steps; CPU is fine")
    parser.add_argument("--presets", nargs="+", default=None, choices=PAPER_GFLOP,
                        help="default: Ti S M (Ti alone with --smoke)")  # fmt: skip
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps (compile included)")
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the release transcription (eager modes)")  # fmt: skip
    parser.add_argument("--budget-s", type=float, default=285.0,
                        help="skip what would not finish within this many seconds")  # fmt: skip
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.smoke:
        parser.error("no CUDA device: run with --smoke to check the script on a CPU")
    if args.presets is None:
        args.presets = ["Ti"] if args.smoke else list(PAPER_GFLOP)
    if args.smoke:
        args.batch, args.resolution = 2, SMOKE_SIZE["img_size"]
        args.steps, args.warmup = min(args.steps, 2), min(args.warmup, 1)
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
    torch.backends.cudnn.allow_tf32 = False
    out_dir = os.environ.get("OUT")

    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "smoke": args.smoke,
        "setup": {
            "batch": args.batch,
            "resolution": args.resolution,
            "channels": 4,
            "t_in": 10,
            "steps": args.steps,
            "warmup": args.warmup,
        },  # fmt: skip
        "parity": [],
        "train": [],
        "skipped": [],
    }

    def save() -> None:
        report["elapsed_s"] = time.perf_counter() - t0
        if out_dir:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            (Path(out_dir) / "gpu_check.json").write_text(json.dumps(report, indent=1))

    fixtures = find_fixtures(args.fixtures)
    if fixtures is None or not fixtures.is_dir():
        print(f"parity: fixtures not found ({args.fixtures or 'default places'}); skipped")
    else:
        report["parity"] = parity(fixtures, device)
        for r in report["parity"]:
            print(
                f"parity {r['fixture']}: device vs cpu {r['device_vs_cpu']:.2e}, device vs "
                f"release {r['device_vs_release']:.2e}, cpu vs release {r['cpu_vs_release']:.2e}"
                f" -> {'ok' if r['ok'] else 'FAIL'}"
            )
    report["peak_bf16_tflops"] = peak_matmul_tflops(device, 512 if args.smoke else 8192)
    print(f"measured peak (bf16 matmul): {report['peak_bf16_tflops']:.1f} TFLOP/s")
    save()

    # our eager runs first, then the baseline, then compiled runs (slow to warm up)
    which = ["dpot-lab"] + (["release transcription"] if args.baseline else [])
    plan = [(m, p, mode) for mode in args.modes if "compile" not in mode
            for m in which for p in args.presets]  # fmt: skip
    plan += [
        ("dpot-lab", p, mode) for mode in args.modes if "compile" in mode for p in args.presets
    ]
    res, batch = args.resolution, args.batch
    counted = {}
    for model_name, preset, mode in plan:
        needed = 100.0 if "compile" in mode else 15.0
        left = args.budget_s - (time.perf_counter() - t0)
        if left < needed and not args.smoke:
            why = f"{left:.0f} s of budget left"
            report["skipped"].append(
                {"model": model_name, "preset": preset, "mode": mode, "why": why}
            )
            continue
        torch.manual_seed(0)
        x = torch.randn(batch, res, res, 10, 4, device=device)  # (B, X, Y, T_in, C)
        target = torch.randn(batch, res, res, 1, 4, device=device)  # (B, X, Y, 1, C)
        model = build(model_name, preset, args.smoke).to(device)
        key = (model_name, preset)
        if key not in counted:
            counted[key] = counted_gflop(model, x)
        gflop = counted[key] if args.smoke else PAPER_GFLOP[preset]
        try:
            r = train_speed(model, x, target, mode, args.steps, args.warmup)
        except Exception as err:  # report and go on: one failing mode must not hide the others
            why = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
            report["skipped"].append(
                {"model": model_name, "preset": preset, "mode": mode, "why": why}
            )
            print(f"{model_name} {preset} {mode}: failed: {why}")
        else:
            r.update(model=model_name, preset=preset, mode=mode, model_gflop=gflop,
                     counted_gflop=counted[key])  # fmt: skip
            r["mfu"] = gflop * 1e9 * r["samples_per_s"] / (report["peak_bf16_tflops"] * 1e12)
            report["train"].append(r)
            print(
                f"{model_name} {preset} {mode}: {r['samples_per_s']:.1f} samples/s, "
                f"MFU {100 * r['mfu']:.1f}%"
            )
        del model, x, target
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        torch._dynamo.reset()
        save()

    print()
    print(
        f"{report['device']}, torch {report['torch']}: training step (fwd + bwd + Adam), "
        f"{res}², batch {batch}, C=4, T_in=10; {args.steps} timed steps after {args.warmup}; "
        f"peak bf16 matmul {report['peak_bf16_tflops']:.1f} TFLOP/s"
    )
    flops = ", ".join(
        f"{m} {p}: {g:.2f}" for (m, p), g in counted.items()
    )  # fmt: skip
    print(f"FLOPs per training sample counted by torch (GFLOP): {flops}")
    if not args.smoke:
        print(
            "MFU uses the paper's model FLOPs: "
            + ", ".join(f"{k} {v}" for k, v in PAPER_GFLOP.items())
        )
    print(table(report))
    save()
    if out_dir:
        print(f"wrote {Path(out_dir) / 'gpu_check.json'}")
    if any(not r["ok"] for r in report["parity"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
