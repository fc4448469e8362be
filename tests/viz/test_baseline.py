"""The coarse solver's rollout beside the model's: exact at the data's own grid, worse on coarser
ones; offered only for data a solver family of ``evaluate.cost`` made."""

import numpy as np
import pytest

import dpot_lab as dl
from dpot_lab.viz.baseline import baseline_grids, coarse_rollout

T_IN = 3


@pytest.fixture(scope="module")
def dr(tmp_path_factory):
    """Two diffusion–reaction trajectories on 32², 8 frames (sample labels 5 and 6)."""
    path = tmp_path_factory.mktemp("baseline") / "dr.h5"
    dl.generate("diffusion_reaction", path, 2, 32, seed=3, n_frames=8, t_end=0.35, progress=False)
    return dl.open_dataset(path).load().assign_coords(sample=[5, 6])


def _step_error(ds, sample: int, grid: int) -> np.ndarray:
    base, _ = coarse_rollout(ds, sample, grid, T_IN)
    return dl.metrics.per_step_error(base, ds).isel(sample=0).to_array("field").mean("field")


def test_own_grid_is_the_truth_and_coarser_grids_are_worse(dr):
    base, seconds = coarse_rollout(dr, 1, 32, T_IN)
    assert seconds > 0
    assert dict(base.sizes) == {"sample": 1, "time": 5, "x": 32, "y": 32}
    assert list(base["sample"].values) == [6]  # labelled as the data set's sample
    np.testing.assert_array_equal(base["time"].values, dr["time"].values[T_IN:])
    own, half, quarter = (_step_error(dr, 1, g).values for g in (32, 16, 8))
    assert own.max() < 1e-6  # the stored float32 frames, restarted: round-off only
    assert (half > 1e-3).all() and (quarter > half).all()


def test_grids_offered_only_for_a_solver_family(dr):
    assert baseline_grids(dr) == ([16, 8], "")
    grids, note = baseline_grids(dr.assign_attrs(generator="passive_scalar"))
    assert grids == [] and "ns2d" in note and "passive_scalar" in note
    grids, note = baseline_grids(dr.drop_attrs())
    assert grids == [] and "not made by a built-in generator" in note
