"""Readers for peer formats: shapes, names, axis order, coordinates and values exactly as the
files were written (conftest's writers), and clear errors for bad input."""

import itertools
import re
import sys

import h5py
import numpy as np
import pytest
import xarray as xr

from dpot_lab.data.open import detect_format, open_dataset
from dpot_lab.data.schema import check_finite, field_names


def assert_coded(ds, layouts, channels):
    """Each named field holds conftest's position code for its channel, at every position."""
    for name, c in channels.items():
        np.testing.assert_array_equal(ds[name].values, layouts.expected(ds[name], c), err_msg=name)


def test_pdebench_groups_diffusion_reaction(tmp_path, layouts):
    path = layouts.write_pdebench_groups(tmp_path / "2D_diff-react_NA_NA.h5")
    ds = open_dataset(path)
    assert detect_format(path) == "pdebench"
    assert field_names(ds) == ["u", "v"]
    assert dict(ds.sizes) == {"sample": 3, "time": 5, "x": 8, "y": 6}
    assert_coded(ds, layouts, {"u": 0, "v": 1})
    np.testing.assert_array_equal(ds.x, np.linspace(-1, 1, 8, dtype=np.float32))
    np.testing.assert_array_equal(ds.time, np.linspace(0, 5, 5, dtype=np.float32))
    assert ds.attrs["pde"] == "diffusion_reaction" and ds.attrs["source_format"] == "pdebench"
    assert "field_names_guessed" not in ds.attrs  # the name tells: nothing guessed
    assert "Du: 0.001" in ds.attrs["config"]


def test_pdebench_groups_without_a_telling_name_are_not_called_diffusion_reaction(
    tmp_path, layouts
):
    path = layouts.write_pdebench_groups(tmp_path / "2D_some_other_pde.h5", channels=2)
    with pytest.warns(UserWarning, match=r"2D_some_other_pde\.h5: field names \('u', 'v'\) guess"):
        ds = open_dataset(path)
    assert ds.attrs["pde"] == "unknown" and ds.attrs["source_format"] == "pdebench"
    assert ds.attrs["field_names_guessed"].startswith("field names ('u', 'v') guessed from 2 ch")
    assert field_names(ds) == ["u", "v"]
    told = layouts.write_pdebench_groups(tmp_path / "anonymous.h5", channels=2)
    with h5py.File(told, "a") as f:  # the config's name tells
        f["0000"].attrs["config"] = "name: 2D_diff-react_NA_NA\nsim:\n  Du: 0.001\n"
    told = open_dataset(told)
    assert told.attrs["pde"] == "diffusion_reaction" and "field_names_guessed" not in told.attrs
    named = open_dataset(path, fields=["a", "b"])  # names given: nothing guessed, pde unknown
    assert named.attrs["pde"] == "unknown" and "field_names_guessed" not in named.attrs


def test_pdebench_groups_names_by_channels_and_fields(tmp_path, layouts):
    swe = open_dataset(layouts.write_pdebench_groups(tmp_path / "2D_rdb_NA_NA.h5", channels=1))
    assert field_names(swe) == ["h"] and swe.attrs["pde"] == "shallow_water"
    assert_coded(swe, layouts, {"h": 0})
    odd = layouts.write_pdebench_groups(tmp_path / "mystery.h5", channels=3)
    with pytest.warns(UserWarning, match="mystery.h5: field names"):
        guessed = open_dataset(odd)
    assert field_names(guessed) == ["c0", "c1", "c2"] and guessed.attrs["pde"] == "unknown"
    assert "fields=" in guessed.attrs["field_names_guessed"]
    wrong = layouts.write_pdebench_groups(tmp_path / "2D_diff-react_3.h5", channels=3)
    with pytest.warns(UserWarning, match=r"a diffusion_reaction file has 2 channel"):
        assert open_dataset(wrong).attrs["pde"] == "diffusion_reaction"
    named = open_dataset(odd, fields=["a", "b", "c"])
    assert_coded(named, layouts, {"a": 0, "b": 1, "c": 2})
    with pytest.raises(ValueError, match="names 2 channels"):
        open_dataset(odd, fields=["a", "b"])


