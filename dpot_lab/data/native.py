"""The native on-disk format: HDF5 written with h5py, read back lazily into the same Dataset.

Layout (root attr ``dpot_lab_format = 1``):

- root attrs: the Dataset's attrs (``pde``, ``source_format``, parameters);
- one root dataset per data variable, e.g. ``vorticity`` (sample, time, x, y[, z]), chunked one
  frame per chunk ``(1, 1, X, Y[, Z])``; attr ``_dims`` names its dims;
- group ``coords/``: one dataset per coordinate, attr ``_dims`` likewise.

Attrs come back as Python scalars and lists (a tuple or 1-D array attr reads back as a list).
"""

from __future__ import annotations

import builtins
import io
import itertools
import logging
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from dpot_lab.atomic import atomic_path
from dpot_lab.data.lazy import H5Array, close_files, lazy_variable, open_h5
from dpot_lab.data.schema import plain, validate

log = logging.getLogger(__name__)

MARKER = "dpot_lab_format"
VERSION = 1
_DIMS = "_dims"  # per-dataset attr naming the dims
_DTYPE = "_numpy_dtype"  # per-dataset attr for datetime/timedelta stored as int64
_COORDS = "coords"
_BLOCK_BYTES = 64 << 20  # write this much of a variable at a time
_PROGRESS_BYTES = 1 << 30  # show a progress bar when saving more than this


def _attr_out(where: str, key: str, value: object) -> object:
    """An attr value as h5py stores it; ValueError for values the format cannot keep."""
    if isinstance(value, str | bool | int | float | complex | np.generic):
        return value
    if isinstance(value, list | tuple | np.ndarray):
        arr = np.asarray(value)
        if arr.ndim <= 1 and arr.dtype.kind in "biufcU":
            return [str(v) for v in arr] if arr.dtype.kind == "U" else arr
    raise ValueError(
        f"{where}: attr '{key}' = {value!r} ({type(value).__name__}) cannot be stored; "
        "expected a string, a number, or a flat list of them"
    )


def _write_attrs(target: h5py.HLObject, attrs: dict, where: str) -> None:
    for key, value in attrs.items():
        if key in (MARKER, _DIMS, _DTYPE):
            raise ValueError(f"{where}: attr name '{key}' is reserved by the native format")
        target.attrs[str(key)] = _attr_out(where, str(key), value)


def _read_attrs(source: h5py.HLObject) -> dict:
    return {k: plain(v) for k, v in source.attrs.items() if k not in (MARKER, _DIMS, _DTYPE)}


