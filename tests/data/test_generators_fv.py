"""Finite-volume generators: the data model, determinism per seed, and agreement with the
solvers they wrap."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dpot_lab.data.generators_fv import make_cns2d, make_shallow_water
from dpot_lab.data.schema import validate
from dpot_lab.solvers.compressible_ns import cns_random_initial
from dpot_lab.solvers.shallow_water import dam_break_initial, shallow_water_2d


@pytest.fixture(autouse=True)
def one_thread():
    """These grids are small: one thread is faster than two (and the CPU is shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def seeds(n: int, entropy: int = 7) -> list[np.random.SeedSequence]:
    return np.random.SeedSequence(entropy).spawn(n)


def test_shallow_water_dataset():
    ds = make_shallow_water(3, 16, seeds(3), n_frames=4, t_end=0.3)
    validate(ds, "make_shallow_water")
    assert ds["h"].dims == ("sample", "time", "x", "y")
    assert ds["h"].shape == (3, 4, 16, 16) and ds["h"].dtype == np.float32
    np.testing.assert_allclose(ds["time"], [0.0, 0.1, 0.2, 0.3])
    np.testing.assert_allclose(ds["x"], -2.5 + (np.arange(16) + 0.5) * 5 / 16)
    np.testing.assert_allclose(ds["y"], ds["x"])
    assert ds.attrs["pde"] == "shallow_water_2d" and ds.attrs["source_format"] == "dpot-lab"
    assert ds.attrs["g"] == 1.0
    radii = ds["dam_radius"].values
    assert ds["dam_radius"].dims == ("sample",) and np.all((radii >= 0.3) & (radii <= 0.7))
    assert len(set(radii)) == 3
    # each sample is the solver's run from the dam of its recorded radius
    for i, r in enumerate(radii):
        expected = shallow_water_2d(dam_break_initial(16, r), ds["time"].values.tolist())
        np.testing.assert_array_equal(ds["h"][i].values, expected.astype(np.float32))


def test_shallow_water_is_deterministic_per_sample():
    ss = seeds(3, entropy=1)
    a = make_shallow_water(3, 12, ss, n_frames=3, t_end=0.2)
    b = make_shallow_water(3, 12, ss, n_frames=3, t_end=0.2, batch_size=2)  # batching is invisible
    c = make_shallow_water(1, 12, ss[1:2], n_frames=3, t_end=0.2)  # a sample ignores the others
    np.testing.assert_array_equal(a["h"].values, b["h"].values)
    np.testing.assert_array_equal(a["h"][1:2].values, c["h"].values)
    other = make_shallow_water(3, 12, seeds(3, entropy=2), n_frames=3, t_end=0.2)
    assert not np.array_equal(a["dam_radius"].values, other["dam_radius"].values)


def test_cns_dataset():
    ds = make_cns2d(2, 12, seeds(2), n_frames=3, t_end=0.01, mach=1.0, eta=0.1, zeta=0.05)
    validate(ds, "make_cns2d")
    for name in ("vx", "vy", "density", "pressure"):
        assert ds[name].dims == ("sample", "time", "x", "y") and ds[name].shape == (2, 3, 12, 12)
    np.testing.assert_allclose(ds["time"], [0.0, 0.005, 0.01])
    np.testing.assert_allclose(ds["x"], (np.arange(12) + 0.5) / 12)
    assert ds.attrs["pde"] == "compressible_ns_2d" and ds.attrs["source_format"] == "dpot-lab"
    assert (ds.attrs["eta"], ds.attrs["zeta"], ds.attrs["mach"]) == (0.1, 0.05, 1.0)
    assert ds.attrs["gamma"] == pytest.approx(5 / 3)
    # frame 0 is the "Rand" initial state drawn from the sample's own seed
    for i, s in enumerate(seeds(2)):
        rho, vx, vy, p = cns_random_initial(np.random.default_rng(s), 1, 12, mach=1.0)
        for name, field in (("vx", vx), ("vy", vy), ("density", rho), ("pressure", p)):
            np.testing.assert_array_equal(ds[name][i, 0].values, field[0].astype(np.float32))
    assert not np.array_equal(ds["density"][:, -1].values, ds["density"][:, 0].values)


def test_cns_is_deterministic():
    ss = seeds(2, entropy=3)
    kwargs = {"n_frames": 2, "t_end": 0.005, "kind": "turb", "mach": 0.5}
    a = make_cns2d(2, 10, ss, **kwargs)
    b = make_cns2d(2, 10, ss, batch_size=2, **kwargs)
    for name in ("vx", "vy", "density", "pressure"):
        np.testing.assert_array_equal(a[name].values, b[name].values)
    assert a.attrs["initial_condition"] == "turb"


@pytest.mark.parametrize("make", [make_shallow_water, make_cns2d])
def test_bad_parameters_are_named(make):
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['viscosity'\].*n_frames"):
        make(1, 8, seeds(1), viscosity=0.1)
    with pytest.raises(ValueError, match="seed_seqs has 1 entries"):
        make(2, 8, seeds(1))
    with pytest.raises(ValueError, match="n_frames"):
        make(1, 8, seeds(1), n_frames=0)


def test_registered_with_dl_generate(tmp_path):
    from dpot_lab.data.generation import generate
    from dpot_lab.data.open import open_dataset

    kwargs = {"n_frames": 2, "t_end": 0.05}
    path = generate("swe", tmp_path / "swe.h5", 2, resolution=12, seed=4, progress=False, **kwargs)
    ds = open_dataset(path)
    direct = make_shallow_water(2, 12, np.random.SeedSequence(4).spawn(2), **kwargs)
    np.testing.assert_array_equal(ds["h"].values, direct["h"].values)
    np.testing.assert_array_equal(ds["dam_radius"].values, direct["dam_radius"].values)
    assert ds.attrs["pde"] == "shallow_water_2d"
