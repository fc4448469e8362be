"""The training mixture: windows (or whole trajectories) from many PDE sources on one model grid.

A source is a trajectory set in the data model (dims ``sample, time, x, y[, z]``; every data
variable with exactly those dims is one channel, in variable order). The mixture

- splits every source by trajectory: the **last** ``n_test`` samples are the test split, the
  others train (the convention of the FNO and PDEBench files; independent of ``seed``);
- repeats trajectory ``i`` of source ``k`` ``w_k`` times per epoch, so
  ``len(mixture) = sum_k w_k * n_k`` and any sampler (torch's ``DistributedSampler`` included)
  respects the weights;
- draws each item's window start uniformly in ``[0, T_k - t_in - t_out]`` from
  ``(seed, epoch, index)`` alone, so items are reproducible in any process and order;
- reads lazily (one window reads ``t_in + t_out`` frames of one sample), resizes to the model
  grid with :func:`~dpot_lab.data.transforms.resize` and pads channels with ``pad_value``.

Grids: by default every source is stretched to the model grid, as in the paper (``grid_mask`` is
all True). With ``keep_aspect=True`` a source keeps its aspect ratio: it is resized to the
largest grid that fits, placed at the origin (low indices), the rest filled with ``pad_value``
and marked False in ``grid_mask``. :meth:`Mixture.to_native` maps model-grid fields back.

File sources are opened with :func:`dpot_lab.data.open.open_dataset`, whose lazy arrays open
their HDF5 files afresh in every process, so the mixture is safe to send to DataLoader workers
(forked or spawned). An in-memory ``xr.Dataset`` source is copied into spawned workers.
"""

from __future__ import annotations

import bisect
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from dpot_lab.data import schema
from dpot_lab.data.transforms import pad_channels, resize
from dpot_lab.sizes import size_tuple

log = logging.getLogger(__name__)

SourceLike = str | os.PathLike | xr.Dataset
_CHECKS = ("window", "skip", "off")


@dataclass(frozen=True, eq=False)
class Source:
    """One source of a :class:`Mixture` (``Mixture.sources``): what the mixture knows about it;
    the data is read from ``dataset`` on demand."""

    name: str
    path: Path | None  # None for an in-memory dataset
    dataset: xr.Dataset = field(repr=False)
    variables: tuple[str, ...]  # channel variables, in channel order
    native: tuple[int, ...]  # native grid (X, Y[, Z])
    t_total: int  # frames per trajectory
    samples: np.ndarray  # (N,) sample indices of this split, ascending; a read-only copy
    weight: int  # repeats of each trajectory per epoch

    def __post_init__(self) -> None:
        samples = np.array(self.samples, dtype=np.int64)
        samples.flags.writeable = False
        object.__setattr__(self, "samples", samples)

    @property
    def label(self) -> str:
        return f"source {self.name!r}" + (f" ({self.path})" if self.path else "")


def _open_file(path: Path, name: str) -> xr.Dataset:
    from dpot_lab.data.open import open_dataset

    try:
        return open_dataset(path)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"source {name!r}: {err}") from err
    except (OSError, ValueError) as err:
        raise ValueError(f"source {name!r}: {err}") from err


def _unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def _zero_frames(data: np.ndarray, first: int) -> np.ndarray:
    """(*S, T, C) -> (n, 2) [frame, channel] pairs, frame >= ``first``, where a channel is 0 at
    every point."""
    flat = data.reshape(-1, *data.shape[-2:])  # (P, T, C)
    zero = ~flat.any(axis=0)  # (T, C)
    zero[: max(first, 0)] = False
    return np.argwhere(zero)


def _read_frames(src: Source, sample: int, start: int, stop: int) -> np.ndarray:
    """Frames ``start:stop`` of one sample of ``src`` -> (*S, T, C) float32; a read error names
    the source, sample and frames."""
    data = np.empty((*src.native, stop - start, len(src.variables)), np.float32)
    try:
        for c, name in enumerate(src.variables):
            frames = src.dataset.variables[name][sample, start:stop].values  # (T, *S)
            data[..., c] = np.moveaxis(frames, 0, -1)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"{src.label}: cannot read sample {sample}, frames {start}..{stop - 1}: {err}"
        ) from err
    return data


