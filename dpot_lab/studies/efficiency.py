"""The paper's data-efficiency study: fine-tuning a pre-trained checkpoint against the same
architecture trained from scratch, on a growing number of trajectories of one new PDE.

    import dpot_lab as dl
    table = dl.studies.data_efficiency("dpot_lab/assets/pretrained.pt", "kolmogorov.h5",
                                        counts=[2, 4, 8, 16, 32], steps=600)
    print(dl.studies.format_study(table))
    dl.studies.trajectories_to_match(table, 8)   # how many scratch needs to match fine-tuning on 8

The last ``n_test`` trajectories of the dataset are the test set of every run; the first ``n`` of
the others train. Both runs of a count see the same trajectories, steps, batch and recipe (the
learning rate aside: ``lr`` and ``scratch_lr``); scores are the 10-step (``horizon``) rollout
L2RE of the final weights on the test set (``Trainer.evaluate``), next to persistence and the
checkpoint without fine-tuning (zero-shot).
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from dpot_lab.configfile import merge
from dpot_lab.data import native
from dpot_lab.data.open import open_dataset
from dpot_lab.data.schema import field_names, require_dataset
from dpot_lab.evaluate.rollout import source_name
from dpot_lab.models.checkpoint import open_checkpoint
from dpot_lab.models.dpot import DPOTConfig, adapt_model_config
from dpot_lab.studies.curves import log_interp
from dpot_lab.train.trainer import Trainer

# The recipe of both runs; any key of a run config may be changed through ``recipe``.
RECIPE: dict[str, Any] = {
    "batch_size": 8,
    "noise": {"kind": "rms", "scale": 0.02},
    "optim": {"lr": 3e-3, "schedule": "onecycle", "warmup": 0.1},
    "eval": {"every": 0, "horizon": 10},
    "checkpoint": {"every": 0, "keep": 1},
    "log": {"every": 50, "progress": False},
    "device": "cpu",
}
# The from-scratch run's learning rate (the fine-tuned run's is the recipe's): how it was tuned is
# in benchmarks/results/data_efficiency_lr.md.
SCRATCH_LR = 3.2e-2
RUNS = ("finetuned", "scratch")


def data_efficiency(
    checkpoint: str | os.PathLike,
    dataset: str | os.PathLike | xr.Dataset,
    counts: Sequence[int] = (2, 4, 8, 16, 32),
    steps: int = 600,
    *,
    n_test: int = 8,
    horizon: int = 10,
    lr: float | None = None,
    scratch_lr: float = SCRATCH_LR,
    recipe: dict[str, Any] | None = None,
    runs: Sequence[str] = RUNS,
    seed: int = 0,
    work_dir: str | os.PathLike | None = None,
    callback: Callable[[dict], Any] | None = None,
    progress: bool = True,
) -> xr.Dataset:
    """Fine-tuned and from-scratch test L2RE for each training-set size -> Dataset.

    checkpoint: ours or a DPOT release file; its architecture is used by both runs (``t_in`` of
    the checkpoint; the data's own grid, the positional embedding interpolated; data with fewer
    channels is padded, data with more gets a wider model whose fine-tuned run starts with a new
    embedding and head).
    dataset: a file ``dl.open_dataset`` reads, or a Dataset; needs ``n_test + max(counts)``
    trajectories of at least ``t_in + horizon`` frames. steps: optimizer steps of every run.
    Returns variables ``finetuned`` and ``scratch`` over dim ``n_train`` and the scalars
    ``persistence`` and ``zero_shot`` (L2RE on the same test set; only when the checkpoint takes
    the data's channels as they are); attrs name the inputs.
    ``callback`` gets a dict per finished run: {"run", "n_train", "l2re"}.
    """
    counts = _checked_counts(counts, runs, steps, n_test, horizon)
    ds, where, name = _study_data(dataset)
    arch = open_checkpoint(checkpoint).config
    _check_size(ds, where, n_test + counts[-1], arch.in_timesteps + horizon, n_test, horizon)
    n_samples = ds.sizes["sample"]
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        folder = Path(tmp)
        test_file = native.save(ds.isel(sample=slice(n_samples - n_test, n_samples)),
                                folder / f"{name}_test.h5")  # fmt: skip
        channels = max(arch.in_channels, len(field_names(ds)))
        base = _base_config(recipe, arch, channels, steps, horizon, seed, test_file)
        jobs = [(n, run) for n in counts for run in runs]
        scores, reference = {run: np.full(len(counts), np.nan) for run in RUNS}, None
        for n, run in tqdm(jobs, desc=f"data efficiency {name}", disable=not progress):
            train_file = folder / f"{name}_{n}.h5"
            if not train_file.exists():
                native.save(ds.isel(sample=slice(0, n)), train_file)
            cfg = _run_config(base, run, arch, checkpoint, lr, scratch_lr, train_file, n)
            trainer = Trainer(cfg, run_dir=folder / f"{run}_{n}", overwrite=True)
            zero_shot = reference is None and "finetuned" in runs
            result, first = _train_and_score(trainer, zero_shot)
            scores[run][counts.index(n)] = result["l2re"]
            reference = reference or first
            if callback is not None:
                callback({"run": run, "n_train": n, "l2re": result["l2re"]})

    out = xr.Dataset(
        {run: ("n_train", scores[run]) for run in runs},
        coords={"n_train": counts},
        attrs=dict(
            checkpoint=str(checkpoint), dataset=where, source=name, steps=steps, n_test=n_test,
            horizon=horizon, t_in=arch.in_timesteps, batch_size=base["batch_size"],
            channels=channels,
        ),
    )  # fmt: skip
    out["persistence"] = float(reference["persistence"])
    if "finetuned" in runs and channels == arch.in_channels:  # else no model as loaded to score
        out["zero_shot"] = float(reference["l2re"])
    return out


def _checked_counts(
    counts: Sequence[int], runs: Sequence[str], steps: int, n_test: int, horizon: int
) -> list[int]:
    """The training-set sizes, sorted and unique; ValueError on an unknown run or a size,
    ``steps``, ``n_test`` or ``horizon`` below 1."""
    counts = sorted({int(n) for n in counts})
    unknown = sorted(set(runs) - set(RUNS))
    if unknown or not runs:
        raise ValueError(f"runs: expected some of {RUNS}, got {list(runs)}")
    if not counts or counts[0] < 1:
        raise ValueError(f"counts: expected positive trajectory counts, got {counts}")
    if steps < 1 or n_test < 1 or horizon < 1:
        raise ValueError(
            f"steps, n_test and horizon must be >= 1 (got {steps}, {n_test}, {horizon})"
        )
    return counts


def _study_data(dataset: str | os.PathLike | xr.Dataset) -> tuple[xr.Dataset, str, str]:
    """The study's trajectories, where they come from (for messages) and the source's name."""
    if not isinstance(dataset, str | os.PathLike):
        require_dataset(dataset, "data_efficiency: dataset")
        where = source_name(dataset)  # its file when it was read from one
        return dataset, where, Path(where).stem
    return open_dataset(dataset), str(dataset), Path(dataset).stem


def _check_size(
    ds: xr.Dataset, where: str, samples: int, frames: int, n_test: int, horizon: int
) -> None:
    """ValueError naming ``where`` unless ``ds`` holds ``samples`` trajectories of ``frames``."""
    n_samples, n_frames = ds.sizes["sample"], ds.sizes["time"]
    if n_samples < samples:
        raise ValueError(
            f"{where}: sample: {n_samples} trajectories; the study needs n_test={n_test} + "
            f"max(counts)={samples - n_test}"
        )
    if n_frames < frames:
        raise ValueError(
            f"{where}: time: {n_frames} frames; the checkpoint's t_in={frames - horizon} + "
            f"horizon={horizon} are needed"
        )


def _train_and_score(trainer: Trainer, zero_shot: bool) -> tuple[dict, dict]:
    """Train one run and score its final weights on the test set -> (its score, the first score
    it took: the weights as loaded when ``zero_shot``, else the final ones)."""
    first = trainer.evaluate()[_test_name(trainer)] if zero_shot else None
    trainer.fit()
    result = (trainer.last_eval or trainer.evaluate())[_test_name(trainer)]
    return result, first or result


def trajectories_to_match(table: xr.Dataset, n_train: int = 8) -> float:
    """Trajectories the scratch model needs to reach the fine-tuned L2RE at ``n_train``:
    log-log interpolation on the scratch curve; inf where no count reaches it, the smallest
    count where the first already does."""
    target = float(table["finetuned"].sel(n_train=n_train))
    n = table["n_train"].values.astype(float)
    err = table["scratch"].values
    if err[0] <= target:
        return float(n[0])
    for k in range(1, len(n)):
        if err[k] <= target:  # between n[k-1] (above) and n[k] (at or below)
            return log_interp(target, err[k - 1], err[k], n[k - 1], n[k])
    return float("inf")


def format_study(table: xr.Dataset) -> str:
    """A text table: one row per training-set size, the runs and persistence as columns."""
    runs = [r for r in RUNS if r in table]
    head = f"{'trajectories':>12}  " + "  ".join(f"{r:>10}" for r in runs) + "  ratio  persistence"
    lines = [f"{table.attrs.get('source', '')}: {table.attrs.get('steps')} steps, "
             f"{table.attrs.get('horizon')}-step rollout L2RE on {table.attrs.get('n_test')} "
             "held-out trajectories", head]  # fmt: skip
    for n in table["n_train"].values:
        row = table.sel(n_train=n)
        vals = "  ".join(f"{float(row[r]):>10.4g}" for r in runs)
        ratio = float(row["finetuned"] / row["scratch"]) if len(runs) == 2 else float("nan")
        lines.append(f"{int(n):>12}  {vals}  {ratio:>5.2f}  {float(table['persistence']):>11.4g}")
    if "zero_shot" in table:
        lines.append(f"zero-shot (no fine-tuning): {float(table['zero_shot']):.4g}")
    return "\n".join(lines)


def _base_config(
    recipe: dict[str, Any] | None, arch: Any, channels: int, steps: int, horizon: int, seed: int,
    test_file: Path,
) -> dict[str, Any]:  # fmt: skip
    cfg = merge(copy.deepcopy(RECIPE), recipe or {})
    cfg.update(steps=steps, seed=seed)
    cfg["eval"] = {**cfg.get("eval", {}), "horizon": horizon}
    cfg["data"] = {
        **cfg.get("data", {}),
        "test_sources": [str(test_file)],
        "channels": channels,
        "t_in": arch.in_timesteps,
    }
    cfg["t_out"] = arch.out_timesteps
    return cfg


def _run_config(
    base: dict[str, Any], run: str, arch: Any, checkpoint: Any, lr: float | None,
    scratch_lr: float, train_file: Path, n: int,
) -> dict[str, Any]:  # fmt: skip
    cfg = copy.deepcopy(base)
    cfg["name"] = f"{run}_{train_file.stem}"
    cfg["data"]["sources"] = [str(train_file)]
    # an epoch holds one window per trajectory and repeat: at least two batches of them
    cfg["data"]["weights"] = [max(1, -(-2 * cfg["batch_size"] // n))]
    if run == "finetuned":
        cfg.update(init_from=str(checkpoint), model={"preset": None})
        if lr is not None:
            cfg["optim"]["lr"] = lr
    else:  # the same architecture (widened as the fine-tuned run's), random weights
        same = adapt_model_config(arch, in_channels=cfg["data"]["channels"])
        fields = {k: v for k, v in same.to_dict().items() if k not in DPOTConfig.DATA_FIELDS}
        cfg["model"] = {"preset": "nano", **fields, "n_cls": 0}  # no class head: it is not trained
        cfg["optim"]["lr"] = scratch_lr
    return cfg


def _test_name(trainer: Trainer) -> str:
    return next(iter(trainer.test_data))
