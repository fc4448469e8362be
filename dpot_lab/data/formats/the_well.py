"""The Well HDF5 files (``{base}/datasets/{name}/data/{split}/*.hdf5``).

Root attrs (``dataset_name``, ``simulation_parameters``, one attr per parameter, ...);
``dimensions/`` (``time``, one dataset per spatial dim, attr ``spatial_dims``);
``boundary_conditions/<name>/`` (attrs ``bc_type``, ``associated_dims``); ``scalars/``;
``t0_fields/`` scalar fields (B, T, *S), ``t1_fields/`` vectors (…, D), ``t2_fields/`` tensors
(…, D, D). A field lacks the B axis when not sample-varying, the T axis when not
time-varying, and a spatial axis whose ``dim_varying`` is False.

Spatial dims are presented as ``x``, ``y``[, ``z``] in the file's order; vector components
become ``<name>_x``, ``<name>_y``…, tensor components ``<name>_xx``, ``<name>_xy``…;
boundary conditions become attrs ``bc_<name> = "<type>:<dims>"`` (e.g. ``"periodic:x"``).
"""

from __future__ import annotations

import itertools
import logging
import os
from pathlib import Path

import h5py
import numpy as np
import xarray as xr

from dpot_lab.data.formats import plain_attrs
from dpot_lab.data.lazy import H5Array, lazy_variable, open_h5
from dpot_lab.data.schema import SPATIAL, plain

log = logging.getLogger(__name__)

FIELD_GROUPS = ("t0_fields", "t1_fields", "t2_fields")


def detect(f: h5py.File) -> tuple[bool, str]:
    """Is ``f`` a file of The Well? -> (ok, what is missing). ``dimensions/`` and at least one
    of the field groups are needed; a missing field group reads as one with no fields."""
    if "dimensions" in f and any(g in f for g in FIELD_GROUPS):
        return True, ""
    missing = [g for g in ("dimensions", *FIELD_GROUPS) if g not in f]
    return False, "groups " + ", ".join(f"'{g}/'" for g in missing)


def _names(group: h5py.Group) -> list[str]:
    names = plain(group.attrs.get("field_names", []))
    return [names] if isinstance(names, str) else [str(n) for n in names]


def _flag(obj: h5py.HLObject, key: str, default: bool) -> bool:
    return bool(obj.attrs[key]) if key in obj.attrs else default


def open(path: str | os.PathLike) -> xr.Dataset:
    """Read a file of The Well lazily, with all its fields, scalars and grids."""
    path = Path(path).resolve()
    f = open_h5(path)
    ok, missing = detect(f)
    if not ok:
        raise ValueError(f"{path}: not a file of The Well (missing {missing})")
    dims_group = f["dimensions"]
    names = plain(
        dims_group.attrs.get("spatial_dims", list(SPATIAL[: f.attrs.get("n_spatial_dims", 2)]))
    )
    names = [names] if isinstance(names, str) else [str(n) for n in names]
    if len(names) > len(SPATIAL):
        raise ValueError(f"{path}: {len(names)} spatial dims {names}; at most 3 are supported")
    rename = dict(zip(names, SPATIAL, strict=False))  # file's dim name -> x, y, z
    attrs = {**plain_attrs(f), "pde": str(plain(f.attrs.get("dataset_name", "unknown")))}
    attrs["source_format"] = "the_well"
    if names != list(SPATIAL[: len(names)]):
        attrs["spatial_dims"] = names

    data_vars: dict[str, xr.Variable] = {}
    coords: dict[str, np.ndarray] = {}
    for name in ["time", *names]:
        if name not in dims_group:
            continue
        dset = dims_group[name]
        dim = rename.get(name, name)
        lead = _lead(dset, default_sample=False, default_time=False)
        if name == "time":
            lead = tuple(d for d in lead if d != "time")
        values = np.asarray(dset[()])
        if not lead:
            coords[dim] = values
        else:
            data_vars[f"{dim}_per_{'_'.join(lead)}"] = xr.Variable((*lead, dim), values)

    for order, group_name in enumerate(FIELD_GROUPS):
        group = f.get(group_name)
        for name in _names(group) if group is not None else []:
            data_vars.update(_field(path, group, name, order, names, rename))

    if "scalars" in f:
        for name in _names(f["scalars"]):
            dset = _listed(path, f["scalars"], name)
            lead = _lead(dset, default_sample=False, default_time=False)
            if not lead:
                attrs.setdefault(name, plain(dset[()]))
            else:
                key = name if name not in data_vars else f"scalar_{name}"
                data_vars[key] = xr.Variable(lead, np.asarray(dset[()]))

    for name, bc in f.get("boundary_conditions", {}).items():
        kind = str(plain(bc.attrs.get("bc_type", "unknown"))).lower()
        bc_dims = plain(bc.attrs.get("associated_dims", []))
        bc_dims = [bc_dims] if isinstance(bc_dims, str) else bc_dims
        attrs[f"bc_{name}"] = f"{kind}:" + ",".join(rename.get(str(d), str(d)) for d in bc_dims)
    log.info("%s: The Well '%s', %d variables", path, attrs["pde"], len(data_vars))
    # Variables with the most axes (the fields) first, so that the Dataset's dims read
    # (sample, time, x, y[, z]) even when a constant field or a per-sample grid is listed first.
    data_vars = dict(sorted(data_vars.items(), key=lambda item: -item[1].ndim))
    try:
        return xr.Dataset(data_vars, coords=coords, attrs=attrs)
    except ValueError as exc:  # e.g. 'dimensions/time' or a scalar disagrees with the fields on T
        raise ValueError(f"{path}: {exc}") from None


