"""Writers of small files in exactly the peer layouts documented in reference/FORMATS.md.

Every array holds ``code(sample, time, x, y, c)``, a number that spells out its own position,
written in the layout's stored axis order; a reader is right when what it presents at
(sample, time, x, y) equals ``code`` there (see ``expected``).
"""

from __future__ import annotations

from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import xarray as xr

N, T, X, Y = 3, 5, 8, 6  # distinct sizes, so a swapped axis cannot go unnoticed


def code(s=0, t=0, x=0, y=0, c=0):
    """Position code, exact in float32 for s < 4, t, x, y < 100, c < 4."""
    return c * 4_000_000 + s * 1_000_000 + t * 10_000 + x * 100 + y


def expected(var: xr.DataArray, c: int = 0) -> np.ndarray:
    """``code`` at every element of ``var`` from its dims (sample, time, x, y; missing = 0)."""
    axes = {
        d: np.arange(n).reshape([-1 if i == j else 1 for j in range(var.ndim)])
        for i, (d, n) in enumerate(var.sizes.items())
    }
    out = code(*(axes.get(d, 0) for d in ("sample", "time", "x", "y")), c=c)
    return np.broadcast_to(out, var.shape)


def grid(*sizes: int, c: int = 0) -> np.ndarray:
    """``code`` on a (N, T, X, Y) grid of the given sizes, float64."""
    s, t, x, y = np.meshgrid(*(np.arange(n) for n in sizes), indexing="ij")
    return code(s, t, x, y, c).astype(np.float64)


def write_pdebench_groups(path, channels=2):
    """PDEBench 2D DR/SWE: groups '0000'.. with data (T, X, Y, C), grid/x|y|t, attr config."""
    with h5py.File(path, "w") as f:
        for s in range(N):
            g = f.create_group(f"{s:04d}")
            data = np.stack([grid(N, T, X, Y, c=c)[s] for c in range(channels)], axis=-1)
            g.create_dataset("data", data=data.astype(np.float32))
            g.create_dataset("grid/x", data=np.linspace(-1, 1, X, dtype=np.float32))
            g.create_dataset("grid/y", data=np.linspace(-1, 1, Y, dtype=np.float32))
            g.create_dataset("grid/t", data=np.linspace(0, 5, T, dtype=np.float32))
            g.attrs["config"] = f"sim:\n  seed: {s}\n  Du: 0.001\n"
    return path


def write_pdebench_cfd(path):
    """PDEBench 2D compressible NS: density, Vx, Vy, pressure (N, T, X, Y); t has T+1 entries."""
    with h5py.File(path, "w") as f:
        for c, key in enumerate(("density", "Vx", "Vy", "pressure")):
            f.create_dataset(key, data=grid(N, T, X, Y, c=c).astype(np.float32))
        f["x-coordinate"] = np.linspace(0, 1, X, endpoint=False)
        f["y-coordinate"] = np.linspace(0, 1, Y, endpoint=False)
        f["t-coordinate"] = np.linspace(0, 1, T + 1)
        f.attrs.update({"M": 0.1, "eta": 0.01, "zeta": 0.01})
    return path


def write_pdebench_incompressible(path, same_times=True):
    """PDEBench 2D incompressible NS: velocity (B,T,X,Y,2), particles (B,T,X,Y,1),
    force (B,X,Y,2), t (B,T); chunked (1, 1, X, Y, C)."""
    velocity = np.stack([grid(N, T, X, Y, c=c) for c in (0, 1)], axis=-1)
    force = np.stack([grid(N, 1, X, Y, c=c)[:, 0] for c in (0, 1)], axis=-1)
    t = np.tile(np.linspace(0, 5, T), (N, 1))
    if not same_times:
        t = t * (1 + np.arange(N))[:, None]
    with h5py.File(path, "w") as f:
        f.create_dataset("velocity", data=velocity.astype(np.float32), chunks=(1, 1, X, Y, 2))
        particles = grid(N, T, X, Y, c=2)[..., None].astype(np.float32)
        f.create_dataset("particles", data=particles, chunks=(1, 1, X, Y, 1))
        f.create_dataset("force", data=force.astype(np.float32))
        f.create_dataset("t", data=t.astype(np.float32))
    return path


def write_pdebench_1d(path):
    """PDEBench 1D: tensor (N, T, X), x-coordinate (X), t-coordinate (T+1)."""
    with h5py.File(path, "w") as f:
        f["tensor"] = grid(N, T, X, 1)[..., 0].astype(np.float32)
        f["x-coordinate"] = np.linspace(0, 1, X)
        f["t-coordinate"] = np.linspace(0, 2, T + 1)
    return path


def fno_arrays():
    """FNO arrays in MATLAB order: u (N, X, Y, T), a (N, X, Y), t (1, T)."""
    u = grid(N, T, X, Y).transpose(0, 2, 3, 1).astype(np.float32)
    a = grid(N, 1, X, Y, c=1)[:, 0].astype(np.float32)
    return u, a, np.linspace(1, T, T)[None, :]


def write_fno_v73(path, keys=("u", "a", "t")):
    """MATLAB v7.3: HDF5 after a 512-byte header, axes reversed (h5py sees u as (T, Y, X, N))."""
    arrays = dict(zip(("u", "a", "t"), fno_arrays(), strict=True))
    with h5py.File(path, "w", userblock_size=512) as f:
        for key in keys:
            f[key] = arrays[key].T  # .T reverses all axes, like MATLAB's writer
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 .")
    return path


