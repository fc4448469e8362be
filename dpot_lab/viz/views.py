"""HoloViews views of a rollout against the truth: field images, error curves and spectra.

Every view takes the rollout ``pred`` and the ``truth`` as Datasets (sample, time, x, y[, z]); the
truth may hold more frames (the input window), they are matched by time. ``sample`` is a position
along ``sample``; ``frame`` a position along the rollout's ``time``. ``frame`` may also be a
HoloViews stream with a ``frame`` parameter (the app drives it with a Player), or None for a
slider in a notebook: only the displayed frame is built. 3D fields show their middle z-slice.
A ``baseline`` (e.g. the coarse solver's rollout, ``viz.baseline.coarse_rollout``) is laid out like
``pred`` and shown beside it, named by ``baseline_label``.
"""

from __future__ import annotations

from collections.abc import Callable

import holoviews as hv
import numpy as np
import xarray as xr

from dpot_lab.data.schema import require_dataset
from dpot_lab.evaluate import metrics
from dpot_lab.evaluate.score import score_rollout

hv.renderer("bokeh")  # load the Bokeh backend and its options without notebook output or CDN JS

ERROR_CMAP = "RdBu_r"
COLORS = hv.Cycle().values  # one colour per field, shared by its model and baseline curves
FrameArg = int | hv.streams.Stream | None
# dragging pans; the mouse wheel scrolls the page (wheel zoom stays in the toolbar, off); the
# toolbar beside the plot leaves its title the plot's whole width
TOOLS = {"active_tools": ["pan"], "toolbar": "right"}


