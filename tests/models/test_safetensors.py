"""safetensors checkpoints: ours (config and metadata in the header) and bare state dicts (ours or
the release's) load through the same doors as torch files, with the same errors."""

from __future__ import annotations

import json
import re

import pytest
import safetensors
import safetensors.torch
import torch
from test_open_checkpoint import as_release, tiny

import dpot_lab as dl
from dpot_lab.cli import main
from dpot_lab.models import load_checkpoint, load_official, open_checkpoint, save_checkpoint
from dpot_lab.models.checkpoint import atomic_save
from dpot_lab.train.finetune import transfer_weights

X = torch.randn(2, 16, 24, 3, 2, generator=torch.Generator().manual_seed(1))


def outputs(model) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(X)


def test_ours_round_trips_config_weights_and_metadata(tmp_path):
    model = tiny(modes=2, act="silu")  # fields the weights cannot show: only the header tells
    path = save_checkpoint(tmp_path / "m.safetensors", model, {"note": "x", "l2re": {"a": 0.5}})
    with safetensors.safe_open(path, framework="pt") as f:  # a plain safetensors file
        header = f.metadata()
    assert header["format"] == "dpot-lab" and json.loads(header["config"]) == model.config.to_dict()
    opened = open_checkpoint(path)
    assert opened.kind == "dpot-lab" and opened.config == model.config
    assert opened.extra == {"metadata": {"note": "x", "l2re": {"a": 0.5}}}
    loaded = load_checkpoint(path)
    assert loaded.metadata == {"note": "x", "l2re": {"a": 0.5}}
    assert torch.equal(outputs(loaded), outputs(model))


def test_safetensors_holds_no_trainer_state(tmp_path):
    with pytest.raises(ValueError, match=r"m\.safetensors: a safetensors .* not \['optimizer'\]"):
        save_checkpoint(tmp_path / "m.safetensors", tiny(), optimizer={"lr": 1})
    assert not list(tmp_path.iterdir())


def errors(fn, *args) -> str:
    with pytest.raises(ValueError) as info:
        fn(*args)
    return str(info.value)


@pytest.mark.parametrize("damage", ["shape", "missing"])
def test_wrong_weights_give_the_torch_files_error(damage, tmp_path):
    model = tiny()
    state = dict(model.state_dict())
    if damage == "shape":
        state["blocks.1.mlp.0.weight"] = torch.zeros(3, 16)
    else:
        del state["blocks.1.mlp.0.weight"]
    messages = {}
    for suffix in ("pt", "safetensors"):
        path = save_checkpoint(tmp_path / f"bad.{suffix}", model, state=state)
        messages[suffix] = errors(load_checkpoint, path).replace(str(path), "FILE")
    assert messages["pt"] == messages["safetensors"]
    first = messages["pt"].splitlines()[0]  # what the CLI prints: the tensor and its shapes
    assert first == "state dict from FILE does not match DPOT: " + (
        "tensor blocks.1.mlp.0.weight: expected (16, 16), got (3, 16) (1 shape mismatch(es), "
        "0 missing, 0 unexpected)" if damage == "shape" else
        "tensor blocks.1.mlp.0.weight is missing (0 shape mismatch(es), 1 missing, 0 unexpected)"
    )  # fmt: skip
    want = "blocks.1.mlp.0.weight: expected (16, 16), got (3, 16)" if damage == "shape" else (
        "missing keys (1): ['blocks.1.mlp.0.weight']"
    )  # fmt: skip
    assert want in messages["pt"]


def test_release_state_dict_loads_as_the_torch_file_does(tmp_path):
    model = tiny(modes=2)
    release = as_release(model)
    pt = atomic_save({"model": release}, tmp_path / "r.pt")
    st = tmp_path / "r.safetensors"
    safetensors.torch.save_file(release, st)  # the release's names, no metadata
    assert open_checkpoint(st).kind == "release"
    assert open_checkpoint(st).config == open_checkpoint(pt).config
    with pytest.warns(UserWarning, match="could not infer"):
        a, b = load_official(pt, modes=2), load_official(st, modes=2)
    assert torch.equal(outputs(a), outputs(b)) and torch.equal(outputs(a), outputs(model))
    target = tiny(modes=2, in_channels=3)  # fine-tuning's init_from: the same transfer
    fresh = tiny(modes=2, in_channels=3)
    reports = [transfer_weights(target, st), transfer_weights(fresh, pt)]
    assert reports[0].summary().replace(".safetensors", ".pt") == reports[1].summary()
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in target.state_dict().items())
    release["out_layer.4.weight"] = release["out_layer.4.weight"][:-1]  # wrong output width
    pt = atomic_save(release, tmp_path / "bad.pt")
    safetensors.torch.save_file(release, tmp_path / "bad.safetensors")
    messages = [
        errors(load_official, p).replace(str(p), "FILE") for p in (pt, tmp_path / "bad.safetensors")
    ]
    assert messages[0] == messages[1] and "FILE" in messages[0]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_files_name_the_file(damage, tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", tiny())
    data = path.read_bytes()
    data = {"truncated": data[:-100], "garbage": b"not a checkpoint at all", "empty": b""}[damage]
    path.write_bytes(data)
    for load in (open_checkpoint, load_checkpoint, load_official):
        with pytest.raises(ValueError, match=rf"checkpoint {re.escape(str(path))} is corrupt"):
            load(path)


def test_cli_export_writes_safetensors(tmp_path):
    model = tiny()
    run = save_checkpoint(tmp_path / "run.pt", model, {"name": "t"}, step=5, optimizer={})
    by_suffix, by_flag = tmp_path / "a.safetensors", tmp_path / "b.bin"
    assert main(["-q", "export", str(run), str(by_suffix)]) == 0
    assert main(["-q", "export", str(run), str(by_flag), "--format", "safetensors"]) == 0
    assert main(["-q", "export", str(run), str(tmp_path / "c.pt")]) == 0
    assert (tmp_path / "c.pt").read_bytes()[:2] == b"PK"  # the default stays torch's zip format
    for path in (by_suffix, by_flag):
        with safetensors.safe_open(path, framework="pt") as f:
            assert f.metadata()["format"] == "dpot-lab"
        loaded = dl.load_checkpoint(path)
        assert loaded.metadata == {"name": "t", "exported_from": str(run), "step": 5}
        assert torch.equal(outputs(loaded), outputs(model))
