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
# # A tour of the data
#
# Everything in dpot-lab reads and writes one data model: an `xarray.Dataset` with dimensions
# `(sample, time, x, y[, z])`, one variable per physical field (`vorticity`, `u`, `v`, `h`,
# `density`, …), coordinates where the source has them, and attributes `pde`, `source_format`
# and the PDE's parameters. This notebook
#
# 1. generates a small corpus with the built-in solvers;
# 2. opens it, and looks at trajectories;
# 3. opens your own files — PDEBench, FNO, PDEArena, The Well, DPOT's — when you have them;
# 4. exports to netCDF.
#
# `QUICK = True` (or `DPOT_LAB_QUICK=1`) keeps every size small.

# %% tags=["parameters"]
import os

QUICK = os.environ.get("DPOT_LAB_QUICK", "0") not in ("", "0")  # small sizes, well under a minute
OUT_DIR = "../runs/notebooks"  # generated files go here
DATA_DIR = os.environ.get("DPOT_LAB_DATA", "../data")  # where your downloaded data files are
SEED = 0

# %%
from pathlib import Path

import h5py
import holoviews as hv
import numpy as np
import pandas as pd
import torch
import xarray as xr

import dpot_lab as dl

hv.extension("bokeh", logo=False, inline=True)  # BokehJS from the kernel: works offline
out = Path(OUT_DIR) / "data_tour"
out.mkdir(parents=True, exist_ok=True)
solver = {"device": "cuda"} if torch.cuda.is_available() else {}  # solvers run on a GPU if any

# %% [markdown]
# ## 1. Generate a corpus with the built-in solvers
#
# Each generator is a numerical solver plus a random initial state matching a public data set
# (FNO's Navier–Stokes, PDEBench's diffusion–reaction, shallow water and compressible NS, and
# 3D turbulence). Sample *i* depends only on the seed and *i*; the file is the native HDF5 format.

# %%
pd.DataFrame(
    [(name, g.resolution, g.description) for name, g in dl.data.GENERATORS.items()],
    columns=["name", "default resolution", "what"],
).set_index("name")

# %%
n = 3 if QUICK else 32
big = 128 if solver else 64  # the PDEBench grid on a GPU, half of it on a CPU
corpus_specs = {
    "ns2d": dict(n_samples=n, resolution=32 if QUICK else 64, nu=1e-3, n_frames=12, dt_save=0.5),
    "diffusion_reaction": dict(n_samples=n, resolution=32 if QUICK else big, n_frames=21,
                               t_end=2.0),
    "shallow_water": dict(n_samples=n, resolution=32 if QUICK else big, n_frames=21, t_end=1.0),
    "cns2d": dict(n_samples=n, resolution=16 if QUICK else big, n_frames=11,
                  t_end=0.1 if QUICK else 1.0, kind="turb", mach=0.3),
    "ns3d": dict(n_samples=2 if QUICK else 16, resolution=16 if QUICK else 32, n_frames=6),
}  # fmt: skip
paths = {  # overwrite=True: a re-run replaces the files of the last run
    name: dl.generate(name, out / f"{name}.h5", seed=SEED, overwrite=True, **spec, **solver)
    for name, spec in corpus_specs.items()
}

# %% [markdown]
# The same from a terminal, e.g.
# `dpot-lab generate ns2d --out ns2d.h5 --n-samples 64 --resolution 64 --param nu=1e-4`.
#
# ## 2. Open and look
#
# `dl.open_dataset` reads only the coordinates now; indexing (`.isel(sample=…, time=…)`) reads
# just the frames asked for, so multi-GB files open instantly.

# %%
data = {name: dl.open_dataset(path) for name, path in paths.items()}
data["ns2d"]

# %%
pd.DataFrame(
    {
        name: {"pde": ds.attrs["pde"], "fields": ", ".join(ds.data_vars), **ds.sizes}
        for name, ds in data.items()
    }
).T.fillna("")

# %% [markdown]
# One trajectory of each 2D source, frame by frame (the slider picks the time); 3D fields show
# their middle z-slice.


