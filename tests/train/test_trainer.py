"""The training loop: auto-regressive loss, accumulation, EMA, NaN skips, divergence rollback,
channel handling and exact resume after SIGKILL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import weakref

import pytest
import torch
import yaml
from train_helpers import tiny_config

import dpot_lab as dl
from dpot_lab.data.mixture import Mixture
from dpot_lab.train import Trainer
from dpot_lab.train.loss import masked_relative_l2


def _records(run_dir, event=None):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    recs = [json.loads(ln) for ln in lines]
    return [r for r in recs if event is None or r["event"] == event]


def _batch(trainer):
    return trainer.next_batch()


def test_rollout_loss_feeds_predictions_back_with_gradient(adv1, tmp_path):
    cfg = tiny_config([adv1], t_ar=2, t_out=2, **{"noise.scale": 0.0})
    trainer = Trainer(cfg, run_dir=tmp_path)
    model = trainer.model
    x, y, cm, gm = _batch(trainer)
    assert y.shape[-2] == 4  # the mixture serves t_ar·t_out target frames

    def manual(detach: bool):
        p1 = model(x)
        p1 = torch.where(cm[:, None, None, None, :], p1, torch.ones_like(p1))
        fed = p1.detach() if detach else p1
        p2 = model(torch.cat([x, fed], dim=-2)[..., -4:, :])
        p2 = torch.where(cm[:, None, None, None, :], p2, torch.ones_like(p2))
        return (
            masked_relative_l2(p1, y[..., :2, :], cm, gm)
            + masked_relative_l2(p2, y[..., 2:, :], cm, gm)
        ) / 2

    loss = trainer.rollout_loss(model, x, y, cm, gm)
    torch.testing.assert_close(loss, manual(detach=False))
    w = model.patch_embed.proj.weight
    (g_through,) = torch.autograd.grad(loss, w)
    (g_detached,) = torch.autograd.grad(manual(detach=True), w)
    assert not torch.allclose(g_through, g_detached)  # the second step's gradient reaches step 1


def test_accumulation_equals_one_big_batch(adv1, tmp_path):
    states, losses = [], []
    for accum in (1, 2):
        cfg = tiny_config([adv1], **{"optim.accumulate": accum, "optim.schedule": "constant"})
        trainer = Trainer(cfg, run_dir=tmp_path / f"a{accum}")
        rec = trainer.train_step()
        losses.append(rec["loss"])
        states.append(trainer.model.state_dict())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for k in states[0]:
        torch.testing.assert_close(states[0][k], states[1][k], rtol=1e-4, atol=1e-6)


def test_ema_is_an_exponential_average_of_the_weights_with_a_warm_up(adv1, tmp_path):
    trainer = Trainer(tiny_config([adv1], ema=0.5), run_dir=tmp_path)
    seen = [{k: v.clone() for k, v in trainer.model.state_dict().items()}]
    for _ in range(2):
        trainer.train_step()
        seen.append({k: v.clone() for k, v in trainer.model.state_dict().items()})
    key = "blocks.0.filter.w1"
    # decays min(0.5, (1 + step) / (10 + step)): 1/10 after step 0, 2/11 after step 1
    d0, d1 = 0.1, 2 / 11
    expected = d1 * (d0 * seen[0][key] + (1 - d0) * seen[1][key]) + (1 - d1) * seen[2][key]
    torch.testing.assert_close(trainer.ema.weights[key], expected)
    assert trainer.ema.decay_at(100) == 0.5  # the configured decay once warmed up
    with trainer.ema.applied():
        assert torch.equal(trainer.model.state_dict()[key], trainer.ema.weights[key])
    assert torch.equal(trainer.model.state_dict()[key], seen[2][key])


class _PoisonedOnce(Mixture):
    """The first window read is NaN (after the mixture's own finiteness check)."""

    poisoned = False

    def __getitem__(self, index):
        item = super().__getitem__(index)
        if not _PoisonedOnce.poisoned:
            _PoisonedOnce.poisoned = True
            item["x"][..., 0] = float("nan")
        return item


def test_nan_batch_is_skipped_logged_and_training_continues(adv1, tmp_path):
    cfg = tiny_config([adv1], steps=3)
    data = _PoisonedOnce({"adv1": adv1}, resolution=32, t_in=4, t_out=1, channels=2, n_test=4)
    trainer = Trainer(cfg, run_dir=tmp_path, train_data=data, test_data={})
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    after_first = {}

    def watch(event):
        if event["event"] == "step" and event["step"] == 1:
            after_first.update({k: v.clone() for k, v in trainer.model.state_dict().items()})

    trainer.callbacks.append(watch)
    trainer.fit()
    assert all(torch.equal(before[k], v) for k, v in after_first.items())  # no update at step 1
    skips = _records(tmp_path, "skip")
    assert [r["step"] for r in skips] == [1] and skips[0]["skipped"] == 1
    assert [r["step"] for r in _records(tmp_path, "train")] == [2, 3]
    assert not _records(tmp_path, "rollback") and trainer.weights_finite()
    assert not all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


def test_absurd_learning_rate_rolls_back_and_ends_finite(adv1, tmp_path):
    cfg = tiny_config(
        [adv1], steps=10,
        **{"optim.lr": 1e8, "optim.schedule": "constant", "safety.max_bad_steps": 2,
           "safety.lr_factor": 1e-4, "safety.snapshot_every": 1},
    )  # fmt: skip
    trainer = Trainer(cfg, run_dir=tmp_path)
    trainer.fit()
    rollbacks = _records(tmp_path, "rollback")
    assert rollbacks and rollbacks[0]["lr_scale"] == pytest.approx(1e-4)
    assert trainer.schedule.scale == pytest.approx(1e-4 ** len(rollbacks))
    assert trainer.weights_finite()
    final = dl.load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert all(torch.isfinite(p).all() for p in final.parameters())


def test_channels_fewer_are_masked_more_are_an_error(adv1, adv3, tmp_path):
    trainer = Trainer(tiny_config([adv1]), run_dir=tmp_path / "ok")
    x, y, cm, gm = _batch(trainer)
    assert cm.tolist() == [[True, False]] * 4 and torch.equal(x[..., 1], torch.ones_like(x[..., 1]))
    with pytest.raises(ValueError, match=r"adv3\.h5.*3 channels.*channels=2"):
        Trainer(tiny_config([adv3]), run_dir=tmp_path / "bad")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # the unpickler on garbage bytes
def test_resume_from_missing_or_corrupt_checkpoint_is_a_clear_error(adv1, tmp_path):
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        Trainer(tiny_config([adv1]), run_dir=tmp_path, resume=True)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"\x80garbage")
    with pytest.raises(ValueError, match="cannot resume from .*last.pt"):
        Trainer(tiny_config([adv1]), run_dir=tmp_path, resume=True)


