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
