"""Laziness and process safety of opened datasets: opening reads no field data, indexing reads
only the frames asked for (and small gaps between them), and lazy arrays work after pickling and
in DataLoader workers."""

import pickle

import h5py
import numpy as np
import pytest
import torch
import xarray as xr

from dpot_lab.data import lazy, native
from dpot_lab.data.lazy import close_files
from dpot_lab.data.open import open_dataset
from dpot_lab.data.schema import field_names


@pytest.fixture
def reads(monkeypatch):
    """Records (dataset name, elements returned) for every h5py read of a field dataset (3 or
    more axes; grids, times and scalars, which readers may read whole, have fewer)."""
    log = []
    original = h5py.Dataset.__getitem__

    def counting(self, key):
        out = original(self, key)
        if self.ndim >= 3:
            log.append((self.name, np.size(out)))
        return out

    monkeypatch.setattr(h5py.Dataset, "__getitem__", counting)
    return log


WRITERS = {
    "fno": lambda lay, p: lay.write_fno_v73(p / "ns.mat"),
    "pdebench_groups": lambda lay, p: lay.write_pdebench_groups(p / "2D_diff-react_NA_NA.h5"),
    "pdebench_cfd": lambda lay, p: lay.write_pdebench_cfd(p / "2D_CFD_Rand_Train.hdf5"),
    "pdebench_incompressible": lambda lay, p: lay.write_pdebench_incompressible(p / "ns.h5"),
    "pdebench_1d": lambda lay, p: lay.write_pdebench_1d(p / "1D_Advection_Sols_beta0.1.hdf5"),
    "pdearena": lambda lay, p: lay.write_pdearena(p / "NavierStokes2D_train_1_0.50000.h5"),
    "the_well": lambda lay, p: lay.write_well(p / "toy_flow.hdf5"),
    "dpot_one_file": lambda lay, p: lay.write_dpot_unified(p, per_sample=False),
    "dpot_per_sample": lambda lay, p: lay.write_dpot_unified(p),
}


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_open_reads_nothing_and_isel_reads_only_its_frames(tmp_path, layouts, reads, fmt):
    path = WRITERS[fmt](layouts, tmp_path)
    ds = open_dataset(path)
    assert reads == []
    name = field_names(ds)[0]
    frame = int(np.prod([ds.sizes[d] for d in ds[name].dims[2:]]))  # X·Y, or X in 1D
    window = ds[name].isel(sample=1, time=slice(2, 4)).values  # (2, X[, Y])
    assert sum(n for _, n in reads) == window.size == 2 * frame
    np.testing.assert_array_equal(window, layouts.expected(ds[name])[1, 2:4])
    reads.clear()
    picked = ds[name].isel(sample=[2, 0], time=[4, 1], x=slice(None, None, -1)).values
    # frames this small are read with the gaps between them (samples 0-2 x frames 1-4), in one
    # read per sample at most; tests/data/test_lazy.py: frames of real size are read alone
    assert len(reads) <= 2 and sum(n for _, n in reads) <= 3 * 4 * frame
    np.testing.assert_array_equal(
        picked, layouts.expected(ds[name])[np.ix_([2, 0], [4, 1])][:, :, ::-1]
    )


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_every_format_opens_with_sample_labels_that_survive_selection(tmp_path, layouts, fmt):
    ds = open_dataset(WRITERS[fmt](layouts, tmp_path))
    np.testing.assert_array_equal(ds["sample"], np.arange(ds.sizes["sample"]))
    np.testing.assert_array_equal(ds.isel(sample=[2, 1])["sample"], [2, 1])


def test_a_files_own_sample_labels_are_kept(tmp_path):
    dims = ("sample", "time", "x", "y")
    ds = xr.Dataset(
        {"u": (dims, np.zeros((3, 2, 4, 4)))},
        coords={"sample": [7, 3, 9]},
        attrs={"pde": "test", "source_format": "native"},
    )
    opened = open_dataset(native.save(ds, tmp_path / "labelled.h5"))
    np.testing.assert_array_equal(opened["sample"], [7, 3, 9])


