"""The data model: validation names what is wrong; check_finite finds (and can drop) NaN/Inf."""

import numpy as np
import pytest
import torch
import xarray as xr

from dpot_lab.data import schema
from dpot_lab.data.mixture import Mixture
from dpot_lab.data.schema import check_finite, field_names, validate
from dpot_lab.evaluate.rollout import field_layout


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


def test_a_field_has_sample_time_and_every_spatial_dim_in_any_order():
    ds = dataset().assign(
        w=lambda d: d["u"].transpose("y", "time", "x", "sample"),  # any order: a field
        line=lambda d: d["u"].isel(y=0),  # (sample, time, x): not every spatial dim
        stack=lambda d: d["u"].expand_dims(member=2),  # an extra dim: not a field
    )
    assert field_names(ds) == ["u", "v", "w"]
    assert field_layout(ds) == (["u", "v", "w"], ("x", "y"))  # the evaluate side: one rule
    assert schema.spatial_dims(ds) == ("x", "y") == schema.spatial_dims(ds["w"])
    assert schema.field_dims(ds) == ("sample", "time", "x", "y")


def test_canonical_orders_field_dims_and_keeps_values():
    ds = dataset()
    assert schema.canonical(ds) is ds  # already canonical: nothing to do
    odd = ds.transpose("time", "y", "sample", "x")
    fixed = schema.canonical(odd)
    for name in ("u", "v"):
        assert fixed[name].dims == ("sample", "time", "x", "y")
        xr.testing.assert_identical(fixed[name], ds[name])
    assert fixed["a"].dims == odd["a"].dims  # not a field: left alone
    validate(odd, "odd.h5")  # the data model accepts either order


def test_the_mixture_reads_a_transposed_dataset_as_the_canonical_one():
    ds = dataset(n=3, t=6, x=8, y=6)
    odd = ds.transpose("y", "sample", "x", "time")
    kw = dict(resolution=(8, 6), t_in=2, t_out=1, channels=2, split="all")
    same, swapped = Mixture([ds], **kw), Mixture([odd], **kw)
    assert len(same) == len(swapped) > 0
    for i in range(len(same)):
        a, b = same[i], swapped[i]
        assert all(torch.equal(a[k], b[k]) for k in a if isinstance(a[k], torch.Tensor))


def test_validate_accepts_a_good_dataset_and_names_each_problem():
    ds = dataset()
    assert validate(ds, "good.h5") is ds
    bad = ds.drop_attrs().isel(time=0).assign_coords(x=np.arange(5)[::-1])
    with pytest.raises(ValueError) as err:
        validate(bad, "bad.h5")
    message = str(err.value)
    assert message.startswith("bad.h5: ")
    assert "no 'time' dimension" in message
    assert "no field with dims ('sample', 'time', 'x', 'y') (in any order)" in message
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
