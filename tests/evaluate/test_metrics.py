"""dl.metrics against plain numpy formulas, exact spectra of Fourier modes, persistence."""

import numpy as np
import pytest
import xarray as xr

import dpot_lab as dl
from dpot_lab.evaluate import metrics


def _truth(n=4, t=12, shape=(20, 16), seed=0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    dims = ("sample", "time", "x", "y")
    return xr.Dataset(
        {f: (dims, rng.standard_normal((n, t, *shape))) for f in ("u", "p")},
        coords={"time": 0.1 * np.arange(t)},
    )


def _pred(truth: xr.Dataset, t_in=5, seed=1) -> xr.Dataset:
    """Noisy copy of the frames after t_in, as a rollout would give."""
    rng = np.random.default_rng(seed)
    after = truth.isel(time=slice(t_in, None))
    return after + 0.3 * rng.standard_normal(after.u.shape)


def test_l2re_is_the_paper_formula():
    truth = _truth()
    pred = _pred(truth)
    err = dl.metrics.l2re(pred, truth)  # truth still holds the 5 input frames: matched by time
    assert err.u.dims == ("sample",)
    for f in ("u", "p"):
        y, yhat = truth[f].values[:, 5:], pred[f].values
        expected = np.linalg.norm((yhat - y).reshape(4, -1), axis=1) / np.linalg.norm(
            y.reshape(4, -1), axis=1
        )
        np.testing.assert_allclose(err[f].values, expected, rtol=1e-12)
    paper = err.to_array("field").mean("field").mean("sample")  # channels, then samples
    assert float(paper) == pytest.approx(np.mean([err.u.values, err.p.values]))


def test_per_step_error_and_nrmse_match_numpy():
    truth, pred = _truth(), _pred(_truth())
    y, yhat = truth.u.values[:, 5:], pred.u.values
    step = dl.metrics.per_step_error(pred, truth).u
    assert step.dims == ("sample", "time")
    np.testing.assert_allclose(
        step.values, np.sqrt(((yhat - y) ** 2).sum((2, 3)) / (y**2).sum((2, 3))), rtol=1e-12
    )
    np.testing.assert_allclose(
        dl.metrics.nrmse(pred, truth).u.values,
        np.sqrt(((yhat - y) ** 2).mean((2, 3)) / ((y**2).mean((2, 3)) + 1e-7)),
        rtol=1e-12,
    )


def test_a_diverged_frame_makes_the_errors_it_enters_nan():
    truth = _truth()
    pred = _pred(truth)
    pred["u"][1, 3:] = np.nan
    err, steps = dl.metrics.l2re(pred, truth), dl.metrics.per_step_error(pred, truth)
    assert np.isnan(err.u[1]) and np.isfinite(err.u[[0, 2, 3]]).all() and np.isfinite(err.p).all()
    assert np.isfinite(steps.u[1, :3]).all() and np.isnan(steps.u[1, 3:]).all()
    assert np.isnan(dl.metrics.vrmse(pred, truth).u[1, 3:]).all()


def test_vrmse_of_the_spatial_mean_is_one():
    truth = _truth()
    pred = truth.mean(["x", "y"]).broadcast_like(truth)
    score = dl.metrics.vrmse(pred, truth)
    assert score.u.dims == ("sample", "time")
    for f in ("u", "p"):
        np.testing.assert_allclose(score[f].values, 1.0, atol=1e-6)
    assert float(dl.metrics.vrmse(truth, truth).u.max()) == 0.0


@pytest.mark.parametrize(
    "shape, mode, k",
    [((64, 64), (3, 4), 5), ((48, 32), (0, 6), 6), ((40, 64), (-7, 0), 7),
     ((16, 16, 12), (1, 2, 2), 3)],
)  # fmt: skip
def test_spectrum_of_one_fourier_mode_peaks_at_its_wavenumber(shape, mode, k):
    grids = np.meshgrid(*(np.arange(n) / n for n in shape), indexing="ij")
    u = 2.0 * np.cos(2 * np.pi * sum(m * g for m, g in zip(mode, grids, strict=True)))
    dims = ("sample", "time", *"xyz"[: len(shape)])
    data = xr.DataArray(u[None, None], dims=dims)
    spec = dl.metrics.energy_spectrum(data)
    assert spec.dims == ("sample", "time", "k")
    assert spec.sizes["k"] == min(shape) // 2 + 1
    e = spec.isel(sample=0, time=0)
    assert int(e.argmax("k")) == k
    # all the energy ½·mean(u²) = ½·2 = 1 sits in shell k
    np.testing.assert_allclose(float(e.sel(k=k)), 1.0, rtol=1e-12)
    np.testing.assert_allclose(float(e.sum()), 1.0, rtol=1e-12)


def test_spectrum_ratio_of_a_scaled_field_is_the_scale_squared():
    truth = _truth(t=3)
    ratio = dl.metrics.spectrum_ratio(3.0 * truth, truth)
    assert ratio.u.dims == ("sample", "time", "k")
    np.testing.assert_allclose(ratio.to_array().values, 9.0, rtol=1e-12)


def test_persistence_repeats_the_last_input_frame():
    truth = _truth().assign_coords(x=np.linspace(0, 1, 20))
    base = metrics.persistence(truth, t_in=5, steps=4)
    manual = np.repeat(truth.u.values[:, 4:5], 4, axis=1)
    np.testing.assert_array_equal(base.u.values, manual)
    np.testing.assert_array_equal(base.time, truth.time[5:9])
    np.testing.assert_array_equal(base.x, truth.x)
    assert base.u.dims == truth.u.dims
    full = metrics.persistence(truth, t_in=5)  # steps=None: to the end
    assert full.sizes["time"] == 7
    swapped = truth.astype(truth.u.dtype.newbyteorder(">"))  # a big-endian file's arrays
    np.testing.assert_array_equal(metrics.persistence(swapped, t_in=5, steps=4).u.values, manual)


def test_a_sample_subset_is_scored_against_its_own_truth():
    truth = _truth().assign_coords(sample=[0, 1, 2, 3])
    pred = _pred(truth).isel(sample=[2, 1])  # labels 2, 1: positions 0, 1 of the subset
    whole = dl.metrics.l2re(pred, truth)
    own = dl.metrics.l2re(pred, truth.isel(sample=[2, 1]))
    xr.testing.assert_allclose(whole, own)
    np.testing.assert_array_equal(whole.sample, [2, 1])
    y, yhat = truth.u.values[2, 5:], pred.u.values[0]
    assert float(whole.u[0]) == pytest.approx(np.linalg.norm(yhat - y) / np.linalg.norm(y))


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda p: p.assign_coords(sample=[1, 7, 8, 9]), r"sample labels 7, 8, 9 are not in"),
        (lambda p: p.assign_coords(time=p.time + 0.5), r"time labels 1.2, 1.3, 1.4, 1.5, 1.6 are"),
        (lambda p: p.assign_coords(x=np.arange(20) + 0.5), r"x labels 0.5, 1.5, 2.5"),
        (lambda p: p.rename(p="q"), r"prediction fields \['q'\] are not in the truth"),
        (lambda p: p.isel(x=slice(0, 0)), r"the prediction is empty"),
    ],
)  # fmt: skip
def test_prediction_labels_missing_from_the_truth_are_refused(change, match):
    truth = _truth().assign_coords(sample=[0, 1, 2, 3], x=np.arange(20.0))
    pred = change(_pred(truth))
    for score in (dl.metrics.l2re, dl.metrics.vrmse, dl.metrics.nrmse, dl.metrics.spectrum_ratio):
        with pytest.raises(ValueError, match=match):
            score(pred, truth)


