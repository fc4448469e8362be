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
# The third step of the walk **pre-train → fine-tune → roll out**. A DPOT predicts the next frame
# from the last `t_in`; fed its own predictions it rolls a trajectory out as far as asked.
#
# - **Picks up** `OUT_DIR/finetuned.pt`, the model `02_finetune.ipynb` fine-tuned, and the
#   held-out trajectories of the file it was fine-tuned on (named in its metadata); without it,
#   the model shipped with dpot-lab on held-out sets of three of its pre-training families. Any
#   other checkpoint through `CHECKPOINT`, your own files through `DATA`.
# - **Writes** the rollouts as netCDF to `OUT_DIR/rollout/`.
#
# 1. tables of L2RE (the paper's metric) and VRMSE (The Well's) per source and field;
# 2. how the error grows with the rollout step, against the persistence baseline;
# 3. energy spectra: which scales the model keeps and which it smooths away;
# 4. error against cost: is the model cheaper than the solver run on a coarser grid?
# 5. the rollout exported to netCDF;
# 6. truth | prediction | error, frame by frame, in the rollout viewer.
#
# `QUICK = True` (or `DPOT_LAB_QUICK=1`) keeps every size small.

# %% tags=["parameters"]
import os

QUICK = os.environ.get("DPOT_LAB_QUICK", "0") not in ("", "0")  # small sizes, well under a minute
OUT_DIR = "../runs/notebooks"  # 02 writes finetuned.pt here; exported rollouts go to rollout/
CHECKPOINT = None  # any checkpoint; None: OUT_DIR/finetuned.pt if it exists, else the shipped one
DATA = None  # {name: path} of trajectory files to evaluate; None: see the top of the notebook
STEPS = None  # rollout steps; None: 8 in quick mode, else every frame after the input
COST = None  # generator spec of the error-vs-cost plot (ns2d, diffusion_reaction or
# shallow_water); None: the data's family when it has a coarse-solver baseline

# %%
from pathlib import Path

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import torch
import xarray as xr
from IPython.display import display

import dpot_lab as dl
from dpot_lab.data.generation import generate_cached

hv.extension("bokeh", logo=False, inline=True)  # BokehJS from the kernel: works offline
pn.extension(inline=True)
out = Path(OUT_DIR) / "rollout"
out.mkdir(parents=True, exist_ok=True)
solver = {"device": "cuda"} if torch.cuda.is_available() else {}  # solvers run on a GPU if any

# %% [markdown]
# ## The model
#
# `open_checkpoint` tells our checkpoints from the DPOT release's files, read once;
# `dl.load_checkpoint` and `dl.load_official` build the model from either.

# %%
if CHECKPOINT is None:
    from_02 = Path(OUT_DIR) / "finetuned.pt"
    CHECKPOINT = str(from_02 if from_02.exists() else dl.viz.demo_checkpoint())
opened = dl.models.checkpoint.open_checkpoint(CHECKPOINT)
model = (dl.load_checkpoint if opened.kind == "dpot-lab" else dl.load_official)(opened)
model.eval()
made_by = opened.extra.get("metadata", {})  # 02 names the file and held-out count it used
t_in, grid = model.config.in_timesteps, model.config.img_size
steps = STEPS or (8 if QUICK else None)
print(f"{CHECKPOINT}: {opened.description}\n{model.config}")

# %% [markdown]
# ## The data
#
# The held-out trajectories of the file the model was fine-tuned on (its last `n_test`, which the
# fine-tuning never trained on), or held-out sets made by dpot-lab's solvers from seeds no
# training here used, on the model's grid; or your own files through `DATA`. Each is a lazily
# read `xarray.Dataset` whose `sample` coordinate keeps the trajectories' labels in their file.
# A rollout starts from the first `t_in` frames of every trajectory.

# %%
specs = {}
if DATA is None and "data" in made_by:  # 02's file: its held-out trajectories, in a file
    whole = dl.open_dataset(made_by["data"])
    held_out = whole.isel(sample=slice(whole.sizes["sample"] - made_by["n_test"], None))
    name = made_by.get("family", Path(made_by["data"]).stem)
    DATA = {name: dl.data.save(held_out, out / f"{name}_held_out.h5")}