@pytest.mark.parametrize(
    "name",
    [
        "2D_CFD_Rand_M0.1_Eta0.01_Zeta0.01_periodic_128_Train.hdf5",
        "2D_CFD_Turb_M1.0_Eta1e-08_Zeta1e-08_periodic_512_Train.hdf5",
    ],
)
def test_pdebench_compressible_ns(tmp_path, layouts, name):
    ds = open_dataset(layouts.write_pdebench_cfd(tmp_path / name))
    assert field_names(ds) == ["density", "vx", "vy", "pressure"]
    assert_coded(ds, layouts, {"density": 0, "vx": 1, "vy": 2, "pressure": 3})
    np.testing.assert_array_equal(ds.time, np.linspace(0, 1, 6)[:5])  # T+1 entries -> first T
    np.testing.assert_array_equal(ds.y, np.linspace(0, 1, 6, endpoint=False))
    assert (ds.attrs["M"], ds.attrs["eta"], ds.attrs["zeta"]) == (0.1, 0.01, 0.01)


@pytest.mark.parametrize("same_times", [True, False])
def test_pdebench_incompressible_ns(tmp_path, layouts, same_times):
    ds = open_dataset(layouts.write_pdebench_incompressible(tmp_path / "ns.h5", same_times))
    assert field_names(ds) == ["vx", "vy", "particles"]
    assert_coded(ds, layouts, {"vx": 0, "vy": 1, "particles": 2})
    assert ds.force_x.dims == ("sample", "x", "y")
    assert_coded(ds, layouts, {"force_x": 0, "force_y": 1})
    times = np.tile(np.linspace(0, 5, 5), (3, 1)).astype(np.float32)
    if same_times:
        np.testing.assert_array_equal(ds.time, times[0])
    else:
        assert "time" not in ds.coords
        expect = times * np.arange(1, 4, dtype=np.float32)[:, None]
        np.testing.assert_array_equal(ds.time_per_sample.transpose("sample", "time"), expect)


def test_pdebench_1d_is_flagged(tmp_path, layouts):
    ds = open_dataset(layouts.write_pdebench_1d(tmp_path / "1D_Advection_Sols_beta0.1.hdf5"))
    assert ds.u.dims == ("sample", "time", "x") and ds.attrs["n_spatial_dims"] == 1
    assert ds.attrs["pde"] == "advection"
    assert_coded(ds, layouts, {"u": 0})
    np.testing.assert_array_equal(ds.time, np.linspace(0, 2, 6)[:5])


def test_fno_v73_reverses_matlab_axes(tmp_path, layouts):
    path = layouts.write_fno_v73(tmp_path / "NavierStokes_V1e-5_N3_T5.mat")
    with h5py.File(path) as f:
        assert f.userblock_size == 512 and f["u"].shape == (5, 6, 8, 3)  # (T, Y, X, N)
    ds = open_dataset(path)
    assert ds.vorticity.dims == ("sample", "time", "x", "y")
    assert dict(ds.sizes) == {"sample": 3, "time": 5, "x": 8, "y": 6}
    assert_coded(ds, layouts, {"vorticity": 0, "initial_vorticity": 1})
    assert ds.initial_vorticity.dims == ("sample", "x", "y")
    np.testing.assert_array_equal(ds.time, np.linspace(1, 5, 5))
    assert ds.attrs["nu"] == 1e-5 and ds.attrs["source_format"] == "fno"


def test_fno_v5_through_scipy(tmp_path, layouts, monkeypatch):
    path = layouts.write_fno_v5(tmp_path / "ns_V1e-3_N3.mat")
    ds = open_dataset(path)
    assert_coded(ds, layouts, {"vorticity": 0, "initial_vorticity": 1})
    np.testing.assert_array_equal(ds.time, np.linspace(1, 5, 5))
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # as if scipy were not installed
    with pytest.raises(ImportError, match="need scipy") as err:
        open_dataset(path)
    assert str(path.name) in str(err.value)


