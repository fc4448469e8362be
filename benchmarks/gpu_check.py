"""GPU check, one call of at most about 6 minutes on one GPU: parity, the Trainer against the bare
model step, MFU from counted FLOPs, memory, and a short notebook pre-training run.

1. Parity. fp32 (TF32 off): each golden file of the release (``official_dpot/*.pt``) loaded with
   ``load_official``, its device output against the CPU output and the release's own (relative
   L2, pass below 1e-5). bf16: the shipped model and a random-weight Ti under bf16 autocast
   against fp32 on the device (pass below 1 %).
2. Speed of Ti and S at 128², C=4, T_in=10, batch 20, bf16 autocast: the bare model step (input
   in device memory: forward, masked relative L2, backward, fused AdamW) and the real
   ``dl.train.Trainer`` on the device-resident path (``data.placement: device``: windows gathered
   on the device, input noise, masks, gradient norm, logging; the median of its logged intervals
   after the first), their ratio, and each one's peak memory
   (``torch.cuda.max_memory_allocated``); on CUDA also the synchronising calls made inside the
   Trainer's steps after the first (``torch.cuda.set_sync_debug_mode``; safety snapshots, which
   wait by design, are set beyond the run): 0 expected. FLOPs per training sample (forward +
   backward) are counted by ``torch.utils.flop_counter`` on our model, complex matmuls at four
   real ones each (torch counts them as one); MFU = counted FLOPs × samples/s / peak, the peak a
   large bf16 matmul measured in the same run; the paper's FLOPs and the MFU they would give
   beside them.
3. ``configs/notebook_pretrain_gpu.yaml`` for ``--notebook-s`` seconds (steps from the measured
   Trainer speed) on a corpus of the config's own generators, shrunk to generate within the
   budget; per-source rollout L2RE against persistence at the end.

Every table goes to stdout; the whole report to ``$OUT/gpu_check.json`` when ``$OUT`` is set
(rewritten after each part, so a run cut short keeps its numbers). ``--smoke`` runs every part at
tiny size on the CPU (and is part of the test suite); the full run needs CUDA.

    python benchmarks/gpu_check.py                      # CUDA machine, within --budget-s (360)
    python benchmarks/gpu_check.py --smoke              # tiny sizes; a CPU is fine
    python benchmarks/gpu_check.py --fixtures DIR       # golden files elsewhere
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trainer_speed import write_source  # noqa: E402

import dpot_lab as dl  # noqa: E402
from dpot_lab.models import create_model, load_official  # noqa: E402
from dpot_lab.train.config import TrainConfig  # noqa: E402
from dpot_lab.train.loss import masked_relative_l2  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = Path(dl.__file__).parent / "assets" / "pretrained.pt"
PAPER_GFLOP = {"Ti": 11.2, "S": 44.9, "M": 185.6}  # matmul/conv FLOPs, fwd + bwd, one 128² sample
SMOKE_MODEL = dict(embed_dim=32, depth=1, n_blocks=4, mlp_ratio=1, out_layer_dim=8)
MATMULS = {  # torch's formulas, which count a complex multiply-add as one real one
    torch.ops.aten.mm: flop_counter.mm_flop,
    torch.ops.aten.addmm: flop_counter.addmm_flop,
    torch.ops.aten.bmm: flop_counter.bmm_flop,
    torch.ops.aten.baddbmm: flop_counter.baddbmm_flop,
}


def find_fixtures(given: str | None) -> Path | None:
    """--fixtures, else ../shared/fixtures/official_dpot, else shared/fixtures/official_dpot
    (relative to the working directory, then to the repository), else the workplace's copy."""
    if given:
        return Path(given)
    for base in (Path.cwd(), ROOT):
        for rel in ("../shared/fixtures/official_dpot", "shared/fixtures/official_dpot"):
            if (base / rel).is_dir():
                return (base / rel).resolve()
    workplace = Path("/work/shared/fixtures/official_dpot")  # the workplace's copy
    return workplace if workplace.is_dir() else None


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double().cpu() - b.double().cpu()).norm() / b.double().cpu().norm())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bf16(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16)


def render(head: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    widths = [max(len(str(row[i])) for row in [head, *rows]) for i in range(len(head))]
    fmt = "| " + " | ".join(f"{{:<{w}}}" for w in widths) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt.format(*head), sep, *(fmt.format(*map(str, row)) for row in rows)])


# --------------------------------------------------------------------------- 1. parity
def parity_fp32(fixtures: Path, device: torch.device) -> list[dict]:
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


