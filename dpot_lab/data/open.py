"""``open_dataset``: any supported file (or folder of DPOT per-sample files) -> a lazily read
Dataset in the data model (see :mod:`dpot_lab.data.schema`)."""

from __future__ import annotations

import glob
import inspect
import logging
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from types import ModuleType

import h5py
import numpy as np
import xarray as xr

from dpot_lab.data import native
from dpot_lab.data.formats import dpot_unified, fno, pdearena, pdebench, the_well
from dpot_lab.data.lazy import close_files, open_h5
from dpot_lab.data.schema import SAMPLE, validate

log = logging.getLogger(__name__)

# Detection order: the most specific layouts first.
FORMATS: dict[str, ModuleType] = {
    "native": native,
    "the_well": the_well,
    "pdearena": pdearena,
    "pdebench": pdebench,
    "fno": fno,
    "dpot_unified": dpot_unified,
}
PER_SAMPLE_PATTERNS = ("data_*.hdf5", "data_*.h5")


def _files(path: str | os.PathLike | Sequence[str | os.PathLike]) -> tuple[list[Path], bool]:
    """(files, whether they are a set of per-sample files) for a file, folder, glob or list."""
    if not isinstance(path, str | os.PathLike):
        return [Path(p) for p in path], True
    p = Path(path)
    if p.is_dir():
        found = sorted({f for pattern in PER_SAMPLE_PATTERNS for f in p.glob(pattern)})
        if not found:
            raise ValueError(f"{p}: folder has no DPOT per-sample files {PER_SAMPLE_PATTERNS}")
        return found, True
    if not p.exists() and glob.has_magic(str(path)):
        found = sorted(Path(f) for f in glob.glob(str(path)))
        if not found:
            raise ValueError(f"{path}: no file matches this pattern")
        return found, len(found) > 1
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder")
    return [p], False


def _call(name: str, path: object, kw: dict) -> xr.Dataset:
    """``FORMATS[name].open(path, **kw)``, with a clear error for an option it does not take."""
    reader = FORMATS[name].open
    try:
        inspect.signature(reader).bind(path, **kw)
    except TypeError:
        takes = [p for p in inspect.signature(reader).parameters if p != "path"]
        raise ValueError(
            f"{path}: format '{name}' does not take option(s) {sorted(kw)}; it takes {takes}"
        ) from None
    return reader(path, **kw)


def detect_format(path: str | os.PathLike) -> str:
    """The name of the format of the file ``path``; ValueError listing each layout tried and
    what it missed when none fits."""
    path = Path(path).resolve()
    if not h5py.is_hdf5(path):
        if fno.is_v5(path):
            return "fno"
        raise ValueError(
            f"{path}: neither HDF5 (or MATLAB v7.3) nor a MATLAB v5 .mat file; "
            "it may be truncated or in an unsupported format"
        )
    f = open_h5(path)
    tried = []
    for name, module in FORMATS.items():
        ok, missing = module.detect(f)
        if ok:
            return name
        tried.append(f"{name} (missing {missing})")
    raise ValueError(
        f"{path}: unknown layout; top-level keys {sorted(f)[:12]}. Tried: " + "; ".join(tried)
    )


def open_dataset(
    path: str | os.PathLike | Sequence[str | os.PathLike], format: str | None = None, **kw
) -> xr.Dataset:
    """Open a PDE data file lazily as an xarray Dataset (sample, time, x, y[, z]).

    ``path``: a file in any supported format (``FORMATS``), a folder or glob of DPOT per-sample
    files ``data_{i}.hdf5``, or a list of such files. ``format`` skips auto-detection. Other
    keywords go to the format's reader, e.g. ``split="valid"`` (PDEArena), ``fields=[...]``
    (names for unnamed channels). The result has a ``sample`` coordinate (the file's own labels,
    else 0 … N-1), so a subset keeps its labels. Only the coordinates are read now; indexing the
    result (``.isel(sample=..., time=...)``) reads just the frames asked for.
    """
    files, per_sample = _files(path)
    if format is not None and format not in FORMATS:
        raise ValueError(f"unknown format '{format}'; known formats are {list(FORMATS)}")
    close = partial(close_files, [str(Path(f).resolve()) for f in files])
    try:
        ds = _open(path, files, per_sample, format, kw)
    except BaseException:
        close()  # leave no handle open on a file the user may now fix or rewrite
        raise
    ds.set_close(close)
    return ds


def _open(path, files: list[Path], per_sample: bool, format: str | None, kw: dict) -> xr.Dataset:
    """Pick the reader (given, the per-sample layout, or detected), read and validate."""
    if per_sample:
        if format not in (None, "dpot_unified"):
            raise ValueError(
                f"{path}: several files can only be read as 'dpot_unified' per-sample files"
            )
        files = dpot_unified.sort_files(files)
        name, source, target = "dpot_unified", str(path), files
    else:
        name = format or detect_format(files[0])
        source, target = str(files[0]), files[0]
    ds = _call(name, target, kw)
    if SAMPLE in ds.dims and SAMPLE not in ds.coords:  # labels that survive selection
        ds = ds.assign_coords({SAMPLE: np.arange(ds.sizes[SAMPLE])})
    ds.encoding["source"] = source  # as xarray's open_dataset does; error messages name it
    validate(ds, source)
    log.info("opened %s as %s: %s", source, name, dict(ds.sizes))
    return ds
