"""Errors of a rollout against the truth, energy spectra and the persistence baseline.

xarray in, xarray out: every function takes Datasets (one variable per field) or DataArrays with
dims (sample, time, x, y[, z]) and returns the same kind with the reduced dims gone. Prediction
and truth are matched by coordinates: each prediction is scored against its own part of the truth
(which may hold more, e.g. the input window or other samples), and a prediction label missing
from the truth is refused; a dim without coordinates is matched by position. NaN frames (a
diverged rollout) make the errors they enter NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch
import xarray as xr

from dpot_lab.data.schema import SPATIAL as SPATIAL_DIMS
from dpot_lab.data.schema import require_dataset
from dpot_lab.evaluate.relative_error import relative_l2_last
from dpot_lab.evaluate.rollout import field_layout, persist, prediction_like, rollout_times

EPS_VAR = 1e-7  # The Well's VRMSE/NRMSE guard

XR = TypeVar("XR", xr.Dataset, xr.DataArray)


def indexed(obj: XR) -> XR:
    """``obj`` with a position index on each dim that has none, so that align can match frames."""
    missing = {d: np.arange(n) for d, n in obj.sizes.items() if d not in obj.indexes}
    return obj.assign_coords(missing) if missing else obj


def _listed(labels: np.ndarray, first: int = 5) -> str:
    """The first few labels and how many there are, for messages."""
    shown = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in labels[:first].tolist())
    return shown + (f", … ({labels.size} in all)" if labels.size > first else "")


def align(pred: XR, truth: XR) -> tuple[XR, XR]:
    """The prediction and the part of the truth it predicts: every field, dim and coordinate
    label of the prediction must be in the truth (which may hold more: the input window, other
    samples), else ValueError naming the missing ones; a dim without coordinates counts
    positions."""
    if not all(isinstance(o, xr.Dataset | xr.DataArray) for o in (pred, truth)):
        kinds = f"got {type(pred).__name__} and {type(truth).__name__}"
        raise TypeError(f"pass prediction and truth as xarray Datasets or DataArrays; {kinds}")
    if isinstance(pred, xr.Dataset) != isinstance(truth, xr.Dataset):
        raise TypeError("pass prediction and truth both as Datasets or both as DataArrays")
    if isinstance(pred, xr.Dataset):
        missing = [v for v in pred.data_vars if v not in truth.data_vars]
        if missing:
            raise ValueError(
                f"prediction fields {missing} are not in the truth (its fields: "
                f"{list(truth.data_vars)})"
            )
        truth = truth[list(pred.data_vars)]
    pred, truth = indexed(pred), indexed(truth)
    extra = [d for d in pred.dims if d not in truth.dims]
    if extra:
        raise ValueError(f"prediction dims {extra} are not in the truth (its dims: {truth.dims})")
    if any(pred.sizes[d] == 0 for d in pred.dims):
        raise ValueError(f"the prediction is empty: sizes {dict(pred.sizes)}")
    for d in pred.dims:
        want, have = pred.indexes[d], truth.indexes[d]
        if not have.is_unique:
            twice = np.asarray(have[have.duplicated()].unique())
            raise ValueError(
                f"the truth's {d} labels repeat ({_listed(twice)}): a prediction cannot be "
                f"matched to them; label each {d} once, e.g. truth.assign_coords({d}=range(n))"
            )
        absent = np.asarray(want[~want.isin(have)])
        if absent.size:
            raise ValueError(
                f"prediction {d} labels {_listed(absent)} are not in the truth (its {d}: "
                f"{_listed(np.asarray(have))}); score a prediction against the data it predicts"
            )
    return pred, truth.sel({d: pred.indexes[d] for d in pred.dims})


def _space(obj: xr.Dataset | xr.DataArray) -> list[str]:
    return [d for d in SPATIAL_DIMS if d in obj.dims]


def l2re(pred: XR, truth: XR, dims: str | Sequence[str] | None = None) -> XR:
    """Relative L2 error ‖ŷ−y‖₂ / ‖y‖₂ over ``dims`` (default: time and space jointly, the DPOT
    paper's protocol) per sample and field -> dims (sample,) per field; the xarray face of
    ``evaluate.relative_error``. ``.mean("sample")`` and
    ``.to_array("field").mean("field")`` give the paper's averages."""
    pred, truth = align(pred, truth)
    dims = ["time", *_space(truth)] if dims is None else [dims] if isinstance(dims, str) else dims
    return xr.apply_ufunc(
        relative_l2_last,
        pred,
        truth,
        kwargs={"n": len(dims)},
        input_core_dims=[list(dims), list(dims)],
    )


def per_step_error(pred: XR, truth: XR) -> XR:
    """Relative L2 error over space at each frame -> dims (sample, time) per field."""
    pred, truth = align(pred, truth)
    return l2re(pred, truth, dims=_space(truth))


def vrmse(pred: XR, truth: XR) -> XR:
    """The Well's VRMSE sqrt(mean_space((ŷ−y)²) / (var_space(y) + 1e-7)) -> dims (sample, time) per
    field; predicting the spatial mean scores 1."""
    pred, truth = align(pred, truth)
    space = _space(truth)
    mse = ((pred - truth) ** 2).mean(space, skipna=False)
    return np.sqrt(mse / (truth.var(space, skipna=False) + EPS_VAR))


def nrmse(pred: XR, truth: XR) -> XR:
    """The Well's NRMSE sqrt(mean_space((ŷ−y)²) / (mean_space(y²) + 1e-7)) -> dims (sample, time)
    per field."""
    pred, truth = align(pred, truth)
    space = _space(truth)
    mse = ((pred - truth) ** 2).mean(space, skipna=False)
    return np.sqrt(mse / ((truth**2).mean(space, skipna=False) + EPS_VAR))


def _radial_power(u: np.ndarray, n_space: int) -> np.ndarray:
    """(..., *S) real fields -> (..., K) energy ½|û|² summed over integer shells of |k|."""
    shape = u.shape[-n_space:]
    u_hat = np.fft.fftn(u, axes=range(-n_space, 0)) / np.prod(shape)
    power = 0.5 * np.abs(u_hat) ** 2  # (..., *S)
    freqs = np.meshgrid(*(np.fft.fftfreq(n) * n for n in shape), indexing="ij")
    shell = np.rint(np.sqrt(sum(f**2 for f in freqs))).astype(np.int64).ravel()  # (P,)
    n_k = min(shape) // 2 + 1
    flat = power.reshape(-1, shell.size)  # (M, P)
    keep = shell < n_k
    rows = np.repeat(np.arange(flat.shape[0]), keep.sum())
    idx = rows * n_k + np.tile(shell[keep], flat.shape[0])
    spec = np.bincount(idx, weights=flat[:, keep].ravel(), minlength=flat.shape[0] * n_k)
    return spec.reshape(*u.shape[:-n_space], n_k)


def energy_spectrum(data: XR) -> XR:
    """Radially averaged energy spectrum E(k) = Σ_{|k'| ≈ k} ½|û(k')|² over the space dims -> the
    other dims plus ``k`` (integer wavenumber in cycles per domain length, 0 … min(N)/2).
    By Parseval, Σ_k E(k) is ½·mean(u²) up to the corner modes beyond min(N)/2."""
    space = _space(data)
    if not space:
        raise ValueError(f"no space dims {SPATIAL_DIMS} in {dict(data.sizes)}")
    out = xr.apply_ufunc(
        _radial_power,
        data,
        kwargs={"n_space": len(space)},
        input_core_dims=[space],
        output_core_dims=[["k"]],
        dask="parallelized",
        dask_gufunc_kwargs={"output_sizes": {"k": min(data.sizes[d] for d in space) // 2 + 1}},
    )
    return out.assign_coords(k=np.arange(out.sizes["k"]))


def spectrum_ratio(pred: XR, truth: XR) -> XR:
    """E_pred(k) / E_truth(k) per sample, time and field (1 where the prediction has the right
    energy at scale k) -> dims (sample, time, k) per field."""
    pred, truth = align(pred, truth)
    return energy_spectrum(pred) / energy_spectrum(truth)


def persistence(dataset: xr.Dataset, t_in: int = 10, steps: int | None = None) -> xr.Dataset:
    """The baseline that repeats the last input frame (index ``t_in - 1``) for ``steps`` frames
    (None: to the end), in the layout of ``dl.rollout``'s result, with the dataset's sample
    labels: the xarray face of ``evaluate.rollout.persist``."""
    require_dataset(dataset, "persistence: dataset")
    fields, spatial = field_layout(dataset)
    if steps is None:
        steps = dataset.sizes["time"] - t_in
    last = np.stack(
        [
            dataset[f].isel(time=[t_in - 1]).transpose("sample", *spatial, "time").values
            for f in fields
        ],
        axis=-1,
    )  # (N, *S, 1, C)
    last = last.astype(last.dtype.newbyteorder("="), copy=False)  # torch takes native order only
    data = persist(torch.from_numpy(last), steps).movedim(-2, 1)  # (N, T, *S, C)
    data = data.contiguous().numpy()
    positions = np.arange(dataset.sizes["sample"])
    times = rollout_times(dataset, t_in, steps)
    attrs = {"rollout_t_in": t_in, "rollout_steps": steps, "baseline": "persistence"}
    return prediction_like(dataset, fields, positions, times, data, attrs)


def blockiness(pred: XR, truth: XR, patch: int) -> XR:
    """How much a grid of ``patch``-cell patches shows in the error ŷ−y: the mean squared jump of
    the error between neighbouring cells across patch boundaries (every ``patch`` cells along each
    space dim, from the first cell) over the mean squared jump inside patches, pooled over the
    space dims -> dims (sample, time) per field. About 1 where the error carries no patch grid;
    ``patch`` counts cells of the data's grid. ``blockiness(truth, 0 * truth, p)`` scores a field
    itself."""
    if isinstance(patch, bool) or not isinstance(patch, int | np.integer) or patch < 2:
        raise ValueError(f"blockiness: patch={patch!r}, expected an integer >= 2 (cells a side)")
    pred, truth = align(pred, truth)
    space, err = _space(truth), pred - truth
    if not space or any(truth.sizes[d] <= patch for d in space):
        raise ValueError(
            f"blockiness: patch={patch} needs more than {patch} cells along each space dim; "
            f"sizes {dict(truth.sizes)}"
        )
    sums, counts = [0.0, 0.0], [0, 0]  # [across boundaries, inside patches]
    for d in space:
        jump2 = err.diff(d) ** 2  # jump from cell i to i + 1 at position i
        across = np.arange(1, truth.sizes[d]) % patch == 0
        for i, where in enumerate((across, ~across)):
            part = jump2.isel({d: where})
            sums[i] = sums[i] + part.sum(space, skipna=False)
            counts[i] += int(np.prod([part.sizes[s] for s in space]))
    return (sums[0] / counts[0]) / (sums[1] / counts[1])


__all__ = [
    "align", "blockiness", "energy_spectrum", "indexed", "l2re", "nrmse", "per_step_error",
    "persistence", "spectrum_ratio", "vrmse",
]  # fmt: skip


def __dir__() -> list[str]:
    return list(__all__)