@pytest.mark.parametrize("keys", [("u", "t"), ("u",)])
@pytest.mark.parametrize("version", ["v73", "v5"])
def test_fno_without_initial_vorticity_or_times(tmp_path, layouts, version, keys):
    write = layouts.write_fno_v73 if version == "v73" else layouts.write_fno_v5
    ds = open_dataset(write(tmp_path / "NavierStokes_V1e-4_N3_T5.mat", keys=keys))
    assert list(ds.data_vars) == ["vorticity"] and ds.attrs["nu"] == 1e-4
    assert dict(ds.sizes) == {"sample": 3, "time": 5, "x": 8, "y": 6}
    assert_coded(ds, layouts, {"vorticity": 0})
    assert ("time" in ds.coords) == ("t" in keys)


def test_pdearena_float64_to_float32_and_split(tmp_path, layouts):
    path = layouts.write_pdearena(tmp_path / "NavierStokes2D_valid_1_0.50000.h5", ("valid", "test"))
    ds = open_dataset(path)
    assert ds.attrs["split"] == "valid"
    assert field_names(ds) == ["density", "vx", "vy"] and ds.density.dtype == np.float32
    assert_coded(ds, layouts, {"density": 0, "vx": 1, "vy": 2})
    np.testing.assert_array_equal(ds.x, np.linspace(0, 32, 8))
    np.testing.assert_array_equal(ds.time, np.linspace(18, 102, 5))
    np.testing.assert_array_equal(ds.buo_y, [0.2, 0.3, 0.5])
    assert ds.buo_y.dims == ("sample",) and (ds.attrs["dt"], ds.attrs["dx"]) == (1.5, 0.25)
    assert open_dataset(path, split="test").attrs["split"] == "test"
    with pytest.raises(ValueError, match="no split 'train'"):
        open_dataset(path, split="train")


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_pdearena_each_split_keeps_float64_and_per_sample_grids(tmp_path, layouts, split):
    path = layouts.write_pdearena(tmp_path / f"NavierStokes2D_{split}_7_0.50000_32.h5", (split,))
    with h5py.File(path, "r+") as f:
        x = f[f"{split}/x"][()]  # (N, X)
        x[1] += 0.5  # sample 1 on a shifted grid
        f[f"{split}/x"][...] = x
    ds = open_dataset(path, dtype=None)
    assert ds.attrs["split"] == split and ds.density.dtype == np.float64
    assert_coded(ds, layouts, {"density": 0, "vx": 1, "vy": 2})
    assert "x" not in ds.coords and ds.x_per_sample.dims == ("sample", "x")
    np.testing.assert_array_equal(ds.x_per_sample, x)
    np.testing.assert_array_equal(ds.time, np.linspace(18, 102, 5))


def test_the_well_dummy_file_has_all_fields(tmp_path):
    from the_well.utils.dummy_data import write_dummy_data

    path = tmp_path / "dummy.hdf5"
    write_dummy_data(str(path))
    ds = open_dataset(path)
    with h5py.File(path) as f:
        field = f["t1_fields/field"][()]  # (B, T, X, Y, 2)
        constant = f["t0_fields/constant_field"][()]  # (B, X, Y)
        scalar = f["scalars/time_varying_scalar"][()]  # (T,)
        times = f["dimensions/time"][()]
    assert field_names(ds) == ["field_x", "field_y"]
    np.testing.assert_array_equal(ds.field_x.values, field[..., 0])
    np.testing.assert_array_equal(ds.field_y.values, field[..., 1])
    assert ds.constant_field.dims == ("sample", "x", "y")
    np.testing.assert_array_equal(ds.constant_field.values, constant)
    np.testing.assert_array_equal(ds.time_varying_scalar.values, scalar)
    np.testing.assert_array_equal(ds.time, times)
    assert ds.attrs["pde"] == "dummy_dataset" and ds.attrs["bc_x_periodic"] == "periodic:x"
    assert (ds.attrs["a"], ds.attrs["b"], ds.attrs["simulation_parameters"]) == (
        0.25,
        0.75,
        ["a", "b"],
    )


