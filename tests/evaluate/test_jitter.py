"""Patch jittering at inference (dl.rollout(..., jitter=k)): exact for a model that commutes with
periodic shifts, smooths a patch-bound model's grid away, reproducible from its seed."""

import warnings

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn
from torch.nn import functional as F

import dpot_lab as dl
from dpot_lab.evaluate import rollout
from dpot_lab.evaluate.rollout import patch_shifts

PATCH = 4


class Pointwise(nn.Module):
    """A function of each cell's own time series: commutes with every shift of the grid."""

    def __init__(self, config: dl.DPOTConfig):
        super().__init__()
        self.config = config

    def forward(self, x):  # (B, X, Y, T_in, C) -> (B, X, Y, 1, C)
        return torch.tanh(x[..., -1:, :]) + 0.1 * x.mean(-2, keepdim=True) ** 2


class PatchMean(nn.Module):
    """Predicts the last frame's mean over each patch: bound to the patch grid."""

    def __init__(self, config: dl.DPOTConfig):
        super().__init__()
        self.config = config

    def forward(self, x):  # (B, X, Y, T_in, C) -> (B, X, Y, 1, C)
        p = self.config.patch_size
        last = x[..., -1, :].permute(0, 3, 1, 2)  # (B, C, X, Y)
        blocks = F.avg_pool2d(last, p).repeat_interleave(p, -2).repeat_interleave(p, -1)
        return blocks.permute(0, 2, 3, 1).unsqueeze(-2)


def _config() -> dl.DPOTConfig:
    return dl.DPOTConfig(img_size=32, patch_size=PATCH, in_channels=2, in_timesteps=3,
                         embed_dim=16, modes=4)  # fmt: skip


def _dataset(n=5, t=7, seed=0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    dims = ("sample", "time", "x", "y")
    data = {f: (dims, rng.standard_normal((n, t, 32, 32)).astype(np.float32)) for f in "uv"}
    return xr.Dataset(data, coords={"sample": 10 + np.arange(n)}, attrs={"pde": "test"})


def _roll(model, ds, **kw) -> xr.Dataset:
    return rollout(model, ds, t_in=3, progress=False, **kw).drop_vars("diverged_at")


def test_jitter_is_exact_for_a_model_that_commutes_with_shifts():
    ds, model = _dataset(), Pointwise(_config())
    plain = _roll(model, ds)
    xr.testing.assert_equal(_roll(model, ds, jitter=1, jitter_seed=3), plain)  # values, coords
    every = _roll(model, ds, jitter=PATCH**2)
    for f in "uv":
        np.testing.assert_allclose(every[f], plain[f], rtol=1e-6, atol=1e-6)


def test_jitter_over_every_offset_removes_a_patch_bound_models_grid():
    ds, model = _dataset(), PatchMean(_config())
    plain, every = _roll(model, ds, steps=1), _roll(model, ds, steps=1, jitter=PATCH**2)
    assert not np.allclose(plain.u, every.u)
    zero = 0 * plain
    # the plain model's frames are constant inside patches: all their jumps are at boundaries
    assert (dl.metrics.blockiness(plain, zero, PATCH).u > 1e6).all()
    np.testing.assert_allclose(dl.metrics.blockiness(every, zero, PATCH).u, 1.0, atol=0.3)


def test_jitter_is_reproducible_from_its_seed_whatever_the_batch():
    ds, model = _dataset(), PatchMean(_config())
    first = _roll(model, ds, jitter=4, jitter_seed=7, batch_size=2)
    again = _roll(model, ds, jitter=4, jitter_seed=7, batch_size=5)
    for f in "uv":
        np.testing.assert_allclose(again[f], first[f], rtol=1e-6, atol=1e-6)
    other = _roll(model, ds, jitter=4, jitter_seed=8)
    plain = _roll(model, ds)
    assert not np.allclose(other.u, first.u) and not np.allclose(plain.u, first.u)
    assert first.attrs["rollout_jitter"] == 4 and first.attrs["rollout_jitter_seed"] == 7


def test_patch_shifts_are_distinct_offsets_within_a_patch():
    gen = torch.Generator().manual_seed(0)
    drawn = patch_shifts(PATCH, 2, 5, gen)
    assert len(set(drawn)) == 5 and all(0 <= v < PATCH for s in drawn for v in s)
    every = patch_shifts(PATCH, 2, PATCH**2, gen)
    assert sorted(every) == [(i, j) for i in range(PATCH) for j in range(PATCH)]


@pytest.mark.parametrize("jitter", [-1, PATCH**2 + 1, 1.5])
def test_a_jitter_beyond_the_patchs_offsets_is_refused(jitter):
    with pytest.raises(ValueError, match=f"jitter={jitter}.*expected"):
        _roll(Pointwise(_config()), _dataset(), jitter=jitter)


def test_jitter_on_data_with_walls_or_forcing_warns_and_on_periodic_data_does_not():
    ds, model = _dataset(), Pointwise(_config())
    walls = ds.assign_attrs(boundary="reflecting walls")
    with pytest.warns(UserWarning, match="boundary='reflecting walls'"):
        _roll(model, walls, jitter=2)
    with pytest.warns(UserWarning, match="forcing='fno'"):
        _roll(model, ds.assign_attrs(forcing="fno"), jitter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _roll(model, ds.assign_attrs(bc_x="periodic:x", forcing="none"), jitter=2)
        _roll(model, walls)  # no jitter, no warning