def downsample(da: xr.DataArray, max_size: int = 256) -> xr.DataArray:
    """Block means over x and y so that neither has more than ``max_size`` points."""
    factors = {d: -(-da.sizes[d] // max_size) for d in ("x", "y") if d in da.dims}
    factors = {d: f for d, f in factors.items() if f > 1}
    return da.coarsen(factors, boundary="trim").mean() if factors else da


def sample_pair(
    pred: xr.Dataset, truth: xr.Dataset, field: str, sample: int = 0
) -> tuple[xr.DataArray, xr.DataArray]:
    """(prediction, truth) of one field and sample on the rollout's frames -> dims (time, x, y),
    loaded into memory; 3D fields reduced to their middle z-slice."""
    require_dataset(pred, "sample_pair: pred")
    require_dataset(truth, "sample_pair: truth")
    if field not in pred.data_vars:
        raise ValueError(f"no field {field!r} in the rollout; fields: {list(pred.data_vars)}")
    p, t = metrics.align(metrics.indexed(pred[[field]]).isel(sample=[sample]), truth[[field]])
    p, t = p[field].isel(sample=0), t[field].isel(sample=0)
    if "z" in p.dims:
        p, t = p.isel(z=p.sizes["z"] // 2), t.isel(z=t.sizes["z"] // 2)
    return p.transpose("time", "x", "y").load(), t.transpose("time", "x", "y").load()


def color_limits(
    pred: xr.DataArray, truth: xr.DataArray, max_size: int = 256
) -> tuple[tuple[float, float], tuple[float, float]]:
    """(field limits from the truth, symmetric error limits) over all frames (time, x, y) of one
    sample, read on a grid strided to at most ``max_size`` points per axis; NaN frames skipped."""
    stride = tuple(slice(None, None, -(-n // max_size)) for n in truth.shape[1:])
    t = truth.values[(slice(None), *stride)]
    diff = np.abs(pred.values[(slice(None), *stride)] - t)
    diff = diff[np.isfinite(diff)]
    lo, hi = float(np.nanmin(t)), float(np.nanmax(t))
    err = float(diff.max()) if diff.size and diff.max() > 0 else 1e-12
    return (lo, hi if hi > lo else lo + 1e-12), (-err, err)


def _grid(da: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    return tuple(
        da[d].values if d in da.coords else np.arange(da.sizes[d], dtype=float) for d in ("x", "y")
    )


def _image(
    da: xr.DataArray, label: str, title: str, cmap: str, clim: tuple, width: int
) -> hv.Image:
    """One frame (x, y) as an image with its colour bar; x to the right, y up."""
    x, y = _grid(da)
    img = hv.Image((x, y, da.transpose("y", "x").values), ["x", "y"], hv.Dimension(label))
    return img.opts(
        cmap=cmap, clim=clim, colorbar=True, title=title, frame_width=width, data_aspect=1,
        tools=["hover"], colorbar_opts={"width": 10}, **TOOLS,
    )  # fmt: skip


def _frames(
    frame: FrameArg, n: int, build: Callable[[int], hv.Element]
) -> hv.Element | hv.DynamicMap:
    """``build(frame)`` for a fixed frame, or a DynamicMap of it over a slider or a stream."""
    if isinstance(frame, int | np.integer):
        return build(int(frame))
    if frame is None:
        dim = hv.Dimension("frame", range=(0, max(n - 1, 0)), default=0, type=int)
        return hv.DynamicMap(lambda frame: build(int(frame)), kdims=[dim])
    return hv.DynamicMap(lambda frame: build(int(frame)), streams=[frame])


def rollout_images(
    pred: xr.Dataset,
    truth: xr.Dataset,
    field: str,
    sample: int = 0,
    frame: FrameArg = None,
    cmap: str = "viridis",
    clim: tuple[float, float] | None = None,
    max_size: int = 256,
    width: int = 200,
    baseline: xr.Dataset | None = None,
    baseline_label: str = "baseline",
) -> hv.Layout:
    """truth | prediction | error images of one field (the truth's title names the field and the
    time): truth and prediction share ``clim`` (None: the truth's range over the rollout), the error
    has its own symmetric scale. With a
    ``baseline``: truth | prediction | baseline, then both errors on one symmetric scale. Frames
    are downsampled to at most ``max_size``² on the server."""
    require_dataset(pred, "rollout_images: pred")
    require_dataset(truth, "rollout_images: truth")
    p, t = sample_pair(pred, truth, field, sample)
    shown = {"prediction": p}
    if baseline is not None:
        shown[baseline_label] = sample_pair(baseline, truth, field, sample)[0]
    auto, _ = color_limits(p, t)
    err = max(color_limits(s, t)[1][1] for s in shown.values())
    clim = tuple(clim) if clim is not None else auto
    times = p["time"].values
    one = baseline is None

    def panel(which: str, error: bool) -> Callable[[int], hv.Image]:
        def build(i: int) -> hv.Image:
            i = min(max(i, 0), len(times) - 1)
            if error:
                da, lim, cm = shown[which][i] - t[i], (-err, err), ERROR_CMAP
                name, label = ("error" if one else f"{which} error"), f"{field} error"
            else:
                da, lim, cm = (t if which == "truth" else shown[which])[i], clim, cmap
                name, label = which, field
            title = f"truth · {field} · t = {times[i]:.4g}" if which == "truth" else name
            return _image(downsample(da, max_size), label, title, cm, lim, width)

        return build

    panels = [("truth", False), *((w, False) for w in shown), *((w, True) for w in shown)]
    layout = hv.Layout([_frames(frame, len(times), panel(*w)) for w in panels]).cols(3)
    return layout.opts(toolbar=TOOLS["toolbar"])  # the images share one toolbar


def error_curves(
    pred: xr.Dataset,
    truth: xr.Dataset,
    sample: int = 0,
    frame: FrameArg = None,
    width: int = 360,
    height: int = 220,
    baseline: xr.Dataset | None = None,
    baseline_label: str = "baseline",
) -> hv.Overlay:
    """Relative L2 error over space at each frame, one curve per field, with the current frame
    marked; the title gives the sample's L2RE (all frames jointly, averaged over fields). A
    ``baseline``'s curves are dashed, in its field's colour, labelled "FIELD · baseline_label"."""
    require_dataset(pred, "error_curves: pred")
    require_dataset(truth, "error_curves: truth")
    runs = {"": pred} | ({} if baseline is None else {baseline_label: baseline})
    curves, titles = [], []
    for name, run in runs.items():
        scored = score_rollout(metrics.indexed(run).isel(sample=[sample]), truth).isel(sample=0)
        steps = scored["step_error"]  # (time, field)
        titles.append(f"{name} {float(scored['mean']):.3g}".strip())
        for i, f in enumerate(str(f) for f in steps["field"].values):
            curve = hv.Curve(
                (steps["time"].values, steps.sel(field=f).values),
                "time",
                "relative L2 error",
                label=f"{f} · {name}" if name else f,
            )
            style = "dashed" if name else "solid"
            curves.append(curve.opts(color=COLORS[i % len(COLORS)], line_dash=style))
    times = curves[0].dimension_values(0)  # the model's scored frames
    marker = _frames(frame, len(times), lambda i: hv.VLine(times[min(max(i, 0), len(times) - 1)]))
    overlay = hv.Overlay(curves) * marker.opts(color="gray", line_dash="dashed", line_width=1)
    return overlay.opts(
        hv.opts.Curve(line_width=2, tools=["hover"], **TOOLS),
        hv.opts.Overlay(
            title=f"error per step · L2RE {' · '.join(titles)}", frame_width=width,
            frame_height=height, legend_position="top_left", show_grid=True, **TOOLS,
        ),
    )  # fmt: skip


def spectra_plot(
    pred: xr.Dataset,
    truth: xr.Dataset,
    field: str,
    sample: int = 0,
    frame: FrameArg = None,
    width: int = 360,
    height: int = 220,
    baseline: xr.Dataset | None = None,
    baseline_label: str = "baseline",
) -> hv.DynamicMap | hv.Overlay:
    """Radially averaged energy spectra E(k) of truth and prediction (and ``baseline``, dotted) at
    one frame, log-log."""
    require_dataset(pred, "spectra_plot: pred")
    require_dataset(truth, "spectra_plot: truth")
    p, t = sample_pair(pred, truth, field, sample)
    runs = {"truth": t, "prediction": p}
    if baseline is not None:
        runs[baseline_label] = sample_pair(baseline, truth, field, sample)[0]
    styles = {
        "truth": {"color": "black"},
        "prediction": {"color": COLORS[0], "line_dash": "dashed"},
    }

    def build(i: int) -> hv.Overlay:
        i = min(max(i, 0), p.sizes["time"] - 1)
        spectra = {name: metrics.energy_spectrum(run[i]) for name, run in runs.items()}
        k = spectra["truth"]["k"].values[1:]
        energy = {name: e.values[1:] for name, e in spectra.items()}
        # log axes: show 12 decades below the peak, empty shells at the floor
        floor = 1e-12 * max(np.nanmax(e, initial=0) for e in energy.values()) or 1e-30
        curves = [
            hv.Curve((k, np.maximum(e, floor)), "k", "E(k)", label=name).opts(
                **styles.get(name, {"color": COLORS[1], "line_dash": "dotted"})
            )
            for name, e in energy.items()
        ]
        return hv.Overlay(curves).opts(
            title=f"energy spectrum · {field} · t = {p['time'].values[i]:.4g}",
            logx=True, logy=True, frame_width=width, frame_height=height, show_grid=True,
            legend_position="bottom_left", framewise=True, **TOOLS,
        )  # fmt: skip

    return _frames(frame, p.sizes["time"], build)
