"""dl.rollout: exact baselines, native grids, divergence marking, errors that name the mismatch."""

import logging
import warnings

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

import dpot_lab as dl
from dpot_lab.evaluate import autoregress, rollout
from dpot_lab.evaluate.metrics import persistence
from dpot_lab.evaluate.rollout import persist
from dpot_lab.evaluate.score import score_model, score_rollout


class Repeat(nn.Module):
    """Predicts ``scale`` × the last input frame (scale 1: persistence); T_out = 1."""

    def __init__(self, config: dl.DPOTConfig, scale: float = 1.0):
        super().__init__()
        self.config, self.scale = config, scale

    def forward(self, x):  # (B, *S, T_in, C) -> (B, *S, 1, C)
        assert tuple(x.shape[1:-2]) == self.config.img_size
        assert x.shape[-2:] == (self.config.in_timesteps, self.config.in_channels)
        return self.scale * x[..., -1:, :]


class Count(nn.Module):
    """Predicts last frame + 1, + 2, …, + T_out."""

    def __init__(self, config: dl.DPOTConfig):
        super().__init__()
        self.config = config

    def forward(self, x):
        t_out = self.config.out_timesteps
        return x[..., -1:, :] + torch.arange(1, t_out + 1, dtype=x.dtype).view(t_out, 1)


def _config(**kw) -> dl.DPOTConfig:
    return dl.DPOTConfig(**{"img_size": 16, "patch_size": 8, "in_channels": 4, "in_timesteps": 3,
                            "embed_dim": 16, "modes": 4, **kw})  # fmt: skip


