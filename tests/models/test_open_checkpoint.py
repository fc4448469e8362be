"""The one checkpoint opener: ours, the release's (2D and 3D), bare state dicts; each file read
once by everything that opens it; unwrap and size_tuple."""

from __future__ import annotations

import re
from contextlib import nullcontext

import pytest
import torch
from torch import nn

import dpot_lab.models.checkpoint as ckpt_module
from dpot_lab import cli
from dpot_lab.models import (
    DPOT,
    DPOT3D,
    Opened,
    load_checkpoint,
    load_official,
    open_checkpoint,
    save_checkpoint,
    size_tuple,
    unwrap,
)
from dpot_lab.models.checkpoint import atomic_save
from dpot_lab.train.finetune import transfer_weights

# our name -> the release's (the inverse of models/release.py's renames, written out)
OURS_TO_RELEASE = [
    (r"^patch_embed\.proj\.", "patch_embed.proj.0."),
    (r"^patch_embed\.out\.", "patch_embed.proj.2."),
    (r"^time_agg\.", "time_agg_layer."),
    (r"^head\.deconv\.", "out_layer.0."),
    (r"^head\.fc1\.", "out_layer.2."),
    (r"^head\.fc2\.", "out_layer.4."),
]
POINTWISE = re.compile(r"^(patch_embed\.out|head\.fc[12]|blocks\.\d+\.mlp\.[02])\.weight$")


def as_release(model: DPOT) -> dict[str, torch.Tensor]:
    """Our model's weights in the release's names and layouts (as the release saves them)."""
    n = model.n_spatial
    out = {}
    for key, value in model.state_dict().items():
        if key == "pos_embed":
            value = value.movedim(-1, 1).contiguous()  # (1, *S/p, D) -> (1, D, *S/p)
        elif POINTWISE.match(key):
            value = value.reshape(*value.shape, *(1,) * n)  # linear -> 1×1 conv
        for pattern, repl in OURS_TO_RELEASE:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def tiny(**overrides) -> DPOT:
    torch.manual_seed(0)
    cfg = dict(img_size=(16, 24), patch_size=4, in_channels=2, in_timesteps=3, out_timesteps=2,
               embed_dim=16, depth=2, n_blocks=2, modes=3, out_layer_dim=8,
               mode_rule="release")  # fmt: skip
    return DPOT(**{**cfg, **overrides})


def tiny3d() -> DPOT3D:
    torch.manual_seed(0)
    return DPOT3D(img_size=(8, 8, 4), patch_size=2, in_channels=1, in_timesteps=2, embed_dim=8,
                  depth=1, n_blocks=2, modes=2, modes_z=1, out_layer_dim=4,
                  mode_rule="release")  # fmt: skip


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_ours_gives_its_stored_config_state_and_extra(tmp_path):
    model = tiny(modes=2, act="silu")  # not in the weights: only our file can tell them
    path = save_checkpoint(tmp_path / "c.pt", model, {"note": "x"}, step=7)
    opened = open_checkpoint(path)
    assert isinstance(opened, Opened) and opened.kind == "dpot-lab"
    assert opened.config == model.config
    assert same_state(opened.state, model.state_dict())
    assert opened.extra == {"metadata": {"note": "x"}, "step": 7}
    assert str(path) in opened.description


@pytest.mark.parametrize("make", [tiny, tiny3d, lambda: tiny(normalize=True, n_cls=3)],
                         ids=["2d", "3d", "normalized-cls"])  # fmt: skip
@pytest.mark.parametrize("as_file", [False, True])
def test_release_is_converted_and_its_sizes_read(make, as_file, tmp_path):
    model = make()
    release = {"model": {f"module.{k}": v for k, v in as_release(model).items()}}  # DDP-saved
    source = atomic_save(release, tmp_path / "r.pt") if as_file else release
    opened = open_checkpoint(source)
    assert opened.kind == "release" and opened.extra == {}
    assert f"DPOT release, {model.n_spatial}D" in opened.description
    assert same_state(opened.state, model.state_dict())
    got, want = opened.config.to_dict(), model.config.to_dict()
    for unknown in ("modes", "modes_z", "act"):  # the release's defaults: not in the weights
        got.pop(unknown), want.pop(unknown)
    assert got == want


