"""torchrun on CPU (DDP over gloo) gives the loss curve of one process with the same global
batch; activation checkpointing leaves gradients unchanged; the global batch must divide."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import tiny_config

import dpot_lab as dl
from dpot_lab.train import Trainer, distributed
from dpot_lab.train.config import ConfigError


def _losses(run_dir):
    recs = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r["loss"] for r in recs if r["event"] == "train"]
    evals = [r["l2re"] for r in recs if r["event"] == "eval"]
    return train, evals


def test_torchrun_two_processes_match_one(adv1, tmp_path):
    cfg = tiny_config([adv1], steps=4, **{"data.n_test": 5, "eval.batch_size": 2})
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["-m", "dpot_lab.cli", "-q", "pretrain", str(path), "--out"]
    subprocess.run([sys.executable, *args, str(tmp_path / "one")], check=True, env=env)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    subprocess.run([*torchrun, *args, str(tmp_path / "two")], check=True, env=env)
    (one, eval_one), (two, eval_two) = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == 4
    assert one == pytest.approx(two, rel=1e-4)
    assert eval_one[0]["adv1"] == pytest.approx(
        eval_two[0]["adv1"], rel=1e-4
    )  # 5 samples over 2 ranks
    a = dl.load_checkpoint(tmp_path / "one" / "checkpoints" / "last.pt").state_dict()
    b = dl.load_checkpoint(tmp_path / "two" / "checkpoints" / "last.pt").state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=1e-5)


def test_activation_checkpointing_keeps_gradients_and_state_names(adv1, tmp_path):
    grads, keys = [], []
    for ckpt in (False, True):
        cfg = tiny_config(
            [adv1], **{"distributed.activation_checkpointing": ckpt, "model.depth": 2}
        )
        trainer = Trainer(cfg, run_dir=tmp_path / str(ckpt))
        x, y, cm, gm = trainer._to_device(next(trainer._batch_stream()))
        trainer.rollout_loss(trainer.model, x, y, cm, gm, positions=range(4)).backward()
        grads.append({n: p.grad.clone() for n, p in trainer.model.named_parameters()})
        keys.append(list(trainer.model.state_dict()))
    assert keys[0] == keys[1]
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], rtol=1e-5, atol=1e-7)


def _saved_bytes(depth: int, checkpointed: bool) -> int:
    """Bytes the forward pass keeps for the backward pass."""
    torch.manual_seed(0)
    model = dl.create_model("nano", embed_dim=64, depth=depth, img_size=32, in_timesteps=4, modes=4)
    if checkpointed:
        assert distributed.enable_activation_checkpointing(model) == depth
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(torch.randn(2, 32, 32, 4, 4))
    return total


def test_activation_checkpointing_keeps_only_each_blocks_input():
    per_two_blocks = _saved_bytes(4, True) - _saved_bytes(2, True)
    assert per_two_blocks == 2 * (2 * 4 * 4 * 64 * 4)  # 2 blocks x input (B, 4, 4, D) float32
    assert _saved_bytes(4, False) - _saved_bytes(2, False) > 10 * per_two_blocks


def test_global_batch_must_divide_over_ranks(adv1, tmp_path, monkeypatch):
    monkeypatch.setattr(distributed, "setup", lambda *a: distributed.DistInfo(rank=0, world_size=3))
    with pytest.raises(ConfigError, match="global batch 4 must divide into 3 processes"):
        Trainer(tiny_config([adv1]), run_dir=tmp_path)
