"""Training batches gathered on the device: a window-mode :class:`~dpot_lab.data.mixture.Mixture`
put on the model grid once and kept there, so a batch costs two slice copies per window on the
device instead of reading, resizing and collating in DataLoader workers.

    run = ResidentLoader(mixture, batch_size=8, device="cuda")  # the batches of RunLoader
    batch = next(iter(run)); state = run.state_dict()           # RunLoader's state, too
    run = run_loader(mixture, 8, placement="auto", device="cuda")  # resident when it fits

Windows are sliced from whole trajectories resized once; resizing acts frame by frame, so the
values are those of the Mixture's own items. Sources beyond the memory budget stream in
contiguous chunks (:class:`~dpot_lab.data.stream.ChunkStream`): a window of such a source keeps
its place in the batch and its first frame, and takes a trajectory of the chunk serving that
batch, drawn from (seed, epoch, index); the mixture's source proportions stay exact.

On the CPU a batch's ``x``, ``y`` and ``grid_mask`` are written into buffers the loader reuses
(a ring of :data:`RING` sets) once nothing outside it references them (every tensor storage
``torch.frombuffer`` makes on a buffer holds one Python reference to it until freed): a batch
kept, or any view of it, is never overwritten; one dropped is rewritten instead of new memory
being allocated, whose fresh pages cost more than the copy (glibc maps 32 MiB and more anew for
every allocation). On CUDA every batch is allocated anew: the caching allocator recycles device
memory by itself.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from functools import partial
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler
from tqdm.auto import tqdm

from dpot_lab.data.loader import RunLoader
from dpot_lab.data.mixture import Mixture
from dpot_lab.data.stream import ChunkStream

PLACEMENTS = ("auto", "device", "loader")
RING = 3  # sets of batch buffers kept for reuse on the CPU (the trainer holds one, the loader one)


def resident_bytes(mixture: Mixture) -> dict[str, int]:
    """Bytes each used source (weight > 0) takes resident: its trajectories on the model grid
    ``(N, *resolution, T, channels)`` in float32."""
    frame = math.prod(mixture.resolution) * mixture.channels * 4
    return {s.name: len(s.samples) * s.t_total * frame for s in mixture.sources if s.weight > 0}


def default_budget(device: str | torch.device) -> int:
    """A quarter of the device's memory in bytes (of the machine's RAM off CUDA)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory // 4
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4


