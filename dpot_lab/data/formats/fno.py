"""FNO Navier–Stokes ``.mat`` files (``NavierStokes_V1e-5_N1200_T20.mat`` and friends).

Keys: ``u`` vorticity, MATLAB (N, X, Y, T); ``a`` initial vorticity (N, X, Y); ``t`` times.
MATLAB v7.3 files are HDF5 (behind a 512-byte header) that store every axis reversed, so h5py
sees ``u`` as (T, Y, X, N); they are read lazily. Older v5 files are read whole with scipy.
Presented as ``vorticity`` (sample, time, x, y) and ``initial_vorticity`` (sample, x, y).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import h5py
import numpy as np
import xarray as xr

from dpot_lab.data.formats import frame_coord
from dpot_lab.data.lazy import H5Array, lazy_variable, open_h5

log = logging.getLogger(__name__)

V5_HEADER = b"MATLAB 5.0 MAT-file"


def detect(f: h5py.File) -> tuple[bool, str]:
    """Is ``f`` an FNO v7.3 ``.mat`` file? -> (ok, what is missing)."""
    is_mat = f.userblock_size >= 128 or str(f.filename).lower().endswith(".mat")
    u = f.get("u")
    if isinstance(u, h5py.Dataset) and u.ndim == 4 and is_mat:
        return True, ""
    found = f"; 'u' has shape {u.shape}" if isinstance(u, h5py.Dataset) else ""
    return False, f"a MATLAB v7.3 file (.mat or 512-byte header) with 4-D 'u'{found}"


def is_v5(path: str | os.PathLike) -> bool:
    """True when ``path`` starts with a MATLAB v5 header."""
    with Path(path).open("rb") as fh:
        return fh.read(len(V5_HEADER)) == V5_HEADER


def _attrs(path: Path) -> dict:
    attrs: dict = {"pde": "navier_stokes_vorticity", "source_format": "fno"}
    match = re.search(r"_V(\d+(?:\.\d+)?(?:e-?\d+)?)", path.name)
    if match:
        attrs["nu"] = float(match.group(1))
    return attrs


def open(path: str | os.PathLike) -> xr.Dataset:
    """Read an FNO Navier–Stokes ``.mat`` file: v7.3 lazily through h5py, v5 with scipy."""
    path = Path(path).resolve()
    if is_v5(path):
        return _open_v5(path)
    f = open_h5(path)
    ok, missing = detect(f)
    if not ok:
        raise ValueError(f"{path}: not an FNO .mat file (missing {missing})")
    u = f["u"]  # (T, Y, X, N): MATLAB (N, X, Y, T) reversed
    n_frames = u.shape[0]
    data_vars = {
        # stored axes (T=0, Y=1, X=2, N=3) presented as (sample, time, x, y)
        "vorticity": lazy_variable(
            ("sample", "time", "x", "y"), H5Array([(path, "u")], order=(3, 0, 2, 1))
        )
    }
    if "a" in f:
        a = f["a"]  # (Y, X, N)
        if a.ndim != 3 or a.shape[::-1] != (u.shape[3], u.shape[2], u.shape[1]):
            raise ValueError(
                f"{path}: 'a' has MATLAB shape {a.shape[::-1]}, expected (N, X, Y) = "
                f"{(u.shape[3], u.shape[2], u.shape[1])}"
            )
        array = H5Array([(path, "a")], order=(2, 1, 0))
        data_vars["initial_vorticity"] = lazy_variable(("sample", "x", "y"), array)
    coords = {"time": frame_coord(path, "t", f["t"][()], n_frames)} if "t" in f else {}
    log.info("%s: FNO v7.3, %d samples x %d frames", path, u.shape[3], n_frames)
    return xr.Dataset(data_vars, coords=coords, attrs=_attrs(path))


def _open_v5(path: Path) -> xr.Dataset:
    """A v5 ``.mat`` file, read whole (the v5 format cannot be read in parts)."""
    try:
        from scipy.io import loadmat
    except ImportError as exc:
        raise ImportError(
            f"{path}: MATLAB v5 .mat files need scipy (pip install scipy, or dpot-lab[dev])"
        ) from exc
    mat = loadmat(path)
    if "u" not in mat or np.ndim(mat["u"]) != 4:
        found = f"'u' has shape {np.shape(mat['u'])}" if "u" in mat else "no 'u'"
        raise ValueError(f"{path}: expected a 4-D 'u' (N, X, Y, T) in the .mat file; {found}")
    u = mat["u"]  # (N, X, Y, T)
    data_vars = {"vorticity": (("sample", "time", "x", "y"), u.transpose(0, 3, 1, 2))}
    if "a" in mat:
        if mat["a"].shape != u.shape[:3]:
            raise ValueError(f"{path}: 'a' has shape {mat['a'].shape}, expected {u.shape[:3]}")
        data_vars["initial_vorticity"] = (("sample", "x", "y"), mat["a"])
    coords = {"time": frame_coord(path, "t", mat["t"], u.shape[3])} if "t" in mat else {}
    log.info("%s: FNO v5 (read whole), %d samples x %d frames", path, u.shape[0], u.shape[3])
    return xr.Dataset(data_vars, coords=coords, attrs=_attrs(path))