def test_the_well_constant_fields_tensors_and_bcs(tmp_path, layouts):
    ds = open_dataset(layouts.write_well(tmp_path / "toy.hdf5"))
    assert field_names(ds) == ["pressure", "velocity_x", "velocity_y"] + [
        f"stress_{s}" for s in ("xx", "xy", "yx", "yy")
    ]
    assert_coded(ds, layouts, {"pressure": 0, "velocity_x": 0, "velocity_y": 1})
    assert_coded(ds, layouts, {"stress_xx": 0, "stress_xy": 1, "stress_yx": 2, "stress_yy": 3})
    assert ds.obstacle.dims == ("x", "y") and ds.inflow.dims == ("time", "x", "y")
    assert ds.profile.dims == ("sample", "time", "x")  # y is not dim-varying
    assert_coded(ds, layouts, {"obstacle": 0, "inflow": 0, "profile": 0, "energy": 0})
    assert ds.attrs["bc_y_wall"] == "wall:y" and ds.attrs["Re"] == 100.0
    np.testing.assert_array_equal(ds.time, np.arange(5) * 0.5)
    with h5py.File(layouts.write_well(tmp_path / "no_tensors.hdf5"), "r+") as f:
        del f["t2_fields"]  # a writer that leaves out an empty field group
    no_t2 = open_dataset(tmp_path / "no_tensors.hdf5")
    assert field_names(no_t2) == ["pressure", "velocity_x", "velocity_y"]
    with h5py.File(layouts.write_well(tmp_path / "kept_axis.hdf5"), "r+") as f:
        profile = f["t0_fields/profile"][()]  # (B, T, X): y does not vary
        attrs = dict(f["t0_fields/profile"].attrs)
        del f["t0_fields/profile"]
        f["t0_fields"].create_dataset("profile", data=profile[..., None])  # y kept, size 1
        f["t0_fields/profile"].attrs.update(attrs)
    kept = open_dataset(tmp_path / "kept_axis.hdf5").profile
    assert kept.dims == ("sample", "time", "x")
    np.testing.assert_array_equal(kept.values, profile)


def write_well_3d(path):
    """A 3D Well file with what the 2D ones lack: an empty ``field_names``, a constant vector
    field listed before the time-varying one, a tensor field without B axis, a time grid that
    varies per sample, space grids that vary per sample or per frame, bc_type in any case.
    -> the arrays written, by name."""
    n, t, x, y, z = 2, 4, 5, 3, 6
    rng = np.random.default_rng(0)
    arrays = {
        "time": np.cumsum(rng.random((n, t)), axis=1),  # (B, T)
        "x": np.arange(x, dtype=float),
        "y": rng.random((n, y)),  # (B, Y)
        "z": rng.random((t, z)),  # (T, Z)
        "gravity": rng.random((x, y, z, 3)),  # neither sample- nor time-varying
        "velocity": rng.random((n, t, x, y, z, 3)),
        "stress": rng.random((t, x, y, z, 3, 3)),  # the same in every sample
        "forcing": rng.random(n),  # a per-sample scalar
    }
    with h5py.File(path, "w") as f:
        f.attrs.update(
            {
                "dataset_name": "toy_convection",
                "grid_type": "cartesian",
                "n_spatial_dims": 3,
                "n_trajectories": n,
                "simulation_parameters": ["Ra"],
                "Ra": 1e6,
            }
        )
        d = f.create_group("dimensions")
        d.attrs["spatial_dims"] = ["x", "y", "z"]
        for key, sample, time in (("time", True, True), ("x", 0, 0), ("y", 1, 0), ("z", 0, 1)):
            d[key] = arrays[key].astype(np.float32)
            d[key].attrs.update({"sample_varying": bool(sample), "time_varying": bool(time)})
        for name, kind in (("x_periodic", "PERIODIC"), ("y_wall", "Wall"), ("z_open", "open")):
            bc = f.create_group(f"boundary_conditions/{name}")
            bc.attrs.update(
                {"associated_dims": [name[0]], "associated_fields": [], "bc_type": kind}
            )
            bc["mask"] = np.ones(5, dtype=bool)
            bc["values"] = np.zeros(5, dtype=np.float32)
        sc = f.create_group("scalars")
        sc.attrs["field_names"] = ["Ra", "forcing"]
        sc["Ra"], sc["forcing"] = np.float32(1e6), arrays["forcing"].astype(np.float32)
        sc["Ra"].attrs.update({"sample_varying": False, "time_varying": False})
        sc["forcing"].attrs.update({"sample_varying": True, "time_varying": False})
        f.create_group("t0_fields").attrs["field_names"] = []
        for group, names, flags in (
            ("t1_fields", ("gravity", "velocity"), ((False, False), (True, True))),
            ("t2_fields", ("stress",), ((False, True),)),
        ):
            f.create_group(group).attrs["field_names"] = list(names)
            for name, (sample, time) in zip(names, flags, strict=True):
                f[group][name] = arrays[name].astype(np.float32)
                f[group][name].attrs.update(
                    {"sample_varying": sample, "time_varying": time, "dim_varying": [True] * 3}
                )
    return {k: v.astype(np.float32) for k, v in arrays.items()}


