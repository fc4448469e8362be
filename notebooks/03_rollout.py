# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Roll out a model and look at what it predicts
#
# A DPOT predicts the next frame from the last `t_in`; fed its own predictions it rolls a
# trajectory out as far as asked. This notebook rolls a checkpoint out on held-out trajectories
# of several PDEs and compares it with the truth:
#
# 1. tables of L2RE (the paper's metric) and VRMSE (The Well's) per source and field;
# 2. how the error grows with the rollout step, against the persistence baseline;
# 3. energy spectra: which scales the model keeps and which it smooths away;
# 4. truth | prediction | error, frame by frame, with a player — the view of the rollout app;
# 5. error against cost: is the model cheaper than the solver run on a coarser grid?
# 6. the rollout exported to netCDF.
#
# `QUICK = True` (or `DPOT_LAB_QUICK=1`) keeps every size small.

# %% tags=["parameters"]
import os

QUICK = os.environ.get("DPOT_LAB_QUICK", "0") not in ("", "0")  # small sizes, well under a minute
OUT_DIR = "../runs/notebooks"  # exported rollouts (and a quick model, if one is trained) go here
CHECKPOINT = None  # ours or a DPOT release file; None: the shipped pre-trained model
DATA = None  # {name: path} of trajectory files to evaluate; None: held-out sets generated here
STEPS = None  # rollout steps; None: 8 in quick mode, else every frame after the input
COST = None  # generator spec of the error-vs-cost plot (ns2d, diffusion_reaction or
# shallow_water); None: the shipped model's NS demo set (in quick mode 2 trajectories on 32²)

# %%
from pathlib import Path

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import torch
import xarray as xr

import dpot_lab as dl
from dpot_lab.data.generation import generate_cached
from dpot_lab.viz.app import demo_sources

hv.extension("bokeh", logo=False, inline=True)  # BokehJS from the kernel: works offline
pn.extension(inline=True)
out = Path(OUT_DIR) / "rollout"
out.mkdir(parents=True, exist_ok=True)
solver = {"device": "cuda"} if torch.cuda.is_available() else {}  # solvers run on a GPU if any

# %% [markdown]
# ## The model
#
# `open_checkpoint` tells our checkpoints (the pre-trained one ships with dpot-lab;
# `01_pretrain.ipynb` writes others) from the DPOT release's files, read once;
# `dl.load_checkpoint` and `dl.load_official` build the model from either.

# %%
opened = dl.models.checkpoint.open_checkpoint(CHECKPOINT or dl.viz.demo_checkpoint())
model = (dl.load_checkpoint if opened.kind == "dpot-lab" else dl.load_official)(opened)
print(opened.description)
model.eval()
t_in = model.config.in_timesteps
steps = STEPS or (8 if QUICK else None)
print(f"{CHECKPOINT}\n{model}")

# %% [markdown]
# ## The data
#
# Held-out trajectories from dpot-lab's solvers (seeds that no training set here uses), or your
# own files through `DATA`. Each is a lazily read `xarray.Dataset`; a rollout starts from the
# first `t_in` frames of every trajectory.

# %%
if DATA is None:
    n_frames = t_in + (steps or 20)
    size = dict(n_samples=4, resolution=32) if QUICK else dict(n_samples=32, resolution=64)
    specs = {
        "ns2d": dict(generate="ns2d", nu=1e-3, n_frames=n_frames),
        "diffusion_reaction": dict(generate="diffusion_reaction", n_frames=n_frames, t_end=1.5),
        "shallow_water": dict(generate="shallow_water", n_frames=n_frames, t_end=0.5),
    }
    DATA = {name: generate_cached(dict(spec, seed=900 + i, **size, **solver))
            for i, (name, spec) in enumerate(specs.items())}  # fmt: skip
data = {name: dl.open_dataset(path) for name, path in DATA.items()}
pd.DataFrame({name: {"fields": ", ".join(ds.data_vars), **ds.sizes} for name, ds in data.items()}).T

