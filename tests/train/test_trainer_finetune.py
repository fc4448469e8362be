"""Fine-tuning through the trainer: another channel count and resolution, frozen parts and
per-part learning rates, the architecture taken from the checkpoint, and 2D -> 3D."""

from __future__ import annotations

import pytest
import torch
from train_helpers import tiny_config

import dpot_lab as dl
from dpot_lab.data.generation import generate_cached
from dpot_lab.train import Trainer

TINY = {"embed_dim": 32, "depth": 1, "modes": 4, "mlp_ratio": 1, "out_layer_dim": 16}


@pytest.fixture(scope="session")
def pretrained(data_dir):
    """A 2D checkpoint (4 channels, 32², t_in 4) whose weights differ from any fresh init."""
    torch.manual_seed(123)
    model = dl.create_model("nano", img_size=32, in_timesteps=4, **TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return dl.save_checkpoint(data_dir / "pretrained.pt", model, {"what": "test source"})


def _ft_config(sources, ckpt, **changes):
    cfg = tiny_config(sources, init_from=str(ckpt), steps=2, **changes)
    cfg["data"].update(channels=3, resolution=40)
    return cfg


def test_finetune_to_three_channels_at_another_resolution(adv3, pretrained, tmp_path):
    cfg = _ft_config(
        [adv3], pretrained, **{"optim.freeze": ["blocks"], "optim.part_lrs": {"embed": 1e-4}}
    )
    trainer = Trainer(cfg, run_dir=tmp_path)
    report = trainer.transfer_report
    assert "blocks.0.filter.w1" in report.loaded
    assert [a.name for a in report.adapted] == ["pos_embed"]  # 4×4 -> 5×5 latent
    assert "patch_embed.proj.weight" in report.new and "head.fc2.weight" in report.new
    table = (tmp_path / "transfer.txt").read_text()
    assert "pos_embed" in table and "adapted" in table and "new" in table
    source = dl.load_checkpoint(pretrained).state_dict()
    blocks = {k: v.clone() for k, v in trainer.model.state_dict().items() if k.startswith("blocks")}
    assert all(torch.equal(v, source[k]) for k, v in blocks.items())
    head = trainer.model.head.fc2.weight.detach().clone()
    assert {g["name"]: g["base_lr"] for g in trainer.optimizer.param_groups} == {
        "embed": 1e-4,
        "head": 3e-3,
    }
    trainer.fit()
    state = trainer.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in blocks.items())  # frozen
    assert not torch.equal(trainer.model.head.fc2.weight.detach(), head)  # trained
    assert trainer.model.config.in_channels == 3 and trainer.model.config.img_size == (40, 40)
    assert trainer.last_eval["adv3"]["l2re"] > 0


def test_init_from_a_hub_file_takes_what_the_hub_client_fetched(
    adv3, pretrained, tmp_path, monkeypatch
):
    """``init_from: hf://owner/repo@revision/file`` goes to ``hf_hub_download`` (its cache and
    settings) and fine-tunes from the file it returns."""
    import huggingface_hub

    asked = []

    def hf_hub_download(repo_id, filename, revision=None):
        asked.append((repo_id, filename, revision))
        return str(pretrained)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    trainer = Trainer(_ft_config([adv3], "hf://lab/dpot-nano@v1/ckpt/best.pt"), run_dir=tmp_path)
    assert asked == [("lab/dpot-nano", "ckpt/best.pt", "v1")]
    source = dl.load_checkpoint(pretrained).state_dict()
    blocks = {k: v for k, v in trainer.model.state_dict().items() if k.startswith("blocks")}
    assert blocks and all(torch.equal(v, source[k]) for k, v in blocks.items())


