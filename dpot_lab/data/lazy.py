"""Lazy arrays over HDF5 datasets, safe to pickle and to use in DataLoader worker processes.

An :class:`H5Array` stores only file paths and dataset keys. Files are opened on first access
in each process (a forked or spawned worker opens its own handle) and kept in a small per-process
cache, so reading a window touches only the chunks it needs.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence

import h5py
import numpy as np
import xarray as xr
from xarray.backends import BackendArray

# xarray's "How to add a new backend" guide prescribes LazilyIndexedArray, explicit_indexing_adapter
from xarray.core import indexing

_MAX_OPEN = 128  # open handles kept per process (least recently used are closed first)
_READ_BYTES = 1 << 16  # one more h5py read costs about as much as reading this many bytes more
# Every h5py call made in this module holds this lock (the readers' own calls on handles from
# open_h5 do not): background reads (data.stream) do not contend with each other for h5py's lock,
# and a fork (DataLoader workers) waits until no thread is inside the cache or one of these reads,
# so a child never inherits the lock held.
_lock = threading.RLock()
os.register_at_fork(
    before=_lock.acquire, after_in_parent=_lock.release, after_in_child=_lock.release
)
_files: OrderedDict[str, tuple[tuple[int, int, int], h5py.File]] = OrderedDict()
_datasets: dict[tuple[str, str], tuple[h5py.File, h5py.Dataset]] = {}  # looked-up datasets
_owner_pid = os.getpid()


def _stamp(path: str) -> tuple[int, int, int]:
    """(inode, mtime, size): changes when the file is rewritten or replaced."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _open(path: str) -> tuple[tuple[int, int, int], h5py.File]:
    """(stamp, handle) for the absolute ``path``, from this process's cache when still valid."""
    global _owner_pid
    stamp = _stamp(path)
    with _lock:
        if os.getpid() != _owner_pid:  # a forked child: never use the parent's handles
            _files.clear()
            _datasets.clear()
            _owner_pid = os.getpid()
        hit = _files.get(path)
        if hit is not None and hit[0] == stamp and hit[1].id.valid:
            _files.move_to_end(path)
            return hit
        if hit is not None:
            del _files[path]
            if hit[1].id.valid:
                hit[1].close()
        try:
            handle = h5py.File(path, "r")
        except OSError as exc:
            raise ValueError(
                f"{path}: cannot read this file as HDF5 ({exc}); it may be truncated, corrupt "
                "or not HDF5 at all"
            ) from exc
        _files[path] = (stamp, handle)
        while len(_files) > _MAX_OPEN:
            _, (_, old) = _files.popitem(last=False)
            old.close()
    return stamp, handle


def open_h5(path: str | os.PathLike) -> h5py.File:
    """Read-only handle to the HDF5 file ``path``, opened once per process and reused.

    Raises FileNotFoundError when it is missing and ValueError naming the file when it is not
    readable HDF5 (truncated, corrupt, or another format).
    """
    return _open(os.path.abspath(os.fspath(path)))[1]


def close_files(paths: Iterable[str | os.PathLike] | None = None) -> None:
    """Close this process's cached handles to ``paths`` (all of them when None)."""
    with _lock:
        if os.getpid() != _owner_pid:
            return
        keys = list(_files) if paths is None else [os.path.abspath(os.fspath(p)) for p in paths]
        for key in keys:
            hit = _files.pop(key, None)
            if hit is not None and hit[1].id.valid:
                hit[1].close()


def _is_int(k: object) -> bool:
    return isinstance(k, int | np.integer)


def _length(k: object, n: int) -> int:
    """Length of the axis that key ``k`` (slice or array) keeps from an axis of size ``n``."""
    return len(range(n)[k]) if isinstance(k, slice) else len(k)


