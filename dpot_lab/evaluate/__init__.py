"""Evaluate a trained operator: auto-regressive rollout to xarray, and metrics against the truth."""

from dpot_lab.evaluate import metrics
from dpot_lab.evaluate.rollout import autoregress, rollout

__all__ = ["autoregress", "metrics", "rollout"]
