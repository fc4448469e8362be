"""Batches from a :class:`~dpot_lab.data.mixture.Mixture`: one epoch (``make_loader``), or a whole
run that resumes at a saved (epoch, batch) position (``RunLoader``, what the trainer uses).

    loader = make_loader(mixture, batch_size=8)          # one epoch; mixture.set_epoch(e) first
    run = RunLoader(mixture, batch_size=8)               # epoch after epoch, without end
    batch = next(iter(run)); state = run.state_dict()    # ... later: run.load_state_dict(state)

Items depend on (seed, epoch, index) only, so a resumed run reads the same batches as one that
never stopped, with any number of workers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from dpot_lab.data.mixture import Mixture


class _EpochSampler(DistributedSampler):
    """A DistributedSampler that follows the mixture's epoch (``Mixture.set_epoch``)."""

    def __init__(self, mixture: Mixture, **kwargs: Any) -> None:
        super().__init__(mixture, **kwargs)
        self.mixture = mixture

    def __iter__(self):
        self.set_epoch(self.mixture.epoch)
        return super().__iter__()


def make_loader(
    mixture: Mixture,
    batch_size: int,
    num_workers: int = 2,
    shuffle: bool = True,
    distributed: bool | None = None,
    seed: int = 0,
    drop_last: bool = True,
    **kwargs: Any,
) -> DataLoader:
    """A DataLoader over one weighted epoch of ``mixture``; shuffled from (seed, epoch).

    ``distributed``: shard the epoch over the ranks of torch.distributed (None: whenever a
    process group is initialised). Call ``mixture.set_epoch(e)`` before iterating each epoch;
    workers are started per epoch so they see it (``persistent_workers`` is refused; a run-long
    loader is ``RunLoader``). Other keywords go to the DataLoader. In trajectory mode, sources of
    different length do not batch: use ``batch_size=1``.
    """
    if kwargs.get("persistent_workers"):
        raise ValueError(
            "persistent_workers=True would freeze the workers' epoch; Mixture workers are started "
            "per epoch (RunLoader keeps one set of workers for a whole run)"
        )
    initialised = dist.is_available() and dist.is_initialized()
    if distributed is None:
        distributed = initialised
    if distributed and not initialised:
        raise ValueError(
            "distributed=True needs an initialised process group (torchrun + "
            "torch.distributed.init_process_group)"
        )
    replicas, rank = (dist.get_world_size(), dist.get_rank()) if distributed else (1, 0)
    sampler = _EpochSampler(
        mixture, num_replicas=replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last
    )
    return DataLoader(
        mixture,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        **kwargs,
    )


class _Epochs(Dataset):
    """The items of a mixture over consecutive epochs: index ``e·N + i`` is item i of epoch e, so
    one DataLoader (and one set of workers) serves a whole run."""

    def __init__(self, mixture: Dataset):
        self.mixture, self.n = mixture, len(mixture)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        epoch, i = divmod(index, self.n)
        if self.mixture.epoch != epoch:
            self.mixture.set_epoch(epoch)
        return self.mixture[i]


class _EpochBatches(Sampler):
    """Batches of ``_Epochs`` indices from (epoch, batch) on, each epoch in the order of the
    one-epoch sampler (shuffled by seed and epoch, sharded over ranks); an epoch's last
    incomplete batch is dropped."""

    def __init__(self, mixture: Dataset, sampler: Sampler, batch_size: int, epoch: int, batch: int):
        self.mixture, self.sampler, self.batch_size = mixture, sampler, batch_size
        self.epoch, self.batch = epoch, batch

    def __iter__(self) -> Iterator[list[int]]:
        epoch, skip, n, bs = self.epoch, self.batch, len(self.mixture), self.batch_size
        while True:
            self.mixture.set_epoch(epoch)  # the sampler shuffles by the mixture's epoch
            order = list(self.sampler)
            for b in range(skip, len(order) // bs):
                yield [epoch * n + i for i in order[b * bs : (b + 1) * bs]]
            epoch, skip = epoch + 1, 0


class RunLoader:
    """Shuffled batches of ``mixture`` epoch after epoch, without end, from a position
    (``epoch``, ``batch``) that :meth:`state_dict` saves and :meth:`load_state_dict` restores.

    ``distributed``, ``seed`` and the DataLoader keywords (``num_workers``, ``pin_memory``, ...)
    as in ``make_loader``; ``batch_size`` is per process. Each ``iter()`` starts at the current
    position, which advances with every batch taken.
    """

    def __init__(
        self,
        mixture: Dataset,
        batch_size: int,
        distributed: bool | None = None,
        seed: int = 0,
        **loader_kwargs: Any,
    ):
        self.mixture, self.batch_size, self.epoch, self.batch = mixture, batch_size, 0, 0
        self._one_epoch = make_loader(
            mixture, batch_size, shuffle=True, distributed=distributed, seed=seed, drop_last=True,
            **loader_kwargs,
        )  # fmt: skip
        self.per_epoch = len(self._one_epoch.sampler) // batch_size
        if self.per_epoch == 0:
            raise ValueError(
                f"the training data has {len(mixture)} windows per epoch, fewer than one batch of "
                f"{batch_size} per process"
            )

    def __iter__(self) -> Iterator[dict]:
        one = self._one_epoch
        batches = _EpochBatches(self.mixture, one.sampler, self.batch_size, self.epoch, self.batch)
        for item in self._load(batches):
            self.batch += 1
            if self.batch == self.per_epoch:
                self.epoch, self.batch = self.epoch + 1, 0
            yield item

    def _load(self, batches: Sampler) -> Iterator[dict]:
        """The collated items of each batch of run indices ``e·N + i`` (item i of epoch e)."""
        one = self._one_epoch
        return iter(DataLoader(
            _Epochs(self.mixture), batch_sampler=batches, num_workers=one.num_workers,
            collate_fn=one.collate_fn, pin_memory=one.pin_memory,
        ))  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        """{"epoch", "batch_in_epoch"[, "mixture"]}: the position, and the mixture's state."""
        state: dict[str, Any] = {"epoch": self.epoch, "batch_in_epoch": self.batch}
        if hasattr(self.mixture, "state_dict"):  # its epoch runs ahead while batches prefetch
            state["mixture"] = {**self.mixture.state_dict(), "epoch": self.epoch}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epoch, self.batch = int(state["epoch"]), int(state["batch_in_epoch"])
        if "mixture" in state and hasattr(self.mixture, "load_state_dict"):
            self.mixture.load_state_dict(state["mixture"])
