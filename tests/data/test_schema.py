"""The data model: validation names what is wrong; check_finite finds (and can drop) NaN/Inf."""

import numpy as np
import pytest
import xarray as xr

from dpot_lab.data.schema import check_finite, field_names, validate


def dataset(n=4, t=3, x=5, y=4):
    rng = np.random.default_rng(1)
    return xr.Dataset(
        {
            "u": (("sample", "time", "x", "y"), rng.random((n, t, x, y))),
            "v": (("sample", "time", "x", "y"), rng.random((n, t, x, y))),
            "a": (("sample", "x", "y"), rng.random((n, x, y))),
        },
        coords={"time": np.arange(t) * 0.1, "x": np.arange(x), "y": np.arange(y)},
        attrs={"pde": "toy", "source_format": "test"},
    )


def test_field_names_are_the_time_dependent_fields():
    assert field_names(dataset()) == ["u", "v"]


def test_validate_accepts_a_good_dataset_and_names_each_problem():
    ds = dataset()
    assert validate(ds, "good.h5") is ds
    bad = ds.drop_attrs().transpose("time", "sample", "x", "y").assign_coords(x=np.arange(5)[::-1])
    with pytest.raises(ValueError) as err:
        validate(bad, "bad.h5")
    message = str(err.value)
    assert message.startswith("bad.h5: ")
    assert "no field with dims ('sample', 'time', 'x', 'y')" in message
    assert "'x' is not strictly increasing" in message and "attr 'pde' missing" in message
    with pytest.raises(ValueError, match="spatial dims must be"):
        validate(ds.rename(x="z", y="w"), "odd.h5")
    with pytest.raises(ValueError, match="attr 'cfg' is a dict"):
        validate(ds.assign_attrs(cfg={"a": 1}), "cfg.h5")


def test_check_finite_reports_variable_sample_and_frame():
    ds = dataset()
    assert check_finite(ds) is ds
    ds.u[2, 1, 3, 0] = np.nan
    ds.v[0, 2, 0, 0] = np.inf
    ds.v[2, 0, 1, 1] = -np.inf
    with pytest.raises(ValueError) as err:
        check_finite(ds)
    message = str(err.value)
    assert "'u' at sample 2 frame 1;" in message
    assert "'v' at sample 0 frame 2, sample 2 frame 0" in message


def test_check_finite_skip_drops_bad_samples_and_warns():
    ds = dataset()
    ds.u[1, 0, 0, 0] = np.nan
    ds.a[3, 2, 2] = np.nan  # a non-field variable of sample 3
    with pytest.warns(UserWarning, match=r"dropped 2 of 4 samples .*\[1, 3\]"):
        kept = check_finite(ds, skip=True)
    xr.testing.assert_identical(kept, ds.isel(sample=[0, 2]))
    no_sample = ds.assign(mask=(("x", "y"), np.full((5, 4), np.nan)))
    with pytest.raises(ValueError, match="'mask' has no sample axis"):
        check_finite(no_sample, skip=True)