def test_bare_state_dicts_in_our_names(tmp_path):
    model = tiny(mode_rule="symmetric")
    opened = open_checkpoint({f"_orig_mod.{k}": v for k, v in model.state_dict().items()})
    assert opened.kind == "state" and same_state(opened.state, model.state_dict())
    assert opened.config.embed_dim == 16 and opened.config.img_size == (16, 24)
    partial = {k: v for k, v in model.state_dict().items() if k.startswith("blocks.")}
    assert open_checkpoint(partial).config is None  # no sizes to read; the weights still fit
    with pytest.raises(ValueError, match=r"not a dpot-lab checkpoint.*load_official"):
        load_checkpoint(atomic_save(model.state_dict(), tmp_path / "bare.pt"))
    with pytest.raises(ValueError, match="dpot-lab names"):
        load_official(model.state_dict())
    with pytest.raises(ValueError, match=r"state dict: expected .*got a dict with keys \['a'\]"):
        open_checkpoint({"a": [1]})


def test_release_loads_the_same_through_every_door(tmp_path):
    model = tiny(modes=2).eval()
    path = atomic_save({"model": as_release(model)}, tmp_path / "r.pt")
    with pytest.warns(UserWarning, match="could not infer"):
        loaded = [load_official(path, modes=2), load_official(open_checkpoint(path), modes=2)]
    x = torch.randn(1, 16, 24, 3, 2)
    with torch.no_grad():
        for other in loaded:
            assert torch.equal(other.eval()(x), model(x))


def count_reads(monkeypatch) -> list:
    reads = []
    real = ckpt_module.safe_load

    def counting(path, map_location="cpu"):
        reads.append(str(path))
        return real(path, map_location)

    monkeypatch.setattr(ckpt_module, "safe_load", counting)
    return reads


@pytest.mark.parametrize("kind", ["ours", "release"])
def test_each_file_is_read_once(kind, tmp_path, monkeypatch):
    model = tiny()
    path = (
        save_checkpoint(tmp_path / "c.pt", model)
        if kind == "ours"
        else atomic_save({"model": as_release(model)}, tmp_path / "c.pt")
    )
    reads = count_reads(monkeypatch)
    with pytest.warns(UserWarning) if kind == "release" else nullcontext():
        loaded = cli._load_any(str(path))
    assert reads == [str(path)]
    assert same_state(loaded.state_dict(), model.state_dict())
    reads.clear()
    opened = open_checkpoint(path)  # a trainer: architecture, then weights, from one read
    target = DPOT(opened.config)
    report = transfer_weights(target, opened)
    assert reads == [str(path)] and report.new == [] and report.source == opened.description
    assert same_state(target.state_dict(), model.state_dict())


def test_unwrap_strips_ddp_and_compile_wrappers_in_any_nesting():
    model = tiny()

    class Wrapper(nn.Module):  # DDP keeps the model in .module, torch.compile in ._orig_mod
        def __init__(self, attr, inner):
            super().__init__()
            setattr(self, attr, inner)

    assert unwrap(model) is model
    assert unwrap(Wrapper("module", model)) is model
    assert unwrap(Wrapper("_orig_mod", Wrapper("module", model))) is model
    assert unwrap(Wrapper("module", Wrapper("_orig_mod", model))) is model
    empty = nn.Sequential()  # a falsy module is still a wrapped model
    assert unwrap(Wrapper("module", empty)) is empty


def test_size_tuple():
    assert size_tuple(8, 3) == (8, 8, 8)
    assert size_tuple([4, 6], 2) == (4, 6) and size_tuple((4.0, 6), 2) == (4, 6)
    with pytest.raises(ValueError, match=r"img_size: expected an int or 3 ints, got \[4, 6\]"):
        size_tuple([4, 6], 3, "img_size")
    with pytest.raises(ValueError, match=r"resolution: expected an int or 2 ints, got \(4.5, 6\)"):
        size_tuple((4.5, 6), 2, "resolution")
