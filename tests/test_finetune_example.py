"""configs/finetune_example.yaml as a user runs it: only its data path changed, it fine-tunes the
shipped model on a PDEBench-layout file of another grid (32², the model's is 64²) and field count
(2 fields, the model's 4 channels), and the result beats persistence on held-out trajectories."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

import dpot_lab as dl
from dpot_lab.cli import main
from dpot_lab.evaluate.score import score_model

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "configs" / "finetune_example.yaml"


def write_pdebench(ds, path: Path) -> Path:
    """PDEBench's 2D layout: groups '0000'.. with data (T, X, Y, C) and grid/x, y, t."""
    fields = dl.data.schema.field_names(ds)
    with h5py.File(path, "w") as f:
        for s in range(ds.sizes["sample"]):
            one = ds.isel(sample=s)
            data = np.stack([one[k].transpose("time", "x", "y").values for k in fields], axis=-1)
            g = f.create_group(f"{s:04d}")
            g.create_dataset("data", data=data.astype(np.float32))
            for axis in ("x", "y", "time"):
                g.create_dataset(f"grid/{axis[0]}", data=ds[axis].values.astype(np.float32))
    return path


@pytest.fixture(scope="module")
def burgers_pdebench(tmp_path_factory) -> Path:
    """24 viscous Burgers trajectories (a family the shipped model never saw) at 32², 2 fields."""
    folder = tmp_path_factory.mktemp("example")
    native = dl.generate("burgers2d", folder / "burgers.h5", n_samples=24, resolution=32, seed=77,
                         progress=False)  # fmt: skip
    with dl.open_dataset(native) as ds:
        return write_pdebench(ds.load(), folder / "2D_burgers_pdebench.h5")


def test_example_config_fine_tunes_a_users_file(burgers_pdebench, tmp_path, monkeypatch, caplog):
    config = yaml.safe_load(EXAMPLE.read_text())
    config["data"]["sources"] = [str(burgers_pdebench)]  # the only change a user makes
    mine = tmp_path / "my_finetune.yaml"
    mine.write_text(yaml.safe_dump(config))
    monkeypatch.chdir(ROOT)  # init_from is relative to where the command runs
    run = tmp_path / "run"
    with caplog.at_level("INFO", logger="dpot_lab"):
        assert main(["finetune", str(mine), "--out", str(run)]) == 0
    assert "grid 32×32 differs from the checkpoint's 64×64" in caplog.text

    model = dl.load_checkpoint(run / "checkpoints" / "last.pt")
    assert model.config.img_size == (32, 32) and model.config.in_channels == 4
    data = dl.open_dataset(burgers_pdebench)
    assert data.attrs["source_format"] == "pdebench"
    held_out = data.isel(sample=slice(-config["data"]["n_test"], None))
    score = score_model(model, held_out, steps=config["eval"]["horizon"], progress=False)
    print(f"example config on {burgers_pdebench.name}: L2RE {float(score['mean']):.4f}, "
          f"persistence {float(score['persistence_mean']):.4f}")  # fmt: skip
    assert float(score["mean"]) < 0.8 * float(score["persistence_mean"])
