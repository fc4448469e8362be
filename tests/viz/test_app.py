"""The viewer's state without a browser: what each choice changes, and what it leaves alone."""

import time

import holoviews as hv
import numpy as np
import pytest
import torch
import xarray as xr

import dpot_lab as dl
from dpot_lab.evaluate import metrics
from dpot_lab.viz.app import RolloutViewer


def waves(fields, n=2, t=14, shape=(16, 12)) -> xr.Dataset:
    rng = np.random.default_rng(0)
    data = {f: (("sample", "time", "x", "y"), rng.standard_normal((n, t, *shape))) for f in fields}
    return xr.Dataset(
        {k: (d, v.astype(np.float32) * (i + 1)) for i, (k, (d, v)) in enumerate(data.items())},
        coords={"time": 0.1 * np.arange(t)},
        attrs={"pde": "waves", "source_format": "test"},
    )


@pytest.fixture
def viewer(tmp_path):
    torch.manual_seed(0)
    ckpt = dl.save_checkpoint(tmp_path / "nano.pt", dl.create_model("nano"))
    folder = tmp_path / "data"
    folder.mkdir()
    dl.data.save(waves(["u", "v"]), folder / "uv.h5")
    dl.data.save(waves(["w"]), folder / "w.h5")
    dl.generate("diffusion_reaction", folder / "dr.h5", 2, 32, n_frames=14, t_end=0.65,
                progress=False)  # fmt: skip
    (folder / "notes.h5").write_text("not a dataset\n")
    dl.data.save(waves(["u"]), tmp_path / "outside.h5")
    v = RolloutViewer(checkpoint=ckpt, data=folder / "uv.h5", data_dir=folder)
    assert v.state.ds is None and v.state.pred is None  # nothing opened before load()
    v.load()
    return v


def test_load_offers_samples_and_fields_and_scores_the_first_sample(viewer):
    s = viewer.state
    assert s.message == "" and list(viewer.field.options) == ["u", "v"] and s.field == "u"
    assert list(viewer.sample.options) == ["0", "1"] and s.sample == 0
    assert viewer.player.end == s.pred.sizes["time"] - 1 and s.frame == 0
    expected = metrics.l2re(s.pred, s.truth).isel(sample=0)  # the paper score, another path
    mean = float(expected.to_array("field").mean())
    assert f"u {float(expected['u']):.3g} · v {float(expected['v']):.3g}" in s.scores()
    assert s.scores().endswith(f"mean **{mean:.3g}**")
    assert s.status().startswith("**u** · frame 1 / ")
    assert viewer.images.object is not None and viewer.data_info.object.startswith("**data** `uv")


def test_the_l2re_line_names_the_frames_and_fields_it_covers(viewer):
    s = viewer.state
    t_in = dl.load_checkpoint(s.checkpoint).config.in_timesteps
    n = s.ds.sizes["time"]
    assert f"over frames {t_in}–{n - 1} of {n} ({n - t_in} steps), fields u, v: " in s.scores()
    covered = metrics.l2re(s.pred, s.truth.isel(time=slice(t_in, None))).isel(sample=0)
    assert f"u {float(covered['u']):.3g} · v {float(covered['v']):.3g}" in s.scores()


def test_timings_are_the_model_and_solver_seconds_per_trajectory(viewer):
    s = viewer.state
    tic = time.perf_counter()
    s.sample = 1  # a rollout not run before
    assert 0 < s.model_seconds < time.perf_counter() - tic
    assert s.timings() == f"**time per trajectory**: model {s.model_seconds:.3g} s"
    s.data = str(s.data_dir / "dr.h5")
    tic = time.perf_counter()
    s.baseline = 16
    assert 0 < s.solver_seconds < time.perf_counter() - tic
    assert s.timings() == (
        f"**time per trajectory**: model {s.model_seconds:.3g} s · coarse solver 16² "
        f"{s.solver_seconds:.3g} s"
    )
    s.baseline = 0
    assert s.timings() == f"**time per trajectory**: model {s.model_seconds:.3g} s"


def test_field_resets_limits_cmap_and_frame_do_not_rerun(viewer):
    s = viewer.state
    pred = s.pred
    limits_u = s.limits
    s.field = "v"  # v is twice u: the automatic limits follow it
    assert s.limits != limits_u and viewer.limits.disabled
    assert s.status().startswith("**v** ·")
    limits_v = s.limits
    s.frame = 3
    s.cmap = "magma"  # a rerun would go back to frame 0, a refit would move the limits
    assert s.pred is pred and s.frame == 3 and s.limits == limits_v
    assert s.status().startswith("**v** · frame 4 / ") and viewer.player.value == 3
    s.auto_limits = False  # the slider becomes editable and keeps its range
    assert not viewer.limits.disabled and s.limits == viewer.limits.value
    s.sample = 1
    assert s.pred["sample"].values[0] == 1 and s.frame == 0


