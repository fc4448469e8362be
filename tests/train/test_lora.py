"""LoRA: the adapted model starts equal to the base, only adapters (and tensors new after a
transfer) train, merging gives the adapted outputs, export writes a plain checkpoint, config
errors name the key."""

from __future__ import annotations

import pytest
import torch

import dpot_lab as dl
from dpot_lab.cli import main
from dpot_lab.configfile import ConfigError
from dpot_lab.models import DPOT, load_checkpoint, save_checkpoint
from dpot_lab.train.config import TrainConfig
from dpot_lab.train.finetune import transfer_weights
from dpot_lab.train.lora import apply_lora, is_adapted, merge, merged_state, select

ALL_KINDS = ["linear", "conv", "fourier", "time_agg"]


def tiny(**overrides) -> DPOT:
    torch.manual_seed(0)
    cfg = dict(img_size=16, patch_size=4, in_channels=2, in_timesteps=3, out_timesteps=1,
               embed_dim=16, depth=2, n_blocks=2, modes=3, out_layer_dim=8)  # fmt: skip
    return DPOT(**{**cfg, **overrides})


def x_in(c: int = 2) -> torch.Tensor:
    return torch.randn(2, 16, 16, 3, c, generator=torch.Generator().manual_seed(1))


def run(model, x):
    with torch.no_grad():
        return model.eval()(x)


def train_steps(model, x, n=3, lr=1e-2):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    model.train()
    for _ in range(n):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()


def test_adapted_model_starts_equal_to_the_base():
    model = tiny()
    base = run(model, x_in())
    report = apply_lora(model, rank=2, alpha=4.0, targets=ALL_KINDS)
    assert is_adapted(model) and len(report.adapted) == 14  # 7 linear, 2 conv, 2·2 AFNO, 1 time
    assert torch.equal(run(model, x_in()), base)


def test_targets_select_kinds_parts_and_names():
    model = tiny()
    assert set(select(model, ["conv"])) == {"patch_embed.proj.weight", "head.deconv.weight"}
    assert set(select(model, ["fourier", "blocks.1"])) == {
        "blocks.1.filter.w1", "blocks.1.filter.w2"
    }  # fmt: skip
    assert set(select(model, ["linear", "head"])) == {"head.fc1.weight", "head.fc2.weight"}
    assert set(select(model, ["blocks.*.mlp.*"])) == {
        f"blocks.{i}.mlp.{j}.weight" for i in (0, 1) for j in (0, 2)
    }
    with pytest.raises(ValueError, match=r"optim\.lora\.targets: 'blocks\.7' is no kind"):
        select(model, ["blocks.7"])


def test_only_adapters_and_new_tensors_train():
    model = tiny(in_channels=3)  # a new channel count: new embedding and head
    report = transfer_weights(model, tiny().state_dict())
    full = [*report.new, *(a.name for a in report.adapted)]
    assert "patch_embed.proj.weight" in full and "head.fc2.weight" in full
    lora = apply_lora(model, rank=2, alpha=2.0, train_in_full=full)
    assert "patch_embed.proj.weight" not in lora.adapted  # trained in full, not adapted
    assert sorted(lora.full) == sorted(full)
    base = {k: v.clone() for k, v in model.state_dict().items() if ".lora_" not in k}
    before = run(model, x_in(3))
    model.train()
    model(x_in(3)).square().mean().backward()
    for name, p in model.named_parameters():
        trains = ".lora_" in name or name in full
        assert p.requires_grad == trains, name
        assert (p.grad is not None) == trains, name
    assert lora.trainable_params == sum(p.numel() for p in model.parameters() if p.requires_grad)
    model.zero_grad()
    train_steps(model, x_in(3))
    assert not torch.allclose(run(model, x_in(3)), before)  # the steps changed the outputs
    after = model.state_dict()
    frozen = [k for k in base if k not in full]
    assert frozen and all(torch.equal(after[k], base[k]) for k in frozen)  # the base stayed
    assert any(not torch.equal(after[k], base[k]) for k in full)


@pytest.mark.parametrize("targets", [["linear", "conv"], ALL_KINDS])
def test_merge_gives_the_adapted_outputs(targets):
    model = tiny()
    apply_lora(model, rank=3, alpha=6.0, targets=targets)
    train_steps(model, x_in())
    adapted = run(model, x_in())
    plain = tiny()
    plain.load_state_dict(merged_state(model.state_dict()))
    merge(model)
    assert not is_adapted(model) and model.state_dict().keys() == plain.state_dict().keys()
    for other in (plain, model):
        out = run(other, x_in())
        assert ((out - adapted).norm() / adapted.norm()).item() < 1e-6


