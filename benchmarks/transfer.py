"""Does pre-training pay off? The shipped model against training from scratch, on PDE families
it never saw, plus zero-shot scores and the denoising ablation. Prints one table per part.

1. transfer: for each held-out family (``held_out`` in dpot_lab/assets/pretrained.yaml),
   ``dl.studies.data_efficiency``: 10-step rollout L2RE on held-out trajectories of the shipped
   model fine-tuned vs the same architecture from scratch, same steps, at 2, 4, 8, 16 and 32
   training trajectories; persistence; and how many trajectories scratch needs to match the
   fine-tuned model on 8.
2. zero-shot: the shipped model on fresh trajectories of every pre-training family (other seeds),
   10-step L2RE against persistence.
3. denoising: the shipped recipe pre-trained again with and without input noise (``--denoise-steps``
   steps each, the full recipe by default), 10- and 30-step L2RE per pre-training family.

    OMP_NUM_THREADS=1 python benchmarks/transfer.py                      # parts 1 and 2
    python benchmarks/transfer.py --parts denoising --denoise-steps 4000 # part 3
    python benchmarks/transfer.py --parts transfer --steps 300 --counts 2 8 32 --families wave

Writes the tables with machine, date and command to benchmarks/results/transfer.md (--out).
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

import dpot_lab as dl
from dpot_lab.data.generation import generate_cached
from dpot_lab.evaluate.score import score_model
from dpot_lab.studies.efficiency import (
    RECIPE, RUNS, SCRATCH_LR, data_efficiency, format_study, trajectories_to_match,
)
from dpot_lab.train.config import TrainConfig
from dpot_lab.train.trainer import Trainer

sys.path.insert(0, str(Path(__file__).parent))
from report import provenance, write_report  # noqa: E402

ASSETS = Path(dl.__file__).parent / "assets"
RESULTS = Path(__file__).parent / "results" / "transfer.md"
SEED_OFFSET = 5000  # test trajectories come from seeds the pre-training never used


def extended(spec: dict, n_frames: int, seed: int, n_samples: int) -> dict:
    """``spec`` with other seeds and ``n_frames`` frames at the same spacing: specs that give
    ``t_end`` (frames from 0 to t_end) stretch it; the others keep their ``dt_save``."""
    out = dict(spec, seed=seed, n_samples=n_samples, n_frames=n_frames)
    if "t_end" in spec:
        out["t_end"] = spec["t_end"] * (n_frames - 1) / (spec["n_frames"] - 1)
    return out


def test_sets(config: TrainConfig, n_test: int, n_frames: int) -> dict[str, Path]:
    """A fresh test file per pre-training source (generated once, cached)."""
    sets = {}
    for k, spec in enumerate(config.data.sources):
        if not isinstance(spec, dict):
            continue
        name, n = spec["generate"], 2
        while name in sets:  # as the trainer names repeated sources
            name, n = f"{spec['generate']}_{n}", n + 1
        sets[name] = generate_cached(extended(spec, n_frames, SEED_OFFSET + k, n_test))
    return sets


def scores(model: torch.nn.Module, sets: dict[str, Path], horizons: list[int]) -> dict:
    """{source: {f"l2re_{h}", f"persistence_{h}"}} for each horizon."""
    out = {}
    for name, path in sets.items():
        ds = dl.open_dataset(path)
        row = {}
        for h in horizons:
            s = score_model(model, ds, steps=h)
            row[f"l2re_{h}"] = float(s["mean"])
            row[f"persistence_{h}"] = float(s["persistence_mean"])
        out[name] = row
    return out


def table(rows: dict[str, dict[str, float]], columns: list[str]) -> str:
    width = max([len("source"), *(len(k) for k in rows)])
    lines = [f"{'source':<{width}}  " + "  ".join(f"{c:>14}" for c in columns)]
    for name, row in rows.items():
        lines.append(f"{name:<{width}}  " + "  ".join(f"{row[c]:>14.4f}" for c in columns))
    return "\n".join(lines)


def part_transfer(args: argparse.Namespace, info: dict, emit) -> None:
    for family, spec in info["held_out"].items():
        if args.families and family not in args.families:
            continue
        n = args.n_test + max(args.counts)
        path = generate_cached(dict(spec, n_samples=n, seed=spec.get("seed", 0) + SEED_OFFSET))
        start = time.perf_counter()
        study = data_efficiency(
            args.checkpoint, path, args.counts, args.steps, n_test=args.n_test, horizon=10,
            lr=args.lr, scratch_lr=args.scratch_lr, runs=args.runs, progress=True,
        )  # fmt: skip
        study.attrs["source"] = family
        lines = [format_study(study)]
        if 8 in args.counts and len(args.runs) == 2:
            need = trajectories_to_match(study, 8)
            text = f"more than {max(args.counts)}" if math.isinf(need) else f"{need:.1f}"
            lines.append(f"scratch needs {text} trajectories to match fine-tuning on 8 "
                         f"({'inf' if math.isinf(need) else f'{need / 8:.1f}'}x)")  # fmt: skip
        lines.append(f"({time.perf_counter() - start:.0f} s)")
        emit("\n".join(lines))


def part_zero_shot(args: argparse.Namespace, config: TrainConfig, emit) -> None:
    model = dl.load_checkpoint(args.checkpoint)
    rows = scores(model, test_sets(config, args.n_test, config.data.t_in + 10), [10])
    emit("zero-shot: the shipped model on fresh trajectories of its pre-training families\n"
         + table(rows, ["l2re_10", "persistence_10"]))  # fmt: skip


def part_denoising(args: argparse.Namespace, config: TrainConfig, emit) -> None:
    sets = test_sets(config, args.n_test, config.data.t_in + 30)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, scale in (("noise", config.noise.scale), ("no noise", 0.0)):
            cfg = copy.deepcopy(config.to_dict())
            cfg["noise"]["scale"] = scale
            cfg["steps"] = args.denoise_steps or config.steps
            cfg["eval"]["every"] = 0
            cfg["checkpoint"]["every"] = 0
            trainer = Trainer(cfg, run_dir=Path(tmp) / label.replace(" ", "_"), overwrite=True)
            trainer.fit()
            for name, row in scores(trainer.model.eval(), sets, [10, 30]).items():
                rows[f"{name} ({label})"] = row
    emit(f"denoising: the shipped recipe ({args.denoise_steps or config.steps} steps) with and "
         f"without input noise ({config.noise.kind} {config.noise.scale:g})\n"
         + table(rows, ["l2re_10", "persistence_10", "l2re_30", "persistence_30"]))  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=str(ASSETS / "pretrained.pt"))
    p.add_argument("--info", default=str(ASSETS / "pretrained.yaml"),
                   help="the shipped model's config and held-out families")  # fmt: skip
    p.add_argument("--parts", nargs="+", default=["transfer", "zero-shot"],
                   choices=["transfer", "zero-shot", "denoising"])  # fmt: skip
    p.add_argument("--counts", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    p.add_argument("--steps", type=int, default=500, help="optimizer steps of every run")
    p.add_argument("--n-test", type=int, default=8, help="held-out trajectories per family")
    p.add_argument("--lr", type=float, default=RECIPE["optim"]["lr"], help="fine-tuned run's lr")
    p.add_argument("--scratch-lr", type=float, default=SCRATCH_LR, help="from-scratch run's lr")
    p.add_argument("--runs", nargs="+", default=list(RUNS), choices=RUNS)
    p.add_argument("--families", nargs="+", help="held-out families to run (default: all)")
    p.add_argument("--denoise-steps", type=int, default=None)
    p.add_argument("--out", default=str(RESULTS), help="where the tables are written (markdown)")
    args = p.parse_args()
    info = yaml.safe_load(Path(args.info).read_text())
    config = TrainConfig.from_yaml(Path(args.info).parent / info["config"])
    tables = []

    def emit(text: str) -> None:
        print("\n" + text, flush=True)
        tables.append("```\n" + text + "\n```")

    print(f"checkpoint {args.checkpoint}; {torch.get_num_threads()} threads")
    if "transfer" in args.parts:
        part_transfer(args, info, emit)
    if "zero-shot" in args.parts:
        part_zero_shot(args, config, emit)
    if "denoising" in args.parts:
        part_denoising(args, config, emit)
    header = [
        "## Transfer: the shipped model fine-tuned vs. from scratch on held-out families",
        "",
        *provenance(),
        f"- checkpoint: {args.checkpoint}",
    ]
    write_report(args.out, header, tables)


if __name__ == "__main__":
    main()