def test_the_well_3d_vectors_tensors_and_varying_grids(tmp_path):
    path = tmp_path / "toy_convection.hdf5"
    arrays = write_well_3d(path)
    ds = open_dataset(path)
    assert dict(ds.sizes) == {"sample": 2, "time": 4, "x": 5, "y": 3, "z": 6}  # in this order
    assert list(ds.sizes) == ["sample", "time", "x", "y", "z"]
    assert field_names(ds) == ["velocity_x", "velocity_y", "velocity_z"]
    for i, axis in enumerate("xyz"):
        np.testing.assert_array_equal(ds[f"velocity_{axis}"].values, arrays["velocity"][..., i])
        np.testing.assert_array_equal(ds[f"gravity_{axis}"].values, arrays["gravity"][..., i])
    assert ds.gravity_z.dims == ("x", "y", "z") and ds.stress_zx.dims == ("time", "x", "y", "z")
    for (i, a), (j, b) in itertools.product(enumerate("xyz"), repeat=2):
        np.testing.assert_array_equal(ds[f"stress_{a}{b}"].values, arrays["stress"][..., i, j])
    np.testing.assert_array_equal(ds.x, arrays["x"])
    for name, dims, key in (
        ("time_per_sample", ("sample", "time"), "time"),
        ("y_per_sample", ("sample", "y"), "y"),
        ("z_per_time", ("time", "z"), "z"),
        ("forcing", ("sample",), "forcing"),
    ):
        assert ds[name].dims == dims
        np.testing.assert_array_equal(ds[name].values, arrays[key])
    assert {k: v for k, v in ds.attrs.items() if k.startswith("bc_")} == {
        "bc_x_periodic": "periodic:x",
        "bc_y_wall": "wall:y",
        "bc_z_open": "open:z",
    }
    assert (ds.attrs["pde"], ds.attrs["n_spatial_dims"], ds.attrs["Ra"]) == (
        "toy_convection",
        3,
        1e6,
    )


@pytest.mark.parametrize("per_sample", [True, False])
def test_dpot_unified(tmp_path, layouts, per_sample):
    path = layouts.write_dpot_unified(tmp_path, per_sample=per_sample)
    ds = open_dataset(path, fields=["u", "v"])
    assert dict(ds.sizes) == {"sample": 3, "time": 5, "x": 8, "y": 6}
    assert_coded(ds, layouts, {"u": 0, "v": 1})
    assert field_names(open_dataset(path)) == ["c0", "c1"]