def test_resume_after_sigkill_is_bitwise_exact(adv1, tmp_path):
    """8 steps straight vs. killed (SIGKILL) at step 6 with a checkpoint at 4, resumed to 8."""
    cfg = tiny_config([adv1], steps=8, **{"checkpoint.every": 4, "eval.every": 4, "ema": 0.9})
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cli = [sys.executable, "-m", "dpot_lab.cli", "-q", "pretrain", str(path), "--out"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([*cli, str(tmp_path / "straight")], check=True, env=env)
    killer = textwrap.dedent(f"""
        import os, signal
        from dpot_lab.train import Trainer
        def kill(event):
            if event["event"] == "train" and event["step"] == 6:
                os.kill(os.getpid(), signal.SIGKILL)
        Trainer({str(path)!r}, callbacks=[kill], run_dir={str(tmp_path / "killed")!r}).fit()
    """)
    killed = subprocess.run([sys.executable, "-c", killer], env=env)
    assert killed.returncode == -9
    assert max(r["step"] for r in _records(tmp_path / "killed")) == 6
    subprocess.run([*cli, str(tmp_path / "killed"), "--resume"], check=True, env=env)
    a = dl.models.read_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = dl.models.read_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 8
    for part in ("model", "ema"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    losses = [
        [r["loss"] for r in _records(d, "train")]
        for d in (tmp_path / "straight", tmp_path / "killed")
    ]
    assert losses[0] == losses[1] and len(losses[0]) == 8


def test_resident_data_trains_like_the_loader(adv1, tmp_path):
    """data.placement device vs. loader: the same losses and weights, bitwise, over an epoch
    end, in one batch or two micro-batches a step, though the device path's batches are written
    into recycled tensors; "auto" is resident within data.resident_gb, streams beyond it, and
    reads through the DataLoader when it cannot hold two trajectories."""
    for accumulate, steps in ((1, 3), (2, 4)):  # 20 training windows: 2 or 5 batches an epoch
        states, losses, reused = [], [], 0
        for placement in ("loader", "device"):
            cfg = tiny_config([adv1], steps=steps, batch_size=8, **{
                "data.placement": placement, "optim.accumulate": accumulate})  # fmt: skip
            run = tmp_path / f"{placement}{accumulate}"
            trainer, seen = Trainer(cfg, run_dir=run), {}
            take = trainer.next_batch

            def spy(take=take, seen=seen, trainer=trainer):
                nonlocal reused
                batch = take()
                ring = getattr(trainer.loader, "_ring", [])  # the ResidentLoader's CPU buffers
                owners = {o[0].ctypes.data: o[0] for _, o, _ in ring}
                base = owners.get(batch[0].untyped_storage().data_ptr())  # the buffer under x
                if base is not None:
                    reused += id(base) in seen and seen[id(base)]() is base
                    seen[id(base)] = weakref.ref(base)
                return batch

            trainer.next_batch = spy
            trainer.fit()
            assert trainer.epoch == 1
            states.append(trainer.model.state_dict())
            losses.append([r["loss"] for r in _records(run, "train")])
        assert type(trainer.loader).__name__ == "ResidentLoader"
        assert reused >= steps * accumulate - 2  # every batch but the first two recycled
        assert losses[0] == losses[1] and len(losses[0]) == steps
        assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    # 20 trajectories of 128 KiB: held whole, in chunks of 4, not at all
    for gb, kind in ((1e-2, "ResidentLoader"), (1e-3, "ResidentLoader"), (1e-4, "RunLoader")):
        cfg = tiny_config([adv1], **{"data.placement": "auto", "data.resident_gb": gb})
        assert type(Trainer(cfg, run_dir=tmp_path / f"auto{gb}").loader).__name__ == kind


def test_test_split_size_per_source(adv1, tmp_path):
    trainer = Trainer(tiny_config([adv1, adv1], **{"data.n_test": [2, 5]}), run_dir=tmp_path)
    assert {k: len(v) for k, v in trainer.test_data.items()} == {"adv1": 2, "adv1_2": 5}
    assert [len(s.samples) for s in trainer.train_data.sources] == [22, 19]


def test_glob_of_per_sample_files_is_one_source_named_by_its_folder(tmp_path):
    import h5py
    import numpy as np

    folder = tmp_path / "ns_release"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):  # DPOT's unified layout: one file per sample, data (X, Y, T, C)
        with h5py.File(folder / f"data_{i}.hdf5", "w") as f:
            f["data"] = rng.standard_normal((32, 32, 12, 1)).astype(np.float32)
    cfg = tiny_config([str(folder / "data_*.hdf5")], **{"data.n_test": 2})
    trainer = Trainer(cfg, run_dir=tmp_path / "run")
    assert trainer.source_names == ["ns_release"] and list(trainer.test_data) == ["ns_release"]
    assert len(trainer.test_data["ns_release"]) == 2
