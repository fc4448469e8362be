"""Masked relative L2 against an independent NumPy computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dpot_lab.train.loss import masked_relative_l2


def _numpy_rel_l2(pred, target, cmask, gmask, score_padded):
    """Per sample: mean over the scored channels of ‖m(ŷ−y)‖ / (‖m y‖ + 1e-8)."""
    out = []
    for b in range(pred.shape[0]):
        vals = []
        for c in range(pred.shape[-1]):
            if not (score_padded or cmask[b, c]):
                continue
            m = gmask[b][..., None]
            num = np.sqrt((((pred[b, ..., c] - target[b, ..., c]) * m) ** 2).sum())
            den = np.sqrt(((target[b, ..., c] * m) ** 2).sum()) + 1e-8
            vals.append(num / den)
        out.append(np.mean(vals))
    return np.array(out)


@pytest.mark.parametrize("score_padded", [False, True])
def test_matches_independent_computation(score_padded):
    g = np.random.default_rng(0)
    pred, target = g.normal(size=(2, 8, 6, 3, 4)), g.normal(size=(2, 8, 6, 3, 4))
    cmask = np.array([[True, True, False, False], [True, True, True, False]])
    gmask = g.random((2, 8, 6)) > 0.3
    t = [torch.tensor(a) for a in (pred, target, cmask, gmask)]
    want = _numpy_rel_l2(pred, target, cmask, gmask, score_padded)
    for b in range(2):  # each sample alone: its relative L2
        one = masked_relative_l2(*(a[b : b + 1] for a in t), score_padded)
        assert one.item() == pytest.approx(want[b], rel=1e-5)
    mean = masked_relative_l2(*t, score_padded)
    assert mean.item() == pytest.approx(want.mean(), rel=1e-5)  # batch reduced by a mean


def test_exact_and_zero_predictions():
    target = torch.randn(3, 8, 8, 2, 2)
    mask = torch.tensor([True, False])
    wrong_pad = target.clone()
    wrong_pad[..., 1] += 100.0  # padded channel ignored by default
    assert masked_relative_l2(wrong_pad, target, mask).item() == 0.0
    assert masked_relative_l2(wrong_pad, target, mask, score_padded=True).item() > 1.0
    zeros = torch.zeros_like(target)
    assert masked_relative_l2(zeros, target, mask).item() == pytest.approx(1.0, abs=1e-6)
