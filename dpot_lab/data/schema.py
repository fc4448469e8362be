"""The data model: one ``xarray.Dataset`` per trajectory set.

Fields are data variables with dims ``("sample", "time", "x", "y")`` (+ ``"z"``); other
variables (an initial condition ``(sample, x, y)``, a forcing, per-sample parameters) may sit
beside them. Coordinates ``time``/``x``/``y``/``z`` where known; attrs ``pde``,
``source_format`` and the PDE's parameters as plain scalars or strings.

This module is the one home of the dims (``SAMPLE``, ``TIME``, ``SPATIAL``) and of the rule for
which variables are fields (:func:`field_names`); everything else asks it.
"""

from __future__ import annotations

import warnings
from numbers import Number

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

SAMPLE = "sample"
TIME = "time"
SPATIAL = ("x", "y", "z")
REQUIRED_ATTRS = ("pde", "source_format")

# check_finite reads one sample at a time; a progress bar appears above this many bytes.
_PROGRESS_BYTES = 1 << 30


def spatial_dims(obj: xr.Dataset | xr.DataArray) -> tuple[str, ...]:
    """The spatial dims of ``obj`` in canonical order, e.g. ``("x", "y")``."""
    return tuple(d for d in SPATIAL if d in obj.dims)


def field_dims(obj: xr.Dataset | xr.DataArray) -> tuple[str, ...]:
    """The canonical dims of a field of ``obj``: ``(sample, time, x, y[, z])``."""
    return (SAMPLE, TIME, *spatial_dims(obj))


def field_names(ds: xr.Dataset) -> list[str]:
    """Names of the data variables that are fields, in the Dataset's order.

    A field has exactly the dims ``sample``, ``time`` and every spatial dim of ``ds``, in any
    order. Dims are named, so their order carries no meaning in the data model: a Dataset built
    by hand or read from netCDF as (sample, time, y, x) is the same data as the readers'
    (sample, time, x, y). Code that reads by position calls :func:`canonical` first; everything
    else selects by name.
    """
    want = set(field_dims(ds))
    return [str(n) for n, v in ds.data_vars.items() if set(v.dims) == want]


def canonical(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with every field's dims in the order ``(sample, time, x, y[, z])`` (lazily: nothing
    is read); ``ds`` itself when they already are."""
    want = field_dims(ds)
    moved = {n: ds[n].transpose(*want) for n in field_names(ds) if ds[n].dims != want}
    return ds.assign(moved) if moved else ds


def plain(value: object) -> object:
    """An attr value as h5py reads it -> plain Python (str, int, float, bool or a flat list)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return [v.decode() if isinstance(v, bytes) else v for v in value.ravel().tolist()]
    return value


def _plain(value: object) -> bool:
    """True for attr values the data model allows: strings, numbers, flat sequences of them."""
    if isinstance(value, str | Number | np.generic):
        return not isinstance(value, np.void)
    if isinstance(value, np.ndarray):
        return value.ndim <= 1 and value.dtype.kind in "biufcU"
    if isinstance(value, list | tuple):
        return all(isinstance(v, str | Number | np.generic) for v in value)
    return False


def require_dataset(obj: object, where: str) -> xr.Dataset:
    """``obj`` itself when it is an ``xarray.Dataset``; else TypeError that names ``where`` (the
    function and argument, e.g. ``"rollout: dataset"``), what came and what to pass instead."""
    if isinstance(obj, xr.Dataset):
        return obj
    kind = type(obj)
    package = kind.__module__.split(".")[0]
    got = kind.__name__ if package == "builtins" else f"{package}.{kind.__name__}"
    if isinstance(obj, xr.DataArray):
        fix = "turn the DataArray into one with da.to_dataset(name='u')"
    else:
        fix = (
            "wrap an array with xr.Dataset({'u': (('sample', 'time', 'x', 'y'), arr)}) or open "
            "a file with dl.open_dataset"
        )
    raise TypeError(
        f"{where}: expected an xarray.Dataset with one variable per field "
        f"({SAMPLE}, {TIME}, x, y[, z]), got {got}; {fix}"
    )


