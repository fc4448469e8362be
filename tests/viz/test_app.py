"""The viewer's state without a browser: what each choice changes, and what it leaves alone."""

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
