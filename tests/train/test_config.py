"""Config validation: every mistake names the file, the key path and the expected type, before
any data is read; YAML round trips; the shipped configs validate."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dpot_lab.train import TrainConfig, Trainer
from dpot_lab.train.config import ConfigError

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))


def _write(tmp_path, d: dict) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


@pytest.mark.parametrize(
    "doc, key, expected",
    [
        ({"optim": {"lrr": 1e-3}}, "optim.lrr", "known keys"),
        ({"optim": {"lr": "fast"}}, "optim.lr", "expected float"),
        ({"steps": 1.5}, "steps", "expected int"),
        ({"steps": True}, "steps", "expected int"),
        ({"model": {"preset": "nano", "dept": 2}}, "model.dept", "known keys"),
        ({"model": {"depth": "two"}}, "model.depth", "expected int"),
        ({"noise": {"kind": "gauss"}}, "noise.kind", "one of 'rms', 'norm'"),
        ({"data": {"sources": [3]}}, "data.sources[0]", "expected str or a mapping"),
        ({"optim": {"betas": [0.9, "x"]}}, "optim.betas[1]", "expected float"),
        ({"eval": 5}, "eval", "expected a mapping"),
    ],
)
def test_bad_key_or_type_names_file_key_and_type(tmp_path, doc, key, expected):
    path = _write(tmp_path, doc)
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_yaml(path)
    msg = str(err.value)
    assert str(path) in msg and key in msg and expected in msg


def test_error_comes_before_any_data_is_read(tmp_path):
    missing = tmp_path / "does_not_exist.h5"
    doc = {"data": {"sources": [str(missing)]}, "optim": {"lr": "x"}}
    with pytest.raises(ConfigError, match="optim.lr"):
        Trainer(doc, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_value_checks_name_the_key():
    with pytest.raises(ConfigError, match="batch_size.*multiple of optim.accumulate=3"):
        TrainConfig.from_dict({"batch_size": 4, "optim": {"accumulate": 3}})
    with pytest.raises(ConfigError, match="model.in_channels.*data.channels=4"):
        TrainConfig.from_dict({"model": {"in_channels": 3}})
    with pytest.raises(ConfigError, match="model.preset"):
        TrainConfig.from_dict({"model": {"preset": None}})
    with pytest.raises(ConfigError, match="optim.part_lrs"):
        TrainConfig.from_dict({"optim": {"part_lrs": {"decoder": 1e-4}}})
    with pytest.raises(ConfigError, match=r"data.n_test.*one count per source \(2\), got 1"):
        TrainConfig.from_dict({"data": {"sources": ["a.h5", "b.h5"], "n_test": [3]}})


def test_yaml_exponent_floats_and_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 1e-3\n  weight_decay: 1E-6\nnoise: {kind: norm, scale: 5e-4}\n")
    cfg = TrainConfig.from_yaml(path)
    assert cfg.optim.lr == 1e-3 and cfg.optim.weight_decay == 1e-6 and cfg.noise.scale == 5e-4
    cfg = cfg.replace(**{"model.depth": 1, "steps": 7})
    again = TrainConfig.from_yaml(cfg.to_yaml(tmp_path / "again.yaml"))
    assert again == cfg and again.model.overrides == {"depth": 1} and again.steps == 7
    assert again.model_config().depth == 1 and again.model_config().in_timesteps == 10


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_validate(path):
    cfg = TrainConfig.from_yaml(path)
    if cfg.model.preset is not None:
        model_cfg = cfg.model_config()
        assert model_cfg.in_channels == cfg.data.channels
