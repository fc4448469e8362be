"""A run's data from its config: the training and test mixtures, and how sources are named."""

import pytest
from train_helpers import advected_fields, tiny_config

import dpot_lab as dl
from dpot_lab.train import Trainer
from dpot_lab.train.config import TrainConfig
from dpot_lab.train.sources import resolve_sources, run_data


def test_without_test_sources_the_last_trajectories_are_held_out(adv1):
    data = run_data(TrainConfig.coerce(tiny_config([adv1])))  # 24 trajectories, n_test 4
    assert data.train.sources[0].samples.tolist() == list(range(20))
    assert list(data.test) == ["adv1"]
    assert data.test["adv1"].sources[0].samples.tolist() == [20, 21, 22, 23]
    assert data.train.mode == "window" and data.test["adv1"].mode == "trajectory"


def test_with_test_sources_every_training_trajectory_trains(adv1, data_dir, tmp_path):
    other = dl.data.save(advected_fields(n_samples=5, seed=7), data_dir / "held_out.h5")
    cfg = tiny_config([adv1], **{"data.test_sources": [str(other)], "steps": 1})
    data = run_data(TrainConfig.coerce(cfg))
    assert data.train.sources[0].samples.tolist() == list(range(24))  # none held back
    assert list(data.test) == ["held_out"]
    assert data.test["held_out"].sources[0].samples.tolist() == list(range(5))
    trainer = Trainer(cfg, run_dir=tmp_path)  # the trainer uses the same call
    assert trainer.train_data.sources[0].samples.tolist() == list(range(24))
    assert trainer.evaluate()["held_out"]["samples"] == 5


def test_sources_are_named_once_and_missing_files_named(adv1, tmp_path):
    assert list(resolve_sources([str(adv1), str(adv1)])) == ["adv1", "adv1_2"]
    with pytest.raises(FileNotFoundError, match=r"run\.yaml: data: source .*nope\.h5 does not"):
        resolve_sources([str(tmp_path / "nope.h5")], where="run.yaml: data")


def test_every_rank_generates_from_its_own_place_in_the_list_without_a_barrier(monkeypatch):
    from dpot_lab.train import distributed, sources

    made = []
    monkeypatch.setattr(
        sources, "generate_cached", lambda spec, cache_dir=None: made.append(spec) or "f"
    )
    monkeypatch.setattr(distributed, "process_rank", lambda: 4)
    monkeypatch.setattr(distributed, "barrier", lambda: pytest.fail("a barrier can time out"))
    specs = [{"generate": name, "n_samples": 2} for name in ("a", "b", "c")]
    resolve_sources(specs, is_main=False)
    order = [s["generate"] for s in made[:3]]
    assert order == ["b", "c", "a"]  # rank 4 of 3 specs starts at the second
    assert all(s["progress"] is False for s in made[:3])  # bars on the main rank only
