"""dl.generate for Burgers, waves and Kuramoto–Sivashinsky: files hold what the solvers compute
from each sample's own seed, whatever the batch size; per-trajectory parameters are stored and
in range; dl.open_dataset reads the files back."""

from __future__ import annotations

import math

import numpy as np
import pytest

import dpot_lab as dl
from dpot_lab.data.generation import GENERATORS, generate
from dpot_lab.data.generators_model_pdes import make_burgers2d, make_ks2d, make_wave
from dpot_lab.solvers import burgers_2d, gaussian_random_field, kuramoto_sivashinsky_2d
from dpot_lab.solvers.grid import cell_centres

SMALL = {  # a few hundredths of a second per sample
    "burgers2d": dict(resolution=16, n_frames=3, dt_save=0.05),
    "wave": dict(resolution=16, n_frames=3, dt_save=0.02, width_min=0.1, width_max=0.15),
    "kuramoto_sivashinsky": dict(
        resolution=16, n_frames=3, dt_save=0.5, burn_in=1.0, length=8 * math.pi
    ),
}
PDE_NAMES = {
    "burgers2d": "burgers_2d",
    "wave": "wave_2d",
    "kuramoto_sivashinsky": "kuramoto_sivashinsky_2d",
}
FIELDS = {"burgers2d": ("u", "v"), "wave": ("u", "u_t"), "kuramoto_sivashinsky": ("u",)}


@pytest.mark.parametrize("pde", list(SMALL))
def test_deterministic_per_seed_and_batch_size_independent(tmp_path, pde):
    params = dict(progress=False, **SMALL[pde])
    a = dl.open_dataset(generate(pde, tmp_path / "a.h5", 3, seed=5, batch_size=1, **params))
    b = dl.open_dataset(generate(pde, tmp_path / "b.h5", 3, seed=5, batch_size=2, **params))
    c = dl.open_dataset(generate(pde, tmp_path / "c.h5", 3, seed=6, **params))
    assert a.attrs["pde"] == PDE_NAMES[pde]
    assert a.attrs["source_format"] == "dpot-lab"
    for name in FIELDS[pde]:
        field = a[name]
        assert field.dims == ("sample", "time", "x", "y") and field.shape == (3, 3, 16, 16)
        values = field.values
        np.testing.assert_array_equal(values, b[name].values)
        assert np.abs(values - c[name].values).max() > 1e-3  # another seed, another set
        assert np.abs(values[0] - values[1]).max() > 1e-3  # samples differ
        assert np.isfinite(values).all()
        assert np.abs(np.diff(values, axis=1)).max(axis=(1, 2, 3)).min() > 1e-4  # frames change
    for name in set(a.data_vars) - set(FIELDS[pde]):  # per-sample parameters
        np.testing.assert_array_equal(a[name].values, b[name].values)


def test_registered_names_and_alias():
    assert GENERATORS["ks2d"] is GENERATORS["kuramoto_sivashinsky"]
    assert {"burgers2d", "wave", "kuramoto_sivashinsky"} <= set(GENERATORS)


def test_burgers_nu_per_sample_and_samples_are_the_solver_run(tmp_path):
    path = generate("burgers2d", tmp_path / "b.h5", 4, seed=2, progress=False, **SMALL["burgers2d"])
    ds = dl.open_dataset(path)
    nu = ds["nu"].values
    assert ds["nu"].dims == ("sample",) and nu.shape == (4,)
    assert np.all((nu >= ds.attrs["nu_min"]) & (nu <= ds.attrs["nu_max"]))
    assert len(set(nu.tolist())) == 4
    s = np.random.SeedSequence(2).spawn(4)[3]
    rng = np.random.default_rng(s)
    nu3 = math.exp(rng.uniform(math.log(3e-3), math.log(3e-2)))
    v0 = gaussian_random_field(rng, 2, 16, 3.0, 5.0)
    v0 *= 0.5 / np.sqrt(np.mean(v0**2))
    expected = burgers_2d(v0, nu3, [0.0, 0.05, 0.1]).astype(np.float32)  # (T, 2, X, Y)
    assert nu[3] == nu3
    np.testing.assert_array_equal(ds["u"].values[3], expected[:, 0])
    np.testing.assert_array_equal(ds["v"].values[3], expected[:, 1])
    np.testing.assert_array_equal(ds["x"].values, cell_centres(16))


def test_wave_speed_per_sample_is_a_positive_smooth_medium(tmp_path):
    path = generate("wave", tmp_path / "w.h5", 3, seed=1, progress=False, **SMALL["wave"])
    ds = dl.open_dataset(path)
    speed = ds["speed"]
    assert speed.dims == ("sample", "x", "y") and speed.shape == (3, 16, 16)
    log_c = np.log(speed.values / ds.attrs["speed_mean"])
    assert np.all(speed.values > 0)
    np.testing.assert_allclose(np.sqrt((log_c**2).mean(axis=(1, 2))), 0.3, rtol=1e-5)
    assert np.abs(speed.values[0] - speed.values[1]).max() > 0.05
    # the first frame is a bump at rest
    np.testing.assert_array_equal(ds["u_t"].values[:, 0], 0)
    assert np.all(ds["u"].values[:, 0].max(axis=(1, 2)) > 0.5)


def test_ks_frames_after_burn_in_on_the_square_of_side_length(tmp_path):
    params = SMALL["kuramoto_sivashinsky"]
    path = generate("ks2d", tmp_path / "k.h5", 2, seed=4, progress=False, **params)
    ds = dl.open_dataset(path)
    np.testing.assert_allclose(ds["time"].values, [1.0, 1.5, 2.0])
    np.testing.assert_allclose(ds["x"].values, cell_centres(16, 0, 8 * math.pi))
    s = np.random.SeedSequence(4).spawn(2)[1]
    u0 = gaussian_random_field(np.random.default_rng(s), 1, 16, 2.0, 10.0)
    u0 /= np.sqrt(np.mean(u0**2))
    expected = kuramoto_sivashinsky_2d(u0[0], [1.0, 1.5, 2.0], 8 * math.pi).astype(np.float32)
    np.testing.assert_array_equal(ds["u"].values[1], expected)
    np.testing.assert_allclose(ds["u"].values.mean(axis=(2, 3)), 0, atol=1e-5)  # mean kept


@pytest.mark.parametrize(
    "make,bad,match",
    [
        (make_burgers2d, dict(nu_min=1e-2, nu_max=1e-3), "nu_max"),
        (make_burgers2d, dict(dt_save=0.0), "dt_save"),
        (make_wave, dict(speed_mean=0.0), "speed_mean"),
        (make_wave, dict(width_min=0.1, width_max=0.05), "width_max"),
        (make_ks2d, dict(length=-1.0), "length"),
        (make_ks2d, dict(burn_in=-1.0), "burn_in"),
    ],
)
def test_bad_parameters_are_named(make, bad, match):
    with pytest.raises(ValueError, match=match):
        make(1, 8, np.random.SeedSequence(0).spawn(1), **bad)
