"""Studies: each trains or times models to answer one question and returns an xarray table.
``data_efficiency`` (fine-tuning a checkpoint against training from scratch over training-set
sizes, read with ``format_study`` and ``trajectories_to_match``) and ``cost_curve`` (the model
against the built-in solver on coarser grids, read with ``speedup_at_equal_error`` and, with the
cost of making the model, ``solve_count``). Names load on
first use."""

from __future__ import annotations

from dpot_lab.exports import lazy_names

_NAMES = {
    "data_efficiency": "dpot_lab.studies.efficiency",
    "format_study": "dpot_lab.studies.efficiency",
    "trajectories_to_match": "dpot_lab.studies.efficiency",
    "cost_curve": "dpot_lab.studies.breakeven",
    "solver_curve": "dpot_lab.studies.breakeven",
    "speedup_at_equal_error": "dpot_lab.studies.breakeven",
    "solve_count": "dpot_lab.studies.breakeven",
    "corpus_shares": "dpot_lab.studies.breakeven",
    "training_seconds": "dpot_lab.studies.breakeven",
}

__getattr__, __dir__ = lazy_names(__name__, _NAMES)


__all__ = sorted(_NAMES)
