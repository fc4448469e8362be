"""The coarse solver's rollout as a baseline beside the model's: which coarse grids a data set
offers, and the baseline of one sample (``evaluate.cost.coarse_solve``: the family's solver on a
coarser grid, its frames brought back to the data's grid).

A data set qualifies when one of the families of ``evaluate.cost`` made it: its ``generator``
attribute (written by ``dl.generate``) names the family, its attributes hold the solver's
parameters. The solve starts where ``coarse_solve`` starts it: frame t_in−1, the last frame the
model sees (shallow water: frame 0, where its momentum is known).
"""

from __future__ import annotations

import xarray as xr

from dpot_lab.evaluate import metrics
from dpot_lab.evaluate.cost import FAMILIES, coarse_solve, family_of

MIN_GRID = 8


def baseline_grids(ds: xr.Dataset) -> tuple[list[int], str]:
    """(coarse grids N/2, N/4, N/8 that divide the data's N×N grid, at least ``MIN_GRID``; "") for a
    data set a solver family of ``evaluate.cost`` made, else ([], why not)."""
    generator = ds.attrs.get("generator")
    try:
        family_of(str(generator))
    except ValueError:
        made_by = f"made by {generator}" if generator else "not made by a built-in generator"
        return [], f"coarse solver: only for data of {', '.join(FAMILIES)} (this set: {made_by})"
    n = ds.sizes.get("x")
    if n is None or ds.sizes.get("y") != n or "z" in ds.dims:
        return [], f"coarse solver: needs a square 2D grid (this set: {dict(ds.sizes)})"
    grids = [n // 2**k for k in (1, 2, 3) if n % 2**k == 0 and n // 2**k >= MIN_GRID]
    return grids, "" if grids else f"coarse solver: the {n}² grid has no coarser grid ≥ {MIN_GRID}²"


def coarse_rollout(
    ds: xr.Dataset, sample: int, resolution: int, t_in: int, steps: int | None = None
) -> tuple[xr.Dataset, float]:
    """(the family's solver on a ``resolution``² grid for the sample at position ``sample``, its
    frames t_in … t_in+steps−1 (None: all after t_in) on the data's grid -> (sample=1, time, x, y)
    per field, labelled as in ``ds``, in the layout of ``dl.rollout``; the solver's wall time in
    seconds, restriction and prolongation excluded)."""
    family = family_of(str(ds.attrs.get("generator")))
    one = metrics.indexed(ds).isel(sample=[sample]).load()
    steps = ds.sizes["time"] - t_in if steps is None else steps
    params = {k: v for k, v in ds.attrs.items() if k in family.defaults}
    return coarse_solve(one, family.name, resolution, t_in, steps, params)


__all__ = ["MIN_GRID", "baseline_grids", "coarse_rollout"]