elif DATA is None:  # held-out sets of three pre-training families, on the model's grid
    n_frames = t_in + (steps or 20)
    size = dict(n_samples=4 if QUICK else 32, resolution=grid[0])
    specs = {
        "ns2d": dict(generate="ns2d", nu=1e-3, n_frames=n_frames),
        "diffusion_reaction": dict(generate="diffusion_reaction", n_frames=n_frames, t_end=1.5),
        "shallow_water": dict(generate="shallow_water", n_frames=n_frames, t_end=0.5),
    }
    DATA = {name: generate_cached(dict(spec, seed=900 + i, **size, **solver))
            for i, (name, spec) in enumerate(specs.items())}  # fmt: skip
data = {name: dl.open_dataset(path) for name, path in DATA.items()}
pd.DataFrame(
    {name: {"fields": ", ".join(dl.data.schema.field_names(ds)),
            "samples": ", ".join(map(str, ds.sample.values)), **ds.sizes}
     for name, ds in data.items()}
).T  # fmt: skip

# %%
preds = {name: dl.rollout(model, ds, t_in=t_in, steps=steps) for name, ds in data.items()}
preds[next(iter(preds))]

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
# ## 4. Error against cost
#
# Is the model worth it, or would the solver that made the data, run on a coarser grid, be as
# accurate for less? `dl.studies.cost_curve` re-runs the solver from the state the model starts
# from on the data's grid (the reference) and on coarser ones (N/2, N/4, …, brought back to the
# data's grid), rolls the model out from the first `t_in` frames, and scores each with L2RE over
# the same frames against the reference, timing each (seconds per trajectory on this device).

# %%
device = "cuda" if torch.cuda.is_available() else "cpu"
if COST is None and "ns2d" in specs:  # the solver of the NS set, from a fresh initial state
    COST = dict(specs["ns2d"], seed=950, n_samples=2 if QUICK else 4, resolution=grid[0],
                n_frames=t_in + (4 if QUICK else 10))  # fmt: skip
if COST is None:
    print(
        f"{', '.join(data)}: no coarse-solver baseline for this family (one of "
        f"{sorted(dl.evaluate.cost.FAMILIES)} is needed): set COST to a generator spec"
    )
else:
    table = dl.studies.cost_curve(COST, model, t_in=t_in, device=device,
                                  repeats=1 if QUICK else 3)  # fmt: skip
    speedup = dl.studies.speedup_at_equal_error(table)
    display(table.to_dataframe())

# %% [markdown]
# Log–log: each dot is the solver on one coarse grid (the reference grid itself, error ≈ 0, is
# left out of the plot), the star is the model. Lower is more accurate, left is cheaper. The
# speed-up at equal error follows the dashed line at the model's error to where it crosses the
# solver's curve: that solver time over the model's (above 1: the model is cheaper at equal error).
# "none": even the coarsest solve is more accurate than the model, so the curve never comes down
# to the model's error; compare the times directly.

# %%
if COST is not None:
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
plot if COST is not None else None

# %% [markdown]
# ## 5. Export
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

# %% [markdown]
# ## 6. Frame by frame
#
# The rollout viewer of `panel serve apps/rollout_viewer.py`, here in the notebook on the first
# source: pick a sample and a field, press play. The error panel has its own symmetric colour
# scale; the curve marks the current frame; the lines beside the player say which frames and
# fields the L2RE covers and how long a rollout took. For data a built-in solver made,
# *Coarse solver* adds that solver's rollout on a coarser grid beside the model's (dashed: its
# error per step).

# %%
first = next(iter(DATA))  # the viewer opens a file: the first set's
viewer = dl.viz.RolloutViewer(checkpoint=CHECKPOINT, data=DATA[first])
viewer.load()
pn.Column(
    pn.Row(viewer.sample, viewer.field, viewer.baseline, viewer.cmap),
    pn.Row(viewer.player, pn.Column(viewer.status, viewer.scores, viewer.timings)),
    viewer.images,
    pn.Row(viewer.curves, viewer.spectra),
)