def write_sparse(path, shapes, chunk_axes):
    """Float32 datasets of the given shapes whose chunks (the last ``chunk_axes`` axes whole)
    are never written: a file of a few KB that h5py presents as the full-size arrays."""
    with h5py.File(path, "w") as f:
        for key, shape in shapes.items():
            chunks = (1,) * (len(shape) - chunk_axes) + shape[-chunk_axes:]
            f.create_dataset(key, shape=shape, dtype=np.float32, chunks=chunks)
    return path


B, T, S = 1000, 101, 512  # PDEBench's full-size 2D files: 100+ GB per field if read whole
BIG = {
    "pdebench_cfd": lambda p: write_sparse(
        p / "2D_CFD_Turb_M1.0_Eta1e-08_Zeta1e-08_periodic_512_Train.hdf5",
        {k: (B, T, S, S) for k in ("density", "Vx", "Vy", "pressure")},
        chunk_axes=2,
    ),
    "pdebench_incompressible": lambda p: write_sparse(
        p / "ns_incom_inhom_2d_512-0.h5",
        {"velocity": (B, T, S, S, 2), "particles": (B, T, S, S, 1), "force": (B, S, S, 2)},
        chunk_axes=3,
    ),
}


@pytest.mark.parametrize("fmt", sorted(BIG))
def test_a_file_too_big_for_memory_opens_and_reads_one_frame(tmp_path, fmt):
    ds = open_dataset(BIG[fmt](tmp_path))
    name = field_names(ds)[0]
    assert ds[name].nbytes > 100e9 and ds.sizes == {"sample": B, "time": T, "x": S, "y": S}
    assert not ds[name].isel(sample=B - 1, time=T - 1).values.any()  # never written: zeros


def test_lazy_dataset_pickles_without_file_handles(tmp_path, layouts):
    ds = open_dataset(layouts.write_pdebench_incompressible(tmp_path / "ns.h5"))
    ds.vx.isel(sample=0).load()  # this process now holds an open handle
    blob = pickle.dumps(ds.isel(sample=[2, 1]))
    assert b"h5py" not in blob
    close_files()  # the copy must reopen the file itself
    copy = pickle.loads(blob)
    np.testing.assert_array_equal(copy.vy.isel(time=3), layouts.expected(ds.vy, c=1)[[2, 1], 3])


def test_a_new_process_opens_its_own_handle(tmp_path, layouts, monkeypatch):
    path = layouts.write_pdebench_cfd(tmp_path / "cfd.hdf5")
    parent = lazy.open_h5(path)
    assert lazy.open_h5(path) is parent  # reused within a process
    monkeypatch.setattr(lazy.os, "getpid", lambda: -1)  # as seen from a forked worker
    child = lazy.open_h5(path)
    assert child is not parent and parent.id.valid  # the parent's handle is left alone
    assert lazy.open_h5(path) is child


class Frames(torch.utils.data.Dataset):
    """(sample, frame) -> that frame of a lazily opened field, as a tensor (X, Y)."""

    def __init__(self, ds, name):
        self.var = ds[name]

    def __len__(self):
        return self.var.sizes["sample"] * self.var.sizes["time"]

    def __getitem__(self, i):
        s, t = divmod(i, self.var.sizes["time"])
        return torch.from_numpy(self.var.isel(sample=s, time=t).values.copy())


@pytest.mark.parametrize(
    "start_method",
    ["fork", pytest.param("spawn", marks=pytest.mark.slow)],  # spawn: ~3-13 s
)
def test_dataloader_workers_read_from_their_own_handles(tmp_path, layouts, start_method):
    """fork: workers inherit the parent's open handle and must not use it; spawn: a fresh
    process gets the dataset pickled."""
    ds = open_dataset(layouts.write_pdebench_cfd(tmp_path / "cfd.hdf5"))
    ds.pressure.isel(sample=0, time=0).load()  # the parent opens the file before the workers
    loader = torch.utils.data.DataLoader(
        Frames(ds, "pressure"),
        batch_size=4,
        num_workers=2 if start_method == "fork" else 1,
        multiprocessing_context=start_method,
    )
    frames = torch.cat(list(loader)).numpy()  # (N·T, X, Y)
    expect = layouts.expected(ds.pressure, c=3).reshape(-1, layouts.X, layouts.Y)
    np.testing.assert_array_equal(frames, expect)
