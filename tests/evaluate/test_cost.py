"""The coarse-solver baseline's pieces: Fourier resampling and block means, the families it
knows, and the timed rollout it is compared with (the curve itself: tests/studies)."""

import time

import numpy as np
import pytest
import xarray as xr

import dpot_lab as dl
from dpot_lab.data.generation import generate_cached
from dpot_lab.evaluate.cost import block_mean, family_of, fourier_resample, timed_rollout


def test_fourier_resample_keeps_a_band_limited_field_and_block_mean_averages():
    n = 16
    x = np.arange(n)[:, None] / n
    y = np.arange(n)[None, :] / n
    f = np.sin(2 * np.pi * x) * np.cos(4 * np.pi * y) + 0.5 * np.cos(2 * np.pi * (x + 2 * y))
    coarse = fourier_resample(f, (8, 8))
    np.testing.assert_allclose(coarse, f[::2, ::2], atol=1e-12)
    np.testing.assert_allclose(fourier_resample(coarse, (n, n)), f, atol=1e-12)
    a = np.arange(16.0).reshape(4, 4)
    np.testing.assert_array_equal(block_mean(a, (2, 2)), [[2.5, 4.5], [10.5, 12.5]])
    with pytest.raises(ValueError, match="does not divide"):
        block_mean(a, (3, 3))


def test_unsupported_family_is_named():
    with pytest.raises(ValueError, match="kolmogorov"):
        family_of("kolmogorov")
    assert family_of("swe").name == "shallow_water"


def test_timed_rollout_is_the_rollout_and_its_seconds_per_trajectory(tmp_path):
    model = dl.create_model(
        "micro", img_size=16, patch_size=4, in_channels=2, in_timesteps=3, embed_dim=16,
        depth=1, n_blocks=2, modes=2, out_layer_dim=8,
    )  # fmt: skip
    spec = {"generate": "dr", "resolution": 16, "n_samples": 3, "seed": 7, "n_frames": 6,
            "t_end": 0.25, "progress": False}  # fmt: skip
    ds = dl.open_dataset(generate_cached(spec, str(tmp_path))).load()
    run = {"t_in": 3, "samples": [0, 2], "progress": False}
    tic = time.perf_counter()
    pred, seconds = timed_rollout(model, ds, repeats=2, **run)
    elapsed = time.perf_counter() - tic
    xr.testing.assert_identical(pred, dl.rollout(model, ds, **run))
    assert 0 < seconds * 2 < elapsed / 2  # per trajectory (2), the faster of two timed runs
    # another clock: its readings, not the wall's (a clock that ticks 1 s per reading: each timed
    # run reads it twice, so 1 s for the 2 trajectories)
    readings = iter(range(100))
    _, ticks = timed_rollout(model, ds, repeats=2, clock=lambda: float(next(readings)), **run)
    assert ticks == 0.5
