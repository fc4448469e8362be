"""Is the surrogate worth it? The model against the built-in solver on coarser grids, at equal cost.

For a family the built-in generators make, ``cost_curve`` scores three things on the same
frames t_in … t_in+steps−1 of the generated trajectories (the reference: the solver at the data's
resolution) with the paper's score (``score_rollout``: L2RE per field over the scored frames,
mean over fields, then samples), and times each (``clock``: ``time.perf_counter`` wall seconds by
default, ``time.process_time`` for the process's CPU-seconds; per trajectory):

- the solver curve: the same solver from the same state restricted to coarser grids, its frames
  brought back to the reference grid; the time step follows each grid's CFL/stability limit, so
  coarser grids also take longer steps;
- the model: ``dl.rollout`` from the first t_in frames.

    table = cost_curve({"generate": "ns2d", "n_samples": 4, "seed": 1001, "n_frames": 30}, model)
    speedup_at_equal_error(table)  # solver seconds at the model's L2RE / model seconds, or None
    solve_count(cost_to_make, table)  # solves after which making the model has paid back

The cost of making a model is charged to a family by ``corpus_shares`` (the sampling weights of
its pre-training sources over all) of the pre-training (``training_seconds`` of its run).

Start of the coarse solve, per family: "ns2d" and "diffusion_reaction" store their whole state
(vorticity; u and v), so the solver starts from frame t_in−1, the last frame the model sees;
"shallow_water" stores the depth h but not the momentum, which is known (zero: the dam is at
rest) only at frame 0, so its solver starts from frame 0 and its time includes the input frames.
Restriction and prolongation follow each grid: Fourier truncation and zero-padding on the
periodic nodes of the spectral NS solver; block means (cell averages) down and bilinear
interpolation of cell centres (``data.transforms.resize``) up for the finite-volume solvers.
"""

from __future__ import annotations

import inspect
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
import yaml
from torch import nn

from dpot_lab.data.generation import GENERATORS, generate_cached
from dpot_lab.data.generators import make_diffusion_reaction, make_ns2d
from dpot_lab.data.generators_fv import SWE_DEFAULTS
from dpot_lab.data.open import open_dataset
from dpot_lab.data.transforms import resize
from dpot_lab.evaluate.curves import log_interp
from dpot_lab.evaluate.rollout import field_layout, prediction_like, rollout
from dpot_lab.evaluate.score import score_rollout
from dpot_lab.models.util import unwrap
from dpot_lab.solvers import diffusion_reaction_2d, navier_stokes_2d, shallow_water_2d

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
Clock = Callable[[], float]  # seconds: time.perf_counter (wall) or time.process_time (CPU)


