"""Model speed: dpot-lab's DPOT against a transcription of the release's arithmetic, same run.

Prints one table: train-step throughput (forward + backward + fused Adam), inference throughput,
peak memory and parameter count, for our model and for ``release_transcription.ReleaseDPOTNet``
at the same size, with our speed-up. Each throughput is the best of ``--repeats`` rounds of
``--steps`` timed steps (after ``--warmup`` untimed ones), and the speed-up is the ratio of the
two bests: a busy machine only ever slows a round down, so the best round is the least disturbed.
The two models alternate within a round, and which goes first alternates between rounds.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` over the timed steps (weights, gradients
and optimizer state included). On CPU the growth of the peak resident set (VmHWM) over one step
above the resident set before it, so weights and optimizer state are not counted; it is measured
in a child process whose glibc returns every freed block of 64 KiB or more to the system
(MALLOC_MMAP_THRESHOLD_), so that the resident set follows the live tensors.

    python benchmarks/model_speed.py                          # Ti, 64², batch 4, fp32, CPU
    python benchmarks/model_speed.py --threads 1 --repeats 9  # steadier on a shared machine
    python benchmarks/model_speed.py --dtype bf16 --compile --device cuda --resolution 128
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from release_transcription import ReleaseDPOTNet  # noqa: E402

from dpot_lab.models import DPOT, PRESETS, create_model, load_official  # noqa: E402

MODELS = {"ours": "dpot-lab", "release": "release transcription", "official": "release DPOTNet"}
SHORT = {"ours": "ours", "release": "transcription", "official": "DPOTNet"}
KINDS = ("train", "infer")


def release_kwargs(args: argparse.Namespace) -> dict:
    """The release constructor's keywords for our preset at the benchmark's size."""
    keys = ("patch_size", "n_blocks", "embed_dim", "out_layer_dim", "depth", "modes", "mlp_ratio")
    return dict(
        {k: PRESETS[args.preset][k] for k in keys},
        img_size=args.resolution,
        in_channels=args.channels,
        out_channels=args.channels,
        in_timesteps=args.t_in,
        out_timesteps=1,
        n_cls=12,
        normalize=False,
        act="gelu",
        time_agg="exp_mlp",
    )


def release_class(path: str) -> type[nn.Module]:
    """``DPOTNet`` from a checkout of the DPOT release (``PATH/models/dpot.py``), imported by file
    so nothing of the release lands on ``sys.path`` under its generic package name ``models``."""
    file = Path(path) / "models" / "dpot.py"
    if not file.is_file():
        raise SystemExit(f"--release {path}: no models/dpot.py there (expected a DPOT checkout)")
    spec = importlib.util.spec_from_file_location("dpot_release_model", file)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ModuleNotFoundError as err:
        raise SystemExit(f"--release {path}: {file} needs the package {err.name!r}") from err
    return module.DPOTNet


def build(which: str, args: argparse.Namespace) -> nn.Module:
    """Our preset, the release transcription or the release's own DPOTNet at the same size, with
    the 12-way class head. With ``--release`` all three carry the release model's weights."""
    size = dict(img_size=args.resolution, in_channels=args.channels, in_timesteps=args.t_in)
    if args.release is None:
        if which == "ours":
            return create_model(args.preset, **size, n_cls=12)
        size = {**PRESETS[args.preset], **size}
        return ReleaseDPOTNet(**size, out_channels=args.channels, n_cls=12)
    kwargs = release_kwargs(args)
    official = release_class(args.release)(**kwargs)
    if which == "official":
        return official
    if which == "ours":
        return load_official(official.state_dict(), **kwargs)
    model = ReleaseDPOTNet(**kwargs)
    model.load_state_dict(official.state_dict())
    return model