def write_fno_v5(path, keys=("u", "a", "t")):
    """MATLAB v5 through scipy: arrays in MATLAB's own order."""
    from scipy.io import savemat

    arrays = dict(zip(("u", "a", "t"), fno_arrays(), strict=True))
    savemat(path, {key: arrays[key] for key in keys})
    return path


def write_pdearena(path, splits=("train",)):
    """PDEArena NS smoke: group per split; u, vx, vy (N, T, X, Y) float64; t, x, y per sample;
    dt, dx, dy, buo_y (N,) as PDEArena's writer stores them."""
    with h5py.File(path, "w") as f:
        for split in splits:
            g = f.create_group(split)
            for c, key in enumerate(("u", "vx", "vy")):
                g[key] = grid(N, T, X, Y, c=c)
            g["t"] = np.tile(np.linspace(18, 102, T), (N, 1))
            g["x"] = np.tile(np.linspace(0, 32, X), (N, 1))
            g["y"] = np.tile(np.linspace(0, 32, Y), (N, 1))
            g["dt"], g["dx"], g["dy"] = np.full(N, 1.5), np.full(N, 0.25), np.full(N, 0.25)
            g["buo_y"] = np.array([0.2, 0.3, 0.5])[:N]
    return path


def write_well(path):
    """A Well file exercising what the dummy file does not: fields that are not time- or not
    sample-varying, a dim_varying=False axis, a tensor field, per-sample scalars, a wall BC."""
    with h5py.File(path, "w") as f:
        f.attrs.update(
            {
                "dataset_name": "toy_flow",
                "grid_type": "cartesian",
                "n_spatial_dims": 2,
                "n_trajectories": N,
                "simulation_parameters": ["Re"],
                "Re": 100.0,
            }
        )
        d = f.create_group("dimensions")
        d.attrs["spatial_dims"] = ["x", "y"]
        for key, values in (("time", np.arange(T) * 0.5), ("x", np.arange(X)), ("y", np.arange(Y))):
            d[key] = values.astype(np.float32)
            d[key].attrs.update({"sample_varying": False, "time_varying": key == "time"})
        bc = f.create_group("boundary_conditions/y_wall")
        bc.attrs.update({"associated_dims": ["y"], "associated_fields": [], "bc_type": "Wall"})
        bc["mask"] = np.zeros(Y, dtype=bool)
        sc = f.create_group("scalars")
        sc.attrs["field_names"] = ["Re", "energy"]
        sc["Re"] = np.float64(100.0)
        sc["energy"] = grid(N, T, 1, 1)[..., 0, 0]
        sc["Re"].attrs.update({"sample_varying": False, "time_varying": False})
        sc["energy"].attrs.update({"sample_varying": True, "time_varying": True})
        full = grid(N, T, X, Y)

        def field(group, name, data, sample, time, dims=(True, True)):
            group[name] = data.astype(np.float32)
            group[name].attrs.update(
                {"sample_varying": sample, "time_varying": time, "dim_varying": list(dims)}
            )

        t0 = f.create_group("t0_fields")
        t0.attrs["field_names"] = ["pressure", "obstacle", "inflow", "profile"]
        field(t0, "pressure", full, True, True)
        field(t0, "obstacle", full[0, 0], False, False)  # (X, Y)
        field(t0, "inflow", full[0], False, True)  # (T, X, Y)
        field(t0, "profile", full[:, :, :, 0], True, True, dims=(True, False))  # (B, T, X)
        t1 = f.create_group("t1_fields")
        t1.attrs["field_names"] = ["velocity"]
        field(t1, "velocity", np.stack([grid(N, T, X, Y, c=c) for c in (0, 1)], -1), True, True)
        t2 = f.create_group("t2_fields")
        t2.attrs["field_names"] = ["stress"]
        comps = [[grid(N, T, X, Y, c=2 * i + j) for j in (0, 1)] for i in (0, 1)]
        stress = np.stack([np.stack(row, -1) for row in comps], -2)  # (B, T, X, Y, 2, 2)
        field(t2, "stress", stress, True, True)
    return path


def write_dpot_unified(folder, per_sample=True, channels=2):
    """DPOT unified: data (X, Y, T, C) per file data_{i}.hdf5, or (N, X, Y, T, C) in one."""
    data = np.stack([grid(N, T, X, Y, c=c) for c in range(channels)], -1)  # (N, T, X, Y, C)
    data = data.transpose(0, 2, 3, 1, 4).astype(np.float32)  # (N, X, Y, T, C)
    if not per_sample:
        with h5py.File(folder / "all.hdf5", "w") as f:
            f["data"] = data
        return folder / "all.hdf5"
    for s in range(N):
        with h5py.File(folder / f"data_{s}.hdf5", "w") as f:
            f["data"] = data[s]
    return folder


@pytest.fixture
def layouts():
    """The writers and checkers above, for tests in this folder."""
    return SimpleNamespace(
        **{k: v for k, v in globals().items() if k.startswith("write_")},
        code=code,
        expected=expected,
        grid=grid,
        fno_arrays=fno_arrays,
        N=N,
        T=T,
        X=X,
        Y=Y,
    )
