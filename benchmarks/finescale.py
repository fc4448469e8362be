"""Does the patch grid show in the rollouts, and do the head's edge convolution (``head_conv``, a
model trained with it) or patch jittering at inference (``dl.rollout(..., jitter=k)``) remove it?
One table per family, on fresh trajectories (seeds the pre-training never used) of NS at ν 1e-3 and
1e-5 (FNO set-up) and shallow-water dam breaks, for the truth, persistence, each model of
--checkpoints and each jitter of it (k shifts within a patch averaged per step; k = patch² is
every offset, fewer are drawn from --seed):

- blockiness (``dl.metrics.blockiness``) of the error after 1 step and at the last frame, mean over
  samples (the truth's row scores the field itself; 1: no patch grid);
- the predicted energy spectrum over the truth's per band at the last frame, band energies of the
  sample-mean spectra: low k < N/(2p) (wavelengths over two patches), mid up to N/p, high ≥ N/p
  (a patch and below; N grid cells, p the patch);
- L2RE over the first 10 and all --steps frames (paper protocol, mean over samples and fields);
- rollout seconds per trajectory.

Writes the tables with machine, date and command to benchmarks/results/finescale.md.

    OMP_NUM_THREADS=1 python benchmarks/finescale.py                    # minutes on a CPU core
    python benchmarks/finescale.py --checkpoints before=old.pt after=new.pt --jitters 4
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

import dpot_lab as dl
from dpot_lab.data.generation import generate_cached
from dpot_lab.evaluate.metrics import persistence
from dpot_lab.viz import DEMO_CHECKPOINT

sys.path.insert(0, str(Path(__file__).parent))
from report import provenance, write_report  # noqa: E402

T_IN = 10
FAMILIES = {  # name: (title, spec without n_samples); 40 frames: t_in + 30 steps
    "ns2d_nu1e-3": ("Navier–Stokes 2D, ν = 1e-3", {"generate": "ns2d", "resolution": 64,
                    "nu": 1e-3, "n_frames": 40, "seed": 3101}),
    "ns2d_nu1e-5": ("Navier–Stokes 2D, ν = 1e-5", {"generate": "ns2d", "resolution": 64,
                    "nu": 1e-5, "n_frames": 40, "seed": 3102}),
    "shallow_water": ("shallow water 2D, dam break (reflecting walls)",
                      {"generate": "shallow_water", "resolution": 64, "n_frames": 41,
                       "t_end": 2.0, "seed": 3103}),
}  # fmt: skip
RESULTS = Path(__file__).parent / "results" / "finescale.md"
COLUMNS = ("block@1", "block@last", "E low", "E mid", "E high", "L2RE 10", "L2RE all", "s/traj")


def band_ratios(pred: xr.Dataset, truth: xr.Dataset, patch: int) -> list[float]:
    """Predicted over true energy per band (low, mid, high k) of the sample-mean spectra of one
    frame (sample, *space), mean over fields."""
    e_pred = dl.metrics.energy_spectrum(pred).mean("sample")  # (k,) per field
    e_true = dl.metrics.energy_spectrum(truth).mean("sample")
    k, k_patch = e_true["k"], min(truth.sizes[d] for d in ("x", "y")) // patch
    bands = ((k >= 1) & (k < k_patch // 2), (k >= k_patch // 2) & (k < k_patch), k >= k_patch)
    return [
        float((e_pred.where(b).sum("k") / e_true.where(b).sum("k")).to_array().mean())
        for b in bands
    ]


def mean_blockiness(pred: xr.Dataset, target: xr.Dataset, patch: int) -> xr.DataArray:
    """Blockiness of the error per frame, mean over samples and fields -> (time,)."""
    return dl.metrics.blockiness(pred, target, patch).to_array().mean(("variable", "sample"))


def row(pred: xr.Dataset, target: xr.Dataset, patch: int, seconds: float | None) -> list[float]:
    """The table's columns for one prediction of the frames ``target`` (sample, time, *space)."""
    block = mean_blockiness(pred, target, patch)
    l2re = [
        float(dl.metrics.l2re(pred.isel(time=slice(0, n)), target).to_array().mean())
        for n in (10, target.sizes["time"])
    ]
    bands = band_ratios(pred.isel(time=-1), target.isel(time=-1), patch)
    seconds = np.nan if seconds is None else seconds
    return [float(block[0]), float(block[-1]), *bands, *l2re, seconds]