def _outer_read(dset: h5py.Dataset, key: tuple) -> np.ndarray:
    """``dset`` under an outer-indexing ``key`` (ints, positive-step slices, integer arrays).

    Along each axis the indices picked (sorted, once each) are read as one slice covering them,
    or as one slice per run of consecutive indices when the gaps a covering slice would read cost
    more than the extra reads (``_READ_BYTES`` each); order, repeats and strides are then taken in
    memory. h5py's own index lists and strided slices are never passed: it selects those element
    by element (tens of ms for a few 64² frames)."""
    reads = list(key)  # per axis: what is read (int or step-1 slice)
    runs: dict[int, list[tuple[slice, slice]]] = {}  # axis -> (read, place in the result) per run
    takes: dict[int, np.ndarray] = {}  # result axis -> positions in what was read
    kept = [a for a, k in enumerate(key) if not _is_int(k)]
    shape = [1 if _is_int(k) else 0 for k in key]  # lengths read, decided innermost first
    for a in reversed(kept):
        k, n = key[a], dset.shape[a]
        if isinstance(k, slice) and k.step in (None, 1):
            shape[a] = _length(k, n)
            continue
        unique, inverse = np.unique(np.arange(n)[k], return_inverse=True)  # (U,), (K,)
        if len(unique) == 0:
            reads[a], shape[a] = slice(0, 0), 0
            continue
        starts = np.r_[0, np.flatnonzero(np.diff(unique) != 1) + 1]  # where each run begins
        gaps = int(unique[-1] - unique[0] + 1 - len(unique))  # indices a covering slice adds
        per_index = dset.dtype.itemsize * int(np.prod(shape[a + 1 :]))  # bytes
        inner_reads = int(np.prod([len(runs[b]) for b in runs]))
        cover = gaps * per_index <= (len(starts) - 1) * inner_reads * _READ_BYTES
        if cover:
            reads[a], shape[a] = slice(int(unique[0]), int(unique[-1]) + 1), gaps + len(unique)
            positions = (unique - unique[0])[inverse.ravel()]
        else:
            ends = np.append(starts[1:], len(unique))
            runs[a] = [
                (slice(int(unique[i]), int(unique[j - 1]) + 1), slice(int(i), int(j)))
                for i, j in zip(starts, ends, strict=True)
            ]
            shape[a], positions = len(unique), inverse.ravel()
        if not np.array_equal(positions, np.arange(shape[a])):
            takes[kept.index(a)] = positions
    if not runs:
        data = np.asarray(dset[tuple(reads)])
    else:
        data = np.empty([shape[a] for a in kept], dtype=dset.dtype)
        for combo in itertools.product(*runs.values()):
            place = [slice(None)] * len(kept)
            for a, (read, at) in zip(runs, combo, strict=True):
                reads[a], place[kept.index(a)] = read, at
            data[tuple(place)] = dset[tuple(reads)]
    for axis, positions in takes.items():
        data = np.take(data, positions, axis=axis)
    return data