def validate(ds: xr.Dataset, source: str = "dataset") -> xr.Dataset:
    """Check that ``ds`` follows the data model; return it unchanged or raise ValueError naming
    ``source`` and every problem found."""
    if not isinstance(ds, xr.Dataset):
        raise ValueError(f"{source}: expected an xarray.Dataset, got {type(ds).__name__}")
    problems = []
    for dim in (SAMPLE, TIME):
        if dim not in ds.dims:
            problems.append(f"no '{dim}' dimension (dims are {tuple(ds.dims)})")
    space = spatial_dims(ds)
    if space != SPATIAL[: len(space)] or not space:
        problems.append(f"spatial dims must be 'x', 'x,y' or 'x,y,z'; found {space or 'none'}")
    fields = field_names(ds)
    if not fields:
        want = (SAMPLE, TIME, *space)
        found = {str(n): v.dims for n, v in ds.data_vars.items()}
        problems.append(f"no field with dims {want} (in any order); data variables are {found}")
    for name in fields:
        if ds[name].dtype.kind not in "biufc":
            problems.append(f"field '{name}' has non-numeric dtype {ds[name].dtype}")
    for dim in (TIME, *space):
        if dim in ds.coords:
            coord = ds.coords[dim]
            if coord.dtype.kind not in "iufmM":
                problems.append(f"coordinate '{dim}' has non-numeric dtype {coord.dtype}")
            elif coord.size > 1 and not bool((np.diff(coord.values) > 0).all()):
                problems.append(f"coordinate '{dim}' is not strictly increasing")
    for key in REQUIRED_ATTRS:
        if not isinstance(ds.attrs.get(key), str):
            problems.append(f"attr '{key}' missing or not a string")
    for key, value in ds.attrs.items():
        if not _plain(value):
            problems.append(
                f"attr '{key}' is a {type(value).__name__}; expected a string, a number or a "
                "flat list of them"
            )
    if problems:
        raise ValueError(f"{source}: not a dpot-lab dataset: " + "; ".join(problems))
    return ds


def _bad_frames(var: xr.DataArray, sample: int | None) -> list[tuple[int | None, int | None]]:
    """(sample, frame) pairs where ``var`` (one sample, or all of it) has NaN/Inf."""
    data = np.asarray(var.values)
    if TIME in var.dims:
        data = np.moveaxis(data, var.dims.index(TIME), 0)
        bad = ~np.isfinite(data.reshape(data.shape[0], -1)).all(axis=1)
        return [(sample, int(t)) for t in np.flatnonzero(bad)]
    return [] if np.isfinite(data).all() else [(sample, None)]


def check_finite(ds: xr.Dataset, skip: bool = False) -> xr.Dataset:
    """Look for NaN/Inf in every numeric data variable, one sample at a time.

    Raises ValueError naming each variable, sample and frame with bad values; with
    ``skip=True`` returns ``ds`` without the bad samples instead, warning which were dropped.
    """
    names = [str(n) for n, v in ds.data_vars.items() if v.dtype.kind in "fc"]
    n_samples = ds.sizes.get(SAMPLE, 1)
    found: dict[str, list[tuple[int | None, int | None]]] = {}
    big = sum(ds[n].nbytes for n in names) > _PROGRESS_BYTES
    for i in tqdm(range(n_samples), desc="check_finite", disable=not big):
        for name in names:
            var = ds[name]
            if SAMPLE in var.dims:
                found.setdefault(name, []).extend(_bad_frames(var.isel({SAMPLE: i}), i))
            elif i == 0:
                found.setdefault(name, []).extend(_bad_frames(var, None))
    found = {k: v for k, v in found.items() if v}
    if not found:
        return ds

    def where(s: int | None, t: int | None) -> str:
        parts = ([] if s is None else [f"sample {s}"]) + ([] if t is None else [f"frame {t}"])
        return " ".join(parts) or "(no sample or time axis)"

    report = "; ".join(
        f"'{name}' at "
        + ", ".join(where(s, t) for s, t in hits[:20])
        + (f" and {len(hits) - 20} more" if len(hits) > 20 else "")
        for name, hits in found.items()
    )
    unskippable = [n for n, hits in found.items() if any(s is None for s, _ in hits)]
    if not skip or unskippable:
        why = f" ('{unskippable[0]}' has no sample axis to drop)" if skip else ""
        where_from = f"{ds.encoding['source']}: " if "source" in ds.encoding else ""
        raise ValueError(f"{where_from}non-finite values (NaN/Inf){why}: {report}")
    dropped = sorted({s for hits in found.values() for s, _ in hits if s is not None})
    warnings.warn(
        f"check_finite dropped {len(dropped)} of {n_samples} samples with NaN/Inf "
        f"(sample indices {dropped}): {report}",
        stacklevel=2,
    )
    keep = [i for i in range(n_samples) if i not in set(dropped)]
    return ds.isel({SAMPLE: keep})
