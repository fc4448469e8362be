"""Is the surrogate worth it? The model against the built-in solver on coarser grids, at equal
error.

For a family the built-in generators make (``evaluate.cost.FAMILIES``), ``cost_curve`` scores
three things on the same frames t_in … t_in+steps−1 of the generated trajectories (the
reference: the solver at the data's resolution) with the paper's score (``score_rollout``: L2RE
per field over the scored frames, mean over fields, then samples), and times each (seconds per
trajectory; ``clock``: ``time.perf_counter`` wall seconds by default, ``time.process_time`` for
the process's CPU-seconds):

- the solver curve: ``evaluate.cost.coarse_solve`` at each coarser grid (the time step follows
  each grid's CFL/stability limit, so coarser grids also take longer steps);
- the model: ``dl.rollout`` from the first t_in frames (``evaluate.cost.timed_rollout``).

    table = cost_curve({"generate": "ns2d", "n_samples": 4, "seed": 1001, "n_frames": 30}, model)
    speedup_at_equal_error(table)  # solver seconds at the model's L2RE / model seconds, or None
    solve_count(cost_to_make, table)  # solves after which making the model has paid back

The cost of making a model is charged to a family by ``corpus_shares`` (the sampling weights of
its pre-training sources over all) of the pre-training (``training_seconds`` of its run).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import yaml
from torch import nn

from dpot_lab.data.generation import GENERATORS, generate_cached
from dpot_lab.data.open import open_dataset
from dpot_lab.evaluate.cost import Clock, coarse_solve, family_of, timed_rollout
from dpot_lab.evaluate.score import score_rollout
from dpot_lab.models.util import unwrap
from dpot_lab.studies.curves import log_interp


def solver_curve(
    reference: xr.Dataset,
    family: str,
    resolutions: Sequence[int],
    t_in: int,
    steps: int,
    params: dict[str, Any] | None = None,
    batch_size: int | None = None,
    device: str = "cpu",
    repeats: int = 1,
    clock: Clock = time.perf_counter,
) -> xr.Dataset:
    """``coarse_solve`` at each resolution, scored against the reference on frames
    t_in … t_in+steps−1: ``l2re`` and ``seconds_per_trajectory`` (resolution,), the fastest of
    ``repeats`` solves."""
    errors, seconds = [], []
    n = reference.sizes["sample"]
    args = (t_in, steps, params, batch_size, device)
    for r in resolutions:
        runs = [coarse_solve(reference, family, int(r), *args, clock) for _ in range(repeats)]
        errors.append(float(score_rollout(runs[0][0], reference)["mean"]))
        seconds.append(min(s for _, s in runs) / n)
    return xr.Dataset(
        {
            "l2re": ("resolution", np.array(errors)),
            "seconds_per_trajectory": ("resolution", np.array(seconds)),
        },
        coords={"resolution": np.asarray(resolutions, dtype=np.int64)},
    )


def cost_curve(
    spec: dict[str, Any],
    model: nn.Module,
    resolutions: Sequence[int] | None = None,
    t_in: int | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
    device: str = "cpu",
    cache_dir: str | None = None,
    repeats: int = 1,
    clock: Clock = time.perf_counter,
) -> xr.Dataset:
    """The model against the coarse-solver curve on the trajectories ``spec`` describes (a
    ``generate_cached`` spec of a family in ``FAMILIES``), on frames t_in … t_in+steps−1.

    resolutions: the solver's grids (None: the reference's N, N/2, N/4, N/8 down to 8; N itself
    is the reference's own cost, restarted); t_in: the model's input frames (None: its config);
    steps: scored frames (None: all after t_in); batch_size: trajectories per solver call and per
    model batch (None: all). Both run on ``device``; each time is the fastest of ``repeats``,
    read on ``clock``.
    Returns ``l2re``, ``seconds_per_trajectory`` (resolution,), ``model_l2re``,
    ``model_seconds_per_trajectory`` (); attrs: family, spec, t_in, steps, start_frame, grid,
    batch_size, device, n_samples, reference_resolution."""
    fam = family_of(str(spec.get("generate")))
    reference = open_dataset(generate_cached(spec, cache_dir)).load()
    t_in = unwrap(model).config.in_timesteps if t_in is None else t_in
    steps = reference.sizes["time"] - t_in if steps is None else steps
    n_grid = reference.sizes["x"]
    if resolutions is None:
        resolutions = [n_grid // 2**k for k in range(4) if n_grid // 2**k >= 8]
    n = reference.sizes["sample"]
    batch_size = batch_size or n
    params = {k: v for k, v in spec.items() if k in fam.defaults}
    args = (t_in, steps, params, batch_size, device, repeats, clock)
    curve = solver_curve(reference, fam.name, resolutions, *args)

    run = dict(t_in=t_in, batch_size=batch_size, device=device, progress=False)
    pred, model_seconds = timed_rollout(model, reference, repeats, clock, steps=steps, **run)
    curve["model_l2re"] = float(score_rollout(pred, reference)["mean"])
    curve["model_seconds_per_trajectory"] = model_seconds
    curve.attrs = dict(
        family=fam.name,
        spec=json.dumps(spec, sort_keys=True),
        t_in=t_in,
        steps=steps,
        start_frame=t_in - 1 if fam.from_last_input else 0,
        grid=fam.grid,
        batch_size=batch_size,
        device=str(device),
        repeats=repeats,
        n_samples=n,
        reference_resolution=n_grid,
    )
    return curve


def speedup_at_equal_error(table: xr.Dataset) -> float | None:
    """Solver seconds at the model's L2RE over the model's seconds (per trajectory).

    The solver's time at the model's error is interpolated linearly in (log error, log time)
    between the coarsest resolution whose error is at most the model's and the next coarser one.
    None when the coarsest solve is already at least as accurate as the model (the model is less
    accurate than any coarse solve: no equal-error point on the curve). When the model is more
    accurate than every solve, the most accurate solve's time is used (a lower bound)."""
    curve = table.sortby("resolution")
    err = curve["l2re"].values
    sec = curve["seconds_per_trajectory"].values
    target = float(table["model_l2re"])
    model_seconds = float(table["model_seconds_per_trajectory"])
    good = np.nonzero(err <= target)[0]
    if len(good) == 0:
        return float(sec[np.argmin(err)]) / model_seconds
    i = int(good[0])
    if i == 0:
        return None
    return log_interp(target, err[i - 1], err[i], sec[i - 1], sec[i]) / model_seconds