def adam(params) -> torch.optim.Adam:
    """Adam in its fused form where this torch has one for the device (on a CPU the default
    per-tensor loop costs several times more than the fused kernel); the same for both models."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=1e-4, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=1e-4)


class Runner:
    """Train steps and inference steps of one model on one fixed batch."""

    def __init__(self, which: str, args: argparse.Namespace):
        self.device = torch.device(args.device)
        torch.manual_seed(0)
        self.which = which
        res, c = args.resolution, args.channels
        self.x = torch.randn(args.batch, res, res, args.t_in, c, device=self.device)  # (B,X,Y,T,C)
        self.target = torch.randn(args.batch, res, res, 1, c, device=self.device)  # (B,X,Y,1,C)
        self.model = build(which, args).to(self.device)
        self.params = sum(p.numel() for p in self.model.parameters())
        self.step_model = torch.compile(self.model) if args.compile else self.model
        self.opt = adam(self.model.parameters())
        self.bf16 = args.dtype == "bf16"
        self.rates = {kind: [] for kind in KINDS}  # samples/s of each round

    def _autocast(self):
        bf16 = torch.autocast(self.device.type, dtype=torch.bfloat16)
        return bf16 if self.bf16 else nullcontext()

    def _predict(self) -> torch.Tensor:
        out = self.step_model(self.x)
        return out[0] if isinstance(out, tuple) else out  # the release also returns class logits

    def train_step(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        with self._autocast():
            loss = F.mse_loss(self._predict().float(), self.target)
        loss.backward()
        self.opt.step()

    def infer_step(self) -> None:
        with torch.no_grad(), self._autocast():
            self._predict()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def run(self, kind: str, steps: int) -> None:
        step = self.train_step if kind == "train" else self.infer_step
        self.model.train(kind == "train")
        for _ in range(steps):
            step()
        self.sync()

    def time(self, kind: str, steps: int, warmup: int) -> None:
        """Record the samples/s of one round."""
        self.run(kind, warmup)
        start = time.perf_counter()
        self.run(kind, steps)
        self.rates[kind].append(steps * self.x.shape[0] / (time.perf_counter() - start))

    def cuda_peak_mib(self, kind: str, steps: int) -> float:
        torch.cuda.reset_peak_memory_stats(self.device)
        self.run(kind, steps)
        return torch.cuda.max_memory_allocated(self.device) / 2**20


# --------------------------------------------------------------------------- CPU memory
def _proc_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{key}:\s+(\d+)", f.read()).group(1))


def cpu_peak_growth_mib(runner: Runner, kind: str) -> float | None:
    """VmHWM growth over one step above the resident set before it (after one warm-up step)."""
    runner.run(kind, 1)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current resident set
    except OSError:
        return None
    before = _proc_kib("VmRSS")
    runner.run(kind, 1)
    return (_proc_kib("VmHWM") - before) / 1024


def cpu_memory_in_child(which: str, kind: str, argv: list[str]) -> float | None:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    cmd = [sys.executable, __file__, *argv, "--memory-probe", f"{which}:{kind}"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"memory probe {which}:{kind} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- table
def table(names: list[str], params: list[int], rates: list[dict], memory: list[dict]) -> str:
    """Markdown table; ``rates[i][kind]`` lists model i's samples/s per round."""

    def num(v, fmt):
        return "n/a" if v is None else format(v, fmt)

    def speed_up(kind):
        return f"{max(rates[0][kind]) / max(rates[1][kind]):.2f}× speed-up"

    two = len(names) > 1
    head = ["measure", *names] + (["ours vs release"] if two else [])
    rows = [
        ["parameters", *(f"{p / 1e6:.2f}M" for p in params)],
        ["train step, samples/s", *(f"{max(r['train']):,.2f}" for r in rates)],
        ["inference, samples/s", *(f"{max(r['infer']):,.2f}" for r in rates)],
        ["train peak memory, MiB", *(num(m["train"], ",.0f") for m in memory)],
        ["inference peak memory, MiB", *(num(m["infer"], ",.0f") for m in memory)],
    ]
    if two:
        rows[0].append("")
        rows[1].append(speed_up("train"))
        rows[2].append(speed_up("infer"))
        for row, kind in ((rows[3], "train"), (rows[4], "infer")):
            a, b = memory[0][kind], memory[1][kind]
            row.append(f"{a / b:.2f}× memory" if a and b else "")
    return markdown(head, rows)


def markdown(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    fmt = "| " + " | ".join(f"{{:<{w}}}" for w in widths) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt.format(*head), sep, *(fmt.format(*row) for row in rows)])


# --------------------------------------------------------------------------- --release
def parity(runners: list[Runner]) -> dict[str, tuple[float, float]]:
    """Relative L2 difference of each model's prediction and class logits from the release
    DPOTNet's (the last runner) on the benchmark batch, in eval mode without gradients."""

    def outputs(r: Runner) -> tuple[torch.Tensor, torch.Tensor]:
        r.model.eval()
        with torch.no_grad():
            if isinstance(r.model, DPOT):
                return r.model(r.x, return_cls=True)
            return r.model(r.x)

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return ((a - b).norm() / b.norm()).item()

    ref = outputs(runners[-1])
    return {
        r.which: tuple(rel(a, b) for a, b in zip(outputs(r), ref, strict=True))
        for r in runners[:-1]
    }


