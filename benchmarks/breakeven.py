"""Is the surrogate worth it? The model against the built-in solver run on coarser grids, at equal
error, and the number of solves after which the model has paid for its making.

Per family and grid (64², 128², 256² by default; a grid is skipped where its reference solve is
predicted to exceed ``--max-seconds``), one table: the model's L2RE and time per trajectory, the
solver's curve (resolution, L2RE, time; the grid's own resolution is the reference, restarted)
and the speed-up at equal error (solver seconds at the model's L2RE over the model's; "none"
where the model is less accurate than every coarse solve); see dpot_lab/studies/breakeven.py. The
model is the checkpoint fine-tuned on the family (``--ft-trajectories`` trajectories of other
seeds, ``--ft-steps`` steps, at the checkpoint's grid), rolled out at each grid with its
positional embedding interpolated to it (``DPOT.resize``). Families and test trajectories: the
rollout viewer's demo sets (``sources`` in dpot_lab/assets/pretrained.yaml) at each grid, made
once by ``generate_cached``; frames t_in … end scored with the paper's score.

The cost of making the model, in CPU-seconds: the family's share of the pre-training corpus
(the sampling weights of its sources over all weights, ``corpus_shares``) of the corpus's data
generation (per-trajectory time of each source, measured, times its count) and of the
pre-training (``--pretrain-seconds``, or the sum over its run directories' metrics.jsonl, one per
stage, times ``--pretrain-threads``, each stage shared by its own sampling weights), plus the
fine-tuning set's generation and the fine-tuning, measured (process CPU time; on the CPU the
per-trajectory times too, so a busy machine does not inflate them). The solve count: cost /
(solver s/traj at the model's L2RE − model s/traj), "never" where the model is not faster at
equal error (``solve_count``).

    OMP_NUM_THREADS=1 python benchmarks/breakeven.py \
        --pretrain-run runs/pretrained-checkpoint runs/pretrained-checkpoint-2 \
        runs/pretrained-checkpoint-3
    OMP_NUM_THREADS=1 python benchmarks/breakeven.py --checkpoint X --pretrain-seconds 7440
    python benchmarks/breakeven.py --quick --pretrain-seconds 7000 --corpus-data-seconds 900
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

import dpot_lab as dl
from dpot_lab.data.generation import GENERATORS
from dpot_lab.models.util import unwrap
from dpot_lab.studies.breakeven import (
    corpus_shares,
    cost_curve,
    solve_count,
    speedup_at_equal_error,
    training_seconds,
)
from dpot_lab.studies.efficiency import RECIPE
from dpot_lab.train.config import TrainConfig
from dpot_lab.train.trainer import Trainer
from dpot_lab.viz import DEMO_CHECKPOINT, DEMO_DATA, demo_sources

sys.path.insert(0, str(Path(__file__).parent))
from report import provenance, write_report  # noqa: E402

FAMILIES = ("ns2d", "diffusion_reaction", "shallow_water")
RESULTS = Path(__file__).parent / "results" / "breakeven.md"
FT_SEED = 2000  # fine-tuning trajectories: seeds neither the corpus nor the demo sets use
QUICK = dict(families=["ns2d"], grids=[32], n_samples=2, n_frames=14, ft_trajectories=2,
             ft_steps=4, repeats=1)  # fmt: skip


def format_table(table) -> str:
    """The model, the solver curve and the equal-error speed-up of one ``cost_curve`` table."""
    a = table.attrs
    speedup = speedup_at_equal_error(table)
    lines = [
        f"{a['family']}: {a['n_samples']} trajectories at {a['reference_resolution']}², t_in "
        f"{a['t_in']}, {a['steps']} scored frames, solver from frame {a['start_frame']}, batch "
        f"{a['batch_size']}, {a['device']}, best of {a['repeats']}; {a['grid']}",
        f"  {'':<17} {'L2RE':>10} {'s/traj':>10}",
        f"  {'model':<17} {float(table['model_l2re']):>10.4g} "
        f"{float(table['model_seconds_per_trajectory']):>10.4g}",
    ]
    for r in table["resolution"].values:
        row = table.sel(resolution=r)
        label = f"solver {r}²" + (" (ref)" if r == a["reference_resolution"] else "")
        lines.append(
            f"  {label:<17} {float(row['l2re']):>10.4g} "
            f"{float(row['seconds_per_trajectory']):>10.4g}"
        )
    lines.append("  speed-up at equal error: " + ("none" if speedup is None else f"{speedup:.3g}x"))
    return "\n".join(lines)


def count_text(count: float | None, table) -> str:
    """The solve count as the tables print it."""
    if count is None:
        return "none (the model is less accurate than every coarse solve)"
    if math.isinf(count):
        return "never (the model is not faster at equal error)"
    bound = float(table["model_l2re"]) < float(table["l2re"].min())  # solver time a lower bound
    return f"{'at most ' if bound else ''}{count:,.0f}"


def generation_seconds(spec: dict[str, Any], n: int) -> float:
    """CPU-seconds per trajectory of generating ``spec`` (``n`` trajectories, no cache, no
    file)."""
    entry = GENERATORS[spec["generate"]]
    params = {k: v for k, v in spec.items() if k not in ("generate", "n_samples", "seed")}
    seeds = np.random.SeedSequence(spec.get("seed", 0) + 7919).spawn(n)
    tic = time.process_time()
    entry.load()(n, params.pop("resolution", entry.resolution), seeds, **params)
    return (time.process_time() - tic) / n


def fine_tune(checkpoint: str, spec: dict[str, Any], n: int, steps: int, lr: float, folder: Path):
    """(the checkpoint fine-tuned on ``n`` fresh trajectories of ``spec``, CPU-seconds of making
    them, CPU-seconds of the fine-tuning): data_efficiency's recipe at peak learning rate ``lr``,
    no evaluation."""
    tic = time.process_time()
    params = {k: v for k, v in spec.items() if k not in ("generate", "n_samples", "seed")}
    path = dl.generate(
        spec["generate"], folder / "finetune.h5", n, seed=FT_SEED, progress=False, **params
    )
    data_seconds = time.process_time() - tic
    cfg = dict(RECIPE, name="breakeven_finetune", steps=steps, init_from=checkpoint,
               model={"preset": None}, optim={**RECIPE["optim"], "lr": lr})  # fmt: skip
    cfg["data"] = {"sources": [str(path)], "n_test": 0, "weights": [max(1, -(-16 // n))]}
    tic = time.process_time()
    trainer = Trainer(cfg, run_dir=folder / "run", overwrite=True)
    trainer.fit()
    return trainer.model.eval(), data_seconds, time.process_time() - tic


def pretraining_charge(
    args: argparse.Namespace, shares: dict[str, float]
) -> tuple[float, dict[str, float], str]:
    """Pre-training CPU-seconds, each family's share of them, and where they come from: ``shares``
    (the corpus config's) for ``--pretrain-seconds``; with one run directory per stage, each
    stage's seconds shared by its own config's sampling weights (a family's share: their mean
    weighted by the stages' seconds)."""
    if args.pretrain_seconds is not None:
        return args.pretrain_seconds, shares, "--pretrain-seconds"
    if args.pretrain_run is None:
        raise SystemExit("breakeven: give --pretrain-seconds S or --pretrain-run RUN_DIR ...")
    threads = args.pretrain_threads
    if len(threads) not in (1, len(args.pretrain_run)):
        raise SystemExit(f"breakeven: --pretrain-threads: expected 1 or {len(args.pretrain_run)} "
                         f"values (one per --pretrain-run), got {len(threads)}")  # fmt: skip
    threads = threads * len(args.pretrain_run) if len(threads) == 1 else threads
    stages = [
        (training_seconds(run), n, generator_shares(TrainConfig.from_yaml(f"{run}/config.yaml")))
        for run, n in zip(args.pretrain_run, threads, strict=True)
    ]
    total = sum(wall * n for wall, n, _ in stages)
    families = {family for *_, sh in stages for family in sh}
    shares = {f: sum(w * n * sh.get(f, 0.0) for w, n, sh in stages) / total for f in families}
    each = " + ".join(
        f"{run}/metrics.jsonl: {wall:.0f} s × {n} threads"
        for run, (wall, n, _) in zip(args.pretrain_run, stages, strict=True)
    )
    return total, shares, f"{each} of training; each stage shared by its own sampling weights"


def generator_shares(config: TrainConfig) -> dict[str, float]:
    """``corpus_shares`` of a config whose sources are all generator specs."""
    sources = [s for s in config.data.sources if isinstance(s, dict)]
    if len(sources) != len(config.data.sources):
        raise SystemExit(f"{config._source}: data.sources: expected generator specs only")
    return corpus_shares(sources, config.data.weights)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    p.add_argument("--checkpoint", default=str(DEMO_CHECKPOINT))
    p.add_argument("--config", help="the pre-training config (default: --pretrain-run's, else "
                   "the shipped model's)")  # fmt: skip
    p.add_argument("--pretrain-seconds", type=float, help="pre-training CPU-seconds")
    p.add_argument("--pretrain-run", nargs="+", help="the pre-training's run directories "
                   "(metrics.jsonl), one per stage")  # fmt: skip
    p.add_argument("--pretrain-threads", type=int, nargs="+", default=[2],
                   help="the pre-training's threads: one for all runs, or one per run")  # fmt: skip
    p.add_argument("--grids", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--max-seconds", type=float, default=600.0,
                   help="skip a grid whose reference solve would take longer")  # fmt: skip
    p.add_argument("--n-samples", type=int, default=None, help="test trajectories (demo set's)")
    p.add_argument("--n-frames", type=int, default=None, help="frames (demo set's)")
    p.add_argument("--ft-trajectories", type=int, default=8)
    p.add_argument("--ft-steps", type=int, default=300)
    p.add_argument("--ft-lr", type=float, default=1e-4,
                   help="fine-tuning peak lr (gentle: the corpus had the family)")  # fmt: skip
    p.add_argument("--gen-trajectories", type=int, default=2,
                   help="trajectories timed per corpus source")  # fmt: skip
    p.add_argument("--corpus-data-seconds", type=float,
                   help="the corpus's generation CPU-seconds (default: measured)")  # fmt: skip
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3, help="each time: the fastest of these")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a check that it runs")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    if args.quick:
        p.set_defaults(**QUICK)
        args = p.parse_args(argv)
    info = yaml.safe_load(DEMO_DATA.read_text())
    run_config = Path(args.pretrain_run[-1]) / "config.yaml" if args.pretrain_run else None
    config = TrainConfig.from_yaml(args.config or run_config or DEMO_DATA.parent / info["config"])
    pretrain, shares, pretrain_from = pretraining_charge(args, generator_shares(config))
    sources = config.data.sources  # generator specs (checked by generator_shares)
    corpus_data, data_from = args.corpus_data_seconds, "--corpus-data-seconds"
    if corpus_data is None:
        per_source = [generation_seconds(s, args.gen_trajectories) for s in sources]
        corpus_data = sum(t * s["n_samples"] for t, s in zip(per_source, sources, strict=True))
        data_from = f"{args.gen_trajectories} trajectories timed per source: " + ", ".join(
            f"{s['generate']} {t:.2g} s/traj" for s, t in zip(sources, per_source, strict=True)
        )
    specs = {e["spec"]["generate"]: e["spec"] for e in demo_sources().values()}  # by family
    header = [
        "## Breakeven: the solve count at which the surrogate pays for its making",
        "",
        *provenance(args.device, argv),
        f"- checkpoint: {args.checkpoint}; corpus: {config._source}",
        f"- pre-training: {pretrain:.0f} CPU-s ({pretrain_from}); corpus data generation "
        f"{corpus_data:.0f} CPU-s ({data_from})",
        "- rule: a family is charged its share of the corpus (the sampling weights of its "
        "sources over all weights; per stage, weighted by the stages' seconds) of both; plus its "
        "fine-tuning set's generation and the "
        "fine-tuning, measured. Solves to pay back = cost / (solver s/traj at the model's L2RE "
        "− model s/traj); 'at most' where the model beats every solve (the solver's time at "
        "equal error is then a lower bound). Times per trajectory: "
        + ("process CPU-seconds" if args.device == "cpu" else "wall seconds"),
    ]
    print("\n".join(header), flush=True)
    clock = time.process_time if args.device == "cpu" else time.perf_counter
    tables = []
    for family in args.families:
        spec = dict(specs[family], progress=False)
        for key in ("n_samples", "n_frames"):
            if getattr(args, key) is not None:
                spec[key] = getattr(args, key)
        if "t_end" in specs[family] and "n_frames" in spec:  # the demo set's frame spacing
            spec["t_end"] = (
                specs[family]["t_end"] * (spec["n_frames"] - 1) / (specs[family]["n_frames"] - 1)
            )
        with tempfile.TemporaryDirectory() as tmp:
            ft_spec = {k: v for k, v in spec.items() if k != "progress"}
            model, ft_data, ft_train = fine_tune(
                args.checkpoint, ft_spec, args.ft_trajectories, args.ft_steps, args.ft_lr, Path(tmp)
            )
        share = shares.get(family, 0.0)
        cost = share * (corpus_data + pretrain) + ft_data + ft_train
        summary = [
            f"### {family}",
            "",
            f"cost of making: {cost:,.0f} CPU-s = corpus share {share:.3f} × ({corpus_data:,.0f} "
            f"data + {pretrain:,.0f} pre-training) + fine-tuning set {ft_data:,.0f} "
            f"({args.ft_trajectories} trajectories) + fine-tuning {ft_train:,.0f} "
            f"({args.ft_steps} steps, peak lr {args.ft_lr:g})",
            "",
            "| grid | model L2RE | model s/traj | solver s/traj at equal error | solves to pay "
            "back |",
            "|---|---|---|---|---|",
        ]
        details, previous = [], None
        for grid in args.grids:
            if previous is not None and previous * 8 * spec.get("n_samples", 4) > args.max_seconds:
                summary.append(f"| {grid}² | | | | skipped: the reference solve would take "
                               f"over {args.max_seconds:.0f} s |")  # fmt: skip
                continue
            at_grid = copy.deepcopy(unwrap(model)).resize(grid)  # positional embedding interpolated
            table = cost_curve({**spec, "resolution": grid}, at_grid, device=args.device,
                               repeats=args.repeats, clock=clock)  # fmt: skip
            previous = float(table["seconds_per_trajectory"].sel(resolution=grid))
            speedup = speedup_at_equal_error(table)
            model_s = float(table["model_seconds_per_trajectory"])
            solver_s = "" if speedup is None else f"{speedup * model_s:.4g}"
            count = count_text(solve_count(cost, table), table)
            summary.append(f"| {grid}² | {float(table['model_l2re']):.4g} | {model_s:.4g} | "
                           f"{solver_s} | {count} |")  # fmt: skip
            details.append("```\n" + format_table(table) + "\n```")
            print(details[-1], flush=True)
        tables.append("\n".join(summary) + "\n\n" + "\n\n".join(details))
        print("\n".join(summary), "\n", flush=True)
    write_report(args.out, header, tables)


if __name__ == "__main__":
    main()