def test_null_preset_takes_the_architecture_of_the_checkpoint(adv3, pretrained, tmp_path):
    cfg = _ft_config([adv3], pretrained, **{"model": {"preset": None}})
    trainer = Trainer(cfg, run_dir=tmp_path)
    got, source = trainer.model.config, dl.load_checkpoint(pretrained).config
    assert (got.embed_dim, got.depth, got.modes, got.out_layer_dim) == (32, 1, 4, 16)
    assert got.embed_dim == source.embed_dim and got.in_channels == 3


def test_2d_checkpoint_initialises_a_3d_model(pretrained, data_dir, tmp_path):
    ns3d = generate_cached(
        {
            "generate": "ns3d",
            "n_samples": 2,
            "resolution": 32,
            "n_frames": 6,
            "dt_save": 0.05,
            "progress": False,
        },
        cache_dir=data_dir,
    )
    # the tiny model's one block is under half of its tensors: only the blocks carry over
    cfg = tiny_config(
        [ns3d], init_from=str(pretrained), steps=2, batch_size=1, init_allow_partial=True
    )
    cfg["data"].update(channels=4, resolution=32, n_test=1)
    cfg["model"]["n_spatial"] = 3
    trainer = Trainer(cfg, run_dir=tmp_path)
    report = trainer.transfer_report
    assert isinstance(trainer.model, dl.DPOT3D)
    assert all(n.startswith("blocks.") for n in report.loaded) and report.loaded
    assert "pos_embed" in report.new and "patch_embed.proj.weight" in report.new
    w1 = dl.load_checkpoint(pretrained).state_dict()["blocks.0.filter.w1"]
    assert torch.equal(trainer.model.state_dict()["blocks.0.filter.w1"], w1)
    trainer.fit()
    assert trainer.weights_finite() and len(trainer.last_eval) == 1


def test_finetune_defaults_to_the_datas_grid_and_the_checkpoints_channels(
    adv3, pretrained, tmp_path, caplog
):
    """No data.resolution / data.channels: a 32² checkpoint of 4 channels fine-tunes on 40² data of
    3 fields at 40² (pos_embed interpolated, nothing resized) with its own 4 channels; the log
    says what was adapted and the run's config.yaml holds the sizes it chose."""
    cfg = tiny_config([adv3], init_from=str(pretrained), steps=1, model={"preset": None})
    for key in ("resolution", "channels"):
        del cfg["data"][key]
    with caplog.at_level("INFO", logger="dpot_lab"):
        trainer = Trainer(cfg, run_dir=tmp_path)
    assert trainer.model.config.img_size == (40, 40) and trainer.model.config.in_channels == 4
    assert [a.name for a in trainer.transfer_report.adapted] == ["pos_embed"]
    assert "patch_embed.proj.weight" in trainer.transfer_report.loaded  # channels kept: loaded
    assert trainer.train_data.resolution == (40, 40)  # windows at the data's own grid
    assert "grid 40×40 differs from the checkpoint's 32×32" in caplog.text
    saved = dl.train.TrainConfig.from_yaml(tmp_path / "config.yaml")
    assert (saved.data.resolution, saved.data.channels) == ([40, 40], 4)


def test_more_fields_than_the_checkpoints_channels_widen_the_model(data_dir, pretrained, tmp_path):
    """A 5-field file and a 4-channel checkpoint: 5 channels (new embedding and head)."""
    from train_helpers import advected_fields

    ds = advected_fields(n_samples=8, n_time=10, size=32, channels=3, seed=3)
    ds = ds.assign(p=ds["u"] * ds["v"], q=ds["w"] + 1.0)
    path = dl.data.save(ds, data_dir / "adv5.h5")
    cfg = tiny_config([path], init_from=str(pretrained), steps=1, model={"preset": None})
    for key in ("resolution", "channels"):
        del cfg["data"][key]
    trainer = Trainer(cfg, run_dir=tmp_path)
    assert trainer.model.config.in_channels == 5 and trainer.model.config.img_size == (32, 32)
    assert "patch_embed.proj.weight" in trainer.transfer_report.new