# %%
preds = {name: dl.rollout(model, ds, t_in=t_in, steps=steps) for name, ds in data.items()}
preds["ns2d" if "ns2d" in preds else next(iter(preds))]

# %% [markdown]
# ## 1. Scores per source and field
#
# `dl.evaluate.score_rollout` is the paper's protocol: L2RE = ‖prediction − truth‖ / ‖truth‖
# over all rollout frames and the grid, per trajectory and field (`l2re`), per frame
# (`step_error`) and averaged over fields, then trajectories (`mean`); the trainer's evaluation
# and `dpot-lab evaluate` report the same numbers. `dl.metrics` adds others on the same Datasets:
# VRMSE = RMSE / standard deviation of the truth, per frame (predicting the mean scores 1).
# Persistence repeats the last input frame: a model must beat it to be of any use.

# %%
scores, rows = {}, {}
for name, ds in data.items():
    pred = preds[name]
    still = dl.metrics.persistence(ds, t_in=t_in, steps=pred.sizes["time"])
    for label, p in (("model", pred), ("persistence", still)):
        s = scores[name, label] = dl.evaluate.score_rollout(p, ds)
        vrmse = dl.metrics.vrmse(p, ds).mean()  # over trajectories and frames, per field
        rows[name, label] = {
            **{("L2RE", f): v for f, v in s["l2re"].mean("sample").to_pandas().items()},
            ("L2RE", "mean"): float(s["mean"]),
            **{("VRMSE", f): float(vrmse[f]) for f in vrmse.data_vars},
            ("VRMSE", "mean"): float(vrmse.to_array().mean()),
        }
pd.DataFrame(rows).T.style.format("{:.4f}", na_rep="")

# %% [markdown]
# ## 2. Error growth
#
# The relative L2 error of each frame (over the grid), averaged over trajectories and fields:
# errors compound as predictions are fed back.

# %%
curves = []
for (name, label), s in scores.items():
    growth = s["step_error"].mean(("sample", "field")).values  # (steps,)
    k = np.arange(1, growth.size + 1)
    curve = hv.Curve((k, growth), "rollout step", "relative L2 error",
                     label=name if label == "model" else f"{name} (persistence)")  # fmt: skip
    curves.append(curve.opts(line_dash="solid" if label == "model" else "dashed"))
hv.Overlay(curves).opts(
    hv.opts.Curve(line_width=2, tools=["hover"]),
    hv.opts.Overlay(title="error growth (dashed: persistence)", frame_width=520,
                    frame_height=300, show_grid=True, legend_position="right"),
)  # fmt: skip

# %% [markdown]
# ## 3. Energy spectra
#
# Radially averaged E(k) of truth and prediction at the last rollout frame, averaged over
# trajectories. A prediction that drops below the truth at high k has smoothed the small scales.

# %%
spectra = []
for name, ds in data.items():
    pred = preds[name]
    field = next(iter(pred.data_vars))
    last = pred[field].isel(time=-1)
    truth = ds[field].sel(time=last.time)
    for label, da in (("truth", truth), ("prediction", last)):
        e = dl.metrics.energy_spectrum(da.load()).mean("sample")
        spectra.append(
            hv.Curve(
                (e.k.values[1:], e.values[1:]), "k", "E(k)", label=f"{name} {field} {label}"
            ).opts(line_dash="solid" if label == "truth" else "dashed")
        )
hv.Overlay(spectra).opts(
    hv.opts.Overlay(title="energy spectra at the last frame (dashed: prediction)", logx=True,
                    logy=True, frame_width=520, frame_height=300, show_grid=True,
                    legend_position="right"),
)  # fmt: skip

# %% [markdown]
# ## 4. Frame by frame
#
# The rollout viewer of `panel serve apps/rollout_viewer.py`, here in the notebook on the first
# source: pick a sample and a field, press play. The error panel has its own symmetric colour
# scale; the curve marks the current frame. For data a built-in solver made, *Coarse solver*
# adds that solver's rollout on a coarser grid beside the model's (dashed: its error per step).

