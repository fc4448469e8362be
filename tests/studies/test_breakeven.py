"""The error-against-cost study: the solver against itself is exact at the data's own grid and
second order on a smooth state, the equal-error speed-up on hand-computed tables, and the table
``cost_curve`` returns."""

import json
import math

import numpy as np
import pytest
import xarray as xr

import dpot_lab as dl
from dpot_lab.data.generation import generate_cached
from dpot_lab.solvers import diffusion_reaction_2d
from dpot_lab.solvers.grid import cell_centres
from dpot_lab.studies.breakeven import (
    corpus_shares,
    cost_curve,
    solve_count,
    solver_curve,
    speedup_at_equal_error,
    training_seconds,
)

TINY = {
    "ns2d": {"n_frames": 6},
    "diffusion_reaction": {"n_frames": 6, "t_end": 0.25},
    "shallow_water": {"n_frames": 6, "t_end": 0.25},
}


def _spec(family: str) -> dict:
    return {"generate": family, "resolution": 32, "n_samples": 2, "seed": 7, "progress": False}


@pytest.mark.parametrize("family", sorted(TINY))
def test_solver_against_itself_is_exact_and_coarser_grids_are_worse(family, tmp_path):
    spec = {**_spec(family), **TINY[family]}
    ref = dl.open_dataset(generate_cached(spec, tmp_path)).load()
    curve = solver_curve(ref, family, [32, 16, 8], t_in=3, steps=3, params=TINY[family])
    err = curve["l2re"].sel(resolution=[32, 16, 8]).values
    assert err[0] < 1e-6  # the stored float32 frames, restarted: round-off only
    assert 1e-4 < err[1] < err[2]  # restriction loses something, more on a coarser grid
    assert (curve["seconds_per_trajectory"] > 0).all()


def test_diffusion_reaction_converges_at_second_order_on_a_smooth_state():
    x = cell_centres(64, -1.0, 1.0)[:, None]  # (X, 1)
    y = cell_centres(64, -1.0, 1.0)[None, :]  # (1, Y)
    u0 = 0.8 * np.cos(np.pi * (x + 1)) * np.cos(np.pi * (y + 1) / 2)  # zero normal derivative
    v0 = 0.3 * np.cos(np.pi * (y + 1)) + 0 * x
    times = np.linspace(0.0, 1.0, 6)
    params = {"du": 1e-2, "dv": 2e-2}
    uv = diffusion_reaction_2d(u0[None], v0[None], times, **params).astype(np.float32)
    dims = ("sample", "time", "x", "y")
    ref = xr.Dataset(
        {"u": (dims, uv[:, :, 0]), "v": (dims, uv[:, :, 1])},
        coords={"time": times, "x": x[:, 0], "y": y[0]},
    )
    curve = solver_curve(ref, "dr", [8, 16, 32], t_in=2, steps=4, params=params)
    err = curve["l2re"].values  # (8, 16, 32)
    rates = np.log2(err[:-1] / err[1:])
    # against a 64² reference, e ∝ h² − h_64²: rates 2.07 (8 -> 16) and 2.32 (16 -> 32)
    assert np.all((rates > 1.8) & (rates < 2.5)), rates


def _table(model_l2re: float, model_seconds: float = 0.002) -> xr.Dataset:
    return xr.Dataset(
        {
            "l2re": ("resolution", [0.025, 0.1, 0.4]),
            "seconds_per_trajectory": ("resolution", [0.16, 0.04, 0.01]),
            "model_l2re": model_l2re,
            "model_seconds_per_trajectory": model_seconds,
        },
        coords={"resolution": [32, 16, 8]},
    )


def test_speedup_at_equal_error_by_hand():
    # 0.05 lies between 16 (0.1, 0.04 s) and 32 (0.025, 0.16 s); on that segment log t = log
    # 0.04 − (log e − log 0.1), so t(0.05) = 0.08 s, 40 times the model's 0.002 s
    assert speedup_at_equal_error(_table(0.05)) == pytest.approx(40.0)
    # exactly on a point: that solve's time
    assert speedup_at_equal_error(_table(0.1)) == pytest.approx(20.0)
    # less accurate than every coarse solve: no equal-error point
    assert speedup_at_equal_error(_table(0.5)) is None
    # more accurate than every solve: the most accurate one's time, a lower bound
    assert speedup_at_equal_error(_table(0.01)) == pytest.approx(80.0)


def test_solve_count_by_hand():
    # at L2RE 0.05 the solver takes 0.08 s a trajectory (above), the model 0.002 s: each solve
    # saves 0.078 s, so a model that cost 780 s to make pays back after 10,000 solves
    assert solve_count(780.0, _table(0.05)) == pytest.approx(10_000.0)
    # a slower model: 0.1 s against the solver's 0.08 s at equal error: never
    assert solve_count(780.0, _table(0.05, model_seconds=0.1)) == math.inf
    assert solve_count(780.0, _table(0.05, model_seconds=0.08)) == math.inf
    # no equal-error point: no count
    assert solve_count(780.0, _table(0.5)) is None
    # more accurate than every solve: the most accurate solve's 0.16 s (a lower bound)
    assert solve_count(15.8, _table(0.01)) == pytest.approx(100.0)


def test_corpus_shares_follow_the_sampling_weights():
    sources = [
        {"generate": "ns2d", "nu": 1e-3},
        {"generate": "ns2d", "nu": 1e-5},
        {"generate": "dr"},
        {"generate": "swe"},
    ]
    shares = corpus_shares(sources, [1, 1, 2, 4])
    assert shares == pytest.approx({"ns2d": 0.25, "diffusion_reaction": 0.25, "shallow_water": 0.5})
    assert corpus_shares(sources, None)["ns2d"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="weights: expected 4 weights"):
        corpus_shares(sources, [1, 1])


def test_training_seconds_from_the_run_directory(tmp_path):
    (tmp_path / "config.yaml").write_text("batch_size: 8\nsteps: 300\n")
    records = [
        {"event": "train", "step": 100, "samples_per_s": 40.0},  # 800 samples: 20 s
        {"event": "eval", "step": 100, "l2re": 0.1},
        {"event": "train", "step": 300, "samples_per_s": 80.0},  # 1600 samples: 20 s
    ]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert training_seconds(tmp_path) == pytest.approx(40.0)
    (tmp_path / "metrics.jsonl").write_text(json.dumps({**records[0], "samples_per_s": 0}))
    with pytest.raises(ValueError, match="metrics.jsonl: line 1: .*samples_per_s"):
        training_seconds(tmp_path)
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        training_seconds(tmp_path / "nothing")


def test_cost_curve_table(tmp_path):
    model = dl.create_model(
        "micro", img_size=16, patch_size=4, in_channels=2, in_timesteps=3, embed_dim=16,
        depth=1, n_blocks=2, modes=2, out_layer_dim=8,
    )  # fmt: skip
    spec = {**_spec("dr"), "resolution": 16, **TINY["diffusion_reaction"]}
    table = cost_curve(spec, model, cache_dir=str(tmp_path))
    assert list(table["resolution"].values) == [16, 8]  # N, N/2 (N/4 = 4 is below 8)
    assert table.attrs["family"] == "diffusion_reaction"
    assert (table.attrs["t_in"], table.attrs["steps"], table.attrs["start_frame"]) == (3, 3, 2)
    assert table["l2re"].sel(resolution=16) < 1e-6
    assert math.isfinite(float(table["model_l2re"])) and float(table["model_l2re"]) > 1e-3
    assert float(table["model_seconds_per_trajectory"]) > 0
    speedup = speedup_at_equal_error(table)
    assert speedup is None or speedup > 0
