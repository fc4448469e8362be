"""Evaluate a trained operator: auto-regressive rollout to xarray, metrics against the truth,
the paper's score (rollout L2RE against persistence) and the solvers on coarser grids as a
baseline (``cost``; the error-against-cost study is ``dl.studies.cost_curve``)."""

from dpot_lab.evaluate import cost, metrics
from dpot_lab.evaluate.rollout import autoregress, rollout
from dpot_lab.evaluate.score import score_model, score_rollout

__all__ = ["autoregress", "cost", "metrics", "rollout", "score_model", "score_rollout"]