def test_the_truth_is_named_when_labels_are_missing():
    truth = _truth(n=8).assign_coords(sample=np.arange(8))
    with pytest.raises(ValueError, match=r"its sample: 0, 1, 2, 3, 4, … \(8 in all\)"):
        dl.metrics.l2re(_pred(truth).assign_coords(sample=np.arange(8) + 3), truth)


def test_repeated_truth_labels_are_refused():
    truth = _truth().assign_coords(sample=[0, 1, 0, 1])  # two files' labels stacked
    with pytest.raises(ValueError, match=r"the truth's sample labels repeat \(0, 1\)"):
        dl.metrics.l2re(_pred(truth).isel(sample=[2]), truth)


def test_persistence_of_a_labelled_subset_keeps_its_labels():
    truth = _truth().assign_coords(sample=[10, 11, 12, 13])
    subset = truth.isel(sample=[3, 1])
    base = metrics.persistence(subset, t_in=5, steps=4)
    np.testing.assert_array_equal(base.sample, [13, 11])
    xr.testing.assert_allclose(dl.metrics.l2re(base, truth), dl.metrics.l2re(base, subset))


def test_arrays_are_refused_with_a_type_error():
    truth = _truth()
    with pytest.raises(TypeError, match=r"got ndarray and Dataset"):
        dl.metrics.l2re(truth.u.values, truth)
    with pytest.raises(TypeError, match=r"persistence: dataset: expected an xarray.Dataset"):
        metrics.persistence(truth.u.values, t_in=5)


def _smooth(n=3, t=2, shape=(64, 48), seed=0) -> np.ndarray:
    """(n, t, *shape) sums of random-phase Fourier modes up to wavenumber 6 on a periodic grid."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(*(np.arange(s) / s for s in shape), indexing="ij")
    u = np.zeros((n, t, *shape))
    for kx, ky in rng.integers(-6, 7, size=(12, 2)):
        phase = 2 * np.pi * (kx * x + ky * y + rng.random())
        u += rng.standard_normal((n, t, 1, 1)) * np.cos(phase)
    return u


def _blocks(n=3, t=2, shape=(64, 48), patch=4, seed=1) -> np.ndarray:
    """(n, t, *shape) random values constant on each patch×patch patch."""
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((n, t, shape[0] // patch, shape[1] // patch))
    return coarse.repeat(patch, axis=2).repeat(patch, axis=3)


@pytest.mark.parametrize("patch", [4, 8])
def test_blockiness_is_about_one_without_a_patch_grid_and_high_with_one(patch):
    dims = ("sample", "time", "x", "y")
    truth = xr.Dataset({"u": (dims, _smooth(seed=2))})
    smooth_error = truth + 0.1 * _smooth(seed=3)
    grid_error = smooth_error + 0.2 * _blocks(patch=patch)
    b = dl.metrics.blockiness(smooth_error, truth, patch)
    assert b.u.dims == ("sample", "time")
    np.testing.assert_allclose(b.u, 1.0, atol=0.15)
    assert (dl.metrics.blockiness(grid_error, truth, patch).u > 2.0).all()
    # a field scored against zero: the smooth truth itself has no grid
    np.testing.assert_allclose(dl.metrics.blockiness(truth, 0 * truth, patch).u, 1.0, atol=0.15)
    # the grid of another patch size does not count as this one's
    other = 3 if patch == 4 else 5
    assert (dl.metrics.blockiness(grid_error, truth, other).u < 1.5).all()


def test_blockiness_refuses_a_patch_it_cannot_measure():
    truth = _truth(shape=(8, 8))
    with pytest.raises(ValueError, match="patch=1, expected an integer >= 2"):
        dl.metrics.blockiness(truth, truth, 1)
    with pytest.raises(ValueError, match="patch=8 needs more than 8 cells"):
        dl.metrics.blockiness(truth, truth, 8)