# %%
def frames(ds: xr.Dataset, field: str, sample: int = 0) -> hv.DynamicMap:
    """Images of one field of one trajectory over time; only the frame shown is drawn."""
    da = ds[field].isel(sample=sample)
    if "z" in da.dims:
        da = da.isel(z=da.sizes["z"] // 2)
    da = da.load()
    lim = (float(da.min()), float(da.max()))

    def image(time: float) -> hv.Image:
        frame = da.sel(time=time).transpose("y", "x")
        return hv.Image(frame, ["x", "y"]).opts(clim=lim, title=f"{ds.attrs['pde']}: {field}")

    return hv.DynamicMap(image, kdims=hv.Dimension("time", values=list(da.time.values)))


first_field = {name: next(iter(ds.data_vars)) for name, ds in data.items()}
hv.Layout([frames(ds, first_field[name]) for name, ds in data.items()]).opts(
    hv.opts.Image(cmap="viridis", colorbar=True, frame_width=190, frame_height=190, tools=["hover"])
).cols(3)

# %% [markdown]
# Every field of one data set at the last frame, for every sample:

# %%
ds = data["diffusion_reaction"].isel(time=-1).load()
hv.Layout(
    [
        hv.Image(ds[f].isel(sample=s).transpose("y", "x"), ["x", "y"]).opts(
            title=f"{f}, sample {s}"
        )
        for f in ds.data_vars
        for s in range(ds.sizes["sample"])
    ]
).opts(
    hv.opts.Image(cmap="RdBu_r", frame_width=150, frame_height=150, xaxis=None, yaxis=None)
).cols(ds.sizes["sample"])

# %% [markdown]
# How each field's spread evolves — statistics come straight from xarray's named dimensions:

# %%
curves = []
for name, ds in data.items():
    space = [d for d in ("x", "y", "z") if d in ds.dims]
    spread = ds.std(space).mean("sample").load()  # (time,) per field
    for field, da in spread.data_vars.items():
        if "time" in da.dims:
            std = np.where(da.values > 0, da.values, np.nan)  # log axis: a uniform start is 0
            t = da.time.values / da.time.values.max()
            curves.append(
                hv.Curve((t, std), "time / final time", "spatial std", label=f"{name}: {field}")
            )
hv.Overlay(curves).opts(
    hv.opts.Curve(line_width=2, tools=["hover"]),
    hv.opts.Overlay(frame_width=480, frame_height=280, logy=True, show_grid=True,
                    legend_position="right", title="spatial standard deviation over time"),
)  # fmt: skip

# %% [markdown]
# ## 3. Your own files
#
# `dl.open_dataset` recognises these layouts by their content (pass `format=` to skip the
# detection): put downloaded files anywhere under `DATA_DIR` (or set the environment variable
# `DPOT_LAB_DATA`) and run the next cell. Sections without files are skipped.
#
# | format | files |
# |---|---|
# | PDEBench | `2D_diff-react_NA_NA.h5`, `2D_rdb_NA_NA.h5`, `2D_CFD_*_Train.hdf5`, `ns_incom_*.h5` |
# | FNO | `NavierStokes_V1e-5_N1200_T20.mat` and friends (MATLAB v5 or v7.3) |
# | PDEArena | `NavierStokes2D_{train,valid,test}_*.h5` |
# | The Well | `datasets/<name>/data/{train,valid,test}/*.hdf5` |
# | DPOT | a folder of `data_{i}.hdf5` (key `data`, (X, Y, T, C)), or one (N, X, Y, T, C) file |

# %%
PATTERNS = {
    "PDEBench": ["2D_diff-react_NA_NA.h5", "2D_rdb_NA_NA.h5", "2D_CFD_*.hdf5", "ns_incom_*.h5"],
    "FNO": ["NavierStokes_*.mat", "ns_*.mat"],
    "PDEArena": ["NavierStokes2D_*.h5"],
    "The Well": ["datasets/*/data/*/*.hdf5"],
    "DPOT": ["data_0.hdf5"],
}
root = Path(DATA_DIR)
found = {}
for fmt, patterns in PATTERNS.items():
    files = sorted(f for p in patterns for f in root.rglob(p)) if root.is_dir() else []
    if fmt == "DPOT":
        files = [f.parent for f in files]  # a folder of per-sample files is one data set
    if not files:
        print(f"{fmt}: no files under {root.resolve()}")
        continue
    path = files[0]  # the first one of each format; every file opens the same way
    try:
        ds = dl.open_dataset(path)
    except ValueError as err:  # a layout variant the readers do not know: say which and why
        print(f"{fmt}: {path}: {err}")
        continue
    found[path.name] = {"format": ds.attrs.get("source_format"), "pde": ds.attrs.get("pde"),
                        "fields": ", ".join(ds.data_vars), **ds.sizes}  # fmt: skip
pd.DataFrame(found).T if found else None

# %% [markdown]
# No PDEBench file at hand? Here is one in its layout — a group per sample holding `data`
# (T, X, Y, C) and `grid/{x,y,t}` — written from our diffusion–reaction data with plain h5py.
# `dl.open_dataset` detects the layout and gives back the same data model (fields are named by
# the reader: PDEBench does not store names).

# %%
dr = data["diffusion_reaction"].load()
pdebench_file = out / "2D_diff-react_NA_NA.h5"
with h5py.File(pdebench_file, "w") as f:
    for i in range(dr.sizes["sample"]):
        group = f.create_group(f"{i:04d}")
        uv = np.stack([dr.u[i].values, dr.v[i].values], axis=-1)  # (T, X, Y, 2)
        group["data"] = uv
        for axis in ("x", "y"):
            group[f"grid/{axis}"] = dr[axis].values
        group["grid/t"] = dr.time.values
peer = dl.open_dataset(pdebench_file)
print(peer.attrs["source_format"], dict(peer.sizes), list(peer.data_vars))
np.testing.assert_allclose(peer.u.values, dr.u.values)
np.testing.assert_allclose(peer.v.values, dr.v.values)
peer

# %% [markdown]
# ## 4. Export
#
# `dl.data.to_netcdf` writes netCDF-4 (readable by xarray, ParaView, ncview, MATLAB);
# `dl.data.save` writes the native HDF5 format that every reader above also opens.

# %%
nc = dl.data.to_netcdf(data["ns2d"], out / "ns2d.nc")
back = xr.open_dataset(nc, engine="h5netcdf")
xr.testing.assert_allclose(back.load(), data["ns2d"].load())
print(f"{nc}: {dict(back.sizes)}, attrs {back.attrs}")
