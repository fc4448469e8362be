"""DPOT's own unified layout: HDF5 key ``data`` shaped (X, Y[, Z], T, C), one file per sample
(``…/data_{i}.hdf5``), or one file with (N, X, Y[, Z], T, C). Channels become variables
``c0 … c{C-1}`` unless ``fields=[...]`` names them.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import h5py
import xarray as xr

from dpot_lab.data.lazy import H5Array, lazy_variable, open_h5
from dpot_lab.data.schema import SPATIAL

log = logging.getLogger(__name__)


def detect(f: h5py.File) -> tuple[bool, str]:
    """Is ``f`` in DPOT's unified layout? -> (ok, what is missing)."""
    data = f.get("data")
    if isinstance(data, h5py.Dataset) and 4 <= data.ndim <= 6:
        return True, ""
    found = f"; 'data' has shape {data.shape}" if isinstance(data, h5py.Dataset) else ""
    return False, f"dataset 'data' (X, Y, T, C) or (N, X, Y, T, C){found}"


def sort_files(paths: Sequence[Path]) -> list[Path]:
    """Per-sample files in sample order: by the ``i`` of ``data_{i}.hdf5``, then by name."""

    def key(p: Path) -> tuple[int, int, str]:
        match = re.search(r"(\d+)(?=\.[^.]*$)", p.name)
        return (0, int(match.group(1)), p.name) if match else (1, 0, p.name)

    return sorted(paths, key=key)


def open(
    path: str | os.PathLike | Sequence[str | os.PathLike],
    fields: Sequence[str] | None = None,
    spatial_dims: int | None = None,
    pde: str = "unknown",
) -> xr.Dataset:
    """Read one file, or several per-sample files stacked along ``sample``, lazily.

    ``spatial_dims`` (2 or 3) says how to read ``data`` when its rank is ambiguous: a 5-D array
    is (N, X, Y, T, C) by default, or one 3D sample (X, Y, Z, T, C) with ``spatial_dims=3``.
    """
    many = not isinstance(path, str | os.PathLike)
    paths = [Path(p).resolve() for p in (path if many else [path])]
    if not paths:
        raise ValueError("no DPOT files given")
    f = open_h5(paths[0])
    ok, missing = detect(f)
    if not ok:
        raise ValueError(f"{paths[0]}: not in DPOT's unified layout (missing {missing})")
    ndim = f["data"].ndim
    per_sample = many or (ndim == 4 or (ndim == 5 and spatial_dims == 3))
    n_space = ndim - 2 if per_sample else ndim - 3
    if n_space not in (2, 3) or (spatial_dims is not None and spatial_dims != n_space):
        raise ValueError(
            f"{paths[0]}: 'data' has shape {f['data'].shape}; expected (X, Y[, Z], T, C) per "
            f"sample or (N, X, Y[, Z], T, C)"
            + (f" with {spatial_dims} spatial dims" if spatial_dims else "")
        )
    n_channels = f["data"].shape[-1]
    names = tuple(fields) if fields is not None else tuple(f"c{i}" for i in range(n_channels))
    if len(names) != n_channels:
        raise ValueError(
            f"{paths[0]}: fields={list(names)} names {len(names)} channels, 'data' has {n_channels}"
        )
    space = SPATIAL[:n_space]
    first = 0 if per_sample else 1  # first spatial axis in the stored array
    time_axis, channel_axis = first + n_space, first + n_space + 1
    order = (*(() if per_sample else (0,)), time_axis, *range(first, first + n_space))
    sources = [(p, "data") for p in paths]
    data_vars = {
        name: lazy_variable(
            ("sample", "time", *space),
            H5Array(sources, stacked=per_sample, order=order, fixed={channel_axis: c}),
        )
        for c, name in enumerate(names)
    }
    log.info("%s: DPOT unified layout, %d file(s), %s", paths[0], len(paths), f["data"].shape)
    attrs = {"pde": pde, "source_format": "dpot_unified"}
    if n_space != 2:
        attrs["n_spatial_dims"] = n_space
    return xr.Dataset(data_vars, attrs=attrs)
