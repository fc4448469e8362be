"""H5Array reads under xarray's outer indexing: index arrays (evenly spaced, scattered, unsorted,
repeated) give what numpy indexing gives, in a few h5py reads of contiguous slices."""

import os
import signal
import threading

import h5py
import numpy as np
import pytest
import xarray as xr

from dpot_lab.data import native
from dpot_lab.data.lazy import H5Array, lazy_variable

DIMS = ("sample", "time", "x", "y")
SHAPE = (4, 30, 64, 64)  # 64² float32 frames: 16 KiB each, one per chunk as in native files


@pytest.fixture
def stored(tmp_path):
    """(lazy Variable, the same data in memory) over a field chunked one frame per chunk."""
    data = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    path = tmp_path / "field.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("u", data=data, chunks=(1, 1, 64, 64))
    return lazy_variable(DIMS, H5Array([(path, "u")])), xr.Variable(DIMS, data)


@pytest.fixture
def reads(monkeypatch):
    """Elements returned by each h5py read of a field (datasets of 3 or more axes)."""
    log = []
    original = h5py.Dataset.__getitem__

    def counting(self, key):
        out = original(self, key)
        if self.ndim >= 3:
            log.append(np.size(out))
        return out

    monkeypatch.setattr(h5py.Dataset, "__getitem__", counting)
    return log


INDEXES = {
    "arange": np.arange(64),
    "arange part": np.arange(5, 40),
    "strided": np.arange(3, 60, 4),
    "strided slice": slice(1, None, 3),
    "scattered": np.array([0, 1, 2, 9, 30, 31, 63]),
    "unsorted with repeats": np.array([7, 2, 2, 40, 7, 0, 63, 1]),
    "one": np.array([17]),
    "empty": np.array([], dtype=int),
}


@pytest.mark.parametrize("dim", ["x", "y"])
@pytest.mark.parametrize("kind", sorted(INDEXES))
def test_an_index_reads_like_numpy_in_one_read(stored, reads, kind, dim):
    lazy, memory = stored
    picks = {"sample": 1, "time": slice(2, 6), dim: INDEXES[kind]}
    np.testing.assert_array_equal(lazy.isel(picks).values, memory.isel(picks).values)
    assert len(reads) == 1  # within a frame, the covering slice is cheaper than more reads


def test_indexes_on_every_dim_read_like_numpy(stored, reads):
    lazy, memory = stored
    picks = {
        "sample": np.array([3, 0, 3]),
        "time": np.arange(0, 30, 7),
        "x": INDEXES["unsorted with repeats"],
        "y": INDEXES["strided"],
    }
    np.testing.assert_array_equal(lazy.isel(picks).values, memory.isel(picks).values)
    assert len(reads) == 5  # one per frame picked, samples 0-3 at once: skipping 1-2 costs more


def test_aligning_with_the_same_coordinates_reads_once(stored, reads):
    """xr.align passes an np.arange for every dim: one read, not one per row."""
    lazy, memory = stored
    coords = {d: np.arange(n) for d, n in zip(DIMS, SHAPE, strict=True)}
    on_file = xr.DataArray(lazy, coords=coords)
    _, truth = xr.align(xr.DataArray(memory, coords=coords), on_file, join="inner")
    np.testing.assert_array_equal(truth.values, memory.values)
    assert reads == [memory.size]


@pytest.mark.parametrize(
    ("picks", "expected"),
    [
        ({"sample": 2, "time": np.array([29, 0, 15])}, [64 * 64] * 3),  # a read per frame
        ({"sample": np.array([3, 0])}, [30 * 64 * 64] * 2),  # a read per sample
    ],
)
def test_frames_far_apart_are_read_alone(stored, reads, picks, expected):
    """Gaps worth more than a read are skipped: only the frames asked for are read."""
    lazy, memory = stored
    np.testing.assert_array_equal(lazy.isel(picks).values, memory.isel(picks).values)
    assert reads == expected


def test_a_fork_while_another_thread_reads_gives_a_child_that_can_read(tmp_path):
    """DataLoader workers fork while the streaming thread reads: the child must never inherit
    the handle cache's lock (or HDF5) held by a thread it does not have."""
    path = tmp_path / "field.h5"
    data = np.arange(8 * 16 * 32 * 32, dtype=np.float32).reshape(8, 16, 32, 32)
    with h5py.File(path, "w") as f:
        f.create_dataset("u", data=data, chunks=(1, 1, 32, 32))
    array = H5Array([(path, "u")])
    stop = threading.Event()

    def read_forever():
        while not stop.is_set():
            array.read((slice(0, 8), slice(None), slice(None), slice(None)))

    reader = threading.Thread(target=read_forever, daemon=True)
    reader.start()
    try:
        for _ in range(20):
            pid = os.fork()
            if pid == 0:  # the child: one read, exit 0 if right
                signal.alarm(10)  # a child that hangs is killed and reported below
                ok = np.array_equal(array.read((3, 5, slice(None), slice(None))), data[3, 5])
                os._exit(0 if ok else 1)
            _, status = os.waitpid(pid, 0)
            assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, (
                f"the forked child {'hung' if os.WIFSIGNALED(status) else 'read wrong data'}"
            )
    finally:
        stop.set()
        reader.join()


def test_opening_files_while_another_thread_reads_does_not_deadlock(tmp_path):
    """h5py holds its global lock across a Group.items() iteration: opening a native file must
    not build lazy arrays (which take this module's lock) inside one, or a thread reading under
    this module's lock (a streamed chunk read ahead) and the opener wait for each other."""
    data = np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)
    fields = {f"f{i}": (("sample", "time", "x", "y"), data) for i in range(8)}
    ds = xr.Dataset(fields, attrs={"pde": "test", "source_format": "test"})
    paths = [native.save(ds, tmp_path / f"{n}.h5") for n in "ab"]
    reading = native.open(paths[0])
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            for name in fields:
                assert reading[name][1, :2].values.shape == (2, 8, 8)

    def open_many() -> None:
        for _ in range(100):
            native.open(paths[1]).close()

    reader, opener = (threading.Thread(target=f, daemon=True) for f in (read, open_many))
    reader.start()
    opener.start()
    opener.join(timeout=120)
    stop.set()
    reader.join(timeout=30)
    assert not opener.is_alive() and not reader.is_alive(), "opening and reading deadlocked"