def _listed(path: Path, group: h5py.Group, name: str) -> h5py.Dataset:
    """The dataset ``name`` that ``group``'s ``field_names`` lists."""
    if not isinstance(group.get(name), h5py.Dataset):
        raise ValueError(
            f"{path}: '{group.name}' lists '{name}' in its field_names, but has no dataset "
            f"'{group.name}/{name}'"
        )
    return group[name]


def _lead(dset: h5py.Dataset, default_sample: bool, default_time: bool) -> tuple[str, ...]:
    """The leading dims a Well dataset has: ("sample"?, "time"?)."""
    return (("sample",) if _flag(dset, "sample_varying", default_sample) else ()) + (
        ("time",) if _flag(dset, "time_varying", default_time) else ()
    )


def _field(
    path: Path, group: h5py.Group, name: str, order: int, names: list[str], rename: dict
) -> dict[str, xr.Variable]:
    """The variables of one field: itself (order 0) or one per vector/tensor component."""
    dset = _listed(path, group, name)
    lead = _lead(dset, default_sample=True, default_time=True)
    varying = plain(dset.attrs.get("dim_varying", [True] * len(names)))
    varying = [bool(v) for v in (varying if isinstance(varying, list) else [varying])]
    space = tuple(rename[n] for n, v in zip(names, varying, strict=True) if v)
    # a dim that does not vary is left out of the stored array, or kept with size 1: pinned
    kept = dset.ndim == len(lead) + len(names) + order and len(space) < len(names)
    pinned = {len(lead) + i: 0 for i, v in enumerate(varying) if not v} if kept else {}
    n_axes = len(lead) + (len(names) if kept else len(space))
    expected = (*lead, *space) + ("D",) * order
    if (
        dset.ndim != n_axes + order
        or any(n != len(names) for n in dset.shape[n_axes:])
        or any(dset.shape[a] != 1 for a in pinned)
    ):
        raise ValueError(
            f"{path}: field '{group.name}/{name}' has shape {dset.shape}, expected axes "
            f"{expected} with D = {len(names)} (a dim that does not vary left out or of size 1)"
        )
    key = f"{group.name}/{name}"
    if order == 0:
        return {name: lazy_variable((*lead, *space), H5Array([(path, key)], fixed=pinned))}
    out = {}
    axes = SPATIAL[: len(names)]
    for comp in itertools.product(range(len(names)), repeat=order):
        fixed = {**pinned, **{n_axes + i: c for i, c in enumerate(comp)}}
        suffix = "".join(axes[c] for c in comp)
        out[f"{name}_{suffix}"] = lazy_variable(
            (*lead, *space), H5Array([(path, key)], fixed=fixed)
        )
    return out
