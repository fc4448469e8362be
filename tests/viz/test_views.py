"""HoloViews views: what each draws equals the data it shows; big grids are downsampled and only
the displayed frame is built."""

import json
import subprocess
import sys

import holoviews as hv
import numpy as np
import pytest
import xarray as xr
from bokeh.models import Plot, WheelZoomTool

import dpot_lab as dl
from dpot_lab.viz import views


def _pair(n_time=12, t_in=4, shape=(32, 24), seed=0) -> tuple[xr.Dataset, xr.Dataset]:
    """(prediction of the frames after t_in, truth with all frames), two fields."""
    rng = np.random.default_rng(seed)
    dims = ("sample", "time", "x", "y")
    coords = {"time": 0.5 * np.arange(n_time), "x": np.arange(shape[0]) / shape[0],
              "y": np.arange(shape[1]) / shape[1]}  # fmt: skip
    truth = xr.Dataset(
        {f: (dims, rng.standard_normal((2, n_time, *shape)).astype(np.float32)) for f in "uv"},
        coords=coords,
    )
    pred = truth.isel(time=slice(t_in, None)) + 0.1 * rng.standard_normal(
        (2, n_time - t_in, *shape)
    )
    return pred.astype(np.float32), truth


def test_import_is_lazy():
    code = (
        "import sys, dpot_lab.viz as v; v.DEMO_CHECKPOINT; v.demo_checkpoint(); "
        "print(','.join(m for m in ('panel', 'holoviews', 'bokeh') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


IMPORT_EVERY_VIZ_MODULE = """
import importlib, json, pkgutil, sys
import holoviews as hv, panel as pn
import dpot_lab.viz as viz
calls = []
pn.extension = lambda *a, **k: calls.append("pn.extension")
hv.extension = lambda *a, **k: calls.append("hv.extension")
before = {k: repr(v) for k, v in pn.config.param.values().items()}
modules = [m.name for m in pkgutil.iter_modules(viz.__path__)]
for name in modules:
    importlib.import_module(f"dpot_lab.viz.{name}")
after = {k: repr(v) for k, v in pn.config.param.values().items()}
ext = sys.modules["panel.config"].panel_extension
changed = sorted(k for k in before if before[k] != after[k])
loaded = ext._loaded or ext._loaded_extensions
print(json.dumps({"modules": modules, "calls": calls, "loaded": loaded, "changed": changed}))
"""


def test_importing_viz_sets_up_no_extension():
    """Apps and notebooks call ``pn.extension``/``hv.extension`` (a notebook must choose inline
    resources first); importing any ``dpot_lab.viz`` module calls neither, nor changes Panel's
    configuration."""
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERY_VIZ_MODULE], capture_output=True, text=True, check=True
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"app", "views", "baseline"} <= set(found["modules"])
    assert found["calls"] == [] and not found["loaded"] and found["changed"] == []


def _figures(obj) -> list[Plot]:
    """The Bokeh plots HoloViews draws for ``obj``."""
    root = hv.render(obj)
    return [root] if isinstance(root, Plot) else list(root.select({"type": Plot}))


def test_the_wheel_scrolls_the_page_and_zoom_stays_in_the_toolbar():
    pred, truth = _pair()
    base = _pair(seed=1)[0]
    shown = [
        views.rollout_images(pred, truth, "u", frame=1, baseline=base),
        views.error_curves(pred, truth, frame=1, baseline=base),
        views.spectra_plot(pred, truth, "u", frame=1, baseline=base),
    ]
    plots = [p for view in shown for p in _figures(view)]
    assert len(plots) == 7  # 5 images, curves, spectrum
    for p in plots:
        assert any(isinstance(t, WheelZoomTool) for t in p.toolbar.tools)
        assert not isinstance(p.toolbar.active_scroll, WheelZoomTool)


def test_downsample_is_a_block_mean_within_the_limit():
    a = np.random.default_rng(0).standard_normal((600, 300))
    da = xr.DataArray(a, dims=("x", "y"))
    small = views.downsample(da, max_size=256)
    assert dict(small.sizes) == {"x": 200, "y": 150}  # factors 3 and 2
    np.testing.assert_allclose(small.values, a.reshape(200, 3, 150, 2).mean((1, 3)))
    assert views.downsample(da, max_size=600) is da


def test_images_show_truth_prediction_and_error_of_the_frame():
    pred, truth = _pair()
    layout = views.rollout_images(pred, truth, "v", sample=1, frame=3)
    img_truth, img_pred, img_err = layout
    # hv.Image data is (y, x); frame 3 of the rollout is time index 4 + 3 of the truth
    np.testing.assert_array_equal(img_truth.dimension_values(2, flat=False), truth.v[1, 7].values.T)
    np.testing.assert_array_equal(img_pred.dimension_values(2, flat=False), pred.v[1, 3].values.T)
    np.testing.assert_allclose(
        img_err.dimension_values(2, flat=False), (pred.v[1, 3] - truth.v[1, 7]).values.T, rtol=1e-6
    )
    clim = img_truth.opts.get().kwargs["clim"]
    assert clim == img_pred.opts.get().kwargs["clim"]
    # shared scale: the truth's range over the rollout's frames of this sample
    assert clim == pytest.approx((float(truth.v[1, 4:].min()), float(truth.v[1, 4:].max())))
    lo, hi = img_err.opts.get().kwargs["clim"]
    assert lo == -hi and hi == pytest.approx(float(abs(pred.v[1] - truth.v[1, 4:]).max()))


