"""Learning-rate schedules: the paper's OneCycle (as torch's OneCycleLR), cosine, rollback scale."""

from __future__ import annotations

import pytest
import torch

from dpot_lab.train.schedule import LRSchedule, lr_factor


def _optimizer(lr=1e-3):
    return torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def test_onecycle_follows_torch_onecycle():
    ours, theirs = _optimizer(), _optimizer()
    sched = LRSchedule(ours, 200, "onecycle", 0.2, 1e4, 1e4)
    ref = torch.optim.lr_scheduler.OneCycleLR(
        theirs, max_lr=1e-3, total_steps=200, pct_start=0.2, div_factor=1e4,
        final_div_factor=1e4, cycle_momentum=False,
    )  # fmt: skip
    for _ in range(200):
        assert ours.param_groups[0]["lr"] == pytest.approx(theirs.param_groups[0]["lr"], rel=1e-9)
        theirs.step()
        ref.step()
        sched.step()
    assert lr_factor(0, 200) == pytest.approx(1e-4)  # start lr/1e4
    assert lr_factor(39, 200) == pytest.approx(1.0)  # peak after 20%
    assert lr_factor(199, 200) == pytest.approx(1e-8)  # end lr/1e8


def test_cosine_warmup_and_rollback_scale_with_part_lrs():
    opt = torch.optim.Adam(
        [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 1e-3},
         {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 1e-4}]
    )  # fmt: skip
    sched = LRSchedule(opt, 100, "cosine", 0.1, 1e4, 1e4)
    lrs = []
    for _ in range(100):
        lrs.append(sched.get_last_lr())
        sched.step()
    assert lrs[10][0] == pytest.approx(1e-3) and lrs[10][1] == pytest.approx(1e-4)
    assert all(a[0] < b[0] for a, b in zip(lrs[:10], lrs[1:11], strict=True))  # warm-up rises
    assert all(a[0] >= b[0] for a, b in zip(lrs[10:-1], lrs[11:], strict=True))  # then decays
    sched.lower(0.5)
    state = sched.state_dict()
    fresh = LRSchedule(opt, 100, "cosine", 0.1, 1e4, 1e4)
    fresh.load_state_dict(state)
    assert fresh.get_last_lr()[1] == pytest.approx(0.5 * 1e-4 * lr_factor(99, 100, "cosine", 0.1))
