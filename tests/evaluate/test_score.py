"""The paper score against numpy formulas and the xarray metrics; masks; persistence."""

import numpy as np
import pytest
import torch
import xarray as xr

import dpot_lab as dl
from dpot_lab.evaluate import metrics
from dpot_lab.evaluate.score import (
    UnscorableTruth,
    field_mean,
    relative_l2,
    sample_l2re,
    score_batch,
    score_model,
    score_rollout,
)


def _truth(n=3, t=9, shape=(12, 10), seed=0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    dims = ("sample", "time", "x", "y")
    return xr.Dataset(
        {f: (dims, rng.standard_normal((n, t, *shape))) for f in ("u", "p")},
        coords={"time": 0.5 * np.arange(t)},
    )


def test_score_rollout_is_the_paper_protocol():
    truth = _truth()
    after = truth.isel(time=slice(4, None))
    pred = after + 0.2 * np.random.default_rng(1).standard_normal(after.u.shape)
    s = score_rollout(pred, truth)  # truth holds the input frames too: matched by time
    assert s.l2re.dims == ("sample", "field") and list(s.field.values) == ["u", "p"]
    assert s.step_error.dims == ("sample", "time", "field") and s.sizes["time"] == 5
    for f in ("u", "p"):
        y, yhat = truth[f].values[:, 4:], pred[f].values
        joint = np.linalg.norm((yhat - y).reshape(3, -1), axis=1) / np.linalg.norm(
            y.reshape(3, -1), axis=1
        )
        np.testing.assert_allclose(s.l2re.sel(field=f).values, joint, rtol=1e-7)
        np.testing.assert_allclose(
            s.step_error.sel(field=f).values, metrics.per_step_error(pred, truth)[f].values,
            rtol=1e-7,
        )  # fmt: skip
    paper = metrics.l2re(pred, truth).to_array("field").mean("field").mean("sample")
    assert float(s["mean"]) == pytest.approx(float(paper), rel=1e-7)


def test_nan_in_the_scored_truth_is_an_error_naming_sample_and_frame():
    truth = _truth().assign_coords(sample=[10, 11, 12])
    pred = truth.isel(time=slice(4, None)) * 1.1
    truth["p"][1, 2, 3, 4] = np.nan  # an input frame: not scored
    assert np.isfinite(float(score_rollout(pred, truth)["mean"]))
    truth["p"][1, 6, 3, 4] = np.nan
    truth["u"][2, 7:, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"^the truth holds NaN/Inf in its scored frames: first in "
                       r"field 'p', sample 11, frame 6 \(time 3\.0\); 3 \(sample, frame, field\) "
                       r"entries in all; the scores would be NaN$"):  # fmt: skip
        score_rollout(pred, truth)
    pred["u"][0, 0, 0, 0] = np.nan  # a diverged prediction still scores NaN
    clean = truth.where(np.isfinite(truth), 0.0)
    assert np.isnan(float(score_rollout(pred, clean)["mean"]))


def test_a_field_zero_everywhere_in_a_scored_frame_is_an_error_naming_sample_and_frame():
    """A field at rest (0 everywhere) in an input frame scores; in a scored frame its relative L2
    would divide by a norm of 0, so the score refuses it, naming where."""
    truth = _truth().assign_coords(sample=[10, 11, 12])
    pred = truth.isel(time=slice(4, None)) * 1.1
    truth["u"][0, :4] = 0.0  # at rest in the input frames: scored as usual
    assert float(score_rollout(pred, truth)["mean"]) == pytest.approx(0.1, rel=1e-6)
    truth["u"][2, 5] = 0.0
    truth["p"][2, 5, 0, 0] = 0.0  # one point at 0 is no zero field
    with pytest.raises(UnscorableTruth, match=r"^the truth holds a field that is 0 everywhere in "
                       r"its scored frames: first in field 'u', sample 12, frame 5 \(time 2\.5\); "
                       r"1 \(sample, frame, field\) entries in all; its relative L2 would divide "
                       r"by a norm of 0$"):  # fmt: skip
        score_rollout(pred, truth)


def test_field_mean_skips_padded_channels_and_the_grid_mask_cuts_points():
    rng = torch.Generator().manual_seed(0)
    truth = torch.randn(2, 6, 5, 3, 3, generator=rng)  # (B, X, Y, T, C)
    pred = truth + 0.1 * torch.randn(truth.shape, generator=rng)
    pred[..., 2] = 1e3  # a padded channel: ignored when masked out
    mask = torch.tensor([True, True, False])
    per = relative_l2(pred, truth)  # (B, C)
    torch.testing.assert_close(sample_l2re(pred, truth, mask), per[:, :2].mean(-1))
    torch.testing.assert_close(field_mean(per), per.mean(-1))
    grid = torch.zeros(6, 5, dtype=torch.bool)
    grid[:4, :3] = True  # the native grid inside a padded one
    cut = relative_l2(pred[:, :4, :3], truth[:, :4, :3])
    torch.testing.assert_close(relative_l2(pred, truth, grid), cut)
    per_step = relative_l2(pred, truth, per_step=True)  # (B, T, C)
    assert per_step.shape == (2, 3, 3)
    torch.testing.assert_close(per_step[:, 1], relative_l2(pred[..., 1:2, :], truth[..., 1:2, :]))


def test_score_model_scores_the_model_and_persistence():
    truth = _truth(n=2, t=7, shape=(16, 16)).astype(np.float32)
    model = dl.create_model(
        "nano", img_size=16, patch_size=4, in_channels=2, in_timesteps=3, embed_dim=16, depth=1,
        modes=2, out_layer_dim=8,
    )  # fmt: skip
    s = score_model(model, truth, progress=False)
    assert s.attrs == {"t_in": 3, "steps": 4} and s.sizes["time"] == 4
    still = score_rollout(metrics.persistence(truth, t_in=3), truth)
    np.testing.assert_allclose(s.persistence_l2re.values, still.l2re.values, rtol=1e-12)
    pred = dl.rollout(model, truth, t_in=3, progress=False)
    np.testing.assert_allclose(s.l2re.values, score_rollout(pred, truth).l2re.values, rtol=1e-12)
    assert float(s.persistence_mean) == pytest.approx(float(still["mean"]))


def test_the_trainer_the_cli_and_the_metric_score_one_input_the_same():
    """``score_batch`` (the trainer's, on padded tensors), ``score_model`` (the CLI's, on xarray)
    and ``dl.metrics.l2re`` on the same rollout give the same per-sample scores."""
    truth = _truth(n=3, t=7, shape=(16, 16)).astype(np.float32)
    torch.manual_seed(0)
    model = dl.create_model(  # three channels: the two fields and a padded one
        "nano", img_size=16, patch_size=4, in_channels=3, in_timesteps=3, embed_dim=16, depth=1,
        modes=2, out_layer_dim=8,
    )  # fmt: skip
    s = score_model(model, truth, progress=False)
    fields = [truth[f].transpose("sample", "x", "y", "time").values for f in ("u", "p")]
    traj = torch.from_numpy(np.stack([*fields, np.ones_like(fields[0])], -1))  # (N, X, Y, T, 3)
    real = torch.tensor([[True, True, False]]).expand(3, 3)  # (B, C)
    with torch.no_grad():
        ours, still = score_batch(model, traj, t_in=3, channel_mask=real)
    np.testing.assert_allclose(ours.numpy(), s.l2re.mean("field").values, rtol=1e-5)
    np.testing.assert_allclose(still.numpy(), s.persistence_l2re.mean("field").values, rtol=1e-5)
    assert not np.allclose(ours.numpy(), still.numpy())
    pred = dl.rollout(model, truth, t_in=3, progress=False)
    paper = metrics.l2re(pred, truth).to_array("field").mean("field")  # (sample,)
    np.testing.assert_allclose(paper.values, s.l2re.mean("field").values, rtol=1e-5)
    vrmse = metrics.vrmse(pred, truth).to_array("field").transpose("sample", "time", "field")
    np.testing.assert_allclose(s.vrmse.values, vrmse.values, rtol=1e-12)
    assert s.vrmse.dims == ("sample", "time", "field")
