"""Auto-regressive rollout of a DPOT model: on tensors (``autoregress``) and on trajectory sets
(``rollout``: xarray in, xarray out, on the data's native grid)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from itertools import count

import numpy as np
import torch
import xarray as xr
from torch import nn
from tqdm.auto import tqdm

from dpot_lab.data import schema
from dpot_lab.data.transforms import pad_channels, resize
from dpot_lab.models.util import unwrap
from dpot_lab.sizes import grid_text

logger = logging.getLogger(__name__)


def patch_shifts(
    patch: int, n_spatial: int, k: int, generator: torch.Generator
) -> list[tuple[int, ...]]:
    """``k`` distinct periodic shifts (one per space dim, each 0 … patch−1) drawn by ``generator``
    without replacement from the patch**n_spatial offsets within a patch; all of them in order
    when ``k`` is that count."""
    total = patch**n_spatial
    if not 1 <= k <= total:
        raise ValueError(
            f"jitter={k}: expected 1 … {total} shifts (offsets within a {patch}-cell patch in "
            f"{n_spatial}D), or 0 for none"
        )
    picks = range(total) if k == total else torch.randperm(total, generator=generator)[:k].tolist()
    return [tuple(i // patch**d % patch for d in reversed(range(n_spatial))) for i in picks]


def jittered(model: nn.Module, x: torch.Tensor, shifts: Sequence[tuple[int, ...]]) -> torch.Tensor:
    """Patch jittering: the mean over ``shifts`` of the model's prediction on the window x
    (B, *S, T_in, C) rolled periodically by each shift along the space dims, rolled back ->
    (B, *S, T_out, C). Exact for a model that commutes with periodic shifts; meant for data
    whose dynamics do not depend on position (periodic, no forcing fixed in space)."""
    dims = tuple(range(1, x.dim() - 2))
    batch = torch.cat([torch.roll(x, s, dims) for s in shifts])  # (k·B, *S, T_in, C)
    y = model(batch).unflatten(0, (len(shifts), x.shape[0]))  # (k, B, *S, T_out, C)
    back = [torch.roll(y[i], tuple(-v for v in s), dims) for i, s in enumerate(shifts)]
    return torch.stack(back).mean(0)


def predict_frames(
    model: nn.Module,
    x: torch.Tensor,
    channel_mask: torch.Tensor | None = None,
    pad_value: float = 1.0,
    perturb: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    jitter: int = 0,
    jitter_seed: int = 0,
) -> Iterator[torch.Tensor]:
    """Yield the next predicted frames (B, *S, T_out, C) from the window x (B, *S, T_in, C), without
    end, feeding each prediction back (with its gradient, unless under ``torch.no_grad()``).
    Channels where ``channel_mask`` ((C,) or per sample (B, C)) is False are padding: they are reset
    to ``pad_value`` in every prediction, as in training. ``perturb(window, k)``: what the model
    sees of the k-th window instead of the window itself (the trainer's input noise).
    ``jitter`` k > 0: each step predicts with ``jittered`` over k shifts within the model's patch
    (``patch_shifts``), drawn afresh each step from ``jitter_seed``: the same sequence of shifts
    for every call with that seed, whatever the batch."""
    core = unwrap(model)
    t_in = core.config.in_timesteps if hasattr(core, "config") else x.shape[-2]
    window = x[..., -t_in:, :]
    mask = None
    if channel_mask is not None:
        mask = channel_mask.to(x.device)
        if mask.dim() == 2:  # (B, C) -> (B, 1, ..., 1, C)
            mask = mask.view(mask.shape[0], *(1,) * (x.dim() - 2), mask.shape[-1])
    if jitter:
        if not hasattr(core, "config"):
            raise ValueError(f"jitter={jitter} needs the model's config.patch_size; it has none")
        generator = torch.Generator().manual_seed(jitter_seed)
    for k in count():
        seen = window if perturb is None else perturb(window, k)
        if jitter:
            shifts = patch_shifts(core.config.patch_size, x.dim() - 3, jitter, generator)
            y = jittered(model, seen, shifts)
        else:
            y = model(seen)  # (B, *S, T_out, C)
        if mask is not None:
            y = torch.where(mask, y, torch.full_like(y, pad_value))
        yield y
        window = torch.cat([window, y.to(window.dtype)], dim=-2)[..., -t_in:, :]


def autoregress(
    model: nn.Module,
    x: torch.Tensor,
    steps: int,
    channel_mask: torch.Tensor | None = None,
    pad_value: float = 1.0,
) -> torch.Tensor:
    """Roll ``model`` out from the window x (B, *S, T_in, C) for ``steps`` frames -> (B, *S, steps,
    C).

    Each call predicts ``T_out`` frames that are fed back as input. Channels where ``channel_mask``
    ((C,) or per sample (B, C)) is False are padding: they are reset to ``pad_value`` in every
    prediction, as in training.
    Gradients flow unless the caller wraps this in ``torch.no_grad()``.
    """
    frames, made = [x[..., :0, :]], 0
    for y in predict_frames(model, x, channel_mask, pad_value):
        if made >= steps:
            break
        frames.append(y)
        made += y.shape[-2]
    return torch.cat(frames, dim=-2)[..., :steps, :]


def persist(x: torch.Tensor, steps: int) -> torch.Tensor:
    """The persistence baseline, the one the paper's score compares with: the last frame of the
    window x (B, *S, T_in, C) repeated for ``steps`` frames -> (B, *S, steps, C), a view of x."""
    return x[..., -1:, :].expand(*x.shape[:-2], steps, x.shape[-1])


def source_name(dataset: xr.Dataset) -> str:
    """The file a dataset was read from, for messages (``'dataset'`` when unknown)."""
    src = dataset.encoding.get("source") or dataset.attrs.get("source_file")
    return str(src) if src else "dataset"


def field_layout(dataset: xr.Dataset) -> tuple[list[str], tuple[str, ...]]:
    """The fields (variables shaped (sample, time, *space)) and the spatial dims of a dataset."""
    src = source_name(dataset)
    spatial, fields = schema.spatial_dims(dataset), schema.field_names(dataset)
    if not fields:
        raise ValueError(
            f"{src}: no field has the dims (sample, time, {', '.join(spatial) or 'x, y'}); "
            f"variables: { ({str(n): v.dims for n, v in dataset.data_vars.items()}) }"
        )
    return fields, spatial


def sample_positions(
    dataset: xr.Dataset, samples: int | slice | Sequence[int] | None
) -> np.ndarray:
    """Positions along ``sample`` chosen by an index, a slice, a list of indices or None (all)."""
    everything = np.arange(dataset.sizes["sample"])
    if samples is None:
        return everything
    if isinstance(samples, int | np.integer):
        samples = [int(samples)]
    try:
        return np.atleast_1d(everything[samples])
    except IndexError:
        raise IndexError(
            f"{source_name(dataset)}: samples={samples!r} is out of range for "
            f"{everything.size} samples"
        ) from None


def rollout_times(dataset: xr.Dataset, t_in: int, steps: int) -> np.ndarray:
    """Time coordinates of the ``steps`` frames after the first ``t_in``: the dataset's own where it
    has them (frame positions when it has no ``time`` coordinate), extrapolated at the last spacing
    beyond its end."""
    n = dataset.sizes["time"]
    t = dataset["time"].values if "time" in dataset.coords else np.arange(n)
    if t_in + steps <= n:
        return t[t_in : t_in + steps]
    dt = t[-1] - t[-2] if n > 1 else 1
    return np.concatenate([t[t_in:], t[-1] + dt * np.arange(1, t_in + steps - n + 1)])


def prediction_like(
    dataset: xr.Dataset,
    fields: list[str],
    positions: np.ndarray,
    times: np.ndarray,
    data: np.ndarray,
    attrs: dict | None = None,
) -> xr.Dataset:
    """A Dataset of predicted frames laid out like ``dataset``: ``data`` (N, T, *S, C) becomes one
    variable per field with dims (sample, time, *space); space coordinates are kept, sample
    coordinates are those of the samples at ``positions`` (``sample``: the positions themselves
    where ``dataset`` has no labels), and ``time`` is the given ``times``."""
    _, spatial = field_layout(dataset)
    dims = ("sample", "time", *spatial)
    coords: dict = {"time": ("time", times)}
    for name, c in dataset.coords.items():
        if name == "time" or "time" in c.dims:
            continue
        if "sample" in c.dims:
            coords[name] = c.isel(sample=positions)
        else:
            coords[name] = c
    if "sample" not in coords:
        coords["sample"] = ("sample", positions)
    out = xr.Dataset(
        {f: (dims, data[..., i], dataset[f].attrs) for i, f in enumerate(fields)}, coords=coords
    )
    out.attrs = {**dataset.attrs, **(attrs or {})}
    return out


def _check(model: nn.Module, dataset: xr.Dataset, fields: list[str], spatial: tuple, t_in: int):
    """Raise ValueError naming the file, the fields and what the model expects, on any mismatch."""
    src, cfg = source_name(dataset), unwrap(model).config
    n_spatial = len(cfg.img_size)
    if len(spatial) != n_spatial:
        raise ValueError(
            f"{src} is {len(spatial)}D (dims {', '.join(spatial)}) but the model is {n_spatial}D "
            f"(img_size {tuple(cfg.img_size)})"
        )
    if len(fields) > cfg.in_channels:
        raise ValueError(
            f"{src} has {len(fields)} fields ({', '.join(fields)}) but the model takes at most "
            f"{cfg.in_channels} channels"
        )
    if cfg.out_channels != cfg.in_channels:
        raise ValueError(
            f"the model predicts {cfg.out_channels} channels from {cfg.in_channels}: "
            "its output cannot be fed back for a rollout"
        )
    if t_in < cfg.in_timesteps:
        raise ValueError(f"t_in={t_in} is fewer than the model's {cfg.in_timesteps} input frames")
    if dataset.sizes["time"] < t_in:
        raise ValueError(
            f"{src} has {dataset.sizes['time']} frames along 'time' (fields {', '.join(fields)}) "
            f"but t_in={t_in} input frames are needed"
        )


def _fixed_in_space(dataset: xr.Dataset) -> list[str]:
    """The attrs in which a dataset states what periodic shifts do not commute with, as
    ``name='value'``: a boundary that is not periodic (``boundary``, The Well's ``bc_<name>``) or
    a forcing fixed in space (``forcing`` other than 'none')."""
    attrs = {n: str(v) for n, v in dataset.attrs.items()}
    walls = [n for n, v in attrs.items() if (n == "boundary" or n.startswith("bc_"))
             and not v.lower().startswith("periodic")]  # fmt: skip
    forced = [n for n, v in attrs.items() if n == "forcing" and v.lower() not in ("", "none")]
    return [f"{n}={attrs[n]!r}" for n in walls + forced]


def _check_jitter(model: nn.Module, dataset: xr.Dataset, jitter: int) -> None:
    """ValueError unless 0 <= jitter <= the shifts within the model's patch; a warning where the
    dataset states a boundary that is not periodic or a forcing fixed in space."""
    cfg = unwrap(model).config
    total = cfg.patch_size ** len(cfg.img_size)
    if isinstance(jitter, bool) or not isinstance(jitter, int | np.integer):
        raise ValueError(f"jitter={jitter!r}: expected an integer number of shifts, 0 … {total}")
    if not 0 <= jitter <= total:
        raise ValueError(
            f"jitter={jitter}: expected 0 (none) … {total} shifts, the offsets within the model's "
            f"{cfg.patch_size}-cell patch in {len(cfg.img_size)}D"
        )
    stated = _fixed_in_space(dataset)
    if jitter and stated:
        warnings.warn(
            f"{source_name(dataset)}: jitter={jitter} rolls the fields periodically, but the data "
            f"states {', '.join(stated)}: a shifted input meets walls or forcing at other places",
            stacklevel=4,  # the caller of the no_grad-wrapped rollout
        )


def _resolve_steps(dataset: xr.Dataset, t_in: int, steps: int | None, src: str) -> int:
    """The frames to predict: ``steps``, or every frame after the input when None."""
    if steps is None:
        steps = dataset.sizes["time"] - t_in
        if steps == 0:
            raise ValueError(f"{src} has only t_in={t_in} frames: pass steps= to predict beyond")
    if steps < 1:
        raise ValueError(f"steps={steps}: expected at least 1 frame to predict")
    return steps


def _warn_resize(src: str, native: tuple[int, ...], img_size: Sequence[int]) -> None:
    """Warn, at the caller of ``rollout``, when the data's grid is not the model's."""
    if native != tuple(img_size):
        warnings.warn(
            f"{src}: data grid {grid_text(native)} differs from the model's {grid_text(img_size)}: "
            "fields are resized in and out, which costs accuracy; fine-tune at the data's grid "
            "instead",
            stacklevel=4,  # the caller of the no_grad-wrapped rollout
        )


def _input_window(
    dataset: xr.Dataset, fields: list[str], spatial: tuple, positions: np.ndarray, t_in: int,
    dtype: torch.dtype,
) -> torch.Tensor:  # fmt: skip
    """The first ``t_in`` frames of the samples at ``positions`` -> (B, *S, T_in, C)."""
    window = dataset[fields].isel(sample=positions, time=slice(0, t_in))
    arr = np.stack(
        [window[f].transpose("sample", *spatial, "time").values for f in fields], axis=-1
    )  # (B, *S, T_in, C)
    return torch.as_tensor(arr, dtype=dtype)


def _roll_batch(
    model: nn.Module, x: torch.Tensor, out: np.ndarray, pad_value: float, jitter: int,
    jitter_seed: int, bar: tqdm,
) -> np.ndarray:  # fmt: skip
    """Roll one batch out from ``x`` (B, *S, T_in, C) (the data's grid and fields, on the model's
    device) into ``out`` (B, steps, *S, C); a sample's frames from its first non-finite one on
    stay NaN. Returns the step at which each sample stopped (B,) (``steps``: finite throughout;
    0: a non-finite input window)."""
    cfg = unwrap(model).config
    steps, native, real = out.shape[1], out.shape[2:-1], out.shape[-1]
    stop = torch.where(torch.isfinite(x).flatten(1).all(1), steps, 0).cpu().numpy()
    x = resize(torch.nan_to_num(x), cfg.img_size)
    x, mask = pad_channels(x, cfg.in_channels, pad_value)  # (B, *S_model, T_in, C_model)
    frames = predict_frames(model, x, mask, pad_value, jitter=jitter, jitter_seed=jitter_seed)
    made = 0
    while made < steps and (stop > made).any():
        y = next(frames)[..., : steps - made, :real].float()  # (B, *S_model, k, C)
        k = y.shape[-2]
        finite = torch.isfinite(y).movedim(-2, 1).flatten(2).all(2).cpu().numpy()
        for b, j in zip(*np.nonzero(~finite), strict=True):  # (B, k) frames
            stop[b] = min(stop[b], made + j)
        y = resize(torch.nan_to_num(y), native).movedim(-2, 1)  # (B, k, *S, C)
        y = y.cpu().numpy()
        keep = made + np.arange(k)[None, :] < stop[:, None]  # (B, k)
        y[~keep] = np.nan
        out[:, made : made + k] = y
        made += k
        bar.update(k * len(y))
    bar.update((steps - made) * len(stop))
    return stop


def _prediction(
    dataset: xr.Dataset, fields: list[str], positions: np.ndarray, out: np.ndarray,
    diverged_at: np.ndarray, attrs: dict,
) -> xr.Dataset:  # fmt: skip
    """``rollout``'s result from its frames ``out`` (N, steps, *S, C) and ``diverged_at`` (N,),
    each diverged sample logged."""
    t_in, steps = attrs["rollout_t_in"], attrs["rollout_steps"]
    times = rollout_times(dataset, t_in, steps)
    pred = prediction_like(dataset, fields, positions, times, out, attrs)
    for label, step in zip(pred["sample"].values, diverged_at, strict=True):
        if step >= 0:
            logger.warning(
                "%s: sample %s turned non-finite at rollout step %d", source_name(dataset), label,
                step,
            )  # fmt: skip
    return pred.assign_coords(diverged_at=("sample", diverged_at))


@torch.no_grad()
def rollout(
    model: nn.Module,
    dataset: xr.Dataset,
    t_in: int = 10,
    steps: int | None = None,
    samples: int | slice | Sequence[int] | None = None,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    pad_value: float = 1.0,
    progress: bool = True,
    jitter: int = 0,
    jitter_seed: int = 0,
) -> xr.Dataset:
    """Roll ``model`` out on trajectories (sample, time, x, y[, z]) from their first ``t_in``
    frames.

    Returns the ``steps`` predicted frames (None: every frame after the input) as a Dataset with
    the input's fields, dims, space coordinates and sample labels, ``time`` continuing the
    input's. Fields on another grid than the model's are resized to it and back (with a warning),
    and padded with ``pad_value`` to the model's channels.
    A trajectory that turns non-finite is stopped: its frames from then on are NaN, and the
    coordinate ``diverged_at`` (sample,) gives that step (-1: finite throughout).
    ``device`` None: CUDA when present; ``dtype`` float16/bfloat16: autocast in that precision.
    ``jitter`` k > 0: patch jittering at inference, for data whose dynamics do not depend on
    position (periodic, no forcing fixed in space; a warning where the data's attrs state walls or
    a forcing): each step is the mean of the model's predictions on k periodic
    shifts of the window within a patch, shifted back (k = patch² in 2D: every offset; fewer:
    drawn afresh each step from ``jitter_seed``, the same for every sample and batch size).
    It costs k model calls a step.
    """
    schema.require_dataset(dataset, "rollout: dataset")
    fields, spatial = field_layout(dataset)
    _check(model, dataset, fields, spatial, t_in)
    _check_jitter(model, dataset, jitter)
    steps = _resolve_steps(dataset, t_in, steps, source_name(dataset))
    positions = sample_positions(dataset, samples)
    native = tuple(dataset.sizes[d] for d in spatial)
    _warn_resize(source_name(dataset), native, unwrap(model).config.img_size)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    param = next(model.parameters(), None)
    home, was_training = (param.device if param is not None else device), model.training
    amp = dtype in (torch.float16, torch.bfloat16)
    autocast = torch.autocast(device.type, dtype=dtype) if amp else nullcontext()
    out = np.full((len(positions), steps, *native, len(fields)), np.nan, dtype=np.float32)
    diverged_at = np.full(len(positions), -1, dtype=np.int64)
    model.to(device).eval()
    bar = tqdm(total=len(positions) * steps, desc="rollout", unit="frame", disable=not progress)
    try:
        for start in range(0, len(positions), batch_size):
            batch = slice(start, start + batch_size)
            x = _input_window(dataset, fields, spatial, positions[batch], t_in,
                              param.dtype if param is not None else torch.float32)  # fmt: skip
            with autocast:
                stop = _roll_batch(model, x.to(device), out[batch], pad_value, jitter,
                                   jitter_seed, bar)  # fmt: skip
            div = stop < steps
            diverged_at[batch][div] = stop[div]
    finally:
        bar.close()
        model.to(home).train(was_training)
    attrs = {"rollout_t_in": t_in, "rollout_steps": steps}
    if jitter:
        attrs |= {"rollout_jitter": jitter, "rollout_jitter_seed": jitter_seed}
    return _prediction(dataset, fields, positions, out, diverged_at, attrs)
