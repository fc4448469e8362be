"""dl.generate and generate_cached: files hold what the solvers compute for each sample's own
seed, whatever the batch size; the cache reuses a file per spec."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import multiprocessing

import numpy as np
import pytest
import torch
import xarray as xr

import dpot_lab as dl
from dpot_lab.data.generation import GENERATORS, generate, generate_cached
from dpot_lab.data.generators import (
    make_diffusion_reaction,
    make_kolmogorov,
    make_ns2d,
    make_ns3d,
    make_passive_scalar,
)
from dpot_lab.solvers import (
    diffusion_reaction_2d,
    diffusion_reaction_initial,
    divergence_free_velocity,
    gaussian_random_field,
    navier_stokes_2d,
    navier_stokes_3d,
    passive_scalar_2d,
)
from dpot_lab.solvers.grid import cell_centres
from dpot_lab.solvers.navier_stokes_2d import nodes

generate_module = importlib.import_module("dpot_lab.data.generation")
NS2D = dict(resolution=16, n_frames=2, dt_save=0.25)  # a few hundredths of a second per sample


def read(path, name: str) -> np.ndarray:
    """A field of a native file as a numpy array, read back through h5py directly."""
    import h5py

    with h5py.File(path, "r") as f:
        return f[name][()]


def test_same_seed_same_values_other_seed_other_values(tmp_path):
    a = generate("ns2d", tmp_path / "a.h5", 3, seed=7, progress=False, **NS2D)
    b = generate("ns2d", tmp_path / "b.h5", 3, seed=7, progress=False, **NS2D)
    c = generate("ns2d", tmp_path / "c.h5", 3, seed=8, progress=False, **NS2D)
    np.testing.assert_array_equal(read(a, "vorticity"), read(b, "vorticity"))
    assert np.abs(read(a, "vorticity") - read(c, "vorticity")).max() > 0.1
    # samples of one file are distinct trajectories
    w = read(a, "vorticity")
    assert np.abs(w[0] - w[1]).max() > 0.1


def test_batch_size_does_not_change_values(tmp_path):
    one = generate("ns2d", tmp_path / "1.h5", 5, batch_size=1, progress=False, **NS2D)
    three = generate("ns2d", tmp_path / "3.h5", 5, batch_size=3, progress=False, **NS2D)
    np.testing.assert_array_equal(read(one, "vorticity"), read(three, "vorticity"))


def test_ns2d_samples_are_the_solver_run_from_their_own_seed(tmp_path):
    path = generate("ns2d", tmp_path / "ns.h5", 2, seed=3, nu=1e-4, progress=False, **NS2D)
    seeds = np.random.SeedSequence(3).spawn(2)
    for i, s in enumerate(seeds):
        w0 = gaussian_random_field(np.random.default_rng(s), 1, 16, alpha=2.5, tau=7.0)
        expected = navier_stokes_2d(w0, 1e-4, [0.25, 0.5], forcing="fno")[0]  # (T, X, Y)
        np.testing.assert_array_equal(read(path, "vorticity")[i], expected.astype(np.float32))
    # float32 gives the same trajectories to float32 accuracy
    path32 = generate("ns2d", tmp_path / "32.h5", 2, seed=3, nu=1e-4, dtype="float32", **NS2D)
    w32, w64 = read(path32, "vorticity"), read(path, "vorticity")
    assert np.abs(w32 - w64).max() < 1e-5 * np.abs(w64).max()


def test_diffusion_reaction_samples_and_alias(tmp_path):
    params = dict(resolution=12, n_frames=3, t_end=0.2, progress=False)
    path = generate("dr", tmp_path / "dr.h5", 2, seed=1, **params)
    same = generate("diffusion_reaction", tmp_path / "dr2.h5", 2, seed=1, **params)
    np.testing.assert_array_equal(read(path, "u"), read(same, "u"))
    s = np.random.SeedSequence(1).spawn(2)[1]
    u0, v0 = diffusion_reaction_initial(np.random.default_rng(s), 1, 12)
    expected = diffusion_reaction_2d(u0[0], v0[0], [0.0, 0.1, 0.2]).astype(np.float32)
    np.testing.assert_array_equal(read(path, "u")[1], expected[:, 0])  # (T, X, Y)
    np.testing.assert_array_equal(read(path, "v")[1], expected[:, 1])


def test_ns3d_samples_are_the_solver_run_from_their_own_seed(tmp_path):
    path = generate(
        "ns3d", tmp_path / "ns3d.h5", 2, resolution=8, n_frames=2, dt_save=0.05, progress=False
    )
    s = np.random.SeedSequence(0).spawn(2)[0]
    u0 = divergence_free_velocity(np.random.default_rng(s), 1, 8)  # default spectrum, u_rms 1
    expected = navier_stokes_3d(u0, 5e-3, [0.0, 0.05])[0].astype(np.float32)  # (T, 3, X, Y, Z)
    for c, name in enumerate("uvw"):
        np.testing.assert_array_equal(read(path, name)[0], expected[:, c])


@pytest.mark.parametrize(
    "make,resolution,times,domain,points",
    [
        (make_ns2d, (12, 8), dict(dt_save=0.1), (0, 1), nodes),  # FNO's grid i/n
        (make_diffusion_reaction, (10, 6), dict(t_end=0.1), (-1, 1), cell_centres),
        (make_ns3d, (8, 6, 4), dict(dt_save=0.1), (0, 1), cell_centres),
    ],
)
def test_generators_make_non_square_grids(make, resolution, times, domain, points):
    # before: a TypeError from the coordinates, after the solver had run
    seeds = np.random.SeedSequence(0).spawn(1)
    ds = make(1, resolution, seeds, n_frames=2, **times)
    for axis, n in zip("xyz", resolution, strict=False):
        np.testing.assert_array_equal(ds[axis].values, points(n, *domain))
    assert all(ds[v].shape[2:] == resolution for v in ds.data_vars)
    if make is make_ns2d:
        w0 = gaussian_random_field(np.random.default_rng(seeds[0]), 1, resolution)
        expected = navier_stokes_2d(w0, 1e-3, [0.1, 0.2]).astype(np.float32)
        np.testing.assert_array_equal(ds["vorticity"].values, expected)


def test_generator_times_must_be_positive():
    seeds = np.random.SeedSequence(0).spawn(1)
    with pytest.raises(ValueError, match="dt_save: expected a finite number > 0, got 0"):
        make_ns2d(1, 8, seeds, dt_save=0.0)  # before: every frame at t = 0
    with pytest.raises(ValueError, match="t_end: expected a finite number > 0, got -1"):
        make_diffusion_reaction(1, 8, seeds, t_end=-1.0)  # before: named t_save


@pytest.mark.skipif(
    importlib.util.find_spec("dpot_lab.data.open") is None,
    reason="dpot_lab.data.open (dl.open_dataset) is not written yet",
)
def test_file_opens_in_the_data_model(tmp_path):
    path = dl.generate("ns2d", tmp_path / "ns.h5", 2, seed=0, nu=1e-4, progress=False, **NS2D)
    ds = dl.open_dataset(path)
    assert isinstance(ds, xr.Dataset)
    assert ds["vorticity"].dims == ("sample", "time", "x", "y")
    assert ds["vorticity"].shape == (2, 2, 16, 16)
    np.testing.assert_allclose(ds["time"], [0.25, 0.5])
    np.testing.assert_allclose(ds["x"], np.arange(16) / 16)  # the nodes (FNO's grid)
    assert ds.attrs["pde"] == "navier_stokes_2d"
    assert ds.attrs["source_format"] == "dpot-lab"
    assert ds.attrs["nu"] == 1e-4 and ds.attrs["forcing"] == "fno" and ds.attrs["seed"] == 0
    np.testing.assert_array_equal(ds["vorticity"].values, read(path, "vorticity"))

    dr = dl.open_dataset(
        dl.generate(
            "dr", tmp_path / "dr.h5", 1, resolution=8, n_frames=2, t_end=0.1, progress=False
        )
    )
    assert set(dr.data_vars) >= {"u", "v"} and dr["u"].dims == ("sample", "time", "x", "y")
    np.testing.assert_allclose(dr["x"], cell_centres(8, -1.0, 1.0))


def test_generate_refuses_an_existing_file_unless_told_to_overwrite(tmp_path):
    path = generate("ns2d", tmp_path / "ns.h5", 4, progress=False, **NS2D)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match=r"ns.h5 exists: pass overwrite=True"):
        generate("ns2d", path, 1, progress=False, **NS2D)
    assert path.read_bytes() == before
    generate("ns2d", path, 1, overwrite=True, progress=False, **NS2D)
    assert read(path, "vorticity").shape[0] == 1


def test_unknown_parameter_names_the_accepted_ones(tmp_path):
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) viscosity.*accepted: nu"):
        generate("ns2d", tmp_path / "x.h5", 1, viscosity=1e-3)
    with pytest.raises(ValueError, match="expected one of"):
        generate("heat", tmp_path / "x.h5", 1)
    assert not (tmp_path / "x.h5").exists()


def test_registry_names_and_lazy_targets():
    assert GENERATORS["dr"] is GENERATORS["diffusion_reaction"]
    assert GENERATORS["swe"] is GENERATORS["shallow_water"]
    assert {"ns2d", "ns3d", "cns2d", "kolmogorov", "passive_scalar"} <= set(GENERATORS)
    for name in ("ns2d", "diffusion_reaction", "ns3d", "kolmogorov", "passive_scalar"):
        assert callable(GENERATORS[name].load())


def test_dl_generate_is_the_function_after_the_module_is_imported(tmp_path):
    assert dl.generate is dl.data.generate is generate_module.generate
    path = dl.generate("ns2d", tmp_path / "m.h5", 1, progress=False, **NS2D)
    np.testing.assert_array_equal(
        read(path, "vorticity"),
        read(generate("ns2d", tmp_path / "f.h5", 1, progress=False, **NS2D), "vorticity"),
    )


def test_generate_cached_makes_once_and_reuses(tmp_path, monkeypatch):
    monkeypatch.setenv("DPOT_LAB_CACHE", str(tmp_path / "cache"))
    spec = {"generate": "ns2d", "n_samples": 2, "seed": 0, "progress": False, **NS2D}
    first = generate_cached(spec)
    assert first.parent == tmp_path / "cache" and first.exists()
    values = read(first, "vorticity")

    def refuse(*args, **kwargs):
        raise AssertionError("generate called although the file is cached")

    monkeypatch.setattr(generate_module, "generate", refuse)
    assert generate_cached(dict(spec, batch_size=1)) == first  # run options do not count
    np.testing.assert_array_equal(read(first, "vorticity"), values)
    monkeypatch.undo()

    monkeypatch.setenv("DPOT_LAB_CACHE", str(tmp_path / "cache"))
    other = generate_cached(dict(spec, nu=1e-4))
    assert other != first and other.exists()
    explicit = generate_cached(spec, cache_dir=tmp_path / "elsewhere")
    assert explicit.parent == tmp_path / "elsewhere" and explicit.name == first.name
    np.testing.assert_array_equal(read(explicit, "vorticity"), values)
    assert not list((tmp_path / "cache").glob("*.tmp"))  # written atomically, nothing left over
    with pytest.raises(ValueError, match="n_samples"):
        generate_cached({"generate": "ns2d"})


def _generate_cached_in_child(spec, cache_dir, start, waiting, results) -> None:
    """One of two processes that call ``generate_cached(spec, cache_dir)`` together, after
    ``start`` (a Barrier); puts (path, sha256 of the file, times it generated, log messages) on
    ``results``. A generating process holds on until the other logs that it waits (``waiting``,
    an Event; 10 s at most), so the two overlap however the processes are scheduled."""
    torch.set_num_threads(1)
    GENERATORS[spec["generate"]].load()  # imported before the start, so that both start together
    messages, calls = [], []

    class Record(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())
            if messages[-1].startswith("waiting for another process to generate"):
                waiting.set()

    def held_generate(*args, **kwargs):
        calls.append(args)
        waiting.wait(timeout=10)
        return generate(*args, **kwargs)

    logger = logging.getLogger(generate_module.__name__)
    logger.addHandler(Record())
    logger.setLevel(logging.INFO)
    generate_module.generate = held_generate
    start.wait(timeout=60)
    path = generate_cached(spec, cache_dir)
    results.put((path, hashlib.sha256(path.read_bytes()).hexdigest(), len(calls), messages))


def test_generate_cached_generates_once_when_two_processes_ask_at_once(tmp_path):
    spec = {"generate": "ns2d", "n_samples": 1, "seed": 0, "progress": False, **NS2D}
    ctx = multiprocessing.get_context("spawn")
    start, waiting, results = ctx.Barrier(2), ctx.Event(), ctx.Queue()
    args = (spec, tmp_path / "cache", start, waiting, results)
    procs = [ctx.Process(target=_generate_cached_in_child, args=args) for _ in range(2)]
    for p in procs:
        p.start()
    try:  # a child that fails prints its traceback to the captured stderr
        got = [results.get(timeout=60) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    waiter, maker = sorted(got, key=lambda r: r[2])  # by the times each generated
    assert (waiter[2], maker[2]) == (0, 1), f"generated {waiter[2] + maker[2]} times, not once"
    assert waiter[0] == maker[0] and waiter[0].exists()
    assert waiter[1] == maker[1]  # the same bytes
    assert any(m.startswith("waiting for another process to generate") for m in waiter[3])


# --- Kolmogorov flow and passive scalar: a parameter per trajectory, stored as (sample,) ------

KOLMOGOROV = dict(resolution=16, n_frames=3, dt_save=0.25, burn_in=0.5, re_range=(50.0, 500.0))
PASSIVE = dict(resolution=16, n_frames=3, dt_save=0.25, nu_range=(1e-3, 1e-2))
PER_SAMPLE = {"kolmogorov": ["re"], "passive_scalar": ["nu", "kappa"]}
FIELDS = {"kolmogorov": ["vorticity"], "passive_scalar": ["scalar", "vorticity"]}
PARAMS = {"kolmogorov": KOLMOGOROV, "passive_scalar": PASSIVE}


@pytest.mark.parametrize("pde", ["kolmogorov", "passive_scalar"])
def test_per_trajectory_generators_are_deterministic_and_batch_size_independent(tmp_path, pde):
    params = dict(PARAMS[pde], progress=False)
    a = generate(pde, tmp_path / "a.h5", 4, seed=7, batch_size=4, **params)
    b = generate(pde, tmp_path / "b.h5", 4, seed=7, batch_size=3, **params)
    c = generate(pde, tmp_path / "c.h5", 4, seed=8, **params)
    for name in FIELDS[pde] + PER_SAMPLE[pde]:
        np.testing.assert_array_equal(read(a, name), read(b, name))
        assert np.abs(read(a, name) - read(c, name)).max() > 0
    for name in PER_SAMPLE[pde]:  # one value per trajectory, each its own
        assert read(a, name).shape == (4,) and len(set(read(a, name))) == 4


def test_kolmogorov_samples_are_the_forced_solver_run_from_their_own_seed(tmp_path):
    path = generate("kolmogorov", tmp_path / "k.h5", 3, seed=2, progress=False, **KOLMOGOROV)
    ds = dl.open_dataset(path)
    assert set(ds.data_vars) == {"vorticity", "re"}
    assert ds["vorticity"].dims == ("sample", "time", "x", "y") and ds["re"].dims == ("sample",)
    assert ds["vorticity"].shape == (3, 3, 16, 16)
    np.testing.assert_allclose(ds["time"], [0.5, 0.75, 1.0])  # burn_in + dt_save·k
    np.testing.assert_allclose(ds["y"], 2 * np.pi * np.arange(16) / 16)  # nodes of [0, 2π)
    assert ds.attrs["pde"] == "kolmogorov_2d" and ds.attrs["source_format"] == "dpot-lab"
    assert (ds.attrs["re_min"], ds.attrs["re_max"], ds.attrs["k_f"]) == (50.0, 500.0, 4)
    re = ds["re"].values
    assert np.all((re >= 50) & (re <= 500))
    # sample i: GRF from its seed, then Re log-uniform from the same stream; the forcing
    # −k_f cos(k_f y) with y = 2π j/n on the solver's unit square, ν = 1/(4π² Re), drag 0.1
    y = 2 * np.pi * np.arange(16)[None, :] / 16
    forcing = np.broadcast_to(-4 * np.cos(4 * y), (16, 16))
    for i, s in enumerate(np.random.SeedSequence(2).spawn(3)):
        rng = np.random.default_rng(s)
        w0 = gaussian_random_field(rng, 1, 16)[0]
        assert re[i] == np.exp(rng.uniform(np.log(50.0), np.log(500.0)))
        nu = 1 / (4 * np.pi**2 * re[i])
        expected = navier_stokes_2d(w0, nu, [0.5, 0.75, 1.0], forcing, drag=0.1)
        np.testing.assert_array_equal(ds["vorticity"].values[i], expected.astype(np.float32))


def test_passive_scalar_samples_are_the_solver_run_from_their_own_seed(tmp_path):
    path = generate("passive_scalar", tmp_path / "p.h5", 2, seed=4, progress=False, **PASSIVE)
    ds = dl.open_dataset(path)
    assert set(ds.data_vars) == {"scalar", "vorticity", "nu", "kappa"}
    assert ds["scalar"].dims == ("sample", "time", "x", "y") and ds["nu"].dims == ("sample",)
    np.testing.assert_allclose(ds["time"], [0.0, 0.25, 0.5])  # the initial state is frame 0
    np.testing.assert_allclose(ds["x"], np.arange(16) / 16)
    assert ds.attrs["pde"] == "passive_scalar_2d" and ds.attrs["forcing"] == "fno"
    assert (ds.attrs["kappa_min"], ds.attrs["kappa_max"]) == (1e-4, 1e-3)
    nu, kappa = ds["nu"].values, ds["kappa"].values
    assert np.all((nu >= 1e-3) & (nu <= 1e-2)) and np.all((kappa >= 1e-4) & (kappa <= 1e-3))
    for i, s in enumerate(np.random.SeedSequence(4).spawn(2)):
        rng = np.random.default_rng(s)
        w0, c0 = (gaussian_random_field(rng, 1, 16)[0] for _ in range(2))
        assert nu[i] == np.exp(rng.uniform(np.log(1e-3), np.log(1e-2)))
        assert kappa[i] == np.exp(rng.uniform(np.log(1e-4), np.log(1e-3)))
        expected = passive_scalar_2d(c0, w0, kappa[i], nu[i], [0.0, 0.25, 0.5]).astype(np.float32)
        np.testing.assert_array_equal(ds["scalar"].values[i], expected[:, 0])
        np.testing.assert_array_equal(ds["vorticity"].values[i], expected[:, 1])


def test_per_trajectory_generators_check_their_ranges(tmp_path):
    seeds = np.random.SeedSequence(0).spawn(1)
    with pytest.raises(ValueError, match=r"re_range: low: expected a finite number > 0, got 0"):
        make_kolmogorov(1, 8, seeds, re_range=(0.0, 100.0))
    with pytest.raises(ValueError, match=r"re_range: high: expected a finite number >= 100"):
        make_kolmogorov(1, 8, seeds, re_range=(100.0, 50.0))
    with pytest.raises(ValueError, match=r"kappa_range: expected \(low, high\), got 0.001"):
        make_passive_scalar(1, 8, seeds, kappa_range=1e-3)
    with pytest.raises(ValueError, match="k_f: expected an integer wavenumber >= 1, got 0"):
        make_kolmogorov(1, 8, seeds, k_f=0)
    # a range of one value gives that value exactly
    ds = make_passive_scalar(1, 8, seeds, n_frames=1, nu_range=(1e-3, 1e-3))
    assert ds["nu"].values[0] == 1e-3