def corpus_shares(
    sources: Sequence[dict[str, Any]], weights: Sequence[float] | None
) -> dict[str, float]:
    """The share of a pre-training corpus charged to each family: the sampling weights of its
    sources (generator specs; aliases resolved to the generator's name) over the sum of all
    weights (equal weights where ``weights`` is None). Shares sum to 1."""
    weights = [1.0] * len(sources) if weights is None else [float(w) for w in weights]
    if len(weights) != len(sources) or not sum(weights) > 0 or min(weights) < 0:
        raise ValueError(
            f"corpus_shares: weights: expected {len(sources)} weights >= 0 with a positive sum, "
            f"got {weights}"
        )
    shares: dict[str, float] = {}
    for spec, w in zip(sources, weights, strict=True):
        name = str(spec.get("generate"))
        name = GENERATORS[name].name if name in GENERATORS else name
        shares[name] = shares.get(name, 0.0) + w / sum(weights)
    return shares


def training_seconds(run_dir: str | Path) -> float:
    """Wall seconds of a run's training steps from its ``metrics.jsonl`` and ``config.yaml``:
    the sum over the train records of (steps since the previous record) · batch_size /
    samples_per_s, the trainer's own meter (evaluations and checkpoints excluded)."""
    run_dir = Path(run_dir)
    metrics, config = run_dir / "metrics.jsonl", run_dir / "config.yaml"
    for path in (metrics, config):
        if not path.is_file():
            raise FileNotFoundError(f"training_seconds: {path}: no such file (a run directory?)")
    batch_size = yaml.safe_load(config.read_text()).get("batch_size")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"{config}: batch_size: expected an integer >= 1, got {batch_size!r}")
    seconds, last = 0.0, 0
    for number, line in enumerate(metrics.read_text().splitlines(), 1):
        record = json.loads(line) if line.strip() else {}
        if record.get("event") != "train" or "samples_per_s" not in record:
            continue
        rate, step = record["samples_per_s"], record.get("step")
        if not (isinstance(step, int) and step > last and rate > 0):
            raise ValueError(
                f"{metrics}: line {number}: expected a step > {last} and samples_per_s > 0, "
                f"got step {step!r}, samples_per_s {rate!r}"
            )
        seconds += (step - last) * batch_size / rate
        last = step
    if last == 0:
        raise ValueError(f"{metrics}: no train record with samples_per_s")
    return seconds


def solve_count(cost_to_make: float, table: xr.Dataset) -> float | None:
    """Trajectory solves after which a model that cost ``cost_to_make`` seconds to make has paid
    it back, on a ``cost_curve`` table: cost_to_make / (solver seconds at the model's L2RE −
    model seconds), per trajectory (the solver's time as in ``speedup_at_equal_error``). inf
    where the model is not faster at equal error; None where there is no equal-error point (the
    model is less accurate than every coarse solve)."""
    speedup = speedup_at_equal_error(table)
    if speedup is None:
        return None
    model_seconds = float(table["model_seconds_per_trajectory"])
    saved = (speedup - 1.0) * model_seconds  # solver seconds at equal error − model seconds
    return cost_to_make / saved if saved > 0 else math.inf
