"""Training batches gathered on the device: a window-mode :class:`~dpot_lab.data.mixture.Mixture`
put on the model grid once and kept there, so a batch costs a slice copy per window on the
device instead of reading, resizing and collating in DataLoader workers.

    run = ResidentLoader(mixture, batch_size=8, device="cuda")  # the batches of RunLoader
    batch = next(iter(run)); state = run.state_dict()           # RunLoader's state, too
    run = run_loader(mixture, 8, placement="auto", device="cuda")  # resident when it fits

Windows are sliced from whole trajectories resized once; resizing acts frame by frame, so the
values are those of the Mixture's own items.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler
from tqdm.auto import tqdm

from dpot_lab.data.loader import RunLoader
from dpot_lab.data.mixture import Mixture

PLACEMENTS = ("auto", "device", "loader")


def resident_bytes(mixture: Mixture) -> dict[str, int]:
    """Bytes each used source (weight > 0) takes resident: its trajectories on the model grid
    ``(N, *resolution, T, channels)`` in float32."""
    frame = math.prod(mixture.resolution) * mixture.channels * 4
    return {
        name: len(samples) * t * frame
        for name, samples, t, w in zip(
            mixture.source_names,
            mixture.samples_per_source,
            mixture.t_total_per_source,
            mixture.weights,
            strict=True,
        )  # fmt: skip
        if w > 0
    }


def default_budget(device: str | torch.device) -> int:
    """A quarter of the device's memory in bytes (of the machine's RAM off CUDA)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory // 4
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4


def _fits(mixture: Dataset, budget: int) -> bool:
    return (
        isinstance(mixture, Mixture)
        and mixture.mode == "window"
        and sum(resident_bytes(mixture).values()) <= budget
    )


class ResidentLoader(RunLoader):
    """:class:`~dpot_lab.data.loader.RunLoader`'s batches (same order, sharding, position and
    ``state_dict``) with every tensor gathered on ``device`` from resident trajectories.

    ``max_bytes``: the memory the trajectories may take (None: :func:`default_budget`); a
    mixture that needs more raises ValueError naming its sources and the budget.
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
        sizes = resident_bytes(mixture)
        if sum(sizes.values()) > budget:
            listed = ", ".join(f"{n!r} {b / 2**30:.3g} GiB" for n, b in sizes.items())
            raise ValueError(
                f"data on {self.device}: sources {listed} ({sum(sizes.values())} bytes in all) "
                f"exceed the budget max_bytes={budget} ({budget / 2**30:.3g} GiB); raise it "
                "(data.resident_gb) or read through the DataLoader (data.placement: loader)"
            )
        self._samples = mixture.samples_per_source  # per source: sample ids, ascending
        self._row = [{int(i): r for r, i in enumerate(ids)} for ids in self._samples]  # id -> row
        self._points = math.prod(mixture.resolution)  # P
        self._fields = [  # per source (N, P, T·C), grid points then (frame, channel); None: unused
            self._upload(k, name, progress) if w > 0 else None
            for k, (name, w) in enumerate(zip(mixture.source_names, mixture.weights, strict=True))
        ]
        real = torch.tensor(mixture.num_channels_per_source)[:, None]  # (K, 1)
        self._channel_masks = (torch.arange(mixture.channels) < real).to(self.device)  # (K, C)
        grids = [mixture.grid_mask(k) for k in range(len(mixture.source_names))]
        self._grid_masks = torch.stack(grids).to(self.device)  # (K, *R)

    def _upload(self, k: int, name: str, progress: bool) -> torch.Tensor:
        """Source k's trajectories on the model grid -> (N, P, T·C) on the device."""
        mix, samples = self.mixture, self._samples[k]
        t = mix.t_total_per_source[k]
        out = torch.empty((len(samples), self._points, t * mix.channels), device=self.device)
        shown = tqdm(samples, desc=f"{name} -> {self.device}", disable=not progress)
        for i, sample in enumerate(shown):
            out[i] = mix.frames(k, int(sample), 0, t)[0].reshape(self._points, -1)  # (*R, T, C)
        return out

    def _load(self, batches: Sampler) -> Iterator[dict[str, torch.Tensor]]:
        n = len(self.mixture)
        for run_indices in batches:
            yield self._gather(
                [self.mixture.window(i, e) for e, i in (divmod(r, n) for r in run_indices)]
            )

    def _gather(self, where: list[tuple[int, int, int]]) -> dict[str, torch.Tensor]:
        """The batch of windows at (source, sample, first frame): per window, two strided slice
        copies (inputs, targets) of its resident trajectory into the batch's tensors."""
        mix = self.mixture
        t_in, t_out, c = mix.t_in, mix.t_out, mix.channels
        b, p = len(where), self._points
        # (B, P, T·C) written in place: torch.stack of strided views took 3x as long
        x = torch.empty((b, p, t_in * c), device=self.device)  # (B, P, t_in·C)
        y = torch.empty((b, p, t_out * c), device=self.device)  # (B, P, t_out·C)
        for j, (k, i, s) in enumerate(where):
            field = self._fields[k][self._row[k][i]]  # (P, T·C)
            x[j].copy_(field[:, s * c : (s + t_in) * c])
            y[j].copy_(field[:, (s + t_in) * c : (s + t_in + t_out) * c])
        ids = torch.tensor(list(zip(*where, strict=True)), dtype=torch.int64).to(self.device)
        source, sample, start = ids  # (B,) each
        grid = (b, *mix.resolution)
        return {
            "channel_mask": self._channel_masks[source],  # (B, C)
            "grid_mask": self._grid_masks[source],  # (B, *R)
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
    ``mixture`` is a window-mode Mixture within ``max_bytes`` (None: :func:`default_budget`)."""
    if placement not in PLACEMENTS:
        raise ValueError(f"placement={placement!r}: expected one of {PLACEMENTS}")
    budget = max_bytes
    if budget is None and placement != "loader":
        budget = default_budget(device)
    if placement == "device" or (placement == "auto" and _fits(mixture, budget)):
        return ResidentLoader(mixture, batch_size, distributed, seed, device, budget, progress)
    return RunLoader(mixture, batch_size, distributed=distributed, seed=seed, **loader_kwargs)
