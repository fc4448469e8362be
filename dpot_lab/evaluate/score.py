"""The DPOT paper's scoring protocol, once: rollout L2RE against the truth and persistence.

The score of one sample is the relative L2 ‖ŷ−y‖₂ / ‖y‖₂ per field over all scored frames and
space jointly, averaged over the (real) fields; a source scores the mean over its samples.

    pred = dl.rollout(model, ds, t_in=10)
    s = score_rollout(pred, ds)  # l2re (sample, field), step_error (sample, time, field), mean
    s = score_model(model, ds)  # the same for the model and the persistence baseline

    ours, still = score_batch(model, traj, t_in, steps, channel_mask, grid_mask)  # (B,) each

On tensors (the trainer: padded channels, a native grid inside a padded one, samples spread over
processes) ``score_batch`` rolls out and scores a batch; the reduction is ``relative_l2`` (per
sample and field) then ``field_mean`` (per sample), from ``evaluate.relative_error``.
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr
from torch import nn

from dpot_lab.data import schema
from dpot_lab.evaluate import metrics
from dpot_lab.evaluate.relative_error import field_mean, relative_l2, sample_l2re
from dpot_lab.evaluate.rollout import autoregress, persist, rollout
from dpot_lab.models.util import unwrap


class UnscorableTruth(ValueError):
    """The truth holds NaN/Inf in the frames to be scored, or a field that is 0 everywhere in one
    of them (its relative L2 would divide by a norm of 0)."""


def _stack(ds: xr.Dataset, fields: list[str], spatial: tuple[str, ...]) -> torch.Tensor:
    """Fields of (sample, time, *space) -> tensor (N, *S, T, C), float64."""
    arr = np.stack(
        [ds[f].transpose("sample", *spatial, "time").values for f in fields], axis=-1
    ).astype(np.float64)
    return torch.from_numpy(arr)


def _refuse_unscorable_truth(
    t: torch.Tensor, truth: xr.Dataset, given: xr.Dataset, fields: list[str]
) -> None:
    """UnscorableTruth naming the first sample, frame (its index in ``given``) and field where the
    scored truth ``t`` (N, *S, T, C), stacked from ``truth``, holds NaN/Inf or is 0 everywhere."""
    space = t.flatten(1, -3)  # (N, P, T, C)
    for bad, what, then in (
        (~torch.isfinite(space).all(1), "NaN/Inf", "the scores would be NaN"),
        ((space == 0).all(1), "a field that is 0 everywhere",
         "its relative L2 would divide by a norm of 0"),
    ):  # fmt: skip
        if bad.any():  # (N, T, C)
            n, k, c = bad.nonzero()[0].tolist()
            time = truth["time"].values[k]
            frame = metrics.indexed(given).get_index("time").get_loc(time)
            raise UnscorableTruth(
                f"the truth holds {what} in its scored frames: first in field {fields[c]!r}, "
                f"sample {truth['sample'].values[n]}, frame {frame} (time {time}); "
                f"{int(bad.sum())} (sample, frame, field) entries in all; {then}"
            )


def score_rollout(pred: xr.Dataset, truth: xr.Dataset) -> xr.Dataset:
    """Score a rollout (the layout of ``dl.rollout``'s result, or of ``metrics.persistence``)
    against the dataset it came from, matched by sample and time coordinates.

    Returns a Dataset with ``l2re`` (sample, field): relative L2 over all scored frames and space;
    ``step_error`` (sample, time, field): relative L2 over space per frame; ``mean`` (): the mean
    of ``l2re`` over fields, then samples. A diverged (NaN) sample makes its scores and the mean
    NaN; NaN/Inf in the truth's scored frames, or a field 0 everywhere in one of them, is
    ``UnscorableTruth`` naming sample, frame and field."""
    schema.require_dataset(pred, "score_rollout: pred")
    schema.require_dataset(truth, "score_rollout: truth")
    given = truth
    pred, truth = metrics.align(pred, truth)
    fields = [str(f) for f in pred.data_vars]
    spatial = schema.spatial_dims(truth)
    p, t = _stack(pred, fields, spatial), _stack(truth, fields, spatial)  # (N, *S, T, C)
    _refuse_unscorable_truth(t, truth, given, fields)
    per_field = relative_l2(p, t)  # (N, C)
    per_step = relative_l2(p, t, per_step=True).numpy()  # (N, T, C)
    mean = field_mean(per_field).mean().item()
    coords = {"sample": pred["sample"].values, "time": pred["time"].values, "field": fields}
    return xr.Dataset(
        {
            "l2re": (("sample", "field"), per_field.numpy()),
            "step_error": (("sample", "time", "field"), per_step),
            "mean": ((), mean),
        },
        coords=coords,
    )


def score_batch(
    model: nn.Module,
    traj: torch.Tensor,
    t_in: int,
    steps: int | None = None,
    channel_mask: torch.Tensor | None = None,
    grid_mask: torch.Tensor | None = None,
    pad_value: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's score of each trajectory of ``traj`` (B, *S, T, C) -> (model (B,), persistence
    (B,)): ``model`` rolled out from the first ``t_in`` frames for ``steps`` frames (None, or more
    than the trajectory holds: to its end), and the last input frame repeated, against those
    frames. ``channel_mask`` (C,) or (B, C) marks the real fields (padding is reset to
    ``pad_value`` in the rollout and not scored); ``grid_mask`` (*S) or (B, *S) the native grid.
    The rollout runs in the model's precision, with gradients unless under ``torch.no_grad()``."""
    left = traj.shape[-2] - t_in
    steps = left if steps is None else min(steps, left)
    if steps < 1:
        raise ValueError(f"{traj.shape[-2]} frames leave nothing to score after t_in={t_in}")
    truth = traj[..., t_in : t_in + steps, :]  # (B, *S, steps, C)
    pred = autoregress(model, traj[..., :t_in, :], steps, channel_mask, pad_value)
    still = persist(traj[..., :t_in, :], steps)
    return (
        sample_l2re(pred, truth, channel_mask, grid_mask),
        sample_l2re(still, truth, channel_mask, grid_mask),
    )


def score_model(
    model: nn.Module,
    dataset: xr.Dataset,
    t_in: int | None = None,
    steps: int | None = None,
    batch_size: int = 8,
    **rollout_kwargs,
) -> xr.Dataset:
    """Roll ``model`` out on ``dataset`` from its first ``t_in`` frames (None: the model's input
    frames) for ``steps`` frames (None: to the end) and score it and the persistence baseline:
    the variables of ``score_rollout`` plus ``persistence_l2re``, ``persistence_step_error`` and
    ``persistence_mean``, and the model's ``vrmse`` (sample, time, field) (``metrics.vrmse``);
    attrs ``t_in``, ``steps``. NaN/Inf or an all-zero field in a scored frame of the truth raises
    ``UnscorableTruth``.
    ``rollout_kwargs`` go to ``dl.rollout`` (``device``, ``dtype``, ``progress``, ...)."""
    schema.require_dataset(dataset, "score_model: dataset")
    if t_in is None:
        t_in = unwrap(model).config.in_timesteps
    pred = rollout(model, dataset, t_in=t_in, steps=steps, batch_size=batch_size, **rollout_kwargs)
    steps = pred.sizes["time"]
    still = metrics.persistence(dataset, t_in=t_in, steps=steps)
    ours, base = score_rollout(pred, dataset), score_rollout(still, dataset)
    out = ours.assign({f"persistence_{k}": base[k] for k in ("l2re", "step_error", "mean")})
    vrmse = metrics.vrmse(pred, dataset).to_array("field").reset_coords(drop=True)
    out["vrmse"] = vrmse.transpose("sample", "time", "field")
    out.attrs = {"t_in": t_in, "steps": steps}
    return out
