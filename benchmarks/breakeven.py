"""Is the surrogate worth it? The shipped model against the built-in solver run on coarser grids,
at equal error. Prints one table per family: the model's L2RE and time per trajectory, the
solver's curve (resolution, L2RE, time; the data's own resolution is the reference, restarted),
and the speed-up at equal error (solver seconds at the model's L2RE over the model's; "none" where
the model is less accurate than every coarse solve). Families and trajectories: the rollout
viewer's demo sets (``sources`` in dpot_lab/assets/pretrained.yaml), made once by
``generate_cached``; frames t_in … end scored with the paper's score.
See dpot_lab/studies/breakeven.py.

    OMP_NUM_THREADS=1 python benchmarks/breakeven.py                  # CPU, all three families
    python benchmarks/breakeven.py --device cuda --families ns2d      # another device
"""

from __future__ import annotations

import argparse

import dpot_lab as dl
from dpot_lab.studies.breakeven import cost_curve, speedup_at_equal_error
from dpot_lab.viz import DEMO_CHECKPOINT, demo_sources

FAMILIES = ("ns2d", "diffusion_reaction", "shallow_water")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--checkpoint", default=str(DEMO_CHECKPOINT))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="each time: the fastest of these")
    args = parser.parse_args()
    model = dl.load_checkpoint(args.checkpoint)
    specs = {e["spec"]["generate"]: e["spec"] for e in demo_sources().values()}  # by family
    for family in args.families:
        table = cost_curve(
            {**specs[family], "progress": False}, model, device=args.device, repeats=args.repeats
        )
        print(format_table(table), "\n", flush=True)


if __name__ == "__main__":
    main()