def test_dpot_per_sample_files_glob_order_and_shape_check(tmp_path, layouts):
    layouts.write_dpot_unified(tmp_path)
    (tmp_path / "data_0.hdf5").rename(tmp_path / "data_10.hdf5")  # numeric, not text, order
    ds = open_dataset(str(tmp_path / "data_*.hdf5"))
    assert_coded(ds.isel(sample=[2, 0, 1]), layouts, {"c0": 0})
    ds.close()  # releases the read handles, so the files can be rewritten in place
    with h5py.File(tmp_path / "data_2.hdf5", "w") as f:
        f["data"] = np.zeros((8, 6, 4, 2), np.float32)
    with pytest.raises(ValueError, match=r"data_2\.hdf5.*shape \(8, 6, 4, 2\)"):
        open_dataset(tmp_path)


def test_unknown_layout_lists_every_layout_tried(tmp_path):
    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as f:
        f["something"] = np.zeros(3)
    with pytest.raises(ValueError) as err:
        open_dataset(path)
    message = str(err.value)
    assert str(path) in message and "'something'" in message
    for name in ("native", "the_well", "pdearena", "pdebench", "fno", "dpot_unified"):
        assert f"{name} (missing " in message


def test_truncated_file_names_the_file(tmp_path, layouts):
    path = layouts.write_pdebench_cfd(tmp_path / "cut.hdf5")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"cut\.hdf5.*truncated"):
        open_dataset(path)
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match=r"junk\.h5: neither HDF5"):
        open_dataset(tmp_path / "junk.h5")


def test_engine_opens_peer_formats(tmp_path, layouts):
    path = layouts.write_pdearena(tmp_path / "arena.h5")
    ds = xr.open_dataset(path, engine="dpot_lab", drop_variables=["buo_y"])
    assert "buo_y" not in ds and field_names(ds) == ["density", "vx", "vy"]
    assert_coded(ds, layouts, {"vx": 1})


def h5(path, arrays, userblock_size=None):
    """A file holding ``arrays`` ({key: array}) and nothing else."""
    with h5py.File(path, "w", userblock_size=userblock_size) as f:
        for key, value in arrays.items():
            f[key] = value
    return path


def rewritten(path, drop, add=None):
    """``path`` with the datasets in ``drop`` deleted and those in ``add`` written instead."""
    with h5py.File(path, "r+") as f:
        for key in drop:
            del f[key]
        for key, value in (add or {}).items():
            f[key] = value
    return path


def write_mat(path, arrays):
    """A MATLAB v5 file holding ``arrays``."""
    from scipy.io import savemat

    savemat(path, arrays)
    return path


def zeros(*shape):
    """float32 zeros (a placeholder for data whose values do not matter)."""
    return np.zeros(shape, np.float32)