def parity_bf16(device: torch.device, smoke: bool) -> list[dict]:
    """bf16 autocast against fp32 on the device: the shipped model and a random-weight Ti."""
    torch.manual_seed(0)
    shipped = dl.load_checkpoint(SHIPPED)
    ti = create_model("Ti", **(SMOKE_MODEL if smoke else {}))
    rows = []
    for name, model in (("shipped", shipped), ("Ti (random weights)", ti)):
        cfg = model.config
        x = torch.randn(2, *cfg.img_size, cfg.in_timesteps, cfg.in_channels, device=device)
        model = model.to(device).eval()
        with torch.no_grad():
            ref = model(x)
            with bf16(device):
                low = model(x)
        err = rel_l2(low, ref)
        rows.append({"model": name, "bf16_vs_fp32": err, "ok": err < 0.01})
    return rows


# --------------------------------------------------------------------------- 2. speed and FLOPs
def _complex_aware(formula):
    def count(*args, out_val=None, **kwargs):
        flops = formula(*args, out_val=out_val, **kwargs)
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        return 4 * flops if any(t.is_complex() for t in tensors) else flops

    count._get_raw = True  # FlopCounterMode passes the tensors, not only their shapes
    return count


def counted_gflop(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Matmul/conv FLOPs of one training sample (forward + backward) in fp32, counted by torch,
    a complex matmul counting as four real ones."""
    mapping = {op: _complex_aware(f) for op, f in MATMULS.items()}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        model(x[:1]).float().sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 1e9


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


def reset_peak(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def bare_step(preset: str, args, device: torch.device) -> dict:
    """Samples/s and peak memory of the bare bf16 training step on an input in device memory."""
    torch.manual_seed(0)
    model = create_model(preset, img_size=args.resolution, **args.model_size).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    x = torch.randn(args.batch, args.resolution, args.resolution, 10, 4, device=device)
    y = torch.randn(args.batch, args.resolution, args.resolution, 1, 4, device=device)
    gflop = counted_gflop(model, x)
    reset_peak(device)

    def step():
        opt.zero_grad(set_to_none=True)
        with bf16(device):
            loss = masked_relative_l2(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync(device)
    elapsed = time.perf_counter() - start
    return {
        "samples_per_s": args.steps * args.batch / elapsed,
        "peak_mib": peak_mib(device),
        "counted_gflop": gflop,
    }


def counting_syncs(trainer: dl.train.Trainer) -> list[int]:
    """Per step the trainer launches from now on, the synchronising CUDA calls inside it."""
    counts, launch = [], trainer._launch_step

    def counted() -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                launch()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        counts.append(sum("synchroniz" in str(w.message) for w in caught))

    trainer._launch_step = counted
    return counts


def trainer_step(preset: str, args, device: torch.device, source: Path, run: Path) -> dict:
    """Samples/s (median of the logged intervals after the first), peak memory and (on CUDA)
    synchronising calls inside the steps after the first, of the Trainer on the
    device-resident path, bf16."""
    cfg = {
        "name": f"gpu_check_{preset}", "steps": args.trainer_steps, "batch_size": args.batch,
        "device": device.type, "precision": "bf16",
        "model": {"preset": preset, **args.model_size},
        "data": {"sources": [str(source)], "resolution": args.resolution, "t_in": 10,
                 "channels": 4, "n_test": 2, "placement": "device"},
        "noise": {"kind": "rms", "scale": 0.05},
        "optim": {"name": "adamw", "lr": 1e-4, "clip_grad": 1.0},
        "eval": {"every": 0, "max_samples": 1, "horizon": 1},
        "checkpoint": {"every": 0},
        "safety": {"snapshot_every": args.trainer_steps + 1},
        "log": {"every": args.log_every, "progress": False},
    }  # fmt: skip
    reset_peak(device)
    trainer = dl.train.Trainer(cfg, run_dir=run, overwrite=True)
    syncs = counting_syncs(trainer) if device.type == "cuda" else None
    records = trainer.fit()
    speeds = [r["samples_per_s"] for r in records if r["event"] == "train"][1:]
    out = {
        "samples_per_s": statistics.median(speeds),
        "peak_mib": peak_mib(device),
        "syncs": None if syncs is None else sum(syncs[1:]),
    }
    del trainer
    return out


def speed_table(report: dict) -> str:
    rows = []
    for r in report["speed"]:
        mib = [("n/a" if m is None else f"{m:,.0f}") for m in (r["bare_mib"], r["trainer_mib"])]
        rows.append([
            r["preset"], f"{r['bare_sps']:,.1f}", f"{r['trainer_sps']:,.1f}",
            f"{r['trainer_sps'] / r['bare_sps']:.2f}", f"{r['counted_gflop']:.2f}",
            f"{r['paper_gflop'] or 'n/a'}", f"{100 * r['mfu']:.1f}%",
            "n/a" if r["mfu_paper"] is None else f"{100 * r['mfu_paper']:.1f}%",
            *mib, "n/a" if r["syncs"] is None else r["syncs"],
        ])  # fmt: skip
    head = [
        "preset", "bare samples/s", "Trainer samples/s", "Trainer / bare", "counted GFLOP",
        "paper GFLOP", "MFU (counted)", "MFU (paper)", "bare peak MiB", "Trainer peak MiB",
        "syncs in Trainer steps",
    ]  # fmt: skip
    return render(head, rows)


# --------------------------------------------------------------------------- 3. notebook run
def notebook_config(args, device: torch.device, steps: int, out: Path) -> dict:
    """configs/notebook_pretrain_gpu.yaml with its corpus shrunk and ``steps`` steps."""
    cfg = TrainConfig.coerce(ROOT / "configs" / "notebook_pretrain_gpu.yaml").to_dict()
    data = cfg["data"]
    shrunk = []
    for spec in data["sources"]:
        spec = {**spec, "n_samples": max(8, spec["n_samples"] // args.corpus_divisor)}
        if args.smoke:
            spec.update(n_samples=4, resolution=16, n_frames=12, device="cpu")
        shrunk.append(spec)
    data.update(sources=shrunk, n_test=1 if args.smoke else min(8, data["n_test"]))
    cfg.update(steps=steps, out_dir=str(out), device=device.type)
    cfg["eval"].update(every=0, max_samples=None)
    cfg["checkpoint"].update(every=0)
    cfg["log"].update(every=max(1, steps // 10), progress=False)
    if args.smoke:
        data.update(resolution=args.resolution)
        data.update(num_workers=0)
        cfg.update(batch_size=4, compile=False)
        cfg["model"].update(SMOKE_MODEL)
    return cfg


def notebook_run(
    args, device: torch.device, samples_per_s: float, seconds: float, out: Path
) -> dict:
    """The notebook's pre-training for about ``seconds`` of steps; its final evaluation."""
    batch = 4 if args.smoke else TrainConfig.coerce(
        ROOT / "configs" / "notebook_pretrain_gpu.yaml"
    ).batch_size  # fmt: skip
    steps = max(2, int(seconds * samples_per_s / batch))
    cfg = notebook_config(args, device, steps, out)
    start = time.perf_counter()
    trainer = dl.train.Trainer(cfg, run_dir=out, overwrite=True)
    ready = time.perf_counter()
    records = trainer.fit()
    done = time.perf_counter()
    evals = [r for r in records if r["event"] == "eval"]
    return {
        "steps": steps,
        "batch": cfg["batch_size"],
        "compile": cfg["compile"],
        "setup_s": ready - start,
        "train_s": done - ready,
        "sources": {
            name: {"l2re": r["l2re"], "persistence": r["persistence"], "samples": r["samples"]}
            for name, r in trainer.last_eval.items()
        },
        "l2re_mean": evals[-1]["l2re_mean"] if evals else None,
    }


def notebook_table(run: dict) -> str:
    rows = [
        [name, s["samples"], f"{s['l2re']:.4f}", f"{s['persistence']:.4f}",
         "yes" if s["l2re"] < s["persistence"] else "NO"]
        for name, s in run["sources"].items()
    ]  # fmt: skip
    return render(["source", "test samples", "L2RE", "persistence", "below persistence"], rows)


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fixtures", default=None, help="folder of the release's golden files")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, few steps; CPU is fine")
    parser.add_argument("--presets", nargs="+", default=["Ti", "S"], choices=PAPER_GFLOP)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="timed bare steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed bare steps")
    parser.add_argument("--trainer-steps", type=int, default=120)
    parser.add_argument(
        "--budget-s", type=float, default=360.0,
        help="seconds the whole check may take (shortens the notebook run)",
    )  # fmt: skip
    parser.add_argument(
        "--reserve-s", type=float, default=75.0,
        help="seconds kept for the notebook run's corpus, compile and evaluation",
    )  # fmt: skip
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--notebook-s", type=float, default=180.0,
                        help="seconds of the notebook_pretrain_gpu run")  # fmt: skip
    parser.add_argument("--corpus-divisor", type=int, default=8,
                        help="divides the notebook corpus' trajectories per source")  # fmt: skip
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.smoke:
        parser.error("no CUDA device: run with --smoke to check the script on a CPU")
    args.model_size = {}
    if args.smoke:
        args.presets, args.batch, args.resolution = ["Ti"], 2, 32
        args.steps, args.warmup, args.trainer_steps, args.log_every = 2, 1, 6, 2
        args.notebook_s, args.model_size = 2.0, SMOKE_MODEL
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
    torch.backends.cudnn.allow_tf32 = False
    out_dir = os.environ.get("OUT")
    report: dict = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "smoke": args.smoke,
        "setup": {"batch": args.batch, "resolution": args.resolution, "channels": 4, "t_in": 10},
        "parity_fp32": [], "parity_bf16": [], "speed": [], "notebook": None,
    }  # fmt: skip

    def save() -> None:
        report["elapsed_s"] = time.perf_counter() - t0
        if out_dir:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            (Path(out_dir) / "gpu_check.json").write_text(json.dumps(report, indent=1))

    print(f"# GPU check: {report['device']}, torch {report['torch']}")
    fixtures = find_fixtures(args.fixtures)
    if fixtures is None or not fixtures.is_dir():
        print(f"parity fp32: fixtures not found ({args.fixtures or 'default places'}); skipped")
    else:
        report["parity_fp32"] = parity_fp32(fixtures, device)
    report["parity_bf16"] = parity_bf16(device, args.smoke)
    print("\n## Parity (relative L2; fp32 with TF32 off, pass below 1e-5; bf16 below 1 %)")
    rows = [[r["fixture"], "fp32", f"{r['device_vs_cpu']:.2e}", f"{r['device_vs_release']:.2e}",
             f"{r['cpu_vs_release']:.2e}", "ok" if r["ok"] else "FAIL"]
            for r in report["parity_fp32"]]  # fmt: skip
    rows += [[r["model"], "bf16 autocast vs fp32", f"{r['bf16_vs_fp32']:.2e}", "", "",
              "ok" if r["ok"] else "FAIL"] for r in report["parity_bf16"]]  # fmt: skip
    print(render(["model", "check", "device vs cpu / fp32", "device vs release",
                  "cpu vs release", ""], rows))  # fmt: skip
    save()

    report["peak_bf16_tflops"] = peak_tflops = peak_matmul_tflops(
        device, 512 if args.smoke else 8192
    )
    with tempfile.TemporaryDirectory() as tmp:
        source = write_source(Path(tmp) / "drift.h5", n=8 if args.smoke else 48,
                              t=14 if args.smoke else 24, size=args.resolution)  # fmt: skip
        for preset in args.presets:
            bare = bare_step(preset, args, device)
            run = trainer_step(preset, args, device, source, Path(tmp) / preset)
            paper = None if args.smoke else PAPER_GFLOP[preset]  # the paper's: 128², full size
            report["speed"].append({
                "preset": preset, "bare_sps": bare["samples_per_s"],
                "trainer_sps": run["samples_per_s"], "bare_mib": bare["peak_mib"],
                "trainer_mib": run["peak_mib"], "syncs": run["syncs"],
                "counted_gflop": bare["counted_gflop"],
                "paper_gflop": paper,
                "mfu": bare["counted_gflop"] * bare["samples_per_s"] / (peak_tflops * 1e3),
                "mfu_paper": paper and paper * bare["samples_per_s"] / (peak_tflops * 1e3),
            })  # fmt: skip
            save()
        print(f"\n## Training step, bf16 autocast, {args.resolution}², batch {args.batch}, C=4, "
              f"T_in=10; peak bf16 matmul {peak_tflops:.1f} TFLOP/s")  # fmt: skip
        print("(MFU of the bare step; FLOPs per sample, forward + backward, complex matmuls x4)")
        print(speed_table(report))

        ti = next(r for r in report["speed"] if r["preset"] == args.presets[0])
        left = args.budget_s - (time.perf_counter() - t0) - args.reserve_s
        seconds = args.notebook_s if args.smoke else max(10.0, min(args.notebook_s, left))
        report["notebook"] = notebook_run(
            args, device, ti["trainer_sps"], seconds, Path(tmp) / "nb"
        )
        save()
    nb = report["notebook"]
    print(f"\n## notebook_pretrain_gpu: {nb['steps']} steps of batch {nb['batch']} "
          f"(compile {nb['compile']}), {nb['train_s']:.0f} s training after {nb['setup_s']:.0f} s "
          f"set-up (corpus, model); rollout L2RE at the end")  # fmt: skip
    print(notebook_table(nb))
    print(f"\nelapsed {time.perf_counter() - t0:.0f} s")
    save()
    if out_dir:
        print(f"wrote {Path(out_dir) / 'gpu_check.json'}")
    failed = [r for r in report["parity_fp32"] + report["parity_bf16"] if not r["ok"]]
    if failed or not all(math.isfinite(s["l2re"]) for s in nb["sources"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