def _chunks(dims: tuple[str, ...], shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """One frame per chunk: 1 along sample and time, the full extent elsewhere."""
    if not shape or 0 in shape or not {"sample", "time"} & set(dims):
        return None
    return tuple(1 if d in ("sample", "time") else n for d, n in zip(dims, shape, strict=True))


def _create(
    group: h5py.Group,
    name: str,
    var: xr.Variable,
    shape: tuple[int, ...],
    path: Path,
    compression: str | None,
) -> h5py.Dataset:
    """An empty dataset ``group/name`` shaped ``shape`` for ``var``'s dtype, dims and attrs."""
    where = f"{path}: variable '{name}'"
    if "/" in name or name == _COORDS:
        raise ValueError(f"{where}: the name must not contain '/' or be '{_COORDS}'")
    kind = var.dtype.kind
    if kind not in "biufcUmM":
        raise ValueError(f"{where}: dtype {var.dtype} cannot be stored; expected numbers or text")
    chunks = _chunks(var.dims, shape) if kind not in "UmM" else None
    dtype = {"U": h5py.string_dtype(), "m": "int64", "M": "int64"}.get(kind, var.dtype)
    dset = group.create_dataset(
        name,
        shape=shape,
        dtype=dtype,
        chunks=chunks,
        compression=compression if chunks else None,
        track_order=True,
    )
    if kind in "mM":
        dset.attrs[_DTYPE] = str(var.dtype)
    dset.attrs[_DIMS] = [str(d) for d in var.dims]
    _write_attrs(dset, var.attrs, where)
    return dset


def _fill(
    dset: h5py.Dataset, var: xr.Variable, offset: int, bar: Callable[[int], None]
) -> tuple[set[int | None], int]:
    """Write ``var`` into ``dset`` from ``offset`` along its sample axis (else its first axis),
    a block of samples at a time, so lazily backed inputs stream. Returns the samples (file
    indices) and the number of frames that hold NaN/Inf."""
    if var.ndim == 0:
        dset[()] = _stored(var.values)
        return _non_finite(np.asarray(var.values), var.dims, offset)
    samples: set[int | None] = set()
    frames = 0
    axis = var.dims.index("sample") if "sample" in var.dims else 0
    n = var.shape[axis]
    per_index = var.nbytes // max(n, 1)
    block = max(1, _BLOCK_BYTES // max(per_index, 1))
    for start in range(0, n, block):
        part = slice(start, min(start + block, n))
        values = _stored(np.asarray(var.isel({var.dims[axis]: part}).values))
        dset[(slice(None),) * axis + (slice(offset + part.start, offset + part.stop),)] = values
        bar(int(per_index * (part.stop - part.start)))
        found = _non_finite(values, var.dims, offset + part.start)
        samples, frames = samples | found[0], frames + found[1]
    return samples, frames


def _non_finite(
    values: np.ndarray, dims: tuple[str, ...], first: int
) -> tuple[set[int | None], int]:
    """The samples (indices from ``first``; None without a sample axis) and the number of frames
    (one per sample and time) in which ``values`` (dims ``dims``) holds NaN/Inf."""
    if values.dtype.kind not in "fc" or np.isfinite(values).all():
        return set(), 0
    lead = [dims.index(d) for d in ("sample", "time") if d in dims]
    moved = np.moveaxis(values, lead, list(range(len(lead))))
    flags = ~np.isfinite(moved.reshape(*moved.shape[: len(lead)], -1)).all(-1)  # (S?, T?)
    if "sample" not in dims:
        return {None}, int(flags.sum())
    hit = flags.reshape(flags.shape[0], -1).any(-1)  # (S,)
    return {first + int(i) for i in np.flatnonzero(hit)}, int(flags.sum())


def _non_finite_report(path: Path, bad: dict[str, tuple[set[int | None], int]]) -> str:
    """The warning for a file saved with NaN/Inf: variable, samples and frames."""
    parts = []
    for name, (samples, frames) in bad.items():
        listed = sorted(s for s in samples if s is not None)
        where = f"samples {listed[:20]}" + (" …" if len(listed) > 20 else "") if listed else ""
        parts.append(f"'{name}' in {frames} frame(s)" + (f" of {where}" if where else ""))
    return (
        f"{path}: saved with NaN/Inf values: " + "; ".join(parts) + ". They are kept in the "
        "file; a training Mixture drops these samples (schema.check_finite)"
    )


def _stored(values: np.ndarray) -> np.ndarray:
    """Values as h5py stores them: text as objects, datetimes and timedeltas as int64."""
    if values.dtype.kind == "U":
        return values.astype(object)
    return values.view("int64") if values.dtype.kind in "mM" else values


def save(ds: xr.Dataset, path: str | os.PathLike, *, compression: str | None = None) -> Path:
    """Write ``ds`` to ``path`` in the native HDF5 format; returns the path.

    Fields (sample, time, x, y[, z]) are chunked one frame per chunk; ``compression`` is an h5py
    filter name ("gzip", "lzf") or None. The file is written to a temporary file in the same
    folder and moved into place, so an interrupted save never leaves a half-written file at
    ``path``. Lazily backed inputs are streamed a block of samples at a time.

    Values are written as they are: data variables with NaN/Inf (a diverged rollout, a masked
    region) are kept, and a warning names each such variable, its samples and how many frames
    hold them; a training ``Mixture`` drops those samples when it reads the file.
    """
    return save_parts([ds], path, ds.sizes.get("sample", 0), compression=compression)


def save_parts(
    parts: Iterable[xr.Dataset],
    path: str | os.PathLike,
    n_samples: int,
    *,
    compression: str | None = None,
) -> Path:
    """Write datasets that follow each other along ``sample`` (``n_samples`` in all) as one
    native file, holding one part in memory at a time; as ``save`` otherwise. Everything without
    a sample axis (coordinates, attrs) comes from the first part; later parts must agree."""
    path = Path(path)
    parts = iter(parts)
    first = next(parts, None)
    if first is None:
        raise ValueError(f"{path}: nothing to save (no parts)")
    projected = sum(v.nbytes for v in first.variables.values()) * n_samples
    projected //= max(first.sizes.get("sample", 1), 1)
    with (
        atomic_path(path) as tmp,
        _sink(tmp) as sink,
        h5py.File(sink, "w", track_order=True) as f,
        tqdm(total=projected, unit="B", unit_scale=True, desc=f"save {path.name}",
             disable=projected < _PROGRESS_BYTES) as bar,
    ):  # fmt: skip
        start, dsets = 0, {}
        bad: dict[str, tuple[set[int | None], int]] = {}  # variable -> (samples, frames) non-finite
        for k, ds in enumerate(itertools.chain([first], parts)):
            validate(ds, f"{path}: save")  # never write a file that open_dataset would refuse
            if k == 0:
                f.attrs[MARKER] = VERSION
                _write_attrs(f, ds.attrs, str(path))
                coords = f.create_group(_COORDS, track_order=True)
                for group, items in ((f, ds.data_vars.items()), (coords, ds.coords.items())):
                    for name, var in items:
                        v = var.variable
                        shape = tuple(n_samples if d == "sample" else n for d, n in v.sizes.items())
                        dsets[name] = _create(group, str(name), v, shape, path, compression)
            else:
                _check_part(ds, first, path, k)
            for name, dset in dsets.items():
                var = ds[name].variable
                if "sample" in var.dims or k == 0:
                    found = _fill(dset, var, start if "sample" in var.dims else 0, bar.update)
                    if name in ds.data_vars and found[1]:
                        samples, frames = bad.get(name, (set(), 0))
                        bad[name] = (samples | found[0], frames + found[1])
            start += ds.sizes.get("sample", 0)
            sink.check()  # a full disk stops the writing (and the generating) at once
        if start != n_samples:
            raise ValueError(f"{path}: the parts hold {start} samples, expected {n_samples}")
    if bad:
        warnings.warn(_non_finite_report(path, bad), stacklevel=3)
    log.info("saved %s (%d variables, %d samples)", path, len(dsets), n_samples)
    return path


class _Sink:
    """A binary file for h5py's ``fileobj`` driver whose writes never fail: the first OSError (a
    full disk) is kept in ``error`` and later writes are dropped. HDF5 so never sees a failed
    write, and the file always closes: a failed close would leave HDF5 a handle that crashes the
    interpreter at exit."""

    def __init__(self, raw: io.FileIO):
        self.raw, self.error = raw, None

    def _try(self, call: Callable, *args: Any, dropped: Any = None) -> Any:
        if self.error is None:
            try:
                return call(*args)
            except OSError as err:
                self.error = err
        return dropped

    def write(self, data: bytes) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view) and self.error is None:  # an unbuffered write may be partial
            done += self._try(self.raw.write, view[done:], dropped=0)
        return len(view)

    def truncate(self, size: int) -> int:
        return self._try(self.raw.truncate, size, dropped=size)

    def flush(self) -> None:
        self._try(self.raw.flush)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def read(self, size: int = -1) -> bytes:
        return self.raw.read(size)

    def readinto(self, buffer: Any) -> int:
        return self.raw.readinto(buffer)

    def check(self) -> None:
        """Raise the write error, if there was one."""
        if self.error is not None:
            raise self.error


@contextmanager
def _sink(tmp: Path) -> Iterator[_Sink]:
    """A ``_Sink`` on a new unbuffered file at ``tmp`` (so a seek never writes); a failed write is
    raised once the body is done (``sink.check()`` raises it earlier)."""
    with builtins.open(tmp, "w+b", buffering=0) as raw:
        sink = _Sink(raw)
        yield sink
    sink.check()


def _check_part(ds: xr.Dataset, first: xr.Dataset, path: Path, k: int) -> None:
    """ValueError unless part ``k`` has the first part's variables and sample-free values."""
    if set(ds.variables) != set(first.variables):
        raise ValueError(
            f"{path}: part {k} has variables {sorted(map(str, ds.variables))}, the first part "
            f"{sorted(map(str, first.variables))}"
        )
    for name, var in first.variables.items():
        if "sample" not in var.dims and not var.equals(ds.variables[name]):
            raise ValueError(f"{path}: part {k} differs from the first in '{name}'")
        if var.dims != ds.variables[name].dims:
            raise ValueError(f"{path}: part {k} has '{name}' with dims {ds.variables[name].dims}")


def to_netcdf(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Export ``ds`` to netCDF-4 through xarray (engine h5netcdf); returns the path.

    Bool attrs become 0/1 integers (netCDF has no bool attrs); fields are chunked one frame per
    chunk. Written to a temporary file first and moved into place.
    """
    path = Path(path)
    out = ds.copy()
    out.attrs = {k: int(v) if isinstance(v, bool | np.bool_) else v for k, v in ds.attrs.items()}
    encoding = {}
    for name, var in out.data_vars.items():
        chunks = _chunks(var.dims, var.shape)
        if chunks:
            encoding[name] = {"chunksizes": chunks}
    with atomic_path(path) as tmp, _sink(tmp) as sink:
        out.to_netcdf(sink, engine="h5netcdf", encoding=encoding)
    return path


def detect(f: h5py.File) -> tuple[bool, str]:
    """Is ``f`` a native dpot-lab file? -> (ok, what is missing)."""
    if MARKER in f.attrs:
        return True, ""
    return False, f"root attr '{MARKER}'"


def _read_variable(path: Path, f: h5py.File, key: str) -> xr.Variable:
    dset = f[key]
    if _DIMS not in dset.attrs:
        raise ValueError(f"{path}: dataset '{key}' has no '{_DIMS}' attr naming its dims")
    dims = tuple(plain(dset.attrs[_DIMS]))
    attrs = _read_attrs(dset)
    if h5py.check_string_dtype(dset.dtype) is not None:
        return xr.Variable(dims, np.asarray(dset.asstr()[()], dtype=str), attrs)
    if _DTYPE in dset.attrs:
        return xr.Variable(dims, dset[()].view(plain(dset.attrs[_DTYPE])), attrs)
    if dims == (key.rsplit("/", 1)[-1],) or dset.ndim == 0:  # index coordinates live in memory
        return xr.Variable(dims, dset[()], attrs)
    return lazy_variable(dims, H5Array([(path, key)]), attrs)


def open(path: str | os.PathLike) -> xr.Dataset:
    """Read a native file lazily: same variables, dims, coords and attrs as were saved."""
    path = Path(path).resolve()
    f = open_h5(path)
    ok, missing = detect(f)
    if not ok:
        raise ValueError(f"{path}: not a native dpot-lab file (missing {missing})")
    if f.attrs[MARKER] > VERSION:
        raise ValueError(
            f"{path}: native format version {f.attrs[MARKER]} is newer than this dpot-lab "
            f"reads ({VERSION}); update dpot-lab"
        )
    # names first: h5py holds its global lock through an items() loop, and a lazy array built
    # inside one would wait for lazy.py's lock while a reader holding that lock waits for h5py's
    names = [k for k, v in f.items() if isinstance(v, h5py.Dataset)]
    coord_names = list(f.get(_COORDS, {}))
    data_vars = {k: _read_variable(path, f, k) for k in names}
    coords = {k: _read_variable(path, f, f"{_COORDS}/{k}") for k in coord_names}
    ds = xr.Dataset(data_vars, coords=coords, attrs=_read_attrs(f))
    ds.set_close(partial(close_files, [str(path)]))
    return ds
