"""Evaluate a trained operator: auto-regressive rollout to xarray, metrics against the truth, the
paper's score, and the data-efficiency study (loaded on first use: it runs the trainer)."""

from dpot_lab.evaluate import metrics
from dpot_lab.evaluate.rollout import autoregress, rollout
from dpot_lab.exports import lazy_names

_NAMES = {
    "data_efficiency": "dpot_lab.evaluate.data_efficiency",
    "trajectories_to_match": "dpot_lab.evaluate.data_efficiency",
    "format_study": "dpot_lab.evaluate.data_efficiency",
}

__getattr__, __dir__ = lazy_names(__name__, _NAMES)

__all__ = ["autoregress", "metrics", "rollout", *_NAMES]