def _drop_unscorable(src: Source, t_in: int) -> Source:
    """``src`` without the trajectories of its split that hold a NaN/Inf in a channel variable
    or a predicted frame (index >= ``t_in``) where a channel is 0 everywhere; each read once."""
    why = {}
    for sample in src.samples.tolist():
        data = _read_frames(src, sample, 0, src.t_total)
        if not np.isfinite(data).all():
            why[sample] = "NaN/Inf"
        elif _zero_frames(data, t_in).size:
            why[sample] = "a channel 0 everywhere at a predicted frame (relative L2 undefined)"
    if why:
        warnings.warn(f"{src.label}: check_finite dropped {len(why)} of {len(src.samples)} "
                      f"samples: " + "; ".join(f"sample {i}: {w}" for i, w in why.items()),
                      stacklevel=3)  # fmt: skip
    return replace(src, samples=np.setdiff1d(src.samples, list(why)))


def _per_source(value: Any, names: list[str], what: str, default: Any) -> list:
    """One entry per source from a scalar (all alike), a list, or a dict by source name."""
    if value is None or isinstance(value, (int, float)):
        return [default if value is None else value] * len(names)
    if isinstance(value, Mapping):
        unknown = set(value) - set(names)
        if unknown:
            raise ValueError(f"{what} name unknown sources {sorted(unknown)}; sources: {names}")
        return [value.get(n, default) for n in names]
    values = list(value)
    if len(values) != len(names):
        raise ValueError(f"{what} has {len(values)} entries for {len(names)} sources {names}")
    return values


def _check_settings(
    split: str, mode: str, check_finite: str, t_in: int, t_out: int, seed: int,
    test_fraction: float,
) -> None:  # fmt: skip
    """ValueError naming the first of ``Mixture``'s settings that is out of its range."""
    if split not in ("train", "test", "all"):
        raise ValueError(f"split={split!r}: expected 'train', 'test' or 'all'")
    if mode not in ("window", "trajectory"):
        raise ValueError(f"mode={mode!r}: expected 'window' or 'trajectory'")
    if check_finite not in _CHECKS:
        raise ValueError(f"check_finite={check_finite!r}: expected one of {_CHECKS}")
    if t_in < 1 or t_out < 1:
        raise ValueError(f"t_in={t_in}, t_out={t_out}: both must be at least 1")
    if seed < 0:
        raise ValueError(f"seed={seed}: expected a non-negative integer")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction}: expected a value in [0, 1)")


def _named_sources(
    sources: Sequence[SourceLike] | Mapping[str, SourceLike],
) -> tuple[list[str], list[SourceLike]]:
    """(unique names, sources): a dict's keys, else each file's stem or each Dataset's ``pde``
    attr; ValueError when there is none."""
    if isinstance(sources, Mapping):
        names, items = [str(k) for k in sources], list(sources.values())
    else:
        items = list(sources)
        names = [
            Path(s).stem if not isinstance(s, xr.Dataset) else str(s.attrs.get("pde", f"source{k}"))
            for k, s in enumerate(items)
        ]
    if not items:
        raise ValueError("sources is empty: expected at least one path or xr.Dataset")
    return _unique_names(names), items


