"""PDEArena 2D Navier–Stokes smoke files (``NavierStokes2D_{train,valid,test}_{seed}_….h5``).

One group ``train``, ``valid`` or ``test`` holding ``u`` (smoke density), ``vx``, ``vy`` each
(N, T, X, Y) float64, ``t`` (N, T), ``x`` (N, X), ``y`` (N, Y), ``dt``, ``dx``, ``dy`` and
``buo_y`` (N,). Fields are presented as float32 ``density``, ``vx``, ``vy``; ``dt``/``dx``/``dy``
become attrs when equal across samples.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import h5py
import numpy as np
import xarray as xr

from dpot_lab.data.lazy import H5Array, lazy_variable, open_h5
from dpot_lab.data.schema import plain

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
_FIELDS = {"u": "density", "vx": "vx", "vy": "vy"}


def _splits(f: h5py.File) -> list[str]:
    return [s for s in SPLITS if s in f and isinstance(f[s], h5py.Group) and "u" in f[s]]


def detect(f: h5py.File) -> tuple[bool, str]:
    """Is ``f`` a PDEArena NS file? -> (ok, what is missing)."""
    if _splits(f):
        return True, ""
    return False, "a group 'train', 'valid' or 'test' holding 'u' (N, T, X, Y)"


def open(
    path: str | os.PathLike, split: str | None = None, dtype: str | None = "float32"
) -> xr.Dataset:
    """Read a PDEArena NS file lazily. ``split``: the group to read (default: the first
    present); ``dtype``: fields are cast to it on read (None keeps float64)."""
    path = Path(path).resolve()
    f = open_h5(path)
    present = _splits(f)
    if not present:
        raise ValueError(f"{path}: not a PDEArena file (missing {detect(f)[1]})")
    split = present[0] if split is None else split
    if split not in present:
        raise ValueError(f"{path}: no split '{split}'; the file has {present}")
    g = f[split]
    shape = g["u"].shape  # (N, T, X, Y)
    if len(shape) != 4:
        raise ValueError(f"{path}: '{split}/u' has shape {shape}, expected (N, T, X, Y)")
    dims = ("sample", "time", "x", "y")
    data_vars = {}
    for key, name in _FIELDS.items():
        if key in g:
            if g[key].shape != shape:
                raise ValueError(
                    f"{path}: '{split}/{key}' has shape {g[key].shape}, expected {shape}"
                )
            data_vars[name] = lazy_variable(dims, H5Array([(path, f"{split}/{key}")], dtype=dtype))
    coords = {}
    for key, dim, n in (("t", "time", shape[1]), ("x", "x", shape[2]), ("y", "y", shape[3])):
        if key not in g:
            continue
        values = np.asarray(g[key][()])  # (N, n)
        if values.shape != (shape[0], n):
            raise ValueError(
                f"{path}: '{split}/{key}' has shape {values.shape}, expected {(shape[0], n)}"
            )
        if (values == values[:1]).all():
            coords[dim] = values[0]
        else:  # grids differ between samples: keep them per sample
            data_vars[f"{dim}_per_sample"] = xr.Variable(("sample", dim), values)
    if "buo_y" in g:
        data_vars["buo_y"] = xr.Variable(("sample",), np.asarray(g["buo_y"][()]).reshape(shape[0]))
    attrs: dict = {"pde": "navier_stokes_smoke", "source_format": "pdearena", "split": split}
    for key in ("dt", "dx", "dy"):  # the PDEArena writer stores one per sample
        if key in g:
            values = np.asarray(g[key][()]).ravel()
            if values.size and (values == values[0]).all():
                attrs[key] = plain(values[0])
            else:
                data_vars[key] = xr.Variable(("sample",), values.reshape(shape[0]))
    log.info("%s: PDEArena split '%s', %s", path, split, dict(zip(dims, shape, strict=True)))
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)
