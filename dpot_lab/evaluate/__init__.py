"""Evaluate a trained operator: auto-regressive rollout to xarray, metrics against the truth,
the paper's score (rollout L2RE against persistence) and the cost against the solvers."""

from dpot_lab.evaluate import metrics
from dpot_lab.evaluate.cost import cost_curve, speedup_at_equal_error
from dpot_lab.evaluate.rollout import autoregress, rollout
from dpot_lab.evaluate.score import score_model, score_rollout

__all__ = [
    "autoregress", "cost_curve", "metrics", "rollout", "score_model", "score_rollout",
    "speedup_at_equal_error",
]  # fmt: skip
