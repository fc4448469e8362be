"""Learning-rate schedules stepped per iteration, with a scale that divergence rollbacks lower.

Each optimizer parameter group keeps its own ``base_lr`` (per-part learning rates); the schedule
sets ``lr = base_lr · scale · factor(step)``.
"""

from __future__ import annotations

import math

import torch

SCHEDULES = ("onecycle", "cosine", "constant")


def _cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2 * (1 + math.cos(math.pi * min(max(pct, 0.0), 1.0)))


def lr_factor(
    step: int,
    total: int,
    kind: str = "onecycle",
    warmup: float = 0.2,
    div_factor: float = 1e4,
    final_div_factor: float = 1e4,
) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based) of ``total``.

    ``onecycle``: cosine from 1/div_factor up to 1 over the first ``warmup`` fraction, then cosine
    down to 1/(div_factor·final_div_factor) at the last step (the paper's 1e-4 → 1 → 1e-8, as
    ``torch.optim.lr_scheduler.OneCycleLR`` with ``anneal_strategy="cos"``).
    ``cosine``: linear warm-up from 1/div_factor, then the same cosine decay. ``constant``: 1.
    """
    start, end = 1.0 / div_factor, 1.0 / (div_factor * final_div_factor)
    if kind == "constant":
        return 1.0
    if kind == "onecycle":
        peak = float(warmup * total) - 1
        if step <= peak:
            return _cos(start, 1.0, step / peak) if peak > 0 else 1.0
        return _cos(1.0, end, (step - peak) / max(total - 1 - peak, 1e-12))
    if kind == "cosine":
        n_warm = int(warmup * total)
        if step < n_warm:
            return start + (1.0 - start) * step / n_warm
        return _cos(1.0, end, (step - n_warm) / max(total - 1 - n_warm, 1))
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {kind!r}")


class LRSchedule:
    """Sets every parameter group's ``lr`` from its ``base_lr``, the step and a rollback scale."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        kind: str = "onecycle",
        warmup: float = 0.2,
        div_factor: float = 1e4,
        final_div_factor: float = 1e4,
    ):
        self.optimizer, self.total = optimizer, total_steps
        self.kind, self.warmup = kind, warmup
        self.div_factor, self.final_div_factor = div_factor, final_div_factor
        self.step_count, self.scale = 0, 1.0
        for group in optimizer.param_groups:
            group.setdefault("base_lr", group["lr"])
        lr_factor(0, total_steps, kind, warmup)  # validates ``kind``
        self._apply()

    def factor(self) -> float:
        step = min(self.step_count, self.total - 1)
        return self.scale * lr_factor(
            step, self.total, self.kind, self.warmup, self.div_factor, self.final_div_factor
        )

    def _apply(self) -> None:
        f = self.factor()
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * f

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def lower(self, factor: float) -> None:
        """Multiply every learning rate from now on by ``factor`` (after a divergence rollback)."""
        self.scale *= factor
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "scale": self.scale, "total": self.total}

    def load_state_dict(self, state: dict) -> None:
        self.step_count, self.scale = int(state["step_count"]), float(state["scale"])
        self._apply()
