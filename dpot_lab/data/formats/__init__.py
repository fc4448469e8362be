"""Readers for peer data formats. Each module has ``detect(h5file) -> (ok, missing)`` and
``open(path, **kw) -> xarray.Dataset`` returning a lazily read Dataset in the data model."""

from __future__ import annotations

import os

import h5py
import numpy as np

from dpot_lab.data.schema import plain


def plain_attrs(obj: h5py.HLObject) -> dict:
    """All attrs of an h5py object as plain Python values."""
    return {str(k): plain(v) for k, v in obj.attrs.items()}


def frame_coord(path: str | os.PathLike, key: str, values: np.ndarray, n_frames: int) -> np.ndarray:
    """A time coordinate with one entry per frame. Some writers store one more time than frames
    (PDEBench CFD: T+1 entries); the first ``n_frames`` are kept."""
    values = np.asarray(values).ravel()
    if len(values) == n_frames + 1:
        values = values[:n_frames]
    if len(values) != n_frames:
        raise ValueError(f"{path}: '{key}' has {len(values)} entries, expected {n_frames} frames")
    return values
