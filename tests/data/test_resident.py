"""Batches gathered from resident trajectories: the same as RunLoader's, resumable, budgeted."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import xarray as xr

from dpot_lab.data import native
from dpot_lab.data.loader import RunLoader
from dpot_lab.data.mixture import Mixture
from dpot_lab.data.resident import ResidentLoader, resident_bytes, run_loader


def random_ds(n: int, t: int, shape: tuple[int, ...], channels: int, seed: int) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    dims = ("sample", "time", "x", "y", "z")[: 2 + len(shape)]
    return xr.Dataset(
        {
            f"f{c}": (dims, rng.standard_normal((n, t, *shape), dtype=np.float32))
            for c in range(3)[:channels]
        },
        attrs={"pde": f"random{seed}", "source_format": "test"},
    )


@pytest.fixture(scope="module")
def mixture(tmp_path_factory) -> Mixture:
    """Two sources, both resized (one up, one down with antialiasing), one padded to 3
    channels, one keeping its aspect ratio, different lengths, one read from a file."""
    path = native.save(random_ds(5, 12, (24, 40), 2, 1), tmp_path_factory.mktemp("res") / "b.h5")
    return Mixture(
        {"a": random_ds(4, 9, (12, 12), 1, 0), "b": path}, weights={"a": 2, "b": 1},
        resolution=(16, 20), t_in=3, t_out=2, channels=3, split="train", n_test=1,
        keep_aspect=True, seed=3,
    )  # fmt: skip


@pytest.fixture(scope="module")
def unresized() -> Mixture:
    """Two sources already on the model grid (channels padded only)."""
    a, b = random_ds(3, 8, (8, 6), 1, 2), random_ds(4, 10, (8, 6), 2, 3)
    return Mixture([a, b], resolution=(8, 6), t_in=2, t_out=1, channels=2, split="all")


def take(loader, n: int) -> list[dict]:
    return list(itertools.islice(iter(loader), n))


def assert_same(a: list[dict], b: list[dict], atol: float = 0.0) -> None:
    """Equal batches; fields ``x``, ``y`` within ``atol``."""
    assert len(a) == len(b)
    for one, two in zip(a, b, strict=True):
        assert one.keys() == two.keys()
        for key in one:
            assert one[key].dtype == two[key].dtype, key
            if key in ("x", "y"):
                torch.testing.assert_close(one[key], two[key], rtol=0.0, atol=atol)
            else:
                assert torch.equal(one[key], two[key]), key


@pytest.mark.parametrize(("data", "atol"), [("mixture", 1e-6), ("unresized", 0.0)])
def test_batches_equal_the_loaders_over_several_epochs(data, atol, request):
    """Bitwise on the model grid; resized, within a float32 ulp (the interpolation kernel's
    vector lanes depend on how many frames it resizes at once)."""
    mixture = request.getfixturevalue(data)
    loader, resident = RunLoader(mixture, 3, seed=5), ResidentLoader(mixture, 3, seed=5)
    assert resident.per_epoch == loader.per_epoch == len(mixture) // 3
    n = 2 * loader.per_epoch + 1
    ours, theirs = take(resident, n), take(loader, n)
    assert_same(ours, theirs, atol)
    assert {int(k) for b in ours for k in b["source"]} == {0, 1}
    assert (resident.epoch, resident.batch) == (loader.epoch, loader.batch) == (2, 1)
    assert resident.state_dict() == loader.state_dict()


@pytest.mark.parametrize("source", [0, 1])  # upsampled, shrunk with antialiasing
def test_windows_of_resized_trajectories_equal_resized_windows(mixture, source):
    whole, _ = mixture.frames(source, 0, 0, 9)  # (*R, T, C)
    window, _ = mixture.frames(source, 0, 4, 9)
    torch.testing.assert_close(whole[..., 4:9, :], window, rtol=0.0, atol=1e-6)


def test_resume_mid_epoch_continues_with_the_same_batches(mixture):
    run = ResidentLoader(mixture, 2, seed=1)
    take(run, 3)
    state = run.state_dict()
    following = take(run, run.per_epoch)
    for cls in (ResidentLoader, RunLoader):
        again = cls(mixture, 2, seed=1)
        again.load_state_dict(state)
        assert_same(take(again, run.per_epoch), following, atol=1e-6)


def test_budget_is_enforced_and_auto_falls_back_to_the_loader(mixture):
    sizes = resident_bytes(mixture)
    assert sizes == {"a": 3 * 9 * 16 * 20 * 3 * 4, "b": 4 * 12 * 16 * 20 * 3 * 4}
    too_small = sum(sizes.values()) - 1
    with pytest.raises(ValueError, match=r"'a'.*'b'.*max_bytes=" + str(too_small)):
        ResidentLoader(mixture, 2, max_bytes=too_small)
    assert type(run_loader(mixture, 2, "auto", max_bytes=too_small)) is RunLoader
    assert type(run_loader(mixture, 2, "auto", max_bytes=too_small + 1)) is ResidentLoader
    assert type(run_loader(mixture, 2, "loader")) is RunLoader
    with pytest.raises(ValueError, match="placement='gpu'"):
        run_loader(mixture, 2, "gpu")


def test_trajectory_mode_and_other_datasets_are_refused(mixture):
    traj = Mixture(
        {"a": random_ds(3, 9, (12, 12), 1, 0)}, resolution=12, t_in=3, t_out=2, mode="trajectory"
    )
    with pytest.raises(ValueError, match="window-mode Mixture.*'trajectory'"):
        ResidentLoader(traj, 1)
    assert type(run_loader(traj, 1, "auto")) is RunLoader