def test_sample_choice_rolls_that_sample_out(viewer):
    s = viewer.state
    s.sample = 1
    assert int(s.pred["sample"].values[0]) == 1 and s.frame == 0
    assert "L2RE** of sample 1" in s.scores()


def test_bad_files_and_paths_give_messages_and_the_state_recovers(viewer, tmp_path):
    s = viewer.state
    s.data = str(tmp_path / "data" / "notes.h5")
    assert "notes.h5" in s.message and s.pred is None and viewer.message.visible
    assert viewer.images.object is None and s.status() == "no rollout shown"
    s.path = "../outside.h5"
    assert "refused: ../outside.h5 is outside the data folder" in s.message
    s.path = "w.h5"  # inside: added to the choices and opened
    assert "w.h5" in viewer.data.options and s.field == "w" and s.message == ""
    assert s.pred is not None and not viewer.message.visible


def test_symlinks_out_of_the_data_folder_are_neither_listed_nor_opened(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    dl.data.save(waves(["u"]), folder / "uv.h5")
    dl.data.save(waves(["u"]), tmp_path / "outside.h5")
    (folder / "passwd").symlink_to("/etc/passwd")
    (folder / "out.h5").symlink_to(tmp_path / "outside.h5")
    (folder / "up").symlink_to(tmp_path)  # a folder link: its files lie outside too
    (folder / "same.h5").symlink_to(folder / "uv.h5")  # a link that stays inside is fine
    (folder / "loop.h5").symlink_to(folder / "loop.h5")
    viewer = RolloutViewer(data_dir=folder)
    listed = set(viewer.data.options)
    assert {"uv.h5", "same.h5"} <= listed and not {"passwd", "out.h5"} & listed
    s = viewer.state
    for typed in ("passwd", "out.h5", "up/outside.h5"):
        s.path = typed
        assert f"refused: {typed} is outside the data folder" in s.message
        assert not any("outside" in v or "passwd" in v for v in viewer.data.options.values())
    s.path = "loop.h5"
    assert "loop.h5: a symlink loop, not a file" in s.message and "loop.h5" not in listed


def test_coarse_solver_only_for_a_solver_family(viewer):
    s = viewer.state
    assert viewer.baseline.disabled and list(viewer.baseline.options) == ["off"]
    assert "ns2d" in s.baseline_note and viewer.baseline_note.visible  # waves: no solver
    s.data = str(viewer.state.data_dir / "dr.h5")
    assert not viewer.baseline.disabled and not viewer.baseline_note.visible
    assert viewer.baseline.options == {"off": 0, "16²": 16, "8²": 8} and s.coarse is None


def test_coarse_solver_beside_the_model_with_its_error_per_step(viewer):
    s = viewer.state
    s.data = str(s.data_dir / "dr.h5")
    s.frame = 2
    pred = s.pred
    s.baseline = 16
    assert s.pred is pred and s.frame == 2  # the model's rollout is not rerun
    assert s.coarse.sizes == pred.sizes and s.message == ""
    np.testing.assert_array_equal(s.coarse["time"].values, pred["time"].values)
    assert len(viewer.images.object) == 5  # truth | model | solver, both errors
    curves = {c.label: c for c in s.curves()[()] if isinstance(c, hv.Curve)}
    assert set(curves) == {"u", "v", "u · coarse solver 16²", "v · coarse solver 16²"}
    solver = curves["u · coarse solver 16²"].dimension_values(1)  # (steps,)
    assert len(solver) == pred.sizes["time"] and (solver > 1e-3).all()
    spectra = {c.label: c for c in s.spectra()[()]}  # the frame shown
    assert list(spectra) == ["truth", "prediction", "coarse solver 16²"]
    expected = dl.metrics.energy_spectrum(s.coarse["u"].isel(sample=0, time=2)).values[1:]
    np.testing.assert_allclose(spectra["coarse solver 16²"].dimension_values(1), expected)
    mean16 = float(dl.evaluate.score_rollout(s.coarse, s.truth)["mean"])
    assert s.scores().endswith(f"coarse solver 16²: mean **{mean16:.3g}**")
    s.baseline = 8  # coarser: worse
    assert float(dl.evaluate.score_rollout(s.coarse, s.truth)["mean"]) > mean16
    s.sample = 1  # solved for the new sample
    assert int(s.coarse["sample"].values[0]) == 1 and s.frame == 0
    s.data = str(s.data_dir / "uv.h5")  # no solver: switched off
    assert s.baseline == 0 and s.coarse is None and len(viewer.images.object) == 3