def chunk_plan(mixture: Mixture, budget: int) -> dict[int, int]:
    """Trajectories per chunk of each used source that streams, by source index (0: not even
    one fits); the others are held whole. Sources are held whole smallest first while the
    remaining ones can still stream two trajectories each; those share what is left, smallest
    first, each at most an even split of it, two chunks at a time."""
    frame = math.prod(mixture.resolution) * mixture.channels * 4
    n = [len(s.samples) for s in mixture.sources]
    one = [s.t_total * frame for s in mixture.sources]  # bytes per trajectory
    used = [k for k, s in enumerate(mixture.sources) if s.weight > 0]
    order = sorted(used, key=lambda k: n[k] * one[k])
    left = budget
    for j, k in enumerate(order):
        if n[k] * one[k] + sum(2 * one[o] for o in order[j + 1 :]) > left:
            break
        left -= n[k] * one[k]
    else:
        return {}
    plan = {}
    for i, k in enumerate(order[j:]):
        plan[k] = min(n[k], left // (len(order) - j - i) // (2 * one[k]))
        left -= plan[k] * one[k] * (1 if plan[k] == n[k] else 2)
    return plan


def _references(owners: tuple[np.ndarray, ...]) -> list[int]:
    """Python references to each buffer: one more for every tensor storage made on it by
    ``torch.frombuffer`` that is still alive (a batch, a view of one, a numpy array on one)."""
    return [sys.getrefcount(owner) for owner in owners]


def _on(owners: tuple[np.ndarray, ...], shapes: list[tuple[int, ...]], dtypes: list[torch.dtype]):
    """Fresh tensors on the buffers ``owners``, one per (shape, dtype)."""
    return tuple(
        torch.frombuffer(owner, dtype=dtype).view(shape)
        for owner, shape, dtype in zip(owners, shapes, dtypes, strict=True)
    )


def _fits(mixture: Dataset, budget: int) -> bool:
    return (
        isinstance(mixture, Mixture)
        and mixture.mode == "window"
        and 0 not in chunk_plan(mixture, budget).values()
    )


class ResidentLoader(RunLoader):
    """:class:`~dpot_lab.data.loader.RunLoader`'s batches (same order, sharding, position and
    ``state_dict``) with every tensor gathered on ``device`` from resident trajectories.

    ``max_bytes``: the memory the trajectories may take (None: :func:`default_budget`); the
    sources :func:`chunk_plan` streams take windows from resident chunks instead (so batches
    differ from RunLoader's there), and a budget that cannot hold two trajectories of each
    raises ValueError naming the sources. ``held_bytes`` and ``peak_bytes``: what the
    trajectories take now and at most so far. On the CPU a batch's tensors are recycled once
    nothing outside the loader references them (see the module's docstring).
    """

    def __init__(
        self,
        mixture: Mixture,
        batch_size: int,
        distributed: bool | None = None,
        seed: int = 0,
        device: str | torch.device = "cpu",
        max_bytes: int | None = None,
        progress: bool = False,
    ):
        if not isinstance(mixture, Mixture) or mixture.mode != "window":
            raise ValueError(
                f"data on the device needs a window-mode Mixture, got {type(mixture).__name__}"
                + (f" in {mixture.mode!r} mode" if isinstance(mixture, Mixture) else "")
            )
        super().__init__(mixture, batch_size, distributed=distributed, seed=seed, num_workers=0)
        self.device = torch.device(device)
        budget = default_budget(self.device) if max_bytes is None else int(max_bytes)
        plan = chunk_plan(mixture, budget)
        short = [s.name for k, s in enumerate(mixture.sources) if plan.get(k) == 0]
        if short:
            sizes = resident_bytes(mixture)
            listed = ", ".join(f"{n!r} {b / 2**30:.3g} GiB" for n, b in sizes.items())
            raise ValueError(
                f"data on {self.device}: sources {listed} ({sum(sizes.values())} bytes in all) "
                f"exceed the budget max_bytes={budget} ({budget / 2**30:.3g} GiB), and it cannot "
                f"hold two trajectories of {short} to stream them; raise it (data.resident_gb) "
                "or read through the DataLoader (data.placement: loader)"
            )
        self._samples = [s.samples for s in mixture.sources]  # per source: sample ids, ascending
        self._row = [{int(i): r for r, i in enumerate(ids)} for ids in self._samples]  # id -> row
        self._points = math.prod(mixture.resolution)  # P
        used = [k for k, s in enumerate(mixture.sources) if s.weight > 0]
        self._fields = {  # source -> (N, P, T·C), grid points then (frame, channel)
            k: self._upload(k, progress) for k in used if k not in plan
        }
        self._streams = {k: self._stream(k, m) for k, m in plan.items()}
        real = torch.tensor([len(s.variables) for s in mixture.sources])[:, None]  # (K, 1)
        self._channel_masks = (torch.arange(mixture.channels) < real).to(self.device)  # (K, C)
        grids = [mixture.grid_mask(k) for k in range(len(mixture.sources))]
        self._grid_masks = torch.stack(grids).to(self.device)  # (K, *R)
        # CPU buffers of (x, y, grid mask) by batch size, with their references when idle
        self._ring: list[tuple[int, tuple[np.ndarray, ...], list[int]]] = []

    def _trajectory(self, k: int, sample: int) -> torch.Tensor:
        """One trajectory of source k on the model grid -> (P, T·C) on the CPU."""
        field, _ = self.mixture.frames(k, sample, 0, self.mixture.sources[k].t_total)
        return field.reshape(self._points, -1)  # from (*R, T, C)

    def _upload(self, k: int, progress: bool) -> torch.Tensor:
        """Source k's trajectories on the model grid -> (N, P, T·C) on the device."""
        samples, t = self._samples[k], self.mixture.sources[k].t_total
        out = torch.empty(
            (len(samples), self._points, t * self.mixture.channels), device=self.device
        )
        desc = f"{self.mixture.sources[k].name} -> {self.device}"
        for i, sample in enumerate(tqdm(samples, desc=desc, disable=not progress)):
            out[i] = self._trajectory(k, int(sample))
        return out

    def _stream(self, k: int, chunk: int) -> ChunkStream:
        """Source k in chunks of ``chunk`` trajectories, read in the background."""
        shape = (self._points, self.mixture.sources[k].t_total * self.mixture.channels)
        return ChunkStream(
            partial(self._trajectory, k), self._samples[k], shape, chunk,
            self.per_epoch, self.device, self.mixture.sources[k].name,
        )  # fmt: skip

    @property
    def held_bytes(self) -> int:
        whole = sum(f.nbytes for f in self._fields.values())
        return whole + sum(s.held_bytes for s in self._streams.values())

    @property
    def peak_bytes(self) -> int:
        whole = sum(f.nbytes for f in self._fields.values())
        return whole + sum(s.peak_bytes for s in self._streams.values())

    def _load(self, batches: Sampler) -> Iterator[dict[str, torch.Tensor]]:
        step = self.epoch * self.per_epoch + self.batch  # the run batch about to be gathered
        for run_indices in batches:
            yield self._gather(step, run_indices)
            step += 1

    def _window(self, run_index: int, chunks: dict) -> tuple[int, int, int, torch.Tensor]:
        """(source, sample, first frame, trajectory (P, T·C)) of run index ``e·N + i``: the
        Mixture's window, its trajectory drawn from the serving chunk for a streamed source."""
        epoch, i = divmod(run_index, len(self.mixture))
        k, sample, start = self.mixture.window(i, epoch)
        if k not in chunks:
            return k, sample, start, self._fields[k][self._row[k][sample]]
        field, ids = chunks[k]  # (m, P, T·C), (m,)
        draw = np.random.SeedSequence([self.mixture.seed, epoch, i, 1]).generate_state(1)[0]
        row = int(draw % len(ids))
        return k, int(ids[row]), start, field[row]

    def _outputs(self, b: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tensors to write a batch of b windows into: x (B, P, t_in·C), y (B, P, t_out·C), grid
        mask (B, *R). On the CPU the oldest set of the ring that nothing outside it references
        any more, else a new set that joins it (the oldest leaving); elsewhere a new set."""
        mix, p = self.mixture, self._points
        shapes = [(b, p, mix.t_in * mix.channels), (b, p, mix.t_out * mix.channels),
                  (b, *mix.resolution)]  # fmt: skip
        dtypes = [torch.get_default_dtype(), torch.get_default_dtype(), self._grid_masks.dtype]
        if self.device.type != "cpu":
            return tuple(
                torch.empty(s, dtype=d, device=self.device)
                for s, d in zip(shapes, dtypes, strict=True)
            )
        for i, (size, owners, alone) in enumerate(self._ring):  # oldest first
            if size == b and _references(owners) == alone:
                self._ring.append(self._ring.pop(i))
                return _on(owners, shapes, dtypes)
        owners = tuple(
            np.empty(math.prod(s) * d.itemsize, dtype=np.uint8)
            for s, d in zip(shapes, dtypes, strict=True)
        )
        self._ring = [*self._ring[1 - RING :], (b, owners, _references(owners))]
        return _on(owners, shapes, dtypes)

    def _gather(self, step: int, run_indices: list[int]) -> dict[str, torch.Tensor]:
        """The batch of run batch ``step``: per window, two strided slice copies (inputs,
        targets) of its resident trajectory into the batch's tensors."""
        mix = self.mixture
        t_in, t_out, c = mix.t_in, mix.t_out, mix.channels
        b = len(run_indices)
        chunks = {k: s.at(step) for k, s in self._streams.items()}  # (m, P, T·C), (m,)
        where = [self._window(r, chunks) for r in run_indices]
        # written in place, window by window: memory-bound, about 0.6 ms per 128²×11×4 window
        x, y, grid_mask = self._outputs(b)  # (B, P, t_in·C), (B, P, t_out·C), (B, *R)
        for j, (_, _, s, field) in enumerate(where):  # field (P, T·C)
            x[j].copy_(field[:, s * c : (s + t_in) * c])
            y[j].copy_(field[:, (s + t_in) * c : (s + t_in + t_out) * c])
        ids = [[w[0] for w in where], [w[1] for w in where], [w[2] for w in where]]
        ids = torch.tensor(ids, dtype=torch.int64)  # (3, B), staged at once: no wait on CUDA
        source, sample, start = ids.to(self.device, non_blocking=True)  # (B,)
        grid = (b, *mix.resolution)
        return {
            "channel_mask": self._channel_masks[source],  # (B, C)
            "grid_mask": torch.index_select(self._grid_masks, 0, source, out=grid_mask),  # (B, *R)
            "source": source,
            "sample": sample,
            "x": x.view(*grid, t_in, c),  # (B, *R, t_in, C)
            "y": y.view(*grid, t_out, c),  # (B, *R, t_out, C)
            "start": start,
        }


def run_loader(
    mixture: Dataset,
    batch_size: int,
    placement: str = "loader",
    device: str | torch.device = "cpu",
    max_bytes: int | None = None,
    distributed: bool | None = None,
    seed: int = 0,
    progress: bool = False,
    **loader_kwargs: Any,
) -> RunLoader:
    """The run's batches by ``placement``: "loader" a RunLoader (``loader_kwargs`` go to its
    DataLoader), "device" a ResidentLoader on ``device``, "auto" the ResidentLoader when
    ``mixture`` is a window-mode Mixture whose sources ``max_bytes`` (None:
    :func:`default_budget`) can hold whole or stream."""
    if placement not in PLACEMENTS:
        raise ValueError(f"placement={placement!r}: expected one of {PLACEMENTS}")
    budget = max_bytes
    if budget is None and placement != "loader":
        budget = default_budget(device)
    if placement == "device" or (placement == "auto" and _fits(mixture, budget)):
        return ResidentLoader(mixture, batch_size, distributed, seed, device, budget, progress)
    return RunLoader(mixture, batch_size, distributed=distributed, seed=seed, **loader_kwargs)