def family_table(models: dict, family: str, args, bar) -> str:
    """The markdown table of one family."""
    title, spec = FAMILIES[family]
    truth = dl.open_dataset(generate_cached({**spec, "n_samples": args.samples})).load()
    fields = [f for f in truth.data_vars if "time" in truth[f].dims]
    truth = truth[fields]
    target = truth.isel(time=slice(T_IN, T_IN + args.steps))
    if target.sizes["time"] < args.steps:
        have = truth.sizes["time"]
        raise SystemExit(f"{family}: {have} frames, fewer than t_in {T_IN} + {args.steps} steps")
    patch = next(iter(models.values())).config.patch_size
    itself = mean_blockiness(target, 0 * target, patch)  # the truth's own field
    rows = {
        "truth (the field itself)": [float(itself[0]), float(itself[-1])] + [np.nan] * 6,
        "persistence": row(persistence(truth, T_IN, args.steps), target, patch, None),
    }
    for label, model in models.items():
        for k in [0, *args.jitters]:
            start = time.perf_counter()
            pred = dl.rollout(
                model, truth, t_in=T_IN, steps=args.steps, device=args.device, progress=False,
                jitter=k, jitter_seed=args.seed,
            )  # fmt: skip
            seconds = (time.perf_counter() - start) / args.samples
            every = " (every offset)" if k == patch**2 else ""
            name = label if k == 0 else f"{label}, jitter {k}{every}"
            rows[name] = row(pred.drop_vars("diverged_at"), target, patch, seconds)
            bar.update()
    lines = [
        f"### {title}",
        f"{args.samples} trajectories at {truth.sizes['x']}², fields {', '.join(fields)}, t_in "
        f"{T_IN}, {args.steps} steps; spec {spec}",
        "",
        "| | " + " | ".join(COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for name, values in rows.items():
        cells = ["" if np.isnan(v) else f"{v:.3g}" for v in values]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument(
        "--checkpoints", nargs="+", default=[f"shipped={DEMO_CHECKPOINT}"],
        help="LABEL=PATH of each model compared (the same patch size)",
    )  # fmt: skip
    parser.add_argument("--samples", type=int, default=4, help="trajectories per family")
    parser.add_argument("--steps", type=int, default=30, help="rollout frames (at most 30)")
    parser.add_argument("--jitters", nargs="*", type=int, default=[1, 4, 16])
    parser.add_argument("--seed", type=int, default=0, help="the jitter's seed")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    models, paths = {}, {}
    for item in args.checkpoints:
        label, sep, path = item.partition("=")
        if not sep:
            parser.error(f"--checkpoints: expected LABEL=PATH, got {item!r}")
        models[label], paths[label] = dl.load_checkpoint(path), path
    if len({m.config.patch_size for m in models.values()}) > 1:
        parser.error("--checkpoints: the models' patch sizes differ")
    header = [
        "## Fine scales: the patch grid in the rollout error, and patch jittering at inference",
        "",
        *provenance(args.device),
        "- checkpoints: "
        + "; ".join(
            f"{label} = {paths[label]} (patch {m.config.patch_size}, head_conv "
            f"{m.config.head_conv})"
            for label, m in models.items()
        )
        + f"; jitter seed {args.seed}",
        "- columns: blockiness of the error after 1 step and at the last frame (1: no patch "
        "grid); predicted / true energy per band at the last frame (low k < N/(2p), mid < N/p, "
        "high ≥ N/p); L2RE over 10 and all frames; rollout seconds per trajectory",
    ]
    tables = []
    total = len(args.families) * len(models) * (1 + len(args.jitters))
    with tqdm(total=total, desc="rollouts") as bar:
        for family in args.families:
            tables.append(family_table(models, family, args, bar))
            print(tables[-1], "\n", flush=True)
    write_report(args.out, header, tables)


if __name__ == "__main__":
    main()