def _dataset(n=5, t=9, shape=(16, 16), fields=("u", "v"), seed=0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    dims = ("sample", "time", *"xyz"[: len(shape)])
    coords = {"time": 0.25 * np.arange(t), "sample": 10 + np.arange(n)}
    coords |= {d: np.linspace(0, 1, s) for d, s in zip("xyz", shape, strict=False)}
    data = {f: (dims, rng.standard_normal((n, t, *shape)).astype(np.float32)) for f in fields}
    ds = xr.Dataset(data, coords=coords, attrs={"pde": "test"})
    ds.encoding["source"] = "/data/trajectories.h5"
    return ds


def test_repeat_last_frame_equals_persistence_exactly():
    ds = _dataset()
    pred = rollout(Repeat(_config()), ds, t_in=4, batch_size=2, progress=False)
    base = persistence(ds, t_in=4)
    assert list(pred.data_vars) == ["u", "v"] and pred.u.dims == ds.u.dims
    xr.testing.assert_equal(pred.drop_vars("diverged_at"), base)  # values, dims and coords
    np.testing.assert_array_equal(pred.time, ds.time[4:])
    np.testing.assert_array_equal(pred.sample, ds.sample)
    assert (pred.diverged_at == -1).all() and pred.attrs["pde"] == "test"


def test_samples_and_steps_beyond_the_data():
    ds = _dataset()
    pred = rollout(Repeat(_config()), ds, t_in=4, steps=8, samples=[3, 1], progress=False)
    np.testing.assert_array_equal(pred.sample, [13, 11])
    np.testing.assert_allclose(pred.time, 0.25 * np.arange(4, 12))  # extrapolated past t = 2
    last = ds.isel(sample=[3, 1], time=3)
    for f in ("u", "v"):
        np.testing.assert_array_equal(pred[f].values, np.repeat(last[f].values[:, None], 8, 1))


def test_non_square_grid_comes_back_native():
    # constant fields survive resizing to the model grid and back exactly
    ds = _dataset(n=3, shape=(24, 10))
    ds["u"][:] = np.arange(3, dtype=np.float32)[:, None, None, None]
    ds["v"][:] = -2.5
    with pytest.warns(UserWarning, match=r"data grid 24×10 differs from the model's 16×16"):
        pred = rollout(Repeat(_config()), ds, t_in=3, progress=False)
    assert dict(pred.sizes) == {"sample": 3, "time": 6, "x": 24, "y": 10}
    np.testing.assert_array_equal(pred.x, ds.x)
    np.testing.assert_array_equal(pred.y, ds.y)
    np.testing.assert_allclose(pred.u.values, ds.u.values[:, 3:], atol=1e-6)
    np.testing.assert_allclose(pred.v.values, -2.5, atol=1e-6)


def test_3d_data_comes_back_on_its_native_grid():
    ds = _dataset(n=2, t=5, shape=(12, 8, 20), fields=("w",))
    ds["w"][:] = 4.0
    with pytest.warns(UserWarning, match=r"data grid 12×8×20 differs from the model's 16×16×16"):
        pred = rollout(Repeat(_config(n_spatial=3)), ds, t_in=3, progress=False)
    assert pred.w.dims == ("sample", "time", "x", "y", "z")
    assert dict(pred.sizes) == {"sample": 2, "time": 2, "x": 12, "y": 8, "z": 20}
    np.testing.assert_allclose(pred.w.values, 4.0, atol=1e-6)
    np.testing.assert_array_equal(pred.z, ds.z)


def test_bf16_autocast_stays_close_to_float32():
    torch.manual_seed(0)
    model = dl.create_model("nano", img_size=16, in_channels=2, in_timesteps=3, embed_dim=16)
    ds = _dataset(n=2, t=6)
    full = rollout(model, ds, t_in=3, progress=False)
    half = rollout(model, ds, t_in=3, dtype=torch.bfloat16, progress=False)
    assert half.u.dtype == np.float32
    scale = float(abs(full.to_array()).max())
    assert 0 < float(abs(half.to_array() - full.to_array()).max()) < 0.05 * scale


def test_dpot_rollout_matches_a_manual_loop():
    torch.manual_seed(0)
    model = dl.create_model("nano", img_size=16, in_channels=3, in_timesteps=3, embed_dim=16)
    ds = _dataset(n=2, t=6, fields=("a", "b"))
    pred = rollout(model, ds, t_in=3, progress=False)
    x = torch.from_numpy(np.stack([ds.a.values, ds.b.values], -1)).permute(0, 2, 3, 1, 4)
    window = torch.cat([x[..., :3, :], torch.ones(2, 16, 16, 3, 1)], -1)  # pad channel c=3 with 1
    with torch.no_grad():
        for t in range(3):
            y = model(window)  # (B, X, Y, 1, C)
            for i, f in enumerate("ab"):
                np.testing.assert_allclose(pred[f].values[:, t], y[..., 0, i].numpy(), atol=1e-5)
            y = torch.cat([y[..., :2], torch.ones_like(y[..., 2:])], -1)  # padding stays 1
            window = torch.cat([window[..., 1:, :], y], -2)
    assert model.training  # training mode restored


def test_autoregress_chains_multi_frame_predictions():
    model = Count(_config(out_timesteps=2))
    x = torch.zeros(1, 16, 16, 3, 4)
    y = autoregress(model, x, steps=5)  # 1, 2 | 3, 4 | 5
    np.testing.assert_array_equal(y[0, 0, 0, :, 0].numpy(), [1, 2, 3, 4, 5])


def test_non_finite_trajectory_is_stopped_and_marked(caplog):
    ds = _dataset(n=3, t=10)
    ds["u"][:] = 1.0
    ds["v"][:] = 1.0
    ds["u"][1] = 0.0  # sample 1 stays 0 · 1e10 = 0; samples 0, 2 reach inf at the 4th step
    ds["v"][1] = 0.0
    with caplog.at_level(logging.WARNING, logger="dpot_lab.evaluate.rollout"):
        pred = rollout(Repeat(_config(), scale=1e10), ds, t_in=3, progress=False)
    np.testing.assert_array_equal(pred.diverged_at, [3, -1, 3])
    for f in ("u", "v"):
        values = pred[f].values
        assert np.isnan(values[[0, 2], 3:]).all()
        np.testing.assert_allclose(values[[0, 2], :3], np.array([1e10, 1e20, 1e30])[None, :, None,
                                   None] * np.ones((2, 3, 16, 16)), rtol=1e-6)  # fmt: skip
        np.testing.assert_array_equal(values[1], 0.0)
    assert "trajectories.h5: sample 12 turned non-finite at rollout step 3" in caplog.text


def test_non_finite_input_is_marked_at_step_zero():
    ds = _dataset(n=2)
    ds["v"][0, 1, 3, 3] = np.nan
    pred = rollout(Repeat(_config()), ds, t_in=3, progress=False)
    np.testing.assert_array_equal(pred.diverged_at, [0, -1])
    assert np.isnan(pred.u.values[0]).all() and np.isfinite(pred.u.values[1]).all()


@pytest.mark.parametrize(
    "ds, model_kw, t_in, match",
    [
        (_dataset(fields=tuple("abcde")), {}, 3, r"trajectories.h5 has 5 fields \(a, b, c, d, e\)"
         r" but the model takes at most 4 channels"),
        (_dataset(), {"n_spatial": 3}, 3,
         r"trajectories.h5 is 2D \(dims x, y\) but the model is 3D"),
        (_dataset(t=4), {}, 6, r"trajectories.h5 has 4 frames along 'time' \(fields u, v\) but "
         r"t_in=6"),
        (_dataset(), {"in_timesteps": 5}, 3, r"t_in=3 is fewer than the model's 5 input frames"),
    ],
)  # fmt: skip
def test_mismatch_names_file_fields_and_expectation(ds, model_kw, t_in, match):
    with pytest.raises(ValueError, match=match):
        rollout(Repeat(_config(**model_kw)), ds, t_in=t_in, progress=False)


def test_a_sample_subset_of_an_opened_file_is_scored_as_that_subset(tmp_path):
    plain = _dataset(n=4).drop_vars("sample").assign_attrs(source_format="native")
    for f in ("u", "v"):  # each sample still in time: the k-th frame is off by 1 - 0.9**k
        plain[f][:] = plain[f].values[:, :1]
    path = dl.data.save(plain, tmp_path / "four.h5")
    ds = dl.open_dataset(path)
    np.testing.assert_array_equal(ds.sample, [0, 1, 2, 3])  # labels where the file has none
    model = Repeat(_config(), scale=0.9)
    pred = rollout(model, ds.isel(sample=[1, 2]), t_in=3, progress=False)
    np.testing.assert_array_equal(pred.sample, [1, 2])
    whole = score_rollout(pred, ds)
    own = score_rollout(pred, ds.isel(sample=[1, 2]))
    xr.testing.assert_allclose(whole, own)
    expected = np.sqrt(np.mean((1 - 0.9 ** np.arange(1, 7)) ** 2))  # over the 6 frames
    np.testing.assert_allclose(own.l2re.values, expected, rtol=1e-5)
    still = persistence(ds.isel(sample=[2, 1]), t_in=3)
    np.testing.assert_array_equal(still.sample, [2, 1])
    own = score_rollout(still, ds.isel(sample=[2, 1]))
    xr.testing.assert_allclose(score_rollout(still, ds), own)


def test_rollout_beyond_the_truth_is_refused_when_scored():
    ds = _dataset()
    pred = rollout(Repeat(_config()), ds, t_in=4, steps=8, progress=False)
    with pytest.raises(ValueError, match=r"prediction time labels 2.25, 2.5, 2.75 are not in"):
        score_rollout(pred, ds)


def test_another_grid_than_the_models_warns_once_per_call():
    ds = _dataset(n=5, shape=(24, 10))
    with pytest.warns(UserWarning) as caught:
        rollout(Repeat(_config()), ds, t_in=3, batch_size=2, progress=False)
    grid = [str(w.message) for w in caught if "grid" in str(w.message)]
    assert grid == [
        "/data/trajectories.h5: data grid 24×10 differs from the model's 16×16: fields are resized "
        "in and out, which costs accuracy; fine-tune at the data's grid instead"
    ]
    assert caught[0].filename == __file__  # points at the caller's line


def test_the_models_grid_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rollout(Repeat(_config()), _dataset(), t_in=3, progress=False)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda ds, m: rollout(m, ds.u.values), r"rollout: dataset: expected an xarray.Dataset "
         r"with one variable per field \(sample, time, x, y\[, z\]\), got numpy.ndarray; wrap an "
         r"array with xr.Dataset\(\{'u': \(\('sample', 'time', 'x', 'y'\), arr\)\}\) or open a "
         r"file with dl.open_dataset"),
        (lambda ds, m: rollout(m, ds.u), r"rollout: dataset: .* got xarray.DataArray; turn the "
         r"DataArray into one with da.to_dataset\(name='u'\)"),
        (lambda ds, m: score_rollout(ds.u.values, ds), r"score_rollout: pred: .* numpy.ndarray"),
        (lambda ds, m: score_rollout(ds, ds.u), r"score_rollout: truth: .* xarray.DataArray"),
        (lambda ds, m: score_model(m, [ds]), r"score_model: dataset: .* got list"),
        (lambda ds, m: persistence(ds.u), r"persistence: dataset: .* xarray.DataArray"),
    ],
)  # fmt: skip
def test_an_array_where_a_dataset_is_expected_says_what_to_pass(call, match):
    with pytest.raises(TypeError, match=match):
        call(_dataset(), Repeat(_config()))


def test_persist_repeats_the_last_input_frame_without_copying():
    x = torch.randn(2, 5, 6, 3, 4)  # (B, X, Y, T_in, C)
    still = persist(x, 7)
    assert still.shape == (2, 5, 6, 7, 4)
    assert torch.equal(still, x[..., 2:3, :].repeat(1, 1, 1, 7, 1))
    assert still.data_ptr() == x[..., 2:, :].data_ptr()  # a view of the window