def test_export_merges_a_lora_run_into_a_plain_checkpoint(tmp_path):
    model = tiny()
    apply_lora(model, rank=2, alpha=4.0)
    train_steps(model, x_in())
    run_ckpt = save_checkpoint(tmp_path / "last.pt", model, {"name": "lora"}, step=3)
    with pytest.raises(ValueError, match=r"(?s)unexpected keys.*dpot-lab export. merges them"):
        load_checkpoint(run_ckpt)  # a LoRA run's file: the error says what to do
    for out in (tmp_path / "plain.pt", tmp_path / "plain.safetensors"):
        assert main(["-q", "export", str(run_ckpt), str(out)]) == 0
        plain = dl.load_checkpoint(out)
        assert plain.metadata["lora_merged"] is True
        ref = run(model, x_in())
        assert ((run(plain, x_in()) - ref).norm() / ref.norm()).item() < 1e-6


@pytest.mark.parametrize(
    "lora, message",
    [
        ({"rank": 0}, "optim.lora.rank: expected an int >= 1, got 0"),
        ({"alpha": 0}, "optim.lora.alpha: expected a float > 0"),
        ({"targets": []}, "optim.lora.targets: expected at least one"),
        ({"targets": ["linaer"]}, r"optim.lora.targets\[0\]: expected a kind .* got 'linaer'"),
        ({"targets": "linear"}, "optim.lora.targets: expected a list, got str 'linear'"),
        ({"rnak": 2}, "unknown key 'optim.lora.rnak'"),
        (3, "optim.lora: expected a mapping, got int 3"),
    ],
)
def test_config_errors_name_the_key(lora, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict({"optim": {"lora": lora}})


def test_config_defaults_and_conflicts():
    assert TrainConfig.from_dict({"optim": {"lora": None}}).optim.lora is None
    on = TrainConfig.from_dict({"optim": {"lora": {}}})
    assert (on.optim.lora.rank, on.optim.lora.targets) == (4, ["linear", "conv", "fourier"])
    assert TrainConfig.from_dict(on.to_dict()) == on
    with pytest.raises(ConfigError, match=r"optim\.freeze: expected nothing with optim\.lora"):
        TrainConfig.from_dict({"optim": {"lora": {}, "freeze": ["embed"]}})


def test_a_lora_run_trains_adapters_resumes_and_exports(adv3, tmp_path):
    """Fine-tune with optim.lora (3 channels: a new embedding and head); 4 steps straight equal 2
    steps, a checkpoint, and a resumed run to 4; the export gives the run's outputs."""
    from train_helpers import tiny_config

    from dpot_lab.train import Trainer

    torch.manual_seed(123)
    source = dl.create_model("nano", img_size=32, in_timesteps=4, embed_dim=32, depth=1,
                             modes=4, mlp_ratio=1, out_layer_dim=16)  # fmt: skip
    ckpt = save_checkpoint(tmp_path / "source.pt", source)
    lora = {"optim.lora": {"rank": 2, "alpha": 4.0}, "checkpoint.every": 2}
    cfg = tiny_config([adv3], init_from=str(ckpt), steps=4, **lora)
    cfg["data"].update(channels=3, resolution=32)
    straight = Trainer(cfg, run_dir=tmp_path / "straight")
    in_opt = {id(p) for g in straight.optimizer.param_groups for p in g["params"]}
    trainable = {id(p) for p in straight.model.parameters() if p.requires_grad}
    assert in_opt == trainable and is_adapted(straight.model)
    names = {n for n, p in straight.model.named_parameters() if p.requires_grad}
    assert "head.fc2.weight" in names and "blocks.0.mlp.0.parametrizations.weight.0.lora_b" in names
    straight.fit()
    base = source.state_dict()["blocks.0.mlp.0.weight"]
    assert torch.equal(straight.model.blocks[0].mlp[0].parametrizations.weight.original, base)
    assert not torch.equal(straight.model.blocks[0].mlp[0].weight, base)  # adapted
    first = Trainer({**cfg, "steps": 4}, run_dir=tmp_path / "resumed")
    first.fit(2)
    resumed = Trainer(cfg, run_dir=tmp_path / "resumed", resume=True)
    assert resumed.step == 2
    resumed.fit()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    out = tmp_path / "plain.pt"
    assert (
        main(["-q", "export", str(tmp_path / "resumed" / "checkpoints" / "last.pt"), str(out)]) == 0
    )
    x = torch.randn(2, 32, 32, 4, 3)
    ref = run(resumed.model, x)
    assert ((run(dl.load_checkpoint(out), x) - ref).norm() / ref.norm()).item() < 1e-6
