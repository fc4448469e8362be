"""The data-efficiency study: its table, the interpolation of the scratch curve, and that the
fine-tuned run starts from the checkpoint while the scratch run does not."""

import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

import dpot_lab as dl
from dpot_lab.evaluate.score import score_model
from dpot_lab.studies.efficiency import data_efficiency, format_study, trajectories_to_match


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


def test_the_table_shows_small_errors_in_significant_digits():
    # a nearly stationary family: persistence 1.3e-3 must not read as 0.0000
    table = _table([0.8, 0.4, 0.2, 0.1, 0.05], [0.4, 0.2, 0.1, 0.08, 2.5e-5])
    table["persistence"], table.attrs["source"] = 1.3e-3, "slow"
    lines = format_study(table).splitlines()
    assert lines[2].split() == ["2", "0.4", "0.8", "0.50", "0.0013"]
    assert lines[-1].split()[1:] == ["2.5e-05", "0.05", "0.00", "0.0013"]


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


def test_a_dataset_read_from_a_file_leaves_that_folder_as_it_was(study_inputs, tmp_path):
    """The study's train and test files go to its temporary folder, not beside the user's file."""
    ckpt, data = study_inputs
    before = sorted(Path(data).parent.iterdir())
    table = data_efficiency(
        ckpt, dl.open_dataset(data), counts=[2], steps=1, n_test=2, horizon=5, work_dir=tmp_path,
        runs=["scratch"], progress=False,
    )  # fmt: skip
    assert sorted(Path(data).parent.iterdir()) == before and not list(tmp_path.iterdir())
    assert table.attrs["dataset"] == str(data) and Path(data).stem == "dr"


def test_study_refuses_too_few_trajectories(study_inputs):
    ckpt, data = study_inputs
    with pytest.raises(ValueError, match="sample: 6 trajectories; the study needs n_test=2"):
        data_efficiency(ckpt, data, counts=[8], steps=1, n_test=2, progress=False)
    with pytest.raises(ValueError, match="time: 16 frames"):
        data_efficiency(ckpt, data, counts=[2], steps=1, n_test=2, horizon=10, progress=False)


def test_an_array_for_the_dataset_says_what_to_pass(study_inputs):
    ckpt, _ = study_inputs
    with pytest.raises(TypeError, match=r"data_efficiency: dataset: .* got numpy.ndarray; wrap"):
        data_efficiency(ckpt, np.zeros((6, 16, 8, 8)), counts=[2], steps=1, progress=False)


def _write_well(path, n=6, t=16, size=32):
    """The Well's layout: three scalar fields and a velocity vector (5 channels)."""
    rng = np.random.default_rng(0)
    x = np.linspace(0, 2 * np.pi, size, endpoint=False)
    phase = rng.normal(size=(n, 1, 1, 1))
    wave = np.sin(x[None, None, :, None] + 0.3 * np.arange(t)[None, :, None, None] + phase)
    base = (wave * np.cos(x[None, None, None, :])).astype(np.float32)  # (N, T, X, Y)
    varying = {"sample_varying": True, "time_varying": True, "dim_varying": [True, True]}
    with h5py.File(path, "w") as f:
        f.attrs.update({"dataset_name": "toy", "grid_type": "cartesian", "n_spatial_dims": 2,
                        "n_trajectories": n, "simulation_parameters": []})  # fmt: skip
        dims = f.create_group("dimensions")
        dims.attrs["spatial_dims"] = ["x", "y"]
        for key, values in (("time", 0.1 * np.arange(t)), ("x", x), ("y", x)):
            dims[key] = values.astype(np.float32)
            dims[key].attrs.update({"sample_varying": False, "time_varying": key == "time"})
        f.create_group("boundary_conditions")
        f.create_group("scalars").attrs["field_names"] = []
        scalars = f.create_group("t0_fields")
        scalars.attrs["field_names"] = ["density", "pressure", "tracer"]
        for k, name in enumerate(scalars.attrs["field_names"]):
            scalars[name] = base * (k + 1) + 2
            scalars[name].attrs.update(varying)
        vectors = f.create_group("t1_fields")
        vectors.attrs["field_names"] = ["velocity"]
        vectors["velocity"] = np.stack([base, -base], -1)
        vectors["velocity"].attrs.update(varying)
        f.create_group("t2_fields").attrs["field_names"] = []
    return path


def test_a_well_file_with_more_channels_than_the_checkpoint(study_inputs, tmp_path):
    ckpt, _ = study_inputs  # 2 channels; the file has 5
    path = _write_well(tmp_path / "toy.hdf5")
    table = data_efficiency(
        ckpt, path, counts=[2, 4], steps=2, n_test=2, horizon=5, work_dir=tmp_path, progress=False
    )
    assert table.attrs["channels"] == 5
    assert np.isfinite(table["finetuned"]).all() and np.isfinite(table["scratch"]).all()
    assert "zero_shot" not in table  # the checkpoint cannot take 5 channels as it is
    test = dl.open_dataset(path).isel(sample=slice(4, 6))
    persistence = score_model(dl.create_model("nano", in_channels=5), test, steps=5)
    assert float(table["persistence"]) == pytest.approx(
        float(persistence["persistence_mean"]), rel=1e-5
    )
