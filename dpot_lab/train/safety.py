"""Divergence safety: non-finite steps are skipped; ``max_bad_steps`` of them in a row restore
the last snapshot of weights, optimizer state and EMA, with a lowered learning rate.

    guard = DivergenceGuard(model, optimizer, schedule, config.safety, ema)
    guard.take_snapshot(step)              # the weights to fall back on at the start
    if guard.snapshot_due(step) and finite:  # before optimizer.step(): weights that gave a
        guard.take_snapshot(step)            # finite step
    if finite:  guard.good_step()          # in step order, once the step's outcome is read
    elif guard.bad_step():                  # True: time to roll back
        guard.rollback(step)

Snapshots are CPU copies of this rank's parts (its shards under FSDP): restoring needs no
communication. A new snapshot overwrites the memory of the previous one (pinned for CUDA).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from dpot_lab.train import distributed
from dpot_lab.train.config import SafetyConfig
from dpot_lab.train.ema import EMA
from dpot_lab.train.schedule import LRSchedule

log = logging.getLogger(__name__)


class DivergenceGuard:
    """Counts skipped steps and rollbacks; holds the snapshot to roll back to."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: LRSchedule,
        config: SafetyConfig,
        ema: EMA | None = None,
    ):
        self.model, self.optimizer, self.schedule, self.config, self.ema = (
            model, optimizer, schedule, config, ema,
        )  # fmt: skip
        self.skipped, self.rollbacks, self.bad_streak = 0, 0, 0
        self.snapshot: dict = {}

    def take_snapshot(self, step: int) -> None:
        """Snapshot CPU copies of this rank's weights, optimizer state and EMA as of ``step``,
        into the previous snapshot's memory where it fits."""
        self.snapshot = distributed.local_copy(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "ema": self.ema.weights if self.ema is not None else None,
                "step": step,
            },
            into=self.snapshot,
        )

    def snapshot_due(self, step: int) -> bool:
        """Whether the weights before optimizer step ``step`` are to be snapshot (if finite):
        every ``snapshot_every`` steps, unless the snapshot already holds them."""
        return step % self.config.snapshot_every == 0 and step != self.snapshot.get("step")

    def good_step(self) -> None:
        """Count a finite step: the run of non-finite ones is over."""
        self.bad_streak = 0

    def bad_step(self) -> bool:
        """Count a skipped step; True when ``max_bad_steps`` came in a row (roll back now)."""
        self.skipped += 1
        self.bad_streak += 1
        return self.bad_streak >= self.config.max_bad_steps

    def restore(self) -> None:
        """Put the snapshot back in place (each rank its part)."""
        snap, opt = self.snapshot, self.optimizer
        distributed.copy_into(self.model.state_dict(), snap["model"])
        params = [p for group in opt.param_groups for p in group["params"]]
        for i, p in enumerate(params):  # the state dict numbers parameters in this order
            if i in snap["optimizer"]["state"]:
                distributed.copy_into(opt.state[p], snap["optimizer"]["state"][i])
            else:  # no step had been taken then
                opt.state.pop(p, None)
        for group, saved in zip(opt.param_groups, snap["optimizer"]["param_groups"], strict=True):
            group.update({k: v for k, v in saved.items() if k != "params"})
        if self.ema is not None:
            distributed.copy_into(self.ema.weights, snap["ema"])

    def rollback(self, step: int) -> dict:
        """Restore the snapshot and lower the learning rate; returns the event record. Raises
        RuntimeError after ``max_rollbacks``."""
        s = self.config
        self.rollbacks += 1
        if self.rollbacks > s.max_rollbacks:
            raise RuntimeError(
                f"training diverged: {self.rollbacks - 1} rollbacks did not help (step {step}); "
                "lower optim.lr or check the data"
            )
        self.restore()
        self.schedule.lower(s.lr_factor)
        self.bad_streak = 0
        log.warning(
            "step %d: %d non-finite steps in a row; rolled back to the weights of step %d, "
            "learning rate x%g (now x%g of the schedule)",
            step, s.max_bad_steps, self.snapshot["step"], s.lr_factor, self.schedule.scale,
        )  # fmt: skip
        return {
            "event": "rollback", "step": step, "loss": float("nan"),
            "to_step": self.snapshot["step"], "lr_scale": self.schedule.scale,
            "rollbacks": self.rollbacks,
        }  # fmt: skip

    def weights_finite(self) -> bool:
        """Whether every weight is finite, on every rank (collective)."""
        mine = all(
            bool(torch.isfinite(t).all())
            for t in (distributed.local(v) for v in self.model.state_dict().values())
            if t.is_floating_point()
        )
        device = next(iter(self.model.state_dict().values())).device
        bad = distributed.all_reduce(torch.tensor(float(not mine), device=device))
        return bad.item() == 0

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped, "rollbacks": self.rollbacks, "bad_streak": self.bad_streak}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.skipped, self.rollbacks = int(state["skipped"]), int(state["rollbacks"])
        self.bad_streak = int(state["bad_streak"])
