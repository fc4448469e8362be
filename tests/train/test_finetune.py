"""Weight transfer into fine-tuning models of another shape, and optimizer parameter groups."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import torch

from dpot_lab.models import (
    DPOTConfig,
    adapt_model_config,
    build_model,
    load_official,
    save_checkpoint,
)
from dpot_lab.models.parts import PARTS
from dpot_lab.train.finetune import (
    TransferReport,
    param_groups,
    transfer_weights,
)

ROOT = Path(__file__).resolve().parents[2]
RELEASE_2D = next(  # the release fixtures, looked up as tests/models/test_parity.py does
    (
        p / "dpot2d_full_spectrum.pt"
        for p in (
            Path(os.environ.get("DPOT_FIXTURES", "/nonexistent")),
            ROOT.parent / "shared" / "fixtures" / "official_dpot",
            Path("/work/shared/fixtures/official_dpot"),
        )
        if (p / "dpot2d_full_spectrum.pt").is_file()
    ),
    Path("/work/shared/fixtures/official_dpot/dpot2d_full_spectrum.pt"),
)
TINY = dict(img_size=32, patch_size=4, in_channels=4, in_timesteps=5, embed_dim=32, depth=2,
            n_blocks=4, modes=8, out_layer_dim=8, n_cls=12)  # fmt: skip
BLOCK_TENSORS = ("norm1", "filter", "norm2", "mlp")


def tiny(seed: int, **changes) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(DPOTConfig(**{**TINY, **changes}))


def fresh_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_partition(report: TransferReport, model: torch.nn.Module) -> None:
    """Every model tensor is in exactly one category."""
    names = [*report.loaded, *(a.name for a in report.adapted), *report.new]
    assert sorted(names) == sorted(model.state_dict())
    assert len(names) == len(set(names))


def assert_kept(model, before, names) -> None:
    state = model.state_dict()
    for n in names:
        assert torch.equal(state[n], before[n]), n


def assert_copied(model, source_state, names) -> None:
    state = model.state_dict()
    for n in names:
        assert torch.equal(state[n], source_state[n]), n


@pytest.mark.parametrize("kind", ["model", "state_dict", "ddp_state_dict", "checkpoint_path"])
def test_same_architecture_loads_everything_and_outputs_match(kind, tmp_path):
    src, dst = tiny(0), tiny(1)
    if kind == "model":
        source = src
    elif kind == "state_dict":
        source = src.state_dict()
    elif kind == "ddp_state_dict":
        source = {f"module.{k}": v for k, v in src.state_dict().items()}
    else:
        source = save_checkpoint(tmp_path / "c.pt", src)
    report = transfer_weights(dst, source)
    assert report.loaded == list(dst.state_dict())
    assert report.adapted == [] and report.new == [] and report.unused == []
    x = torch.randn(2, 32, 32, 5, 4)
    y_src, cls_src = src(x, return_cls=True)
    y_dst, cls_dst = dst(x, return_cls=True)
    assert torch.equal(y_src, y_dst) and torch.equal(cls_src, cls_dst)


def test_new_channels_and_resolution(tmp_path):
    src = tiny(0)  # C=4 on 32²
    cfg = adapt_model_config(src.config, in_channels=3, img_size=48)
    dst = build_model(cfg)
    before = fresh_copy(dst)
    report = transfer_weights(dst, save_checkpoint(tmp_path / "pre.pt", src))
    assert_partition(report, dst)

    names = list(dst.state_dict())
    blocks = [n for n in names if n.startswith("blocks.")]
    embed = [n for n in names if n.startswith("patch_embed.")]
    head = [n for n in names if n.startswith("head.")]
    assert set(report.loaded) == {*blocks, "time_agg.w", "time_agg.gamma",
                                  *(n for n in names if n.startswith("cls_head."))}  # fmt: skip
    assert_copied(dst, src.state_dict(), report.loaded)
    assert sorted(report.new) == sorted(embed + head)
    assert_kept(dst, before, report.new)
    assert sorted(report.unused) == sorted(embed + head)  # the source's versions of those

    (pos,) = report.adapted
    assert (pos.name, pos.from_shape, pos.to_shape) == ("pos_embed", (1, 8, 8, 32), (1, 12, 12, 32))
    resized = copy.deepcopy(src).resize(48)  # the model's own re-targeting, done independently
    assert torch.allclose(dst.pos_embed, resized.pos_embed, atol=1e-7, rtol=0)

    x = torch.randn(2, 48, 48, 5, 3)
    y = dst(x)
    assert y.shape == (2, 48, 48, 1, 3)
    y.square().mean().backward()
    for name, p in dst.named_parameters():
        if name.startswith("cls_head."):  # not on the field path
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_new_t_in_gives_new_temporal_aggregation_only():
    src = tiny(0)
    dst = build_model(adapt_model_config(src.config, in_timesteps=3))
    before = fresh_copy(dst)
    report = transfer_weights(dst, src)
    assert_partition(report, dst)
    # gamma has the same shape (1, D) but belongs with w: the unit is re-initialised whole
    assert sorted(report.new) == ["time_agg.gamma", "time_agg.w"]
    assert_kept(dst, before, report.new)
    assert report.adapted == [] and report.unused == ["time_agg.w", "time_agg.gamma"]
    assert_copied(dst, src.state_dict(), report.loaded)
    assert dst(torch.randn(1, 32, 32, 3, 4)).shape == (1, 32, 32, 1, 4)


def test_2d_to_3d_carries_blocks_only():
    src = tiny(0)
    cfg = adapt_model_config(src.config, n_spatial=3, img_size=16, n_cls=0)
    assert cfg.img_size == (16, 16, 16) and cfg.embed_hidden == 4 * 4 + 4
    dst = build_model(cfg)
    before = fresh_copy(dst)
    report = transfer_weights(dst, src)
    assert_partition(report, dst)

    names = list(dst.state_dict())
    blocks = [n for n in names if n.startswith("blocks.")]
    assert {n.split(".")[2] for n in blocks} == set(BLOCK_TENSORS)
    assert report.loaded == blocks
    assert_copied(dst, src.state_dict(), blocks)
    assert sorted(report.new) == sorted(set(names) - set(blocks))
    assert_kept(dst, before, report.new)
    # time_agg.w has the same shape in 2D and 3D, yet stays new (the release's rule)
    assert dst.time_agg.w.shape == src.time_agg.w.shape and "time_agg.w" in report.new
    assert sorted(report.unused) == sorted(set(src.state_dict()) - set(blocks))

    y = dst(torch.randn(1, 16, 16, 16, 5, 4))
    assert y.shape == (1, 16, 16, 16, 1, 4) and torch.isfinite(y).all()


@pytest.mark.skipif(not RELEASE_2D.is_file(), reason=f"release fixture {RELEASE_2D} not present")
@pytest.mark.parametrize("as_path", [False, True])
def test_release_checkpoint_into_new_channel_count(as_path, tmp_path):
    fixture = torch.load(RELEASE_2D, weights_only=True)
    ckpt, release_cfg = fixture["checkpoint"], fixture["config"]
    official = load_official(ckpt, **release_cfg)
    cfg = adapt_model_config(official.config, in_channels=2)
    assert cfg.mode_rule == "release" and cfg.out_channels == 2
    dst = build_model(cfg)
    before = fresh_copy(dst)
    if as_path:
        torch.save(ckpt, tmp_path / "release.pt")
    report = transfer_weights(dst, tmp_path / "release.pt" if as_path else ckpt)
    assert "DPOT release" in report.source
    assert_partition(report, dst)
    names = list(dst.state_dict())
    changed = [n for n in names if n.startswith(("patch_embed.", "head."))]
    assert sorted(report.new) == sorted(changed)
    assert_kept(dst, before, changed)
    assert sorted(report.loaded) == sorted(set(names) - set(changed))
    assert_copied(dst, official.state_dict(), report.loaded)  # equal to load_official's tensors
    x = torch.randn(1, 32, 32, 5, 2)
    assert dst(x).shape == (1, 32, 32, 1, 2)


def test_reinit_keeps_named_parts_fresh_and_rejects_unknown():
    src, dst = tiny(0), tiny(1)
    before = fresh_copy(dst)
    report = transfer_weights(dst, src, reinit=["head", "pos_embed", "blocks.1.mlp"])
    assert_partition(report, dst)
    expected = {
        n for n in before if n.startswith(("head.", "cls_head.", "pos_embed", "blocks.1.mlp."))
    }
    assert set(report.new) == expected
    assert all(report.why_new[n].startswith(("reinit", "unit")) for n in report.new)
    assert_kept(dst, before, expected)
    assert_copied(dst, src.state_dict(), report.loaded)
    assert set(report.unused) == expected
    with pytest.raises(ValueError, match="'decoder'.*'blocks', 'embed', 'head'"):
        transfer_weights(tiny(1), src, reinit=["decoder"])


def test_report_table_summary_and_json_agree():
    src = tiny(0)
    dst = build_model(adapt_model_config(src.config, in_channels=3, img_size=48))
    report = transfer_weights(dst, src)
    summary = report.summary()
    assert f"{len(report.loaded)} loaded" in summary and f"{len(report.new)} new" in summary
    assert f"{len(report.unused)} source tensors unused" in summary
    rows = report.table().splitlines()[2:]
    status = {}
    for row in rows:
        name, kind = row.split()[:2]
        if kind != "unused":
            status[name] = kind
    assert status == {n: report.status(n) for n in dst.state_dict()}
    assert sum(row.split()[1] == "unused" for row in rows) == len(report.unused)
    back = json.loads(json.dumps(report.to_dict()))
    assert back["loaded"] == report.loaded and back["unused"] == report.unused
    assert [d["name"] for d in back["new"]] == report.new
    assert back["adapted"][0]["to_shape"] == [1, 12, 12, 32]


def test_errors_name_the_source():
    src = tiny(0)
    with pytest.raises(ValueError, match="nothing to transfer"):
        transfer_weights(tiny(1, embed_dim=64), src)  # no block fits another width
    with pytest.raises(ValueError, match="state dict.*keys \\['config', 'weights'\\]"):
        transfer_weights(tiny(1), {"config": {}, "weights": [1]})


def test_under_half_of_the_model_from_the_source_is_an_error_unless_allowed(caplog):
    src, dst = tiny(0), tiny(1, depth=8)  # blocks 2..7 are not in the source
    before = fresh_copy(dst)
    with pytest.raises(ValueError, match=r"^weights from .*: 43 loaded, 0 adapted, 72 new \(of 115 "
                       r"model tensors\).*under half of the model comes from the source, so the "
                       r"run starts mostly fresh; to train anyway, set init_allow_partial: true "
                       r"\(--allow-partial\)\n"):  # fmt: skip
        transfer_weights(dst, src)
    assert_kept(dst, before, list(before))
    with caplog.at_level("WARNING", logger="dpot_lab.train.finetune"):
        report = transfer_weights(dst, src, allow_partial=True)
    assert "under half of the model" in caplog.text and len(report.new) == 72
    assert_copied(dst, src.state_dict(), ["blocks.1.mlp.0.weight"])
    # what reinit asks for is no shortfall: the blocks of an equal model left fresh on purpose
    assert transfer_weights(tiny(2), src, reinit=["blocks"]).new


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_source_weights_are_an_error_naming_the_tensor(bad, tmp_path):
    torch.manual_seed(0)
    good = save_checkpoint(tmp_path / "good.pt", tiny(0))
    ckpt = torch.load(good, weights_only=True)
    ckpt["model"]["blocks.1.filter.w2"][0, 1, 2, 3] = bad
    torch.save(ckpt, tmp_path / "bad.pt")
    dst = tiny(1)
    before = fresh_copy(dst)
    with pytest.raises(ValueError, match=r"bad\.pt: tensor blocks\.1\.filter\.w2 holds 1 "
                       r"non-finite value\(s\) \(NaN/Inf\) of 512"):  # fmt: skip
        transfer_weights(dst, tmp_path / "bad.pt", allow_partial=True)
    assert_kept(dst, before, list(before))


def check_freeze(frozen: str, trained_lr: dict[str, float]) -> None:
    """Freeze one part, train the others with per-part learning rates for one SGD step."""
    model = tiny(0, normalize=True)  # scale_feats_* and cls_head exist and must fall in a part
    groups = param_groups(model, 1e-3, part_lrs=trained_lr, freeze=[frozen])
    opt = torch.optim.SGD(groups, lr=1e-3)  # Adam's first step costs seconds of imports
    expected_lrs = {part: trained_lr.get(part, 1e-3) for part in PARTS if part != frozen}
    assert {g["name"]: g["lr"] for g in opt.param_groups} == expected_lrs
    named = dict(model.named_parameters())
    in_part = {
        part: {n for n in named if any(n == p or n.startswith(p + ".") for p in prefixes)}
        for part, prefixes in PARTS.items()
    }
    assert sum(len(s) for s in in_part.values()) == len(named)  # each parameter in one part
    trained = set(named) - in_part[frozen]
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {id(named[n]) for n in trained}

    before = fresh_copy(model)
    y, logits = model(torch.randn(2, 32, 32, 5, 4), return_cls=True)
    (y.square().mean() + logits.square().mean()).backward()
    opt.step()
    for n in in_part[frozen]:
        assert not named[n].requires_grad and named[n].grad is None, n
        assert torch.equal(named[n], before[n]), n
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    for n in trained:  # the SGD update with the part's own learning rate and weight decay 1e-6
        p = named[n]
        step = lr_of[id(p)] * (p.grad + 1e-6 * before[n])
        assert p.grad.abs().sum() > 0, n
        assert torch.allclose(p.detach(), before[n] - step, rtol=1e-6, atol=1e-9), n

    param_groups(model, 1e-3)  # unfreezes: each call states the whole training setup
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("frozen", ["blocks", "head"])
def test_param_groups_freeze_and_part_lrs(frozen):
    check_freeze(frozen, {"embed": 5e-3, "head": 2e-4} if frozen == "blocks" else {"blocks": 5e-3})


def test_param_groups_freeze_embed():
    # The blocks' GroupNorm then sees an input that needs no grad (once a torch CPU crash).
    check_freeze("embed", {"head": 5e-3})


def test_param_groups_reject_unknown_parts():
    model = tiny(0)
    for kwargs in ({"freeze": ["encoder"]}, {"part_lrs": {"neck": 1.0}}):
        with pytest.raises(ValueError, match="known parts: \\['blocks', 'embed', 'head'\\]"):
            param_groups(model, 1e-3, **kwargs)
    with pytest.raises(ValueError, match="no parameter to train"):
        param_groups(model, 1e-3, freeze=list(PARTS))


def test_adapt_model_config_derives_sizes():
    src = DPOTConfig(**TINY)
    cfg = adapt_model_config(src, in_channels=3, img_size=(96, 96), in_timesteps=5)
    assert (cfg.in_channels, cfg.out_channels, cfg.embed_hidden) == (3, 3, 3 * 4 + 3)
    assert cfg.img_size == (96, 96) and cfg.embed_dim == src.embed_dim and cfg.modes == src.modes
    kept = adapt_model_config(DPOTConfig(**TINY, out_channels=2, embed_hidden=40), in_channels=3)
    assert (kept.out_channels, kept.embed_hidden) == (2, 40)
    with pytest.raises(ValueError, match="'depht'"):
        adapt_model_config(src, depht=3)
    with pytest.raises(ValueError, match="needs img_size"):
        adapt_model_config(DPOTConfig(**{**TINY, "img_size": (32, 64)}), n_spatial=3)
