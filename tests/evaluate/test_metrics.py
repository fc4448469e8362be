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


def test_fields_without_overlap_are_refused():
    truth = _truth()
    with pytest.raises(ValueError, match=r"have none in common"):
        dl.metrics.l2re(truth.rename(u="w", p="q"), truth)
    with pytest.raises(ValueError, match=r"share no coordinates"):
        dl.metrics.l2re(truth.assign_coords(time=truth.time + 100), truth)
