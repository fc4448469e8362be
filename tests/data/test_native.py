"""The native HDF5 format: exact round trip, one frame per chunk, atomic writes, netCDF export."""

import warnings

import h5py
import numpy as np
import pytest
import xarray as xr

from dpot_lab.data import native
from dpot_lab.data.open import detect_format, open_dataset


def make_dataset(spatial=("x", "y"), sizes=(8, 6, 4)):
    """A dataset with everything the format must keep: fields, a non-field variable, text,
    index and non-index coordinates (sample labels that are not positions), variable attrs, and
    attrs of every allowed kind."""
    rng = np.random.default_rng(0)
    shape = tuple(sizes[: len(spatial)])
    coords = {d: np.linspace(0, 1, n, endpoint=False) for d, n in zip(spatial, shape, strict=True)}
    return xr.Dataset(
        {
            "vorticity": (
                ("sample", "time", *spatial),
                rng.standard_normal((3, 5, *shape)).astype(np.float32),
                {"units": "1/s"},
            ),
            "tracer": (("sample", "time", *spatial), rng.random((3, 5, *shape))),
            "forcing": (("sample", *spatial), rng.random((3, *shape))),
            "label": (("sample",), np.array(["calm", "gusty", "storm"])),
        },
        coords={
            "sample": 10 + np.arange(3),
            "time": np.linspace(0.0, 2.0, 5),
            **coords,
            "nu": ("sample", np.array([1e-3, 1e-4, 1e-5])),
            "seed": ("sample", np.arange(3, dtype=np.int64)),
        },
        attrs={
            "pde": "navier_stokes_vorticity",
            "source_format": "dpot_lab",
            "nu": 1e-5,
            "resolution": 64,
            "periodic": True,
            "fields": ["vorticity", "tracer"],
        },
    )


@pytest.mark.parametrize("spatial", [("x", "y"), ("x", "y", "z")])
def test_round_trip_is_identical_and_chunked_by_frame(tmp_path, spatial):
    ds = make_dataset(spatial)
    path = native.save(ds, tmp_path / "set.h5")
    assert detect_format(path) == "native"
    back = open_dataset(path)
    xr.testing.assert_identical(back, ds)
    assert back.attrs == ds.attrs and back.vorticity.attrs == {"units": "1/s"}
    assert type(back.attrs["periodic"]) is bool and type(back.attrs["resolution"]) is int
    with h5py.File(path) as f:
        assert f.attrs["dpot_lab_format"] == 1
        frame = tuple(ds.sizes[d] for d in spatial)
        assert f["vorticity"].chunks == (1, 1, *frame)
        assert f["forcing"].chunks == (1, *frame)
        assert f["vorticity"].dtype == np.float32


def test_save_replaces_atomically_and_cleans_up(tmp_path):
    ds = make_dataset()
    path = native.save(ds, tmp_path / "set.h5")
    bad = ds.assign(broken=(("sample",), np.array([{}, {}, {}], dtype=object)))  # written last
    with pytest.raises(ValueError, match=r"set\.h5: variable 'broken'.*dtype object"):
        native.save(bad, path)
    assert [p.name for p in tmp_path.iterdir()] == ["set.h5"]  # no temporary file left
    xr.testing.assert_identical(open_dataset(path), ds)  # the good file is untouched
    with pytest.raises(ValueError, match="attr 'extra'"):
        native.save(ds.assign_attrs(extra={"nested": 1}), path)
    no_pde = ds.drop_attrs().assign_attrs(source_format="dpot_lab")  # open_dataset refuses it
    with pytest.raises(ValueError, match=r"set\.h5: save: not a dpot-lab dataset: attr 'pde'"):
        native.save(no_pde, path)
    # saving over a file that is open for reading works; the old lazy view then refuses to
    # read the new file as if it were the old one
    opened = open_dataset(path)
    native.save(ds.assign_attrs(nu=2e-5), path)
    assert open_dataset(path).attrs["nu"] == 2e-5
    with pytest.raises(ValueError, match=r"set\.h5: the file changed"):
        opened.vorticity.load()


def test_save_streams_a_lazy_dataset(tmp_path):
    ds = make_dataset()
    first = native.save(ds, tmp_path / "a.h5")
    copy = native.save(open_dataset(first).isel(sample=[2, 0]), tmp_path / "b.h5")
    xr.testing.assert_identical(open_dataset(copy), ds.isel(sample=[2, 0]))


def test_save_parts_writes_one_file_and_a_failure_loses_nothing(tmp_path):
    ds = make_dataset()  # 3 samples, text and per-sample coordinates included
    path = native.save_parts((ds.isel(sample=[k]) for k in range(3)), tmp_path / "parts.h5", 3)
    xr.testing.assert_identical(open_dataset(path), ds)
    good = path.read_bytes()

    def crashing():  # a solver that fails after its first batch
        yield ds.isel(sample=[0])
        raise RuntimeError("solver blew up")

    with pytest.raises(RuntimeError, match="solver blew up"):
        native.save_parts(crashing(), path, n_samples=3)
    moved = ds.isel(sample=[2]).assign_coords(time=ds.time + 1)
    with pytest.raises(ValueError, match=r"parts\.h5: part 1 differs from the first in 'time'"):
        native.save_parts([ds.isel(sample=[0, 1]), moved], path, n_samples=3)
    with pytest.raises(ValueError, match=r"parts\.h5: the parts hold 2 samples, expected 3"):
        native.save_parts([ds.isel(sample=[0, 1])], path, n_samples=3)
    assert path.read_bytes() == good and [p.name for p in tmp_path.iterdir()] == ["parts.h5"]


def test_to_netcdf_exports_values_and_attrs(tmp_path):
    ds = make_dataset()
    path = native.to_netcdf(ds, tmp_path / "set.nc")
    with xr.open_dataset(path, engine="h5netcdf") as back:
        xr.testing.assert_equal(back.drop_vars("label"), ds.drop_vars("label"))
        assert list(back.label.values) == ["calm", "gusty", "storm"]
        assert back.attrs["periodic"] == 1 and back.attrs["pde"] == ds.attrs["pde"]
        assert back.vorticity.encoding["chunksizes"] == (1, 1, 8, 6)


def test_xarray_engine_reads_native(tmp_path):
    ds = make_dataset()
    path = native.save(ds, tmp_path / "set.h5")
    with xr.open_dataset(path, engine="dpot_lab") as back:
        xr.testing.assert_identical(back.load(), ds)


def test_save_keeps_nan_frames_and_warns_where_they_are(tmp_path):
    ds = make_dataset()
    ds["vorticity"][1, 2, 0, 0] = np.nan
    ds["vorticity"][1, 4] = np.inf
    ds["forcing"][2, 3, 1] = np.nan  # no time axis: one frame per sample
    path = tmp_path / "nan.h5"
    with pytest.warns(UserWarning) as record:
        native.save(ds, path)
    (message,) = [str(w.message) for w in record]
    assert message.startswith(f"{path}: saved with NaN/Inf values: ")
    assert "'vorticity' in 2 frame(s) of samples [1]" in message
    assert "'forcing' in 1 frame(s) of samples [2]" in message
    assert "tracer" not in message
    back = open_dataset(path).load()
    xr.testing.assert_identical(back["vorticity"], ds["vorticity"])  # kept as they were


def test_save_of_finite_data_does_not_warn(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        native.save(make_dataset(), tmp_path / "ok.h5")