BAD = {  # name -> (writer of a broken file in a folder, what the error must say)
    "groups_data_without_channels": (
        lambda p, lay: h5(p / "2D_diff-react_NA_NA.h5", {"0000/data": zeros(5, 8)}),
        r"'0000/data' has shape \(5, 8\), expected \(T, X\[, Y, Z\], C\)",
    ),
    "groups_sample_without_data": (
        lambda p, lay: rewritten(lay.write_pdebench_groups(p / "dr.h5"), ["0001/data"]),
        r"sample group\(s\) \['0001'\] have no 'data' like '0000'",
    ),
    "cfd_without_vy": (
        lambda p, lay: rewritten(lay.write_pdebench_cfd(p / "2D_CFD_Rand.hdf5"), ["Vy"]),
        r"no \['Vy'\]; a 2D compressible NS file has \['density', 'Vx', 'Vy', 'pressure'\]",
    ),
    "cfd_without_space": (
        lambda p, lay: h5(p / "cfd.hdf5", {k: zeros(3, 5) for k in ("density", "Vx", "pressure")}),
        r"'density' has shape \(3, 5\), expected \(N, T, X\[, Y, Z\]\)",
    ),
    "incompressible_velocity_3_components": (
        lambda p, lay: h5(p / "ns.h5", {"velocity": zeros(3, 5, 8, 6, 3)}),
        r"'velocity' has shape \(3, 5, 8, 6, 3\), expected \(B, T, X, Y, 2\)",
    ),
    "incompressible_force_with_time": (
        lambda p, lay: h5(
            p / "ns.h5", {"velocity": zeros(3, 5, 8, 6, 2), "force": zeros(3, 5, 8, 6, 2)}
        ),
        r"'force' has shape \(3, 5, 8, 6, 2\), expected \(B, X, Y, 2\), no T axis",
    ),
    "incompressible_particles_without_channel": (
        lambda p, lay: h5(
            p / "ns.h5", {"velocity": zeros(3, 5, 8, 6, 2), "particles": zeros(3, 5, 8, 6)}
        ),
        r"'particles' has shape \(3, 5, 8, 6\), expected \(B, T, X, Y, 1\)",
    ),
    "tensor_without_space": (
        lambda p, lay: h5(p / "1D_Burgers_Sols_Nu0.01.hdf5", {"tensor": zeros(3, 5)}),
        r"'tensor' has shape \(3, 5\), expected \(N, T, X\[, Y, Z\]\)",
    ),
    "pdearena_without_y": (
        lambda p, lay: h5(p / "arena.h5", {"train/u": zeros(3, 5, 8), "train/vx": zeros(3, 5, 8)}),
        r"'train/u' has shape \(3, 5, 8\), expected \(N, T, X, Y\)",
    ),
    "fno_v73_u_3d": (
        lambda p, lay: h5(p / "ns.mat", {"u": zeros(5, 6, 8)}, userblock_size=512),
        r"fno \(missing .*4-D 'u'; 'u' has shape \(5, 6, 8\)\)",
    ),
    "fno_v5_without_u": (
        lambda p, lay: write_mat(p / "ns.mat", {"a": zeros(3, 8, 6)}),
        r"expected a 4-D 'u' \(N, X, Y, T\) in the \.mat file; no 'u'",
    ),
    "well_field_listed_not_stored": (
        lambda p, lay: rewritten(lay.write_well(p / "well.hdf5"), ["t0_fields/pressure"]),
        r"'/t0_fields' lists 'pressure' in its field_names, but has no dataset",
    ),
    "well_field_without_y": (
        lambda p, lay: rewritten(
            lay.write_well(p / "well.hdf5"),
            ["t0_fields/pressure"],
            {"t0_fields/pressure": zeros(3, 5, 8)},
        ),
        r"'/t0_fields/pressure' has shape \(3, 5, 8\), "
        r"expected axes \('sample', 'time', 'x', 'y'\)",
    ),
    "well_time_grid_one_too_long": (
        lambda p, lay: rewritten(
            lay.write_well(p / "well.hdf5"), ["dimensions/time"], {"dimensions/time": zeros(6)}
        ),
        r"conflicting sizes for dimension 'time'",
    ),
    "dpot_data_3d": (
        lambda p, lay: h5(p / "data_0.hdf5", {"data": zeros(3, 4, 5)}),
        r"dpot_unified \(missing dataset 'data' .*; 'data' has shape \(3, 4, 5\)\)",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_names_file_field_and_what_was_expected(tmp_path, layouts, case):
    write, says = BAD[case]
    path = write(tmp_path, layouts)
    with pytest.raises(ValueError) as err:
        open_dataset(path)
    message = str(err.value)
    assert message.startswith(str(path.resolve())) and re.search(says, message), message


def test_check_finite_names_the_sample_of_a_failed_simulation(tmp_path, layouts):
    path = layouts.write_pdebench_groups(tmp_path / "2D_diff-react_NA_NA.h5")
    with h5py.File(path, "r+") as f:
        f["0001/data"][3, 2, 1, 1] = np.nan  # (T, X, Y, C): sample 1, frame 3, field 'v'
    ds = open_dataset(path)
    with pytest.raises(
        ValueError,
        match=r"diff-react_NA_NA.h5: non-finite values \(NaN/Inf\): 'v' at sample 1 frame 3$",
    ):
        check_finite(ds)
    with pytest.warns(
        UserWarning, match=r"dropped 1 of 3 samples with NaN/Inf \(sample indices \[1\]\)"
    ):
        kept = check_finite(ds, skip=True)
    np.testing.assert_array_equal(kept.u.values, layouts.expected(ds.u)[[0, 2]])