def _model_grid(resolution: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    """``resolution`` as ``ndim`` positive sizes; ValueError otherwise."""
    try:
        res = size_tuple(resolution, ndim, "resolution")
    except ValueError:
        res = ()
    if not res or min(res) < 1:
        raise ValueError(
            f"resolution={resolution!r}: expected an int or {ndim} positive sizes for "
            f"{ndim}D sources"
        )
    return res


class Mixture(Dataset):
    """Windows ``x (X, Y[, Z], t_in, C)``, ``y (X, Y[, Z], t_out, C)`` from several PDE sources.

    ``sources``: paths, ``xr.Dataset``s, or a dict name -> either. ``weights``: repeats per
    trajectory per epoch (a list, or a dict by source name; default 1). ``resolution``: the
    model grid (an int for a square/cubic grid, or a tuple). ``split``: "train", "test" or
    "all"; ``n_test`` (an int for every source, a list or a dict by name) overrides
    ``test_fraction``. ``mode="trajectory"`` yields
    whole trajectories ``x (X, Y[, Z], T_k, C)`` for evaluation, each once (weights must be 1).
    ``check_finite``: "window" checks every window read and raises on NaN/inf or on a predicted
    frame (index >= t_in) where a channel is 0 everywhere (its relative L2 is undefined), "skip"
    reads each trajectory of the split once here and drops those that hold either, "off" checks
    nothing.

    Items are dicts of tensors: ``x``, ``y`` (window mode), ``channel_mask (C,)`` bool (True on
    real channels), ``grid_mask (X, Y[, Z])`` bool (True inside the native grid), ``source``,
    ``sample`` and ``start`` (window mode) or ``native_shape`` (trajectory mode), int64.
    ``sources`` describes each source (name, file, variables, native grid, frames, the split's
    samples, weight) as a frozen :class:`Source`, indexed like an item's ``source``.
    """

    def __init__(
        self,
        sources: Sequence[SourceLike] | Mapping[str, SourceLike],
        weights: Sequence[int] | Mapping[str, int] | None = None,
        resolution: int | Sequence[int] = 128,
        t_in: int = 10,
        t_out: int = 1,
        channels: int = 4,
        split: str = "train",
        test_fraction: float = 0.1,
        n_test: int | Sequence[int] | Mapping[str, int] | None = None,
        mode: str = "window",
        pad_value: float = 1.0,
        seed: int = 0,
        check_finite: str = "window",
        keep_aspect: bool = False,
    ) -> None:
        _check_settings(split, mode, check_finite, t_in, t_out, seed, test_fraction)
        self.t_in, self.t_out, self.channels = int(t_in), int(t_out), int(channels)
        self.split, self.mode, self.pad_value = split, mode, float(pad_value)
        self.seed, self.epoch = int(seed), 0
        self.check_finite, self.keep_aspect = check_finite, bool(keep_aspect)
        self._test_fraction = float(test_fraction)

        names, items = _named_sources(sources)
        ws = _per_source(weights, names, "weights", default=1)
        if any(int(w) != w or w < 0 for w in ws):
            raise ValueError(f"weights {ws}: expected non-negative integers (repeats per epoch)")
        tests = _per_source(n_test, names, "n_test", default=None)
        self._sources = tuple(self._inspect(*a) for a in zip(names, items, ws, tests, strict=True))
        ranks = {len(s.native) for s in self._sources}
        if len(ranks) > 1:
            raise ValueError(
                "sources mix 2D and 3D grids: "
                + ", ".join(f"{s.name} {s.native}" for s in self._sources)
                + "; build one Mixture per spatial rank"
            )
        self.ndim = ranks.pop()
        self.resolution = _model_grid(resolution, self.ndim)
        self._inner = [self._fit(s.native) for s in self._sources]
        if mode == "trajectory" and any(s.weight != 1 for s in self._sources):
            raise ValueError(
                f"weights {[s.weight for s in self._sources]}: trajectory mode lists every "
                "trajectory once; pass weights=None"
            )
        if check_finite == "skip":
            self._sources = tuple(_drop_unscorable(s, t_in) for s in self._sources)
        self._offsets = self._item_offsets()

    # -- construction helpers -------------------------------------------------------------

    def _inspect(self, name: str, item: SourceLike, weight: int, n_test: int | None) -> Source:
        """Open one source, check it against the mixture's settings and describe it."""
        path = None if isinstance(item, xr.Dataset) else Path(item)
        ds = schema.canonical(item if path is None else _open_file(path, name))
        label = f"source {name!r}" + (f" ({path})" if path else "")
        space = schema.spatial_dims(ds)
        variables = tuple(schema.field_names(ds))
        if len(space) not in (2, 3) or not variables:
            raise ValueError(
                f"{label}: expected fields with dims (sample, time, x, y) or (sample, time, x, y, "
                f"z); data variables are { {str(n): v.dims for n, v in ds.data_vars.items()} }"
            )
        native = tuple(int(ds.sizes[d]) for d in space)
        n_samples, t_total = int(ds.sizes["sample"]), int(ds.sizes["time"])
        if len(variables) > self.channels:
            raise ValueError(
                f"{label}: {len(variables)} channels {list(variables)} but the mixture has "
                f"channels={self.channels}; raise channels or drop variables"
            )
        if t_total < self.t_in + self.t_out:
            raise ValueError(
                f"{label}: 'time' has {t_total} frames, fewer than t_in + t_out = "
                f"{self.t_in} + {self.t_out}"
            )
        if n_test is None:
            n_test = round(self._test_fraction * n_samples)
        if not 0 <= n_test <= n_samples:
            raise ValueError(f"{label}: n_test={n_test} but the source has {n_samples} samples")
        samples = {
            "train": np.arange(0, n_samples - n_test),
            "test": np.arange(n_samples - n_test, n_samples),
            "all": np.arange(n_samples),
        }[self.split]
        return Source(name, path, ds, variables, native, t_total, samples, int(weight))

    def _fit(self, native: tuple[int, ...]) -> tuple[int, ...]:
        """The part of the model grid a native grid is resized to."""
        if not self.keep_aspect:
            return self.resolution
        scale = min(r / s for r, s in zip(self.resolution, native, strict=True))
        return tuple(
            min(r, max(1, round(s * scale))) for r, s in zip(self.resolution, native, strict=True)
        )

    def _count(self, src: Source) -> int:
        return len(src.samples) * (src.weight if self.mode == "window" else 1)

    def _item_offsets(self) -> np.ndarray:
        """The first item of each source and, last, the number of items (S + 1,); ValueError
        when the split holds none."""
        counts = [self._count(s) for s in self._sources]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        if offsets[-1] == 0:
            raise ValueError(
                f"the {self.split} split is empty: samples per source "
                f"{ {s.name: len(s.samples) for s in self._sources} }, weights "
                f"{[s.weight for s in self._sources]}"
            )
        return offsets

    # -- reading --------------------------------------------------------------------------

    def _read(self, k: int, sample: int, start: int, stop: int) -> np.ndarray:
        """Frames ``start:stop`` of one sample -> (*S, T, C) float32."""
        src = self._sources[k]
        data = _read_frames(src, sample, start, stop)
        if self.check_finite != "off" and not np.isfinite(data).all():
            bad = ~np.isfinite(data).reshape(-1, *data.shape[-2:]).all(axis=0)  # (T, C)
            t, c = np.argwhere(bad)[0]
            raise ValueError(
                f"{src.label}: non-finite value in variable {src.variables[c]!r}, sample "
                f"{sample}, frame {start + t}; to drop such trajectories pass "
                "check_finite='skip' (in a run config: data.check_finite: skip)"
            )
        if self.check_finite != "off" and (zero := _zero_frames(data, self.t_in - start)).size:
            t, c = zero[0]
            raise ValueError(
                f"{src.label}: variable {src.variables[c]!r} of sample {sample} is 0 everywhere at "
                f"frame {start + t}, a frame the model predicts: its relative L2 has a norm of 0 "
                "below it (the loss and the score blow up); drop the variable, or the trajectory "
                "with check_finite='skip' (in a run config: data.check_finite: skip)"
            )
        return data

    # -- the Dataset ----------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """Mixture index -> (source index, sample index in that source)."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a mixture of {n} items")
        index %= n
        k = bisect.bisect_right(self._offsets, index) - 1
        samples = self._sources[k].samples
        return k, int(samples[(index - int(self._offsets[k])) % len(samples)])

    def window_start(self, index: int) -> int:
        """First frame of item ``index``'s window this epoch, from (seed, epoch, index) alone."""
        return self.window(index)[2]

    def window(self, index: int, epoch: int | None = None) -> tuple[int, int, int]:
        """(source index, sample index, first frame) of item ``index``'s window in ``epoch``
        (None: the current epoch), from (seed, epoch, index) alone."""
        k, sample = self.locate(index)
        epoch = self.epoch if epoch is None else int(epoch)
        n_starts = self._sources[k].t_total - self.t_in - self.t_out + 1
        state = np.random.SeedSequence([self.seed, epoch, index % len(self)]).generate_state(1)
        return k, sample, int(state[0] % n_starts)

    def frames(
        self, source: int, sample: int, start: int, stop: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames ``start:stop`` of one sample on the model grid, channels padded ->
        (field (*resolution, T, channels), channel_mask (channels,))."""
        field = self._to_grid(torch.from_numpy(self._read(source, sample, start, stop)), source)
        return pad_channels(field, self.channels, self.pad_value)

    def validate(self, progress: bool = False) -> None:
        """Read every trajectory of the split once, whole: raises the error of the first one
        that cannot be read or (unless ``check_finite="off"``) holds NaN/Inf, naming its source,
        sample and frame."""
        todo = [(k, int(s)) for k, src in enumerate(self._sources) for s in src.samples]
        for k, sample in tqdm(todo, desc=f"check {self.split} data", disable=not progress):
            self._read(k, sample, 0, self._sources[k].t_total)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self.mode == "window":
            k, sample, start = self.window(index)
            stop = start + self.t_in + self.t_out
        else:
            (k, sample), start = self.locate(index), 0
            stop = self._sources[k].t_total
        field, channel_mask = self.frames(k, sample, start, stop)  # (*G, T, C)
        item = {
            "channel_mask": channel_mask,
            "grid_mask": self.grid_mask(k),
            "source": torch.tensor(k, dtype=torch.int64),
            "sample": torch.tensor(sample, dtype=torch.int64),
        }
        if self.mode == "window":
            item["x"], item["y"] = field[..., : self.t_in, :], field[..., self.t_in :, :]
            item["start"] = torch.tensor(start, dtype=torch.int64)
        else:
            item["x"] = field
            item["native_shape"] = torch.tensor(self._sources[k].native, dtype=torch.int64)
        return item

    # -- grids ----------------------------------------------------------------------------

    def _to_grid(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """(*native, T, C) -> (*resolution, T, C)."""
        inner, (t, c) = self._inner[k], x.shape[-2:]
        # every (frame, channel) plane is resized alike: folding them into one channel axis lets
        # the interpolation run channels-last, with no layout copies  # (1, *S, 1, T·C)
        planes = resize(x.reshape(1, *x.shape[:-2], 1, t * c), inner)
        x = planes.reshape(*inner, t, c)
        if inner == self.resolution:
            return x
        out = x.new_full((*self.resolution, t, c), self.pad_value)
        out[tuple(slice(0, s) for s in inner)] = x
        return out

    def grid_mask(self, source: int) -> torch.Tensor:
        """(*resolution) bool: True on the model-grid points inside source's native grid."""
        mask = torch.zeros(self.resolution, dtype=torch.bool)
        mask[tuple(slice(0, s) for s in self._inner[source])] = True
        return mask

    def to_native(self, x: torch.Tensor, source: int) -> torch.Tensor:
        """Model-grid fields (B, *resolution, T, C) -> the source's grid (B, *native, T, C_k):
        the inverse of the mixture's resizing and padding (padded channels dropped)."""
        inner, src = self._inner[source], self._sources[source]
        x = x[(slice(None), *(slice(0, s) for s in inner))]
        return resize(x, src.native)[..., : len(src.variables)]

    # -- epochs and resume ----------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Re-draw every item's window start (call before building each epoch's iterator)."""
        self.epoch = int(epoch)

    @property
    def config(self) -> dict[str, Any]:
        """Everything that fixes the items besides (seed, epoch), as plain values."""
        return {
            "sources": [s.name for s in self._sources],
            "samples": [s.samples.tolist() for s in self._sources],
            "weights": [s.weight for s in self._sources],
            "resolution": list(self.resolution),
            "t_in": self.t_in,
            "t_out": self.t_out,
            "channels": self.channels,
            "split": self.split,
            "mode": self.mode,
            "pad_value": self.pad_value,
            "keep_aspect": self.keep_aspect,
        }

    def state_dict(self) -> dict[str, Any]:
        """{"epoch", "seed", "config"}: what :meth:`load_state_dict` needs for an exact resume."""
        return {"epoch": self.epoch, "seed": self.seed, "config": self.config}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume at the saved (seed, epoch); the saved config must match this mixture's."""
        mine = self.config
        saved = state["config"]
        diff = sorted(k for k in mine.keys() | saved.keys() if mine.get(k) != saved.get(k))
        if diff:
            raise ValueError(
                "state_dict comes from a different mixture: "
                + "; ".join(f"{k}: saved {saved.get(k)!r}, here {mine.get(k)!r}" for k in diff)
            )
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])

    # -- what a report needs --------------------------------------------------------------

    @property
    def sources(self) -> tuple[Source, ...]:
        """One frozen record per source, in source-index order (the ``source`` of an item)."""
        return self._sources

    def __repr__(self) -> str:
        rows = [
            f"  {s.name}: {len(s.samples)} trajectories x{s.weight}, grid {s.native}, "
            f"T={s.t_total}, channels {list(s.variables)}"
            for s in self._sources
        ]
        head = (
            f"Mixture({self.split}, {self.mode}, {len(self)} items, grid {self.resolution}, "
            f"t_in={self.t_in}, t_out={self.t_out}, channels={self.channels}, epoch={self.epoch})"
        )
        return "\n".join([head, *rows])