def fourier_resample(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(..., X, Y) periodic samples on the nodes i/X, j/Y -> (..., *size) on the nodes of the
    new grid: the trigonometric interpolant of the modes |m| < min(n, n')/2 on each axis (Nyquist
    modes dropped). Identity when the grid already has ``size``."""
    old = a.shape[-2:]
    if tuple(old) == tuple(size):
        return a
    spec = np.fft.fft2(a)  # (..., X, Y)
    out = np.zeros((*a.shape[:-2], *size), dtype=spec.dtype)
    index = []
    for n_old, n_new in zip(old, size, strict=True):
        m = np.arange(-((min(n_old, n_new) - 1) // 2), (min(n_old, n_new) + 1) // 2)
        index.append((m % n_old, m % n_new))
    (ox, nx), (oy, ny) = index
    out[..., nx[:, None], ny[None, :]] = spec[..., ox[:, None], oy[None, :]]
    return np.fft.ifft2(out).real * (size[0] * size[1] / (old[0] * old[1]))


def block_mean(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(..., X, Y) cell averages -> (..., *size) averages over blocks of (X/size[0], Y/size[1])
    cells; ValueError unless the sizes divide the grid."""
    (n_x, n_y), (m_x, m_y) = a.shape[-2:], size
    if n_x % m_x or n_y % m_y:
        raise ValueError(f"block_mean: grid {m_x}x{m_y} does not divide the grid {n_x}x{n_y}")
    blocks = a.reshape(*a.shape[:-2], m_x, n_x // m_x, m_y, n_y // m_y)
    return blocks.mean(axis=(-3, -1))


def _bilinear(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(B, T, C, n, n) cell-centred frames -> (B, T, C, *size), bilinear (``resize``)."""
    b, t, c = frames.shape[:3]
    x = torch.from_numpy(frames).permute(0, 3, 4, 1, 2).reshape(b, *frames.shape[-2:], t * c, 1)
    y = resize(x, size).reshape(b, *size, t, c)  # (B, *size, T, C)
    return y.permute(0, 3, 4, 1, 2).numpy()


@dataclass(frozen=True)
class Family:
    """How to re-run one generator's solver from a stored state on another grid.

    solve(state (B, C, n, n) tensor, times (T,) from 0, params) -> frames (B, T, C, n, n);
    restrict / prolong map (..., X, Y) to (..., *size); ``from_last_input``: the stored fields
    are the whole state, so the solve starts at frame t_in−1 (else at frame 0)."""

    name: str
    fields: tuple[str, ...]  # the state's channels, in the solver's order
    solve: Callable[[torch.Tensor, np.ndarray, dict[str, Any]], np.ndarray]
    restrict: Callable[[np.ndarray, tuple[int, int]], np.ndarray]
    prolong: Callable[[np.ndarray, tuple[int, int]], np.ndarray]
    defaults: dict[str, Any]
    from_last_input: bool
    grid: str


def _defaults(fn: Callable[..., Any]) -> dict[str, Any]:
    """Keyword defaults of a generator function."""
    params = inspect.signature(fn).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def _solve_ns2d(state: torch.Tensor, times: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    forcing = None if p["forcing"] in (None, "none") else p["forcing"]
    w = navier_stokes_2d(state[:, 0], p["nu"], times, forcing, cfl=p["cfl"])  # (B, T, n, n)
    return w[:, :, None]


def _solve_dr(state: torch.Tensor, times: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    return diffusion_reaction_2d(state[:, 0], state[:, 1], times, du=p["du"], dv=p["dv"], k=p["k"])


def _solve_swe(state: torch.Tensor, times: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    return shallow_water_2d(state[:, 0], times, g=p["g"], cfl=p["cfl"])[:, :, None]


FAMILIES: dict[str, Family] = {
    "ns2d": Family(
        "ns2d", ("vorticity",), _solve_ns2d, fourier_resample, fourier_resample,
        _defaults(make_ns2d), True,
        "periodic nodes: Fourier truncation down, zero-padding up",
    ),
    "diffusion_reaction": Family(
        "diffusion_reaction", ("u", "v"), _solve_dr, block_mean, _bilinear,
        _defaults(make_diffusion_reaction), True,
        "cell centres: block means down, bilinear up",
    ),
    "shallow_water": Family(
        "shallow_water", ("h",), _solve_swe, block_mean, _bilinear,
        {**SWE_DEFAULTS, "dtype": "float64"}, False, "cell centres: block means down, bilinear up",
    ),
}  # fmt: skip


def family_of(name: str) -> Family:
    """The ``Family`` of a generator name (aliases such as "dr", "swe" included)."""
    canonical = GENERATORS[name].name if name in GENERATORS else name
    if canonical not in FAMILIES:
        raise ValueError(
            f"cost: family {name!r} has no coarse-solver baseline; supported: {sorted(FAMILIES)}"
        )
    return FAMILIES[canonical]


def coarse_solve(
    reference: xr.Dataset,
    family: str,
    resolution: int,
    t_in: int,
    steps: int,
    params: dict[str, Any] | None = None,
    batch_size: int | None = None,
    device: str = "cpu",
    clock: Clock = time.perf_counter,
) -> tuple[xr.Dataset, float]:
    """The family's solver on a ``resolution``² grid from the reference's start frame (see the
    module docstring), its frames t_in … t_in+steps−1 brought back to the reference grid.

    reference: trajectories (sample, time, x, y) as the generator wrote them; params: the
    generator's parameters (its defaults where missing). Returns the frames in the layout of
    ``dl.rollout`` and the solver's wall time in seconds for all samples (``batch_size`` per
    call, None: all at once), restriction and prolongation excluded."""
    fam = family_of(family)
    p = {**fam.defaults, **(params or {})}
    fields, spatial = list(fam.fields), field_layout(reference)[1]
    missing = [f for f in fields if f not in reference.data_vars]
    if missing:
        raise ValueError(f"coarse_solve: {fam.name} reference lacks the field(s) {missing}")
    shape = tuple(reference.sizes[d] for d in spatial)  # (X, Y)
    start = t_in - 1 if fam.from_last_input else 0
    t = reference["time"].values
    if t_in < 1 or steps < 1 or t_in + steps > len(t):
        raise ValueError(
            f"coarse_solve: t_in={t_in}, steps={steps} do not fit the reference's {len(t)} frames"
        )
    times = t[start : t_in + steps] - t[start]  # (T,) from 0
    state = np.stack(
        [reference[f].isel(time=start).transpose("sample", *spatial).values for f in fields], 1
    ).astype(np.float64)  # (N, C, X, Y)
    coarse = torch.as_tensor(
        fam.restrict(state, (resolution, resolution)), dtype=_DTYPES[p["dtype"]], device=device
    )  # (N, C, n, n)
    n = coarse.shape[0]
    batch_size = batch_size or n
    tic = clock()
    frames = np.concatenate(
        [fam.solve(coarse[i : i + batch_size], times, p) for i in range(0, n, batch_size)]
    )  # (N, T, C, n, n)
    seconds = clock() - tic
    fine = fam.prolong(frames[:, t_in - start :], shape)  # (N, steps, C, X, Y)
    pred = prediction_like(
        reference, fields, np.arange(n), t[t_in : t_in + steps], np.moveaxis(fine, 2, -1)
    )
    return pred, seconds


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


def timed_rollout(
    model: nn.Module,
    dataset: xr.Dataset,
    repeats: int = 1,
    clock: Clock = time.perf_counter,
    **kw: Any,
) -> tuple[xr.Dataset, float]:
    """(``rollout(model, dataset, **kw)``, its time by ``clock`` in seconds per trajectory): the
    fastest of ``repeats`` runs, after an untimed one-step rollout of the first trajectory
    (warm-up)."""
    first = dataset.isel(sample=[0]) if kw.get("samples") is None else dataset
    rollout(model, first, **{**kw, "steps": 1})
    seconds = math.inf
    for _ in range(repeats):
        tic = clock()
        pred = rollout(model, dataset, **kw)
        seconds = min(seconds, clock() - tic)
    return pred, seconds / pred.sizes["sample"]


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


__all__ = [
    "FAMILIES",
    "Family",
    "block_mean",
    "coarse_solve",
    "corpus_shares",
    "cost_curve",
    "family_of",
    "fourier_resample",
    "solve_count",
    "solver_curve",
    "speedup_at_equal_error",
    "timed_rollout",
    "training_seconds",
]
