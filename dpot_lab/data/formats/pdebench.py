"""PDEBench files, in their three layouts.

- per-sample groups (``.h5``: diffusion-reaction, shallow water, diffusion-sorption): groups
  ``'0000'``, ``'0001'``, … each with ``data`` (T, X[, Y], C), ``grid/x``, ``grid/y``, ``grid/t``
  and a YAML ``config`` attr;
- top-level arrays (``.hdf5``): compressible NS ``density``, ``Vx``[/``Vy``/``Vz``: one per
  spatial dim], ``pressure`` (N, T, X[, Y, Z]); incompressible NS ``velocity`` (B, T, X, Y, 2),
  ``particles`` (B, T, X, Y, 1), ``force`` (B, X, Y, 2), ``t`` (B, T); 1D ``tensor`` (N, T, X).

A per-sample-groups file says which PDE it holds only through its name (``2D_diff-react_…``,
``2D_rdb_…``) or the name its ``config`` gives; otherwise ``pde`` is ``"unknown"`` and the
channels are named by their count, a guess kept in the attr ``field_names_guessed`` and warned.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from pathlib import Path

import h5py
import numpy as np
import xarray as xr

from dpot_lab.data.formats import frame_coord, plain_attrs
from dpot_lab.data.lazy import H5Array, lazy_variable, open_h5
from dpot_lab.data.schema import SPATIAL, plain

log = logging.getLogger(__name__)

# File-name fragments -> (pde, field names of the channel axis), for the per-sample groups.
_GROUP_PDES = (
    (("diff-react", "diff_react", "diffusion-reaction"), "diffusion_reaction", ("u", "v")),
    (("rdb", "swe", "shallow"), "shallow_water", ("h",)),
    (("diff-sorp", "diff_sorp", "diffusion-sorption"), "diffusion_sorption", ("u",)),
)
# Without a telling name, the channels of a 2D groups file are named by their count.
_BY_CHANNELS = {2: ("u", "v"), 1: ("h",)}


def _groups(f: h5py.File) -> list[str]:
    """Sample groups (those holding a ``data`` dataset), in numeric order."""
    names = [k for k, v in f.items() if isinstance(v, h5py.Group) and "data" in v]
    return sorted(names, key=lambda k: (0, int(k)) if k.isdigit() else (1, k))


def _layout(f: h5py.File) -> str | None:
    if "density" in f and "Vx" in f and "pressure" in f:
        return "cfd"
    if "velocity" in f:
        return "incompressible"
    if "tensor" in f:
        return "tensor"
    if _groups(f):
        return "groups"
    return None


def detect(f: h5py.File) -> tuple[bool, str]:
    """Is ``f`` a PDEBench file? -> (ok, what is missing)."""
    if _layout(f) is not None:
        return True, ""
    return False, (
        "per-sample groups with 'data' (T, X, Y, C), or top-level 'density'+'Vx'+'pressure', "
        "'velocity', or 'tensor'"
    )


def open(path: str | os.PathLike, fields: list[str] | None = None) -> xr.Dataset:
    """Read a PDEBench file lazily. ``fields`` names the channels of a per-sample-groups file
    (default: from the file name, else from the channel count)."""
    path = Path(path).resolve()
    f = open_h5(path)
    layout = _layout(f)
    if layout is None:
        raise ValueError(f"{path}: not a PDEBench file (missing {detect(f)[1]})")
    if fields is not None and layout != "groups":
        raise ValueError(f"{path}: fields= applies only to per-sample-groups PDEBench files")
    reader = {
        "groups": _open_groups,
        "cfd": _open_cfd,
        "incompressible": _open_incompressible,
        "tensor": _open_tensor,
    }[layout]
    ds = reader(path, f, fields) if layout == "groups" else reader(path, f)
    ds.attrs["source_format"] = "pdebench"
    n_space = sum(d in ds.dims for d in SPATIAL)
    if n_space != 2:
        ds.attrs["n_spatial_dims"] = n_space
    log.info("%s: PDEBench %s layout, %s", path, layout, dict(ds.sizes))
    return ds


def _open_groups(path: Path, f: h5py.File, fields: list[str] | None) -> xr.Dataset:
    groups = _groups(f)
    empty = [k for k in f if k.isdigit() and k not in groups]
    if empty:
        raise ValueError(f"{path}: sample group(s) {empty[:5]} have no 'data' like '{groups[0]}'")
    first = f[groups[0]]
    shape = first["data"].shape  # (T, *S, C)
    if not 3 <= len(shape) <= 5:
        raise ValueError(
            f"{path}: '{groups[0]}/data' has shape {shape}, expected (T, X[, Y, Z], C)"
        )
    n_space, n_channels = len(shape) - 2, shape[-1]
    space = SPATIAL[:n_space]
    config = plain(first.attrs["config"]) if "config" in first.attrs else None
    pde, names, guess = _group_names(path, str(config or ""), n_space, n_channels, fields)
    attrs: dict = {"pde": pde}
    if guess:
        attrs["field_names_guessed"] = guess
        warnings.warn(f"{path}: {guess}", stacklevel=2)
    sources = [(path, f"{g}/data") for g in groups]
    data_vars = {
        name: lazy_variable(
            ("sample", "time", *space), H5Array(sources, stacked=True, fixed={n_space + 1: c})
        )
        for c, name in enumerate(names)
    }
    coords = {}
    grid = first.get("grid", {})
    for dim, n in zip(space, shape[1:-1], strict=True):
        if dim in grid:
            coords[dim] = _axis_coord(path, f"{groups[0]}/grid/{dim}", grid[dim][()], n)
    if "t" in grid:
        coords["time"] = frame_coord(path, f"{groups[0]}/grid/t", grid["t"][()], shape[0])
    if config is not None:
        attrs["config"] = config
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def _group_names(
    path: Path, config: str, n_space: int, n_channels: int, fields: list[str] | None
) -> tuple[str, tuple[str, ...], str]:
    """(pde, one name per channel, what was guessed: "" when nothing). The PDE comes from the
    file name or a ``name:`` line of its ``config``, never from the channel count alone."""
    named = " ".join([path.name, *re.findall(r"^\s*name:\s*(\S+)", config, re.M)]).lower()
    known = next(((p, n) for keys, p, n in _GROUP_PDES if any(k in named for k in keys)), None)
    pde = known[0] if known else "unknown"
    if fields is not None:
        if len(fields) != n_channels:
            raise ValueError(
                f"{path}: fields={list(fields)} names {len(fields)} channels, "
                f"the file's 'data' has {n_channels}"
            )
        return pde, tuple(fields), ""
    if known and len(known[1]) == n_channels:
        return pde, known[1], ""
    names = _BY_CHANNELS.get(n_channels) if n_space == 2 else None
    names = names or tuple(f"c{i}" for i in range(n_channels))
    why = (
        f"a {pde} file has {len(known[1])} channel(s)"
        if known
        else "neither the file name nor its config names the PDE"
    )
    guess = f"field names {names} guessed from {n_channels} channel(s) ({why})"
    return pde, names, guess + "; pass fields=[...] to name them"


def _axis_coord(path: Path, key: str, values: np.ndarray, n: int) -> np.ndarray:
    values = np.asarray(values).ravel()
    if len(values) != n:
        raise ValueError(f"{path}: '{key}' has {len(values)} entries, expected {n}")
    return values


def _space_coords(path: Path, f: h5py.File, space: tuple[str, ...], sizes) -> dict:
    """Coordinates from top-level ``x-coordinate``, ``y-coordinate``, ``z-coordinate``."""
    out = {}
    for dim, n in zip(space, sizes, strict=True):
        key = f"{dim}-coordinate"
        if key in f:
            out[dim] = _axis_coord(path, key, f[key][()], n)
    return out


def _open_cfd(path: Path, f: h5py.File) -> xr.Dataset:
    shape = f["density"].shape  # (N, T, *S)
    if not 3 <= len(shape) <= 5:
        raise ValueError(f"{path}: 'density' has shape {shape}, expected (N, T, X[, Y, Z])")
    space = SPATIAL[: len(shape) - 2]
    keys = ("density", *(f"V{d}" for d in space), "pressure")  # one velocity per spatial dim
    missing = [k for k in keys if k not in f]
    if missing:
        raise ValueError(
            f"{path}: no {missing}; a {len(space)}D compressible NS file has {list(keys)}, "
            f"each (N, T, {', '.join(d.upper() for d in space)}) like 'density'"
        )
    data_vars = {}
    for key in keys:
        if f[key].shape != shape:
            raise ValueError(
                f"{path}: '{key}' has shape {f[key].shape}, expected {shape} like 'density'"
            )
        data_vars[key.lower()] = lazy_variable(("sample", "time", *space), H5Array([(path, key)]))
    coords = _space_coords(path, f, space, shape[2:])
    if "t-coordinate" in f:
        coords["time"] = frame_coord(path, "t-coordinate", f["t-coordinate"][()], shape[1])
    attrs = {**plain_attrs(f), "pde": "compressible_navier_stokes"}
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def _check_shape(path: Path, f: h5py.File, key: str, shape: tuple, axes: str) -> None:
    """Raise naming ``key`` unless ``f[key]`` has ``shape`` (``axes``: its axes, in words)."""
    if f[key].shape != shape:
        raise ValueError(f"{path}: '{key}' has shape {f[key].shape}, expected {axes} = {shape}")


def _open_incompressible(path: Path, f: h5py.File) -> xr.Dataset:
    shape = f["velocity"].shape  # (B, T, X, Y, 2)
    if len(shape) != 5 or shape[-1] != 2:
        raise ValueError(f"{path}: 'velocity' has shape {shape}, expected (B, T, X, Y, 2)")
    dims = ("sample", "time", "x", "y")
    data_vars = {
        name: lazy_variable(dims, H5Array([(path, "velocity")], fixed={4: c}))
        for c, name in enumerate(("vx", "vy"))
    }
    if "particles" in f:
        _check_shape(path, f, "particles", (*shape[:4], 1), "(B, T, X, Y, 1)")
        data_vars["particles"] = lazy_variable(dims, H5Array([(path, "particles")], fixed={4: 0}))
    if "force" in f:
        _check_shape(path, f, "force", (shape[0], *shape[2:]), "(B, X, Y, 2), no T axis")
        for c, name in enumerate(("force_x", "force_y")):
            array = H5Array([(path, "force")], fixed={3: c})  # (B, X, Y, 2) -> (B, X, Y)
            data_vars[name] = lazy_variable(("sample", "x", "y"), array)
    coords = {}
    if "t" in f:
        t = np.asarray(f["t"][()])  # (B, T)
        if t.shape != shape[:2]:
            raise ValueError(f"{path}: 't' has shape {t.shape}, expected (B, T) = {shape[:2]}")
        if (t == t[:1]).all():
            coords["time"] = t[0]
        else:
            data_vars["time_per_sample"] = xr.Variable(("sample", "time"), t)
    attrs = {**plain_attrs(f), "pde": "incompressible_navier_stokes"}
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def _open_tensor(path: Path, f: h5py.File) -> xr.Dataset:
    shape = f["tensor"].shape  # (N, T, X[, Y, Z])
    if not 3 <= len(shape) <= 5:
        raise ValueError(f"{path}: 'tensor' has shape {shape}, expected (N, T, X[, Y, Z])")
    space = SPATIAL[: len(shape) - 2]
    data_vars = {"u": lazy_variable(("sample", "time", *space), H5Array([(path, "tensor")]))}
    coords = _space_coords(path, f, space, shape[2:])
    if "t-coordinate" in f:
        coords["time"] = frame_coord(path, "t-coordinate", f["t-coordinate"][()], shape[1])
    match = re.match(r"\d+D_(.+?)_Sols", path.name)
    pde = match.group(1).lower().replace("-", "_") if match else "unknown"
    return xr.Dataset(data_vars, coords=coords, attrs={**plain_attrs(f), "pde": pde})
