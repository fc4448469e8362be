"""torchrun on CPU (DDP or FSDP over gloo) gives the loss curve of one process with the same
global batch (from the DataLoader or gathered on the device), and checkpoints resume across
strategies and world sizes; activation checkpointing leaves gradients unchanged; the global batch
must divide."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from train_helpers import check_rollback_restores, run_rank_script, tiny_config, torchrun

import dpot_lab as dl
from dpot_lab.train import Trainer, distributed
from dpot_lab.train.config import ConfigError


def _losses(run_dir):
    recs = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r["loss"] for r in recs if r["event"] == "train"]
    evals = [r["l2re"] for r in recs if r["event"] == "eval"]
    return train, evals


@pytest.mark.parametrize(
    "data",
    [{}, {"data.placement": "device"}, {"data.placement": "device", "data.resident_gb": 5e-4}],
    ids=["loader", "device", "device-streamed"],  # streamed: chunks of 2 trajectories
)
def test_torchrun_two_processes_match_one(adv1, tmp_path, data):
    cfg = tiny_config([adv1], steps=4, **{"data.n_test": 5, "eval.batch_size": 2, **data})
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["-m", "dpot_lab.cli", "-q", "pretrain", str(path), "--out"]
    subprocess.run([sys.executable, *args, str(tmp_path / "one")], check=True, env=env)
    torchrun([*args, str(tmp_path / "two")])
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


def _pretrain(cfg_path, run_dir, ranks: int = 1, strategy: str = "ddp", resume: bool = False):
    """``dpot-lab pretrain`` in one process, or under torchrun with ``ranks`` processes."""
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["distributed"] = {"strategy": strategy}
    path = run_dir.parent / f"{run_dir.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    args = ["-m", "dpot_lab.cli", "-q", "pretrain", str(path), "--out", str(run_dir)]
    args += ["--resume"] if resume else []
    if ranks > 1:
        torchrun(args, ranks)
    else:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        subprocess.run([sys.executable, *args], check=True, env=env)


def _rewind(run_dir, to_dir, step: int) -> None:
    """A copy of ``run_dir`` as it was after the checkpoint of ``step``."""
    shutil.copytree(run_dir, to_dir)
    ckpts = to_dir / "checkpoints"
    for f in ckpts.iterdir():
        if f.name not in (f"step_{step:08d}.pt",):
            f.unlink()
    shutil.copy(ckpts / f"step_{step:08d}.pt", ckpts / "last.pt")


def test_fsdp_matches_one_process_and_resumes_across_strategies(adv1, tmp_path):
    """FSDP over 2 ranks (EMA, 2 accumulated micro-batches) follows the single-process run; its
    checkpoint resumes in one process and a single-process checkpoint resumes under FSDP."""
    cfg = tiny_config(
        [adv1], steps=4, ema=0.9,
        **{"model.depth": 2, "optim.accumulate": 2, "checkpoint.every": 2,
           "data.n_test": 5, "eval.batch_size": 2, "eval.every": 2},
    )  # fmt: skip
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    _pretrain(cfg_path, tmp_path / "one")
    _pretrain(cfg_path, tmp_path / "fsdp", ranks=2, strategy="fsdp")
    (one, eval_one), (two, eval_two) = _losses(tmp_path / "one"), _losses(tmp_path / "fsdp")
    assert len(one) == len(two) == 4 and len(eval_one) == len(eval_two) == 2
    assert one == pytest.approx(two, rel=1e-4)
    for a, b in zip(eval_one, eval_two, strict=True):  # 5 samples over 2 ranks
        assert a["adv1"] == pytest.approx(b["adv1"], rel=1e-4)
    saved = [dl.train.checkpointing.read_checkpoint(tmp_path / r / "checkpoints" / "last.pt")
             for r in ("one", "fsdp")]  # fmt: skip
    for part in ("model", "ema"):
        assert saved[0][part].keys() == saved[1][part].keys()
        for k in saved[0][part]:
            torch.testing.assert_close(saved[0][part][k], saved[1][part][k], rtol=1e-3, atol=1e-5)
    names = {
        n for n, _ in dl.load_checkpoint(tmp_path / "one/checkpoints/last.pt").named_parameters()
    }
    assert saved[1]["optimizer"]["state"].keys() == names  # the whole state, by parameter name

    _rewind(tmp_path / "fsdp", tmp_path / "fsdp_then_one", step=2)
    _pretrain(cfg_path, tmp_path / "fsdp_then_one", resume=True)
    _rewind(tmp_path / "one", tmp_path / "one_then_fsdp", step=2)
    _pretrain(cfg_path, tmp_path / "one_then_fsdp", ranks=2, strategy="fsdp", resume=True)
    for run in ("fsdp_then_one", "one_then_fsdp"):
        resumed, evals = _losses(tmp_path / run)
        assert resumed == pytest.approx(one, rel=1e-4), run
        assert evals[-1]["adv1"] == pytest.approx(eval_one[-1]["adv1"], rel=1e-4), run


_ROLLBACK_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from train_helpers import check_rollback_restores, tiny_config
from dpot_lab.train import Trainer
cfg = tiny_config([{data!r}], ema=0.9, **{{"model.depth": 2, "distributed.strategy": "fsdp",
                  "optim.freeze": ["embed"], "optim.part_lrs": {{"head": 1e-4}}}})
trainer = Trainer(cfg, run_dir={out!r})
check_rollback_restores(trainer)
trainer.fit(4)  # every rank returns once the main rank has written this step's checkpoint
assert Trainer(cfg, run_dir={out!r}, resume=True).step == 4
"""  # frozen parameters and two parameter groups under FSDP


def test_rollback_restores_the_snapshot_exactly(adv1, tmp_path):
    """One process, and each rank's shards under FSDP over 2 ranks."""
    check_rollback_restores(Trainer(tiny_config([adv1], ema=0.9), run_dir=tmp_path / "one"))
    run_rank_script(_ROLLBACK_SCRIPT, adv1, tmp_path)


def test_activation_checkpointing_keeps_gradients_and_state_names(adv1, tmp_path):
    grads, keys = [], []
    for ckpt in (False, True):
        cfg = tiny_config(
            [adv1], **{"distributed.activation_checkpointing": ckpt, "model.depth": 2}
        )
        trainer = Trainer(cfg, run_dir=tmp_path / str(ckpt))
        x, y, cm, gm = trainer.next_batch()
        trainer.rollout_loss(trainer.model, x, y, cm, gm, positions=torch.arange(4)).backward()
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


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_cuda_asked_for_without_a_gpu_is_a_clear_error():
    assert distributed.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(RuntimeError, match="device: 'cuda', but this torch sees no CUDA GPU"):
        distributed.resolve_device("cuda")