def test_large_rollout_builds_only_the_shown_frame_downsampled():
    pred, truth = _pair(n_time=24, t_in=4, shape=(512, 512))
    layout = views.rollout_images(pred, truth, "u", sample=0)  # notebook: a frame slider
    dmaps = list(layout)
    assert all(isinstance(d, hv.DynamicMap) for d in dmaps)
    assert dmaps[0].kdims[0].name == "frame" and dmaps[0].kdims[0].range == (0, 19)
    hv.render(layout)
    for d in dmaps:
        assert list(d.data) == [(0,)]  # one frame built
        assert d[0].dimension_values(2, flat=False).shape == (256, 256)
    expected = truth.u[0, 4 + 5].values.reshape(256, 2, 256, 2).mean((1, 3)).T
    np.testing.assert_allclose(dmaps[0][5].dimension_values(2, flat=False), expected, rtol=1e-5)


def test_a_stream_drives_the_frame():
    pred, truth = _pair()
    frame = hv.streams.Stream.define("Frame", frame=0)()
    spectra = views.spectra_plot(pred, truth, "u", sample=0, frame=frame)
    frame.event(frame=6)
    truth_curve = spectra[()].Curve.Truth
    expected = dl.metrics.energy_spectrum(truth.u[0, 4 + 6]).values[1:]
    np.testing.assert_allclose(truth_curve.dimension_values(1), expected, rtol=1e-6)
    assert "t = 5" in spectra[()].opts.get().kwargs["title"]  # time coordinate 0.5 · 10


def test_error_curves_are_the_per_step_errors():
    pred, truth = _pair()
    overlay = views.error_curves(pred, truth, sample=1, frame=2)
    steps = dl.metrics.per_step_error(pred, truth).isel(sample=1)
    for f in "uv":
        curve = overlay.select(hv.Curve).get(f"Curve.{f.upper()}")
        np.testing.assert_allclose(curve.dimension_values(1), steps[f].values, rtol=1e-6)
    l2re = float(dl.metrics.l2re(pred, truth).isel(sample=1).to_array().mean())
    assert f"L2RE {l2re:.3g}" in overlay.opts.get().kwargs["title"]


def test_color_limits_ignore_diverged_frames():
    pred, truth = _pair()
    pred["u"][0, 3:] = np.nan
    p, t = views.sample_pair(pred, truth, "u", 0)
    (lo, hi), (elo, ehi) = views.color_limits(p, t)
    assert np.isfinite([lo, hi, elo, ehi]).all() and elo == -ehi > -np.inf
    assert ehi == pytest.approx(float(abs(p[:3] - t[:3]).max()))


def test_a_baseline_adds_its_images_and_dashed_error_curves():
    pred, truth = _pair()
    base = _pair(seed=1)[0]  # another prediction of the same frames
    layout = views.rollout_images(pred, truth, "v", sample=1, frame=3, baseline=base,
                                  baseline_label="solver 8²")  # fmt: skip
    titles = [img.opts.get().kwargs["title"].split(" · ")[0] for img in layout]
    assert titles == ["truth", "prediction", "solver 8²", "prediction error", "solver 8² error"]
    np.testing.assert_array_equal(layout[2].dimension_values(2, flat=False), base.v[1, 3].values.T)
    err = max(float(abs(p.v[1] - truth.v[1, 4:]).max()) for p in (pred, base))  # one scale
    assert layout[3].opts.get().kwargs["clim"] == layout[4].opts.get().kwargs["clim"]
    assert layout[4].opts.get().kwargs["clim"][1] == pytest.approx(err)

    overlay = views.error_curves(pred, truth, sample=1, frame=2, baseline=base,
                                 baseline_label="solver 8²")  # fmt: skip
    curves = {c.label: c for c in overlay if isinstance(c, hv.Curve)}
    assert set(curves) == {"u", "v", "u · solver 8²", "v · solver 8²"}
    steps = dl.metrics.per_step_error(base, truth).isel(sample=1)
    for f in "uv":
        solver, model = curves[f"{f} · solver 8²"], curves[f]
        np.testing.assert_array_equal(solver.dimension_values(0), pred["time"].values)
        np.testing.assert_allclose(solver.dimension_values(1), steps[f].values, rtol=1e-6)
        assert solver.opts.get().kwargs["line_dash"] == "dashed"
        assert solver.opts.get().kwargs["color"] == model.opts.get().kwargs["color"]
    l2re = float(dl.metrics.l2re(base, truth).isel(sample=1).to_array().mean())
    assert overlay.opts.get().kwargs["title"].endswith(f" · solver 8² {l2re:.3g}")

    shown = views.spectra_plot(pred, truth, "v", sample=1, frame=3, baseline=base,
                               baseline_label="solver 8²")  # fmt: skip
    spectra = {c.label: c for c in shown}
    assert list(spectra) == ["truth", "prediction", "solver 8²"]
    expected = dl.metrics.energy_spectrum(base.v[1, 3]).values[1:]
    np.testing.assert_allclose(spectra["solver 8²"].dimension_values(1), expected, rtol=1e-6)
    assert spectra["solver 8²"].opts.get().kwargs["line_dash"] == "dotted"


@pytest.mark.parametrize("view", ["sample_pair", "rollout_images", "error_curves", "spectra_plot"])
def test_an_array_where_a_dataset_is_expected_says_what_to_pass(view):
    pred, truth = _pair()
    fn = getattr(views, view)
    args = () if view == "error_curves" else ("u",)
    with pytest.raises(TypeError, match=rf"{view}: pred: expected an xarray.Dataset .* numpy"):
        fn(pred.u.values, truth, *args)
    with pytest.raises(TypeError, match=rf"{view}: truth: .* got xarray.DataArray; turn"):
        fn(pred, truth.u, *args)
