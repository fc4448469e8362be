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
# # Fine-tune a pre-trained DPOT on a new PDE
#
# Does pre-training pay off on a PDE the model has never seen? This notebook
#
# 1. loads a pre-trained checkpoint: by default the model shipped with dpot-lab
#    (`dpot_lab/assets/pretrained.pt`, pre-trained on eight 2D PDE sources by
#    `make pretrained-checkpoint`), or yours (`01_pretrain.ipynb` writes one), or a released DPOT
#    file;
# 2. generates trajectories of a family that was held out of its pre-training (the
#    2D viscous **Burgers** equation by default: velocity fields `u` and `v`);
# 3. fine-tunes it on 2, 4, 8, 16 and 32 of them and trains the same architecture from random
#    weights on the same data with the same steps — the paper's data-efficiency comparison — in
#    one call, `dl.train.data_efficiency`;
# 4. starts a **3D** model (Navier–Stokes 3D) from the 2D weights.
#
# Every score is the rollout L2RE (relative L2 error over the 10 predicted frames, as in the
# paper) on held-out trajectories; lower is better. The full run takes about 17 minutes on one
# core of a 2-core CPU; `QUICK = True` (or `DPOT_LAB_QUICK=1`) shrinks it to about a minute.

# %% tags=["parameters"]
import os

QUICK = os.environ.get("DPOT_LAB_QUICK", "0") not in ("", "0")  # tiny sizes, about a minute
OUT_DIR = "../runs/notebooks"  # checkpoints and run directories go here
CHECKPOINT = None  # ours or a DPOT release file; None: the shipped pre-trained model
FAMILY = "burgers2d"  # a held-out family of the shipped model (see its pretrained.yaml)
COUNTS = [2, 4] if QUICK else [2, 4, 8, 16, 32]  # training trajectories per run
SEED = 0

# %%
from pathlib import Path

import holoviews as hv
import pandas as pd
import torch
import yaml

import dpot_lab as dl
from dpot_lab.data.generation import generate_cached
from dpot_lab.models.checkpoint import open_checkpoint

hv.extension("bokeh", logo=False, inline=True)  # BokehJS from the kernel: works offline
out = Path(OUT_DIR) / "finetune"
out.mkdir(parents=True, exist_ok=True)
solver = {"device": "cuda"} if torch.cuda.is_available() else {}  # solvers run on a GPU if any

# Sizes: quick (about a minute on a CPU) or full (about 17 minutes on one CPU core).
S = dict(
    steps=20 if QUICK else 300,  # optimizer steps of every run, fine-tuned and scratch alike
    n_test=2 if QUICK else 8,  # held-out trajectories that score every run
    ns3d=dict(n_frames=13, n_samples=4, resolution=16)  # t_in = 10 of the shipped model + 3
    if QUICK
    else dict(n_frames=15, n_samples=40, resolution=32),  # + 5 scored frames
    steps_3d=30 if QUICK else 400,
    batch_3d=4 if QUICK else 8,
    lr=1e-3,
)

# %% [markdown]
# ## 1. The pre-trained model
#
# `open_checkpoint` tells our checkpoints from the release's and reads the architecture; the
# shipped model's description (`pretrained.yaml` beside it) names the families it never saw.

# %%
if CHECKPOINT is None:
    CHECKPOINT = dl.viz.demo_checkpoint()
opened = open_checkpoint(CHECKPOINT)
print(opened.description)
print(opened.config)
shipped = yaml.safe_load(dl.viz.DEMO_DATA.read_text())
print("held out of pre-training:", ", ".join(shipped["held_out"]))

# %% [markdown]
# ## 2. A PDE the model has not seen
#
# Generated with dpot-lab's own solver, from seeds the pre-training never used: the first
# `max(COUNTS)` trajectories train, the last `n_test` score.

