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
# # DPOT in 3D: turbulence in a periodic box
#
# The same workflow as in 2D, one axis more: data `(sample, time, x, y, z)`, a `DPOT3D` model
# (3D patches, Fourier mixing over three axes), training, rollout and the same views (3D fields
# show their middle z-slice).
#
# 1. generate decaying 3D Navier–Stokes turbulence (velocity `u`, `v`, `w`) and look at it;
# 2. train a 3D DPOT — from scratch, or from a 2D checkpoint (`CHECKPOINT`: its blocks carry
#    over, as in `02_finetune.ipynb`);
# 3. roll it out on held-out trajectories and compare with the truth.
#
# `QUICK = True` (or `DPOT_LAB_QUICK=1`) keeps every size small.

# %% tags=["parameters"]
import os

QUICK = os.environ.get("DPOT_LAB_QUICK", "0") not in ("", "0")  # small sizes, well under a minute
OUT_DIR = "../runs/notebooks"  # generated data, run directory and exported rollout go here
CHECKPOINT = (
    None  # a 2D or 3D checkpoint to start from (ours or a DPOT release file); None: scratch
)
SEED = 0

# %%
from pathlib import Path

import holoviews as hv
import pandas as pd
import torch
import xarray as xr

import dpot_lab as dl

hv.extension("bokeh", logo=False, inline=True)  # BokehJS from the kernel: works offline
out = Path(OUT_DIR) / "3d"
out.mkdir(parents=True, exist_ok=True)
solver = {"device": "cuda"} if torch.cuda.is_available() else {}  # solvers run on a GPU if any

S = dict(
    n_samples=6 if QUICK else 200,
    n_test=2 if QUICK else 20,
    resolution=16 if QUICK else 32,
    n_frames=10 if QUICK else 20,
    steps=80 if QUICK else 5_000,
    batch_size=4 if QUICK else 16,
    t_in=4 if QUICK else 10,
)

# %% [markdown]
# ## 1. Data
#
# A random divergence-free velocity with a Passot–Pouquet spectrum, left to decay under the
# incompressible Navier–Stokes equations (pseudo-spectral solver, dealiased, integrating-factor
# RK4). Each trajectory's first frame is its initial state.

# %%
path = dl.generate(
    "ns3d",
    out / "ns3d.h5",
    n_samples=S["n_samples"],
    resolution=S["resolution"],
    seed=SEED,
    n_frames=S["n_frames"],
    overwrite=True,  # a re-run replaces the file of the last run
    **solver,
)
ds = dl.open_dataset(path)
ds

# %% [markdown]
# The kinetic energy ½⟨|u|²⟩ of each trajectory decays as viscosity removes the small eddies:

# %%
energy = (0.5 * (ds.u**2 + ds.v**2 + ds.w**2)).mean(["x", "y", "z"]).load()  # (sample, time)
hv.Overlay(
    [hv.Curve((energy.time, energy.isel(sample=i)), "time", "kinetic energy") for i in range(3)]
).opts(
    title="kinetic energy of three trajectories", frame_width=420, frame_height=240,
    show_grid=True,
)  # fmt: skip

# %% [markdown]
# One velocity component of one trajectory, slice by slice (sliders pick time and z):

# %%
u = ds.u.isel(sample=0).load()  # (time, x, y, z)
lim = (float(u.min()), float(u.max()))


def u_slice(time: float, z: float) -> hv.Image:
    frame = u.sel(time=time, z=z).transpose("y", "x")
    return hv.Image(frame, ["x", "y"]).opts(clim=lim, title=f"u at z = {z:.3f}, t = {time:.3g}")


hv.DynamicMap(
    u_slice,
    kdims=[
        hv.Dimension("time", values=list(u.time.values)),
        hv.Dimension("z", values=list(u.z.values), default=float(u.z.values[len(u.z) // 2])),
    ],
).opts(cmap="RdBu_r", colorbar=True, frame_width=280, frame_height=280, tools=["hover"])

# %% [markdown]
# ## 2. Train a 3D DPOT
#
# `model.n_spatial: 3` makes the model 3D. From a 2D checkpoint (`CHECKPOINT`), the blocks load
# and the parts tied to the number of axes (patch and positional embeddings, temporal
# aggregation, output head) start fresh; the transfer report lists every tensor.

# %%
model = {
    "preset": "nano",
    "n_spatial": 3,
    "patch_size": 4,
    "embed_dim": 64,
    "depth": 2,
    "modes": 4,
    "modes_z": 3,
    "mlp_ratio": 1,
    "out_layer_dim": 16,
    "normalize": True,
}
if CHECKPOINT is not None:
    model = {"preset": None, "n_spatial": 3}
config = {
    "name": "ns3d", "seed": SEED, "steps": S["steps"], "batch_size": S["batch_size"],
    "init_from": str(CHECKPOINT) if CHECKPOINT is not None else None, "model": model,
    "data": {"sources": [str(path)], "resolution": S["resolution"], "t_in": S["t_in"],
             "channels": 3, "n_test": S["n_test"]},
    "optim": {"lr": 3e-3, "warmup": 0.1}, "noise": {"scale": 0.05},
    "eval": {"every": max(S["steps"] // 4, 1), "horizon": 4 if QUICK else None},
    "log": {"every": 5},
}  # fmt: skip
trainer = dl.train.Trainer(config, run_dir=out / "run", overwrite=True)
if trainer.transfer_report is not None:
    print(trainer.transfer_report.summary())
print(trainer.model)

# %%
history = trainer.fit()
evals = pd.DataFrame([r for r in history if r["event"] == "eval"])
evals.assign(
    l2re=[r["ns3d"] for r in evals.l2re], persistence=[r["ns3d"] for r in evals.l2re_persistence]
)[["step", "loss", "l2re", "persistence"]]

# %% [markdown]
# ## 3. Roll out and compare
#
# The held-out trajectories are the last `n_test` of the file; the rollout starts from their
# first `t_in` frames.

# %%
test = ds.isel(sample=slice(-S["n_test"], None))
pred = dl.rollout(trainer.model, test, t_in=S["t_in"])
scores = pd.DataFrame(
    {
        "model": dl.metrics.l2re(pred, test).mean("sample").to_pandas(),
        "persistence": dl.metrics.l2re(dl.metrics.persistence(test, t_in=S["t_in"]), test)
        .mean("sample")
        .to_pandas(),
    }
)
scores.T.assign(mean=scores.T.mean(axis=1)).style.format("{:.4f}")

# %% [markdown]
# Truth | prediction | error at the middle z-slice (the slider picks the frame), and the error
# of every frame:

# %%
dl.viz.rollout_images(pred, test, "u") + dl.viz.error_curves(pred, test)

# %%
nc = dl.data.to_netcdf(pred, out / "rollout_ns3d.nc")
back = xr.open_dataset(nc, engine="h5netcdf")
xr.testing.assert_allclose(back.load(), pred)
print(f"{nc}: {dict(back.sizes)}")