def rounds_table(runners: list[Runner]) -> tuple[str, dict[str, float]]:
    """Per-round samples/s of every model and ours ÷ the release DPOTNet (the last runner) per
    round, then the medians; returns the table and the median per-round ratio of each kind."""
    ours, official = runners[0], runners[-1]
    pairs = {k: zip(ours.rates[k], official.rates[k], strict=True) for k in KINDS}
    ratios = {k: [a / b for a, b in pairs[k]] for k in KINDS}
    head = ["round"]
    for kind in KINDS:
        head += [f"{kind} {SHORT[r.which]}" for r in runners] + [f"{kind} ours ÷ DPOTNet"]
    rows = []
    for i in range(len(ratios["train"])):
        row = [str(i + 1)]
        for kind in KINDS:
            row += [f"{r.rates[kind][i]:.2f}" for r in runners] + [f"{ratios[kind][i]:.3f}×"]
        rows.append(row)
    row = ["median"]
    for kind in KINDS:
        row += [f"{statistics.median(r.rates[kind]):.2f}" for r in runners]
        row += [f"{statistics.median(ratios[kind]):.3f}×"]
    rows.append(row)
    return markdown(head, rows), {k: statistics.median(v) for k, v in ratios.items()}


def against_release(args: argparse.Namespace) -> None:
    """Ours against the release's own DPOTNet (and the transcription), same weights, same run."""
    load_start = os.getloadavg()
    which = ["ours", *(["release"] if args.baseline else []), "official"]
    runners = [Runner(w, args) for w in which]
    for w, (pred, cls) in parity(runners).items():
        print(
            f"parity, {MODELS[w]} vs release DPOTNet (same weights, same batch): relative L2 "
            f"difference {pred:.2e} (prediction), {cls:.2e} (class logits)"
        )
        if pred > 1e-4:
            raise SystemExit(f"{MODELS[w]} does not compute the release's function; not timing")
    for i in range(args.repeats):
        for kind in KINDS:
            for r in runners[:: 1 if i % 2 == 0 else -1]:  # who goes first alternates
                r.time(kind, args.steps, args.warmup)
    text, median = rounds_table(runners)
    print(
        f"DPOT-{args.preset}, {args.resolution}×{args.resolution}, batch {args.batch}, "
        f"C={args.channels}, T_in={args.t_in}, {args.dtype}, eager, {args.device} "
        f"({torch.get_num_threads()} threads), Adam; samples/s of {args.repeats} alternating "
        f"rounds × {args.steps} steps (after {args.warmup} untimed); release: {args.release}"
    )
    print(text)
    print(
        f"ours ÷ release DPOTNet, median of per-round ratios: train step {median['train']:.2f}×, "
        f"inference {median['infer']:.2f}×"
    )
    fmt = ", ".join(f"{v:.2f}" for v in load_start), ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"load average (1, 5, 15 min): {fmt[0]} at start, {fmt[1]} at end")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="Ti", choices=sorted(PRESETS))
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--t-in", type=int, default=10)
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch's default)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per round")
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="rounds; the best is reported (default 5), with --release the median (default 7)",
    )
    parser.add_argument(
        "--baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the release transcription",
    )
    parser.add_argument(
        "--release",
        metavar="PATH",
        default=None,
        help="a checkout of the DPOT release: time ours against its own DPOTNet, same weights",
    )
    parser.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)  # child process
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 7 if args.release else 5
    if args.release and (args.compile or args.dtype != "fp32"):
        parser.error("--release times the release's eager fp32 step; drop --compile/--dtype")
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_probe:
        which, kind = args.memory_probe.split(":")
        print(json.dumps(cpu_peak_growth_mib(Runner(which, args), kind)))
        return
    if args.release:
        against_release(args)
        return

    which = ["ours", "release"] if args.baseline else ["ours"]
    runners = [Runner(w, args) for w in which]
    for i in range(args.repeats):
        for kind in KINDS:
            for r in runners[:: 1 if i % 2 == 0 else -1]:  # who goes first alternates
                r.time(kind, args.steps, args.warmup)
    if args.device == "cuda":
        memory = [{k: r.cuda_peak_mib(k, 2) for k in KINDS} for r in runners]
        where = torch.cuda.get_device_name(runners[0].device)
        mem_note = "torch.cuda.max_memory_allocated over 2 steps"
    else:
        memory = [{k: cpu_memory_in_child(w, k, argv) for k in KINDS} for w in which]
        where = f"{torch.get_num_threads()} threads"
        mem_note = "peak RSS growth over one step, in a child process"
    print(
        f"DPOT-{args.preset}, {args.resolution}×{args.resolution}, batch {args.batch}, "
        f"C={args.channels}, T_in={args.t_in}, {args.dtype}{' autocast' * (args.dtype == 'bf16')}"
        f", {'torch.compile' if args.compile else 'eager'}, {args.device} ({where}); "
        f"samples/s: best of {args.repeats} rounds × {args.steps} steps; memory: {mem_note}"
    )
    names = [MODELS[w] for w in which]
    print(table(names, [r.params for r in runners], [r.rates for r in runners], memory))


if __name__ == "__main__":
    main()
