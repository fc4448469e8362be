"""Evaluate a trained operator: auto-regressive rollout to xarray, metrics against the truth, and
the paper's score (rollout L2RE against persistence)."""

from dpot_lab.evaluate import metrics
from dpot_lab.evaluate.rollout import autoregress, rollout
from dpot_lab.evaluate.score import score_model, score_rollout

__all__ = ["autoregress", "metrics", "rollout", "score_model", "score_rollout"]