# %%
first = next(iter(DATA))
viewer = dl.viz.RolloutViewer(checkpoint=CHECKPOINT, data=DATA[first])
viewer.load()
pn.Column(
    pn.Row(viewer.sample, viewer.field, viewer.baseline, viewer.cmap),
    pn.Row(viewer.player, viewer.status),
    viewer.scores,
    viewer.images,
    pn.Row(viewer.curves, viewer.spectra),
)

# %% [markdown]
# ## 5. Error against cost
#
# Is the model worth it, or would the solver that made the data, run on a coarser grid, be as
# accurate for less? `dl.evaluate.cost_curve` re-runs the solver from the state the model starts
# from on the data's grid (the reference) and on coarser ones (N/2, N/4, …, brought back to the
# data's grid), rolls the model out from the first `t_in` frames, and scores each with L2RE over
# the same frames against the reference, timing each (seconds per trajectory on this device).

# %%
if COST is None:
    demo = next(e["spec"] for e in demo_sources().values() if e["spec"]["generate"] == "ns2d")
    COST = dict(demo, n_samples=2, resolution=32, n_frames=t_in + 4) if QUICK else demo
device = "cuda" if torch.cuda.is_available() else "cpu"
table = dl.evaluate.cost_curve(COST, model, t_in=t_in, device=device, repeats=1 if QUICK else 3)
speedup = dl.evaluate.speedup_at_equal_error(table)
table.to_dataframe()

# %% [markdown]
# Log–log: each dot is the solver on one coarse grid (the reference grid itself, error ≈ 0, is
# left out of the plot), the star is the model. Lower is more accurate, left is cheaper. The
# speed-up at equal error follows the dashed line at the model's error to where it crosses the
# solver's curve: that solver time over the model's (above 1: the model is cheaper at equal error).
# "none": even the coarsest solve is more accurate than the model, so the curve never comes down
# to the model's error; compare the times directly.

# %%
n_ref = table.attrs["reference_resolution"]
coarse = table.sel(resolution=table["resolution"] < n_ref)
sec, err = coarse["seconds_per_trajectory"].values, coarse["l2re"].values
grids = [f"  {r}²" for r in coarse["resolution"].values]
model_point = (float(table["model_seconds_per_trajectory"]), float(table["model_l2re"]))
kdims, vdims = "seconds per trajectory", "L2RE"
plot = (
    hv.Curve((sec, err), kdims, vdims, label="coarse solver").opts(color="black")
    * hv.Scatter((sec, err), kdims, vdims).opts(color="black", size=8)
    * hv.Labels((sec, err, grids), [kdims, vdims], "grid").opts(text_align="left")
    * hv.Scatter([model_point], kdims, vdims, label="model").opts(marker="star", size=16)
    * hv.HLine(model_point[1]).opts(color="gray", line_dash="dashed", line_width=1)
)
gain = "none" if speedup is None else f"{speedup:.3g}×"
plot.opts(
    hv.opts.Overlay(title=f"{table.attrs['family']}: error against cost · speed-up at equal "
                    f"error {gain} ({device}, batch {table.attrs['batch_size']})", logx=True,
                    logy=True, frame_width=520, frame_height=320, show_grid=True,
                    legend_position="bottom_left"),
)  # fmt: skip

# %% [markdown]
# ## 6. Export
#
# The rollout is a Dataset like the input (same fields, dimensions and coordinates, `time`
# continuing the input's, plus `diverged_at` per trajectory), so it exports as it is. netCDF-4
# opens in xarray, ParaView, ncview and most analysis tools.

# %%
for name, pred in preds.items():
    path = dl.data.to_netcdf(pred, out / f"rollout_{name}.nc")
    back = xr.open_dataset(path, engine="h5netcdf")
    xr.testing.assert_allclose(back.load(), pred)
    print(f"{path}: {dict(back.sizes)}, fields {list(back.data_vars)}")
