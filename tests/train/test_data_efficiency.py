"""The data-efficiency study: its table, the interpolation of the scratch curve, and that the
fine-tuned run starts from the checkpoint while the scratch run does not."""

import math

import numpy as np
import pytest
import xarray as xr

import dpot_lab as dl
from dpot_lab.evaluate.score import score_model
from dpot_lab.train.data_efficiency import data_efficiency, trajectories_to_match


def _table(scratch, finetuned):
    n = [2, 4, 8, 16, 32]
    return xr.Dataset(
        {"scratch": ("n_train", scratch), "finetuned": ("n_train", finetuned)},
        coords={"n_train": n},
    )


def test_trajectories_to_match_interpolates_log_log():
    # scratch error halves per doubling: err = 0.8 * (n / 2)^-1; fine-tuned on 8 reaches 0.1,
    # which scratch reaches at n = 16 exactly; 0.141 lies halfway (in log) between 8 and 16
    table = _table([0.8, 0.4, 0.2, 0.1, 0.05], [0.3, 0.2, 0.1, 0.08, 0.04])
    assert trajectories_to_match(table, 8) == pytest.approx(16.0)
    half = _table([0.8, 0.4, 0.2, 0.1, 0.05], [0.3, 0.2, 0.2 / math.sqrt(2), 0.08, 0.04])
    assert trajectories_to_match(half, 8) == pytest.approx(8 * math.sqrt(2), rel=1e-9)


def test_trajectories_to_match_never_and_at_once():
    never = _table([0.8, 0.7, 0.6, 0.5, 0.45], [0.3, 0.2, 0.1, 0.08, 0.04])
    assert math.isinf(trajectories_to_match(never, 8))
    at_once = _table([0.05, 0.04, 0.03, 0.02, 0.01], [0.3, 0.2, 0.1, 0.08, 0.04])
    assert trajectories_to_match(at_once, 8) == 2.0


@pytest.fixture(scope="module")
def study_inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    data = dl.generate(
        "diffusion_reaction", folder / "dr.h5", 6, resolution=32, n_frames=16, t_end=0.75,
        progress=False,
    )  # fmt: skip
    model = dl.create_model("nano", img_size=32, patch_size=4, in_channels=2, modes=4)
    ckpt = dl.save_checkpoint(folder / "model.pt", model)
    return ckpt, data


def test_study_starts_from_the_checkpoint(study_inputs, tmp_path):
    ckpt, data = study_inputs
    seen = []
    table = data_efficiency(
        ckpt, data, counts=[2, 4], steps=2, n_test=2, horizon=5, lr=1e-12, scratch_lr=1e-3,
        work_dir=tmp_path, callback=seen.append, progress=False,
    )  # fmt: skip
    assert list(table["n_train"].values) == [2, 4]
    assert [(r["run"], r["n_train"]) for r in seen] == [
        ("finetuned", 2),
        ("scratch", 2),
        ("finetuned", 4),
        ("scratch", 4),
    ]
    # a learning rate of 1e-12 leaves the checkpoint's weights: fine-tuned == zero-shot
    assert np.allclose(table["finetuned"].values, float(table["zero_shot"]), rtol=1e-5)
    # the scratch model is another (random) model
    assert not np.allclose(table["scratch"].values, float(table["zero_shot"]), rtol=1e-3)
    # zero-shot and persistence as scored independently on the last n_test trajectories
    test = dl.open_dataset(data).isel(sample=slice(4, 6))
    reference = score_model(dl.load_checkpoint(ckpt), test, steps=5)
    assert float(table["zero_shot"]) == pytest.approx(float(reference["mean"]), rel=1e-4)
    assert float(table["persistence"]) == pytest.approx(
        float(reference["persistence_mean"]), rel=1e-5
    )
    assert list(tmp_path.iterdir()) == []  # the run folders are cleaned up


def test_study_refuses_too_few_trajectories(study_inputs):
    ckpt, data = study_inputs
    with pytest.raises(ValueError, match="sample: 6 trajectories; the study needs n_test=2"):
        data_efficiency(ckpt, data, counts=[8], steps=1, n_test=2, progress=False)
    with pytest.raises(ValueError, match="time: 16 frames"):
        data_efficiency(ckpt, data, counts=[2], steps=1, n_test=2, horizon=10, progress=False)
