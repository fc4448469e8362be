"""The training step never makes the host wait for the device between two log points: no
``.item()``, ``.tolist()``, ``.cpu()``, ``.numpy()``, tensor-to-Python conversion, data-dependent
shapes or blocking copies between devices inside a step."""

from __future__ import annotations

import traceback
from contextlib import contextmanager

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from train_helpers import tiny_config

from dpot_lab.train import Trainer

aten = torch.ops.aten
# ops whose result the host must read (values or a data-dependent shape)
READS = (aten._local_scalar_dense, aten.nonzero, aten.masked_select, aten.equal, aten.is_nonzero)
METHODS = ("item", "tolist", "cpu", "numpy")


class Calls(list):
    """Names of synchronising calls; ``sites`` where in dpot_lab each was made."""

    def __init__(self):
        super().__init__()
        self.sites: list[str] = []

    def append(self, name: str) -> None:
        super().append(name)
        ours = [f for f in traceback.extract_stack() if "/dpot_lab/" in f.filename]
        self.sites.append(f"{name} at {ours[-1].filename}:{ours[-1].lineno}" if ours else name)


class _Syncs(TorchDispatchMode):
    """Records the aten calls below autograd that synchronise: reads and blocking copies
    between two devices."""

    def __init__(self, calls: list[str]):
        super().__init__()
        self.calls = calls

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _host_data():
            pass
        elif func.overloadpacket in READS:
            self.calls.append(str(func))
        elif func is aten.index.Tensor and any(
            i is not None and i.dtype == torch.bool for i in args[1]
        ):
            self.calls.append("boolean indexing")
        elif func is aten._to_copy.default and not kwargs.get("non_blocking", False):
            target = kwargs.get("device")
            if target is not None and torch.device(target) != args[0].device:
                self.calls.append(f"blocking copy {args[0].device} -> {target}")
        elif func is aten.copy_.default and not (args[2:] or [kwargs.get("non_blocking")])[0]:
            if args[0].device != args[1].device:
                self.calls.append(f"blocking copy {args[1].device} -> {args[0].device}")
        return func(*args, **kwargs)


def _host_data() -> bool:
    """Whether the caller is the DataLoader's machinery (sampler, collation): host tensors only,
    in the main process as here or in worker processes."""
    return any("/torch/utils/data/" in f.filename for f in traceback.extract_stack())


@contextmanager
def counting_syncs(calls: list[str], monkeypatch):
    """Every synchronising call inside the block is appended to ``calls``."""
    for name in METHODS:
        method = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _method=method, **kwargs):
            if not _host_data():
                calls.append(f".{_name}()")
            return _method(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    try:
        with _Syncs(calls):
            yield
    finally:
        monkeypatch.undo()


def test_the_counter_sees_each_kind_of_wait(monkeypatch):
    calls = Calls()
    t = torch.arange(4.0)
    with counting_syncs(calls, monkeypatch):
        t.sum().item()
        t.tolist()
        bool(t.max() > 1)
        t[t > 1]  # data-dependent shapes
        torch.nonzero(t)
        t.cpu()
    assert calls == [
        ".item()", "aten._local_scalar_dense.default", ".tolist()",
        "aten._local_scalar_dense.default", "boolean indexing", "aten.nonzero.default", ".cpu()",
    ]  # fmt: skip


@pytest.mark.parametrize("placement", ["loader", "device"])
def test_steps_between_log_points_never_wait_for_the_device(adv1, tmp_path, placement, monkeypatch):
    cfg = tiny_config(
        [adv1], steps=8,
        **{"log.every": 4, "eval.every": 0, "checkpoint.every": 0, "ema": 0.9,
           "optim.clip_grad": 1.0, "optim.accumulate": 2, "safety.snapshot_every": 1000,
           "data.placement": placement},
    )  # fmt: skip
    trainer = Trainer(cfg, run_dir=tmp_path, test_data={})
    assert trainer.optimizer.defaults.get("fused")  # the step is skipped on the device
    launch, settle = trainer._launch_step, trainer._settle
    calls, launched, settled = Calls(), [], []

    def counted_launch():
        with counting_syncs(calls, monkeypatch):
            launch()
        launched.append(trainer.step)

    def recorded_settle():
        settled.append(trainer.step)
        return settle()

    trainer._launch_step, trainer._settle = counted_launch, recorded_settle
    trainer.fit()
    assert launched == list(range(1, 9))
    assert calls == [], calls.sites
    assert settled == [4, 8]  # the host reads the steps' outcomes at the log points only
    train = [r for r in trainer.history if r["event"] == "train"]
    assert [r["step"] for r in train] == [4, 8] and all(r["ok"] for r in train)


def test_a_non_finite_step_is_skipped_on_the_device_and_recorded_at_the_log_point(adv1, tmp_path):
    from test_trainer import _PoisonedOnce  # the first window read is NaN

    _PoisonedOnce.poisoned = False
    cfg = tiny_config([adv1], steps=3, ema=0.5, **{"log.every": 3, "eval.every": 0})
    data = _PoisonedOnce({"adv1": adv1}, resolution=32, t_in=4, t_out=1, channels=2, n_test=4)
    trainer = Trainer(cfg, run_dir=tmp_path, train_data=data, test_data={})
    steps_seen = []
    trainer.callbacks.append(lambda e: e["event"] == "step" and steps_seen.append(e["step"]))
    try:
        trainer.fit()
    finally:
        _PoisonedOnce.poisoned = False  # as test_trainer's own test expects it
    assert steps_seen == [1, 2, 3]  # the step events, all at the log point
    assert [r["step"] for r in trainer.history if r["event"] == "skip"] == [1]
    assert [r["step"] for r in trainer.history if r["event"] == "train"] == [3]
    assert trainer.guard.skipped == 1 and trainer.weights_finite()
    adam_steps = {float(s["step"]) for s in trainer.optimizer.state.values()}
    assert adam_steps == {2.0}  # the skipped update never happened
    assert all(torch.isfinite(w).all() for w in trainer.ema.weights.values())
