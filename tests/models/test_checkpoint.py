"""Our checkpoint format: round trip, atomic writes, refusal of unsafe, corrupt, mismatching or
non-finite checkpoints."""

from __future__ import annotations

import pytest
import torch

from dpot_lab.models import (
    DPOT,
    DPOT3D,
    load_checkpoint,
    load_official,
    read_checkpoint,
    save_checkpoint,
)
from dpot_lab.models.checkpoint import atomic_save, load_state_strict


def tiny(**overrides) -> DPOT:
    cfg = dict(img_size=16, patch_size=4, in_channels=2, in_timesteps=3, out_timesteps=2,
               embed_dim=16, depth=2, n_blocks=2, modes=3, out_layer_dim=8)  # fmt: skip
    torch.manual_seed(0)
    return DPOT(**{**cfg, **overrides})


def tiny3d() -> DPOT3D:
    torch.manual_seed(0)
    return DPOT3D(img_size=(8, 8, 4), patch_size=2, in_channels=1, in_timesteps=2, embed_dim=8,
                  depth=1, n_blocks=2, modes=2, modes_z=1, out_layer_dim=4)  # fmt: skip


def resized() -> DPOT:
    return tiny(n_cls=3, normalize=True).resize((24, 16))


@pytest.mark.parametrize("make", [tiny, tiny3d, resized], ids=["2d", "3d", "resized-normalized"])
def test_round_trip_keeps_config_weights_metadata_and_outputs(make, tmp_path):
    model = make().eval()
    opt = torch.optim.Adam(model.parameters())
    metadata = {"epoch": 7, "datasets": ["ns_1e-5", "swe"], "l2re": 0.0123}
    path = save_checkpoint(
        tmp_path / "run" / "ckpt.pt", model, metadata, optimizer=opt.state_dict()
    )
    loaded = load_checkpoint(path).eval()
    assert type(loaded) is type(model)
    assert loaded.config == model.config
    assert loaded.metadata == metadata
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    cfg = model.config
    x = torch.randn(2, *cfg.img_size, cfg.in_timesteps, cfg.in_channels)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    full = read_checkpoint(path)
    assert full["format"] == "dpot-lab" and full["optimizer"]["param_groups"][0]["lr"] == 1e-3


def test_failed_write_leaves_the_previous_file_loadable(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    good = tiny()
    save_checkpoint(path, good, {"step": 1})
    before = path.read_bytes()

    def crash_after_a_few_bytes(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash_after_a_few_bytes)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, tiny(embed_dim=24, n_blocks=3), {"step": 2})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # no temp file left over
    loaded = load_checkpoint(path)
    assert loaded.metadata == {"step": 1} and loaded.config == good.config


class RunsCodeOnLoad:
    """Unpickling this creates a file: a stand-in for arbitrary code in a malicious checkpoint."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    state = tiny().state_dict()
    torch.save({"format": "dpot-lab", "config": {}, "model": state, "hook": RunsCodeOnLoad(marker)},
               path)  # fmt: skip
    for load in (load_checkpoint, load_official):
        with pytest.raises(ValueError, match=r"refusing to load .*evil\.pt.*run code"):
            load(path)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # the unpickler on garbage bytes
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "pickle_like", "text"])
def test_corrupt_file_gives_a_clear_error(damage, tmp_path):
    path = save_checkpoint(tmp_path / "ckpt.pt", tiny())
    data = path.read_bytes()
    path.write_bytes(
        {
            "truncated": data[: len(data) // 2],
            "garbage": b"\x00\x13not a checkpoint" * 50,
            "empty": b"",
            "pickle_like": b"\x80garbage",  # the unpickler fails with an IndexError
            "text": b"hello world",  # a KeyError
        }[damage]  # fmt: skip
    )
    with pytest.raises(ValueError, match=r"ckpt\.pt is corrupt, truncated or not a PyTorch f") as e:
        load_checkpoint(path)
    assert "weights_only" not in str(e.value)  # no advice to unpickle unsafely


def test_missing_or_foreign_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.pt"):
        load_checkpoint(tmp_path / "nothere.pt")
    release = atomic_save({"model": tiny().state_dict()}, tmp_path / "release.pt")
    with pytest.raises(
        ValueError, match=r"release\.pt is not a dpot-lab checkpoint.*load_official"
    ):
        load_checkpoint(release)


def test_mismatching_state_dict_lists_every_problem_and_loads_nothing(tmp_path):
    path = save_checkpoint(tmp_path / "ckpt.pt", tiny())
    ckpt = read_checkpoint(path)
    state = ckpt["model"]
    del state["blocks.1.norm2.bias"]
    state["blocks.9.filter.w1"] = torch.zeros(2, 2, 8, 8)
    state["pos_embed"] = torch.zeros(1, 5, 4, 16)
    atomic_save(ckpt, path)
    with pytest.raises(ValueError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert "ckpt.pt" in message
    assert "missing keys (1): ['blocks.1.norm2.bias']" in message
    assert "unexpected keys (1): ['blocks.9.filter.w1']" in message
    assert "pos_embed: expected (1, 4, 4, 16), got (1, 5, 4, 16)" in message
    # no partial load: a live model keeps every weight when the load fails
    model = tiny(depth=2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="missing keys"):
        load_state_strict(model, state, str(path))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_on_save(bad, tmp_path):
    path = save_checkpoint(tmp_path / "ckpt.pt", tiny(), {"step": 1})
    before = path.read_bytes()
    model = tiny()
    with torch.no_grad():
        model.blocks[1].filter.w2[0, 0, 0, 0] = bad
    with pytest.raises(
        ValueError, match=r"ckpt\.pt: non-finite weights in \['blocks\.1\.filter\.w2'\]"
    ):
        save_checkpoint(path, model, {"step": 2})
    assert path.read_bytes() == before