class H5Array(BackendArray):
    """A lazily read view of one HDF5 dataset, or of the same-shaped datasets at several
    (path, key) sources stacked along a new leading axis (per-sample groups or files).

    ``fixed`` pins stored axes to one index (a trailing component axis split into variables);
    ``order`` lists the remaining stored axes in the order they are presented (a transposition,
    e.g. MATLAB's reversed axes); ``dtype`` casts on read. Shapes: stored (S0, S1, ...) ->
    presented ([N,] S[order[0]], S[order[1]], ...).
    """

    def __init__(
        self,
        sources: Sequence[tuple[str | os.PathLike, str]],
        *,
        stacked: bool = False,
        order: Sequence[int] | None = None,
        fixed: dict[int, int] | None = None,
        dtype: np.typing.DTypeLike | None = None,
    ):
        self.sources = [(os.path.abspath(os.fspath(p)), str(k)) for p, k in sources]
        if not self.sources or (not stacked and len(self.sources) != 1):
            raise ValueError("H5Array needs one source, or several with stacked=True")
        self.stacked = stacked
        path, key = self.sources[0]
        with _lock:
            self.stamps = {p: _open(p)[0] for p in dict.fromkeys(p for p, _ in self.sources)}
            dset = _dataset(path, key, self.stamps[path])
            self.stored_shape, stored_dtype = tuple(dset.shape), dset.dtype
            shapes = [tuple(_dataset(p, k, self.stamps[p]).shape) for p, k in self.sources[1:]]
        self.fixed = {int(a): int(i) for a, i in (fixed or {}).items()}
        free = [a for a in range(len(self.stored_shape)) if a not in self.fixed]
        self.order = tuple(free if order is None else (int(a) for a in order))
        if sorted(self.order) != free:
            raise ValueError(f"{path}: axis order {self.order} is not a permutation of {free}")
        for a, i in self.fixed.items():
            if not 0 <= i < self.stored_shape[a]:
                raise ValueError(f"{path}: '{key}' axis {a} has no index {i}")
        self.dtype = np.dtype(stored_dtype if dtype is None else dtype)
        member = tuple(self.stored_shape[a] for a in self.order)
        self.shape = ((len(self.sources),) if stacked else ()) + member
        for (p, k), shape in zip(self.sources[1:], shapes, strict=True):
            if shape != self.stored_shape:
                raise ValueError(
                    f"{p}: '{k}' has shape {shape}, expected {self.stored_shape} "
                    f"like '{key}' in {path}"
                )

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.OUTER, self.read
        )

    def read(self, key: tuple) -> np.ndarray:
        """The array under an outer-indexing ``key`` (one entry per axis: int, slice, array)."""
        if not self.stacked:
            return self._read(self.sources[0], key)
        first, rest = key[0], key[1:]
        if _is_int(first):
            return self._read(self.sources[first], rest)
        picked = range(len(self.sources))[first] if isinstance(first, slice) else first
        parts = [self._read(self.sources[int(i)], rest) for i in picked]
        if parts:
            return np.stack(parts)
        kept = [_length(k, n) for k, n in zip(rest, self.shape[1:], strict=True) if not _is_int(k)]
        return np.empty((0, *kept), dtype=self.dtype)

    def _read(self, source: tuple[str, str], key: tuple) -> np.ndarray:
        """Read ``key`` (presented order, one source) from the stored dataset."""
        path, name = source
        stored: list[object] = [None] * len(self.stored_shape)
        for axis, index in self.fixed.items():
            stored[axis] = index
        for pos, axis in enumerate(self.order):
            stored[axis] = key[pos]
        kept = [a for a, k in enumerate(stored) if not _is_int(k)]  # stored order after reading
        wanted = [a for a in self.order if a in kept]
        try:
            with _lock:
                data = _outer_read(_dataset(path, name, self.stamps[path]), tuple(stored))
        except OSError as exc:
            raise ValueError(
                f"{path}: reading '{name}' failed ({exc}); the file may be truncated or corrupt"
            ) from exc
        data = data.transpose([kept.index(a) for a in wanted])
        return data.astype(self.dtype, copy=False)

    def __repr__(self) -> str:
        where = self.sources[0] if len(self.sources) == 1 else f"{len(self.sources)} sources"
        return f"H5Array({where}, shape={self.shape}, dtype={self.dtype})"


def _dataset(path: str, key: str, stamp: tuple[int, int, int]) -> h5py.Dataset:
    """``key`` in ``path``, as long as the file is the one that was first opened (``stamp``);
    called under ``_lock``."""
    now, handle = _open(path)
    if now != stamp:
        raise ValueError(
            f"{path}: the file changed (rewritten or replaced) after it was opened; open it again"
        )
    hit = _datasets.get((path, key))
    if hit is not None and hit[0] is handle and hit[1].id.valid:
        return hit[1]  # h5py's name lookup costs more than reading a small window
    if key not in handle or not isinstance(handle[key], h5py.Dataset):
        raise ValueError(f"{path}: no dataset '{key}'")
    _datasets[(path, key)] = (handle, handle[key])
    return _datasets[(path, key)][1]


def lazy_variable(dims: Sequence[str], array: H5Array, attrs: dict | None = None) -> xr.Variable:
    """An xarray Variable over ``array`` that reads only what is indexed."""
    if len(dims) != array.ndim:
        raise ValueError(f"{array!r}: {len(dims)} dim names {tuple(dims)} for {array.ndim} axes")
    return xr.Variable(tuple(dims), indexing.LazilyIndexedArray(array), attrs)