# %%
spec = dict(shipped["held_out"][FAMILY], **solver)
data = dl.open_dataset(
    generate_cached(dict(spec, n_samples=max(COUNTS) + S["n_test"], seed=SEED + 5000))
)
fields = dl.data.schema.field_names(data)
frames = data.isel(sample=0, time=[0, data.sizes["time"] // 2, -1])
hv.Layout(
    [
        hv.Image(frames[f].isel(time=i).T.values, bounds=(0, 0, 1, 1)).opts(
            title=f"{f}, t = {float(frames.time[i]):.3g}"
        )
        for f in fields
        for i in range(3)
    ]
).opts(
    hv.opts.Image(cmap="viridis", frame_width=150, frame_height=150, xaxis=None, yaxis=None)
).cols(3)

# %% [markdown]
# ## 3. Fine-tuned vs. from scratch, against the amount of data
#
# For each count, one run starts from the pre-trained weights and one from a random
# initialisation of the same architecture; both see the same trajectories, steps and recipe
# (`dl.train.data_efficiency.RECIPE`; the scratch run takes a larger learning rate). Fewer
# channels than the model's are padded and masked, as in pre-training.

# %%
table = dl.train.data_efficiency(
    CHECKPOINT, data, counts=COUNTS, steps=S["steps"], n_test=S["n_test"], seed=SEED,
    work_dir=out,
)  # fmt: skip
print(dl.train.format_study(table))
table

# %%
curves = [
    hv.Curve((table["n_train"], table[run]), "training trajectories", "rollout L2RE", label=run)
    .opts(line_width=2)
    * hv.Scatter((table["n_train"], table[run]), label=run).opts(size=8)
    for run in ("finetuned", "scratch")
]
persistence = hv.HLine(float(table["persistence"])).opts(color="gray", line_dash="dashed")
hv.Overlay([*curves, persistence]).opts(
    title=f"{FAMILY}: 10-step rollout L2RE vs. training trajectories (dashed: persistence)",
    logx=True, logy=True, frame_width=480, frame_height=280, show_grid=True,
    legend_position="top_right",
)  # fmt: skip

# %% [markdown]
# The paper's claim, checked on this run: with little data, the pre-trained model does better
# than the same model trained from scratch for the same number of steps.
# `trajectories_to_match` reads off the scratch curve how many trajectories it needs to match the
# fine-tuned model (infinite: not within the counts tried).

# %%
low = min(COUNTS)
tuned, scratch = (float(table[run].sel(n_train=low)) for run in ("finetuned", "scratch"))
print(f"{low} trajectories: fine-tuned L2RE {tuned:.4f}, from scratch {scratch:.4f}, "
      f"persistence {float(table['persistence']):.4f}")  # fmt: skip
print(f"scratch needs {dl.train.trajectories_to_match(table, low):.3g} trajectories to match")
assert tuned < scratch, f"fine-tuned {tuned:.4f} does not beat scratch {scratch:.4f}"

# %% [markdown]
# ## 4. From 2D to 3D: Navier–Stokes 3D
#
# A 3D DPOT has the same blocks as a 2D one (the Fourier mixing's weights are shared over
# frequencies, so they do not depend on the number of axes); only the patch embedding,
# positional embedding, temporal aggregation and output head are tied to the number of axes and
# start fresh, as in the DPOT release. `model.n_spatial: 3` with `init_from` builds the 3D model
# from the checkpoint's architecture.

# %%
ns3d_spec = dict(generate="ns3d", seed=SEED + 20, **S["ns3d"], **solver)
ns3d_path = generate_cached(ns3d_spec)
n_test_3d = max(1, S["ns3d"]["n_samples"] // 5)
t_in, channels = opened.config.in_timesteps, opened.config.in_channels
config_3d = {
    "name": "ns3d_from_2d", "seed": SEED, "steps": S["steps_3d"],
    "batch_size": S["batch_3d"], "init_from": str(CHECKPOINT),
    "model": {"preset": None, "n_spatial": 3},
    "data": {"sources": [str(ns3d_path)], "resolution": S["ns3d"]["resolution"], "t_in": t_in,
             "channels": channels, "n_test": n_test_3d, "weights": [2] if QUICK else None},
    "optim": {"lr": S["lr"], "warmup": 0.1}, "eval": {"horizon": 3 if QUICK else None},
}  # fmt: skip
trainer_3d = dl.train.Trainer(config_3d, run_dir=out / "ns3d_from_2d", overwrite=True)
print(trainer_3d.transfer_report.summary())
print(trainer_3d.model)

# %%
trainer_3d.fit()
pd.DataFrame(trainer_3d.last_eval).T

# %% [markdown]
# The 3D run directory is `OUT_DIR/finetune/ns3d_from_2d`;
# `03_rollout.ipynb` rolls a checkpoint out and compares it with the truth frame by frame. The
# same fine-tuning runs from the command line:
#
# ```bash
# dpot-lab finetune my_finetune.yaml --from runs/notebooks/pretrained.pt --out runs/ft
# ```
